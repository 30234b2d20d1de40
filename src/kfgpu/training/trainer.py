"""Train a tabular model from encoded splits and write the model bundle."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, TrainingError
from kfgpu.training.bundling import (
    ModelScore,
    bundle_description,
    package_model,
    score_best_weights,
    score_model,
    validation_decision,
)
from kfgpu.training.prepare import (
    check_task,
    effective_batch_size,
    encode_labels,
    imbalance_settings,
    prepare_training,
    resolve_accelerator,
)

if TYPE_CHECKING:
    import pandas as pd
    import pytorch_lightning as pl
    import torch

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import ShardedSplit

# The set-up and packaging shared with the Horovod trainer live in kfgpu.training.prepare
# and kfgpu.training.bundling; their names stay importable from here.
__all__ = [
    "TrainOutcome",
    "build_datamodule",
    "build_module",
    "bundle_description",
    "effective_batch_size",
    "encode_labels",
    "imbalance_settings",
    "lightning_strategy",
    "network_of",
    "resolve_accelerator",
    "score_best_weights",
    "train_tabular",
    "validation_decision",
]


@dataclass
class TrainOutcome:
    """What :func:`train_tabular` returns (rank 0 only writes the bundle)."""

    bundle_path: Path | None
    metrics: dict[str, float]
    epochs_run: int
    best_epoch: int
    seconds: float
    description: dict[str, Any]


def _network_state(checkpoint: str, prefix: str = "network.") -> tuple[dict[str, Any], int]:
    """The network's weights and the (1-based) epoch of a Lightning weights checkpoint.

    ``prefix``: the network's attribute in the LightningModule (``""`` when the module is
    the network itself).
    """
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return state, int(ckpt.get("epoch", -1)) + 1


def _checkpoint_position(path: str) -> tuple[int, int]:
    """The (0-based) epoch and the global step a full Lightning checkpoint was saved at.

    ``(-1, -1)`` when the file does not load as plain tensors and containers: Lightning's
    own load, on resume, then says what is wrong with it.
    """
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return int(ckpt.get("epoch", -1)), int(ckpt.get("global_step", -1))
    except Exception:
        return -1, -1


def _preempted(run_ckpt: Any, error: BaseException | None) -> TrainingError:
    last = run_ckpt.last_path
    if last is None:
        step = getattr(error, "global_step", None)
        where = f" at step {step}" if step is not None else ""
        return TrainingError(
            f"preempted{where}: SIGTERM stopped training and nothing was saved, as "
            "checkpoint_dir is empty; set checkpoint_dir to a volume that outlives the pod "
            "and a re-run resumes instead of starting over"
        )
    step = run_ckpt.saved_step
    if step < 0 and last.is_file():
        # Under ddp_spawn the workers saved it: this process reads the step from the file.
        step = _checkpoint_position(str(last))[1]
    return TrainingError(f"preempted: checkpoint saved at step {step} in {last}; re-run to resume")


def build_module(
    config: TrainConfig,
    network_config: dict[str, Any],
    *,
    task: str,
    class_weight: torch.Tensor | None = None,
) -> pl.LightningModule:
    """The LightningModule to fit: kfgpu's task around the network, or a user's own.

    A user's LightningModule with its own ``training_step`` (see
    :func:`~kfgpu.training.families.own_training_logic`) is fitted as it is, with the
    run's settings on ``module.kfgpu``; its state dict is the bundle's weights.
    """
    from kfgpu.training.families import (
        build_network,
        check_own_training_logic,
        own_training_logic,
    )
    from kfgpu.training.lightning import TabularTask

    network = build_network(config.model_family, network_config)
    if own_training_logic(config.model_family):
        check_own_training_logic(config.model_family)
        if class_weight is not None:
            raise ConfigError(
                f"class_weight={config.class_weight!r} cannot reach the loss of "
                f"model_family={config.model_family!r}, which brings its own training_step; "
                "weight the loss there, or set class_weight='none'"
            )
        network.kfgpu = config  # type: ignore[assignment]
        return network  # type: ignore[return-value]
    return TabularTask(
        network,
        task=task,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        max_epochs=config.max_epochs,
        lr_schedule=config.lr_schedule,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        class_weight=class_weight,
    )


def build_datamodule(
    config: TrainConfig,
    train: tuple[torch.Tensor, ...] | ShardedSplit,
    val: tuple[torch.Tensor, ...] | ShardedSplit,
    *,
    batch_size: int,
    pin_memory: bool,
    sample_weights: torch.Tensor | None = None,
) -> pl.LightningDataModule:
    """kfgpu's in-memory DataModule, or the user's ``config.datamodule`` built the same way.

    ``sample_weights``: per-row draw weights of a balanced sampler (kfgpu's own only).
    """
    import pytorch_lightning as pl

    from kfgpu.training.families import import_class
    from kfgpu.training.lightning import TabularDataModule

    cls: type = TabularDataModule
    if config.datamodule:
        cls = import_class(
            config.datamodule,
            field="datamodule",
            base=pl.LightningDataModule,
            what="LightningDataModule",
        )
    extra = {} if sample_weights is None else {"sample_weights": sample_weights}
    try:
        data: pl.LightningDataModule = cls(
            train, val, batch_size=batch_size, seed=config.seed, pin_memory=pin_memory, **extra
        )
    except TypeError as e:
        raise ConfigError(
            f"datamodule={config.datamodule!r} could not be built ({e}); accept "
            "(train, val, *, batch_size, seed, pin_memory), e.g. by subclassing "
            "kfgpu.training.lightning.TabularDataModule"
        ) from e
    return data


def network_of(module: pl.LightningModule) -> torch.nn.Module:
    """The network inside a module built by :func:`build_module` (a user's module is its own)."""
    from kfgpu.training.lightning import TabularTask

    return module.network if isinstance(module, TabularTask) else module


def lightning_strategy(config: TrainConfig) -> Any:
    """Lightning's strategy for ``config.strategy``; FSDP wraps submodules of 1M+ parameters."""
    if config.strategy != "fsdp":
        return config.strategy
    import functools

    from pytorch_lightning.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy

    return FSDPStrategy(
        auto_wrap_policy=functools.partial(size_based_auto_wrap_policy, min_num_params=1_000_000),
        # The best-weights checkpoint is one whole state dict on rank 0: the bundle's weights.
        state_dict_type="full",
    )


def train_tabular(
    train_df: pd.DataFrame | ShardedSplit,
    val_df: pd.DataFrame | ShardedSplit,
    *,
    transform: FittedTransform,
    target: str,
    task: str,
    config: TrainConfig,
    bundle_path: str | os.PathLike[str] | None,
    mlflow_uri: str = "",
    mlflow_run_id: str = "",
    lineage: dict[str, Any] | None = None,
    extras: Mapping[str, Callable[[Path], object]] | None = None,
    transformed: bool = False,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainOutcome:
    """Fit a tabular model and write its bundle (on global rank 0).

    With ``config.checkpoint_dir`` set, the run checkpoints there and resumes from its
    ``last.ckpt`` when that is this run's: same data and configuration, else it is set
    aside (see :mod:`kfgpu.training.resume`); ``lineage.resume`` in the bundle says which.
    ``callbacks`` are added to the Lightning trainer's own. ``train_df`` may be a
    :class:`~kfgpu.training.streaming.ShardedSplit` (a split above
    ``config.stream_threshold_mb``, see :func:`~kfgpu.training.streaming.open_training_split`):
    each rank then streams its share of the row groups instead of holding the split;
    ``val_df`` too (:func:`~kfgpu.training.streaming.open_splits` opens both), and the
    best weights are then scored on it streamed (:func:`~kfgpu.training.bundling.score_model`).

    Raises:
        ConfigError: the settings cannot run on this machine.
        TrainingError: the data cannot train a model, or the loss diverged; or, with
            ``checkpoint_dir`` set, the process received SIGTERM: the message starts with
            ``preempted:``, ``last.ckpt`` holds the state to resume from, and no bundle
            was written (a retry of the step resumes).
    """
    import pytorch_lightning as pl
    import torch

    from kfgpu.training.families import build_network
    from kfgpu.training.lightning import (
        BestCheckpoint,
        Preempted,
        RunCheckpoint,
        RunMonitor,
        StopEarly,
    )
    from kfgpu.training.lightning_internals import QuietProfiler, trim_step_overhead
    from kfgpu.training.resume import ResumePlan, mark_finished, plan_resume, run_identity

    check_task(task)
    accelerator = resolve_accelerator(config)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if accelerator == "gpu":
        # An explicit TF32 policy: Ampere+ matmuls in TF32 unless the run must be exact.
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic

    setup = prepare_training(
        train_df,
        val_df,
        transform=transform,
        target=target,
        task=task,
        config=config,
        transformed=transformed,
    )
    train_t, val_t = setup.train, setup.val
    labels, network_config, batch_size = setup.labels, setup.network_config, setup.batch_size
    module = build_module(config, network_config, task=task, class_weight=setup.class_weight)
    data = build_datamodule(
        config,
        train_t,
        val_t,
        batch_size=batch_size,
        pin_memory=accelerator == "gpu",
        sample_weights=setup.row_weights,
    )
    run_callbacks: list[pl.Callback] = [RunMonitor(config.max_epochs), *callbacks]
    if config.early_stopping_patience > 0:
        run_callbacks.append(
            StopEarly("val_loss", patience=config.early_stopping_patience, mode="min")
        )
    logger: Any = False
    if mlflow_uri and mlflow_run_id:
        from pytorch_lightning.loggers import MLFlowLogger

        logger = MLFlowLogger(tracking_uri=mlflow_uri, run_id=mlflow_run_id)
    import tempfile

    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kfgpu-train-"))
        ckpt_dir = config.checkpoint_dir or scratch
        resume_from: str | None = None
        # Without a checkpoint_dir it saves nothing but still stops the run on SIGTERM, every
        # rank on the same step, in place of Lightning's per-step device broadcast.
        run_ckpt = RunCheckpoint(config.checkpoint_dir or None, config.checkpoint_every_n_steps)
        plan, resumed_step = ResumePlan(None), None
        if run_ckpt.last_path is not None:
            # Only this run's own checkpoint resumes; another run's is set aside, unread.
            identity = run_identity(
                config=config,
                task=task,
                target=target,
                network_config=network_config,
                labels=labels,
                train=train_t,
                val=val_t,
            )
            plan = plan_resume(ckpt_dir, identity)
            if plan.notice:
                print(plan.notice, flush=True)
            if plan.resume_from is not None:
                resume_from = str(plan.resume_from)
                epoch, resumed_step = _checkpoint_position(resume_from)
                print(
                    f"resumed from {resume_from}: epoch {epoch} (0-based), "
                    f"global step {resumed_step}",
                    flush=True,
                )
            for partial in Path(ckpt_dir).glob(".last.ckpt.partial-*"):
                # Left by a process killed mid-write; last.ckpt itself is always whole.
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
        # The best epoch's weights go through a checkpoint file, not process memory, so they
        # survive every strategy: ddp_spawn workers hand the path back to this process. With
        # a checkpoint_dir the file sits beside last.ckpt, whose callback state points at it,
        # so the best epoch so far survives a resume.
        best = BestCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_weights_only=True,
            enable_version_counter=False,
        )
        # Checkpoint callbacks run last, in list order: run_ckpt after best.
        ckpt_callbacks: list[pl.Callback] = [best, run_ckpt]
        manual = not module.automatic_optimization
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=config.devices or 1,
            num_nodes=config.num_nodes,
            strategy=lightning_strategy(config),
            precision=config.precision,
            # kfgpu's own task accumulates and clips in its optimiser steps (manual
            # optimisation); a user's module with automatic optimisation has Lightning's.
            accumulate_grad_batches=1 if manual else config.accumulate_grad_batches,
            max_epochs=config.max_epochs,
            logger=logger,
            callbacks=[*ckpt_callbacks, *run_callbacks],
            enable_progress_bar=False,
            enable_model_summary=False,
            deterministic=config.deterministic,
            gradient_clip_val=None if manual else config.gradient_clip_val or None,
            default_root_dir=scratch,
            num_sanity_val_steps=0,
            log_every_n_steps=50,
            profiler=QuietProfiler(),
        )
        # run_ckpt, among the callbacks, handles SIGTERM for the whole fit.
        trim_step_overhead(trainer, sigterm_handled=True)
        # In this process until fit registers its own: under ddp_spawn this process only
        # waits, and passes the signal on to the workers.
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, run_ckpt.handle_sigterm)
            stack.callback(signal.signal, signal.SIGTERM, previous)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Resuming into the run's own checkpoint directory is the point of it.
                warnings.filterwarnings(
                    "ignore", message=r".*Checkpoint directory .* exists and is not empty.*"
                )
                trainer.fit(module, datamodule=data, ckpt_path=resume_from)
        except BaseException as e:
            # (BaseException: Lightning's own SIGTERMException is a SystemExit.)
            if isinstance(e, Preempted) or run_ckpt.signalled:
                raise _preempted(run_ckpt, e) from e
            raise
        seconds = time.perf_counter() - t0
        if run_ckpt.signalled:
            # SIGTERM after the last epoch's checkpoint: the run is complete, but the pod
            # is going away; do not start writing a bundle now.
            raise _preempted(run_ckpt, None)
        # Rank 0's question only: the file is in rank 0's directory, on rank 0's node (under
        # torchrun a worker on another node never sees it), and only rank 0 bundles it.
        if trainer.is_global_zero and not (
            best.best_model_path and os.path.exists(best.best_model_path)
        ):
            raise TrainingError(
                "no epoch produced a finite validation loss (training diverged); lower "
                f"learning_rate (now {config.learning_rate}) or use precision='32-true'"
            )
        best_state: dict[str, torch.Tensor] = {}
        score = ModelScore()
        best_epoch = epochs_run = global_step = -1
        if trainer.is_global_zero:
            prefix = "" if module is network_of(module) else "network."
            best_state, best_epoch = _network_state(best.best_model_path, prefix)
            # callback_metrics come back from ddp_spawn workers; the trainer's counters do not.
            # (A run resumed from a finished checkpoint trains no epoch and logs neither.)
            epochs_run = int(
                trainer.callback_metrics.get(
                    "epochs_run", torch.tensor(float(trainer.current_epoch))
                )
            )
            global_step = int(
                trainer.callback_metrics.get("steps_run", torch.tensor(float(trainer.global_step)))
            )
            # Scored here, in this process, on the weights that go into the bundle: under
            # ddp_spawn the workers' own figures never come back.
            # A fresh network: under FSDP the trained one's parameters are sharded views.
            network = build_network(config.model_family, network_config)
            score = score_model(network, best_state, val_t, setup=setup, config=config)

    packaged = package_model(
        setup,
        config=config,
        transform=transform,
        score=score,
        state=best_state,
        bundle_path=bundle_path if trainer.is_global_zero else None,
        extras=extras,
        training={
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "global_step": global_step,
            "resumed_from": resume_from,
            "seconds": round(seconds, 3),
            "accelerator": accelerator,
            "devices": trainer.num_devices,
            "world_size": trainer.world_size,
            "train_rows": setup.train_rows,
            "batch_size": batch_size,
            "val_rows": setup.val_rows,
            # samples/s over all ranks, mean step time and the share of the training loop
            # spent waiting for batches, from the last epoch's running totals.
            "report": {
                key: round(float(trainer.callback_metrics[key]), 6)
                for key in RunMonitor.KEYS
                if key in trainer.callback_metrics
            },
        },
        lineage={
            **(lineage or {}),
            "mlflow_run_id": mlflow_run_id or None,
            "mlflow_tracking_uri": mlflow_uri or None,
            "resume": plan.lineage(step=resumed_step),
        },
    )
    written = packaged.bundle_path
    if trainer.is_global_zero and config.checkpoint_dir:
        # A later run then knows this checkpoint for a finished run's, not its own to go on.
        mark_finished(config.checkpoint_dir, bundle=str(written) if written else None)
    return TrainOutcome(
        bundle_path=written,
        metrics=score.metrics,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        seconds=seconds,
        description=packaged.description,
    )
