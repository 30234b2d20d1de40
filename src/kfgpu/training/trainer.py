"""Train a tabular model from encoded splits and write the model bundle."""

from __future__ import annotations

import contextlib
import math
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

if TYPE_CHECKING:
    import pandas as pd
    import pytorch_lightning as pl
    import torch

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import ShardedSplit

__all__ = [
    "TrainOutcome",
    "bundle_description",
    "effective_batch_size",
    "encode_labels",
    "imbalance_settings",
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


#: Small tables get a smaller batch so that an epoch still takes several optimiser steps;
#: a 400-row CSV with batch 1024 would otherwise train on one step per epoch.
MIN_STEPS_PER_EPOCH = 10
MIN_BATCH_SIZE = 16


def effective_batch_size(requested: int, train_rows: int) -> int:
    """``requested``, lowered (not below 16) so an epoch has at least 10 steps."""
    cap = max(MIN_BATCH_SIZE, train_rows // MIN_STEPS_PER_EPOCH)
    return min(requested, cap)


def resolve_accelerator(config: TrainConfig) -> str:
    """``auto`` -> ``gpu`` when CUDA is usable, else ``cpu``; refuse what cannot run."""
    import torch

    accelerator = config.accelerator
    if config.devices == 0:  # no GPU asked for: never pick up one the pod merely sees
        accelerator = "cpu"
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            "accelerator='gpu' but no CUDA device is visible; request GPUs for the step "
            "(pipeline parameter gpus) or set accelerator to 'cpu' or 'auto'"
        )
    if accelerator == "cpu" and config.strategy == "fsdp":
        raise ConfigError(
            "strategy='fsdp' needs CUDA GPUs (Lightning's FSDP runs on GPUs only); on CPU "
            "use 'ddp' or 'auto'"
        )
    if accelerator == "cpu" and config.precision == "16-mixed":
        raise ConfigError(
            "precision='16-mixed' needs a CUDA GPU; on CPU use 'bf16-mixed' or '32-true'"
        )
    return accelerator


def encode_labels(
    train_y: pd.Series, other: list[pd.Series], *, task: str
) -> tuple[dict[str, Any], Any]:
    """Label mapping for the bundle, and a function encoding a series with it."""
    import numpy as np

    if task == "classification":
        values = sorted({*train_y.unique()}, key=lambda v: (str(type(v)), v))
        classes = [v.item() if hasattr(v, "item") else v for v in values]
        if len(classes) < 2:
            raise TrainingError(
                f"the training split holds a single class {classes!r}; the target needs at "
                "least two classes"
            )
        index = {c: i for i, c in enumerate(classes)}
        for s in other:
            unseen = sorted({str(v) for v in s.unique()} - {str(c) for c in classes})
            if unseen:
                raise TrainingError(
                    f"classes {unseen} appear outside the training split only; "
                    "use a stratified split or more data"
                )
        counts = train_y.value_counts()
        positive = counts.idxmin().item() if hasattr(counts.idxmin(), "item") else counts.idxmin()
        labels = {
            "classes": classes,
            "positive_class": positive if len(classes) == 2 else None,
            "train_distribution": {str(k): int(v) for k, v in counts.items()},
        }

        def encode(s: pd.Series) -> np.ndarray:
            return np.asarray([index[v] for v in s.tolist()], dtype=np.int64)

        return labels, encode

    mean = float(train_y.mean())
    std = float(train_y.std(ddof=0)) or 1.0
    labels = {"target_mean": mean, "target_scale": std}

    def encode_reg(s: pd.Series) -> np.ndarray:
        return ((s.to_numpy(dtype=np.float64) - mean) / std).astype(np.float32)

    return labels, encode_reg


def bundle_description(
    *,
    task: str,
    target: str,
    config: TrainConfig,
    family_config: dict[str, Any],
    transform: FittedTransform,
    labels: dict[str, Any],
    metrics: dict[str, float],
    training: dict[str, Any],
    lineage: dict[str, Any],
    decision: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """bundle.json's content: one layout for every trainer (Lightning, Horovod).

    ``decision``: the decision rule chosen on the validation rows
    (:func:`validation_decision`), applied by every consumer of the bundle.
    """
    from kfgpu import __version__

    description: dict[str, Any] = {
        "kfgpu_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": task,
        "target": target,
        "model": {"family": config.model_family, "config": family_config},
        "hyperparameters": config.to_dict(),
        "signature": {
            "inputs": transform.input_signature(),
            "outputs": (
                [{"name": "prediction"}] + [{"name": f"proba_{c}"} for c in labels["classes"]]
                if task == "classification"
                else [{"name": "prediction"}]
            ),
        },
        "metrics": metrics,
        "training": training,
        "lineage": {**lineage, "code_version": __version__},
    }
    if task == "classification":
        description["labels"] = labels
        if decision:
            description["decision"] = decision
    else:
        description["target_scaling"] = {
            "mean": labels["target_mean"],
            "scale": labels["target_scale"],
        }
    return description


def _model_inputs(df: pd.DataFrame, transform: FittedTransform) -> tuple[Any, Any]:
    """Dense and embedding arrays from a transformed split (engineer_features' output)."""
    import numpy as np

    missing = [c for c in (*transform.dense_names, *transform.emb_names) if c not in df.columns]
    if missing:
        raise TrainingError(
            f"the training split lacks transformed feature column(s) {missing[:5]}; it must be "
            "engineer_features' output for this transform"
        )
    dense = df[list(transform.dense_names)].to_numpy(dtype=np.float32)
    emb = df[list(transform.emb_names)].to_numpy(dtype=np.int64).reshape(len(df), -1)
    return np.ascontiguousarray(dense), np.ascontiguousarray(emb)


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


def score_best_weights(
    network: torch.nn.Module,
    state: dict[str, torch.Tensor],
    val: tuple[torch.Tensor, ...],
    *,
    task: str,
    config: TrainConfig,
) -> dict[str, float]:
    """Load the best weights into ``network`` and score them on the whole validation split.

    Raises:
        TrainingError: the loss is not finite (training diverged).
    """
    network.load_state_dict(state)
    metrics = _validation_metrics(_validation_outputs(network, val), val[-1], task=task)
    if not math.isfinite(metrics["val_loss"]):
        raise TrainingError(
            f"the best weights give a validation loss of {metrics['val_loss']}; lower "
            f"learning_rate (now {config.learning_rate}) or use precision='32-true'"
        )
    return metrics


def _validation_outputs(network: torch.nn.Module, val: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``network``'s fp32 outputs on the validation split, in chunks."""
    import torch

    numeric, codes, y = val
    network.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(y), 65536):
            sl = slice(start, start + 65536)
            outs.append(network(numeric[sl], codes[sl]).float())
    return torch.cat(outs)


def _validation_metrics(out: torch.Tensor, y: torch.Tensor, *, task: str) -> dict[str, float]:
    """Validation loss, accuracy and the gate's headline metric (ROC AUC, R²).

    The headline is the one :mod:`kfgpu.evaluation` reports on the test rows, so tuning
    can compare trials on what the gate will judge.
    """
    import numpy as np
    from sklearn import metrics as skm
    from torch.nn import functional as F

    if task == "classification":
        out_metrics = {
            "val_loss": float(F.cross_entropy(out, y)),
            "val_accuracy": float((out.argmax(dim=1) == y).float().mean()),
        }
        proba = _probabilities(out)
        yy = y.cpu().numpy()
        k = proba.shape[1]
        if len(np.unique(yy)) == k and np.isfinite(proba).all():
            if k == 2:
                out_metrics["val_roc_auc"] = float(skm.roc_auc_score(yy == 1, proba[:, 1]))
            else:
                out_metrics["val_roc_auc"] = float(
                    skm.roc_auc_score(yy, proba, multi_class="ovr", labels=list(range(k)))
                )
        return out_metrics
    pred = out.squeeze(1)
    out_metrics = {"val_loss": float(F.mse_loss(pred, y))}
    if len(y) >= 2 and bool(pred.isfinite().all()):
        out_metrics["val_r2"] = float(skm.r2_score(y.cpu().numpy(), pred.cpu().numpy()))
    return out_metrics


def _probabilities(out: torch.Tensor) -> Any:
    """Class probabilities as the served module computes them (fp32 softmax), on the host."""
    import torch

    return torch.softmax(out.float(), dim=1).cpu().numpy()


def validation_decision(
    network: torch.nn.Module,
    val: tuple[torch.Tensor, ...],
    *,
    task: str,
    labels: dict[str, Any],
    config: TrainConfig,
) -> dict[str, Any] | None:
    """The decision rule of ``config.threshold_policy``, chosen on the validation rows
    with the weights ``network`` holds (the bundle's); ``None`` for regression."""
    if task != "classification":
        return None
    from kfgpu.decision import choose_decision

    proba = _probabilities(_validation_outputs(network, val))
    return choose_decision(
        config.threshold_policy,
        val[-1].cpu().numpy(),
        proba,
        labels["classes"],
        positive_class=labels.get("positive_class"),
    )


def imbalance_settings(
    config: TrainConfig, labels: dict[str, Any], y: torch.Tensor, *, task: str
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The loss's class weights and the sampler's row weights of ``config`` (both trainers).

    Raises:
        ConfigError: class weights or a balanced sampler on a regression task, or a
            weight for a class the training split lacks.
    """
    from kfgpu.training.imbalance import class_weight_tensor, sample_weights

    if task != "classification":
        for name, off in (("class_weight", "none"), ("sampler", "shuffle")):
            if getattr(config, name) != off:
                raise ConfigError(
                    f"{name}={getattr(config, name)!r} applies to classification; this "
                    f"task is {task}: set {name}={off!r}"
                )
        return None, None
    y = y.long()
    return (
        class_weight_tensor(config.class_weight, labels["classes"], y),
        sample_weights(config.sampler, y, len(labels["classes"])),
    )


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
    train: tuple[torch.Tensor, ...],
    val: tuple[torch.Tensor, ...],
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
    val_df: pd.DataFrame,
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
    each rank then streams its share of the row groups instead of holding the split.

    Raises:
        ConfigError: the settings cannot run on this machine.
        TrainingError: the data cannot train a model, or the loss diverged; or, with
            ``checkpoint_dir`` set, the process received SIGTERM: the message starts with
            ``preempted:``, ``last.ckpt`` holds the state to resume from, and no bundle
            was written (a retry of the step resumes).
    """
    import pytorch_lightning as pl
    import torch

    from kfgpu.bundle import write_bundle
    from kfgpu.training.families import build_network, family_config
    from kfgpu.training.lightning import (
        BestCheckpoint,
        Preempted,
        QuietProfiler,
        RunCheckpoint,
        RunMonitor,
        StopEarly,
        trim_step_overhead,
    )
    from kfgpu.training.resume import ResumePlan, mark_finished, plan_resume, run_identity

    if task not in ("classification", "regression"):
        raise ConfigError(f"task={task!r} is invalid: use 'classification' or 'regression'")
    accelerator = resolve_accelerator(config)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if accelerator == "gpu":
        # An explicit TF32 policy: Ampere+ matmuls in TF32 unless the run must be exact.
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic

    from kfgpu.training.streaming import ShardedSplit, label_encoder, streamed_imbalance_settings

    streamed = isinstance(train_df, ShardedSplit)  # above config.stream_threshold_mb
    if isinstance(train_df, ShardedSplit):
        labels = train_df.labels
        encode = label_encoder(labels, task=task)
    else:
        labels, encode = encode_labels(train_df[target], [val_df[target]], task=task)

    def tensors(df: pd.DataFrame) -> tuple[torch.Tensor, ...]:
        if transformed:
            x, c = _model_inputs(df, transform)
        else:
            x, c = transform.transform(df)
        y = torch.from_numpy(encode(df[target]))
        return torch.from_numpy(x), torch.from_numpy(c), y

    train_t: Any = train_df if isinstance(train_df, ShardedSplit) else tensors(train_df)
    val_t = tensors(val_df)
    batch_size = effective_batch_size(config.batch_size, len(train_df))
    if batch_size != config.batch_size:
        print(
            f"batch_size {config.batch_size} would give under {MIN_STEPS_PER_EPOCH} steps per "
            f"epoch on {len(train_df)} training rows; using {batch_size}",
            flush=True,
        )
    n_outputs = len(labels["classes"]) if task == "classification" else 1
    network_config = family_config(
        config.model_family,
        dense_names=tuple(transform.dense_names),
        cardinalities=tuple(transform.cardinalities),
        hidden_sizes=config.hidden_sizes,
        dropout=config.dropout,
        n_outputs=n_outputs,
    )
    class_weight, row_weights = (
        streamed_imbalance_settings(config, labels, task=task)
        if streamed
        else imbalance_settings(config, labels, train_t[-1], task=task)
    )
    module = build_module(config, network_config, task=task, class_weight=class_weight)
    data = build_datamodule(
        config,
        train_t,
        val_t,
        batch_size=batch_size,
        pin_memory=accelerator == "gpu",
        sample_weights=row_weights,
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
        trim_step_overhead(trainer)
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
        decision: dict[str, Any] | None = None
        best_epoch = epochs_run = global_step = -1
        metrics: dict[str, float] = {}
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
            metrics = score_best_weights(network, best_state, val_t, task=task, config=config)
            decision = validation_decision(network, val_t, task=task, labels=labels, config=config)

    description = bundle_description(
        task=task,
        target=target,
        config=config,
        family_config=network_config,
        transform=transform,
        labels=labels,
        metrics=metrics,
        decision=decision,
        training={
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "global_step": global_step,
            "resumed_from": resume_from,
            "seconds": round(seconds, 3),
            "accelerator": accelerator,
            "devices": trainer.num_devices,
            "world_size": trainer.world_size,
            "train_rows": len(train_df),
            "batch_size": batch_size,
            "val_rows": len(val_df),
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
    written: Path | None = None
    if trainer.is_global_zero and bundle_path is not None:
        written = write_bundle(
            bundle_path,
            state_dict=best_state,
            transform=transform,
            description=description,
            extras=extras,
        )
    if trainer.is_global_zero and config.checkpoint_dir:
        # A later run then knows this checkpoint for a finished run's, not its own to go on.
        mark_finished(config.checkpoint_dir, bundle=str(written) if written else None)
    return TrainOutcome(
        bundle_path=written,
        metrics=metrics,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        seconds=seconds,
        description=description,
    )
