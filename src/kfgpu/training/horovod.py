"""Data-parallel training with Horovod: a plain PyTorch loop under ``horovodrun``.

Lightning 2.x has no Horovod strategy, so this is its own loop with
``hvd.DistributedOptimizer``. Every worker reads the whole split (tabular data fits in host
memory) and trains on its shard of it (:class:`~kfgpu.training.data.InMemoryBatches` with
Horovod's rank and size); gradients are averaged across workers by allreduce. Rank 0 writes
the same bundle that :func:`~kfgpu.training.trainer.train_tabular` writes, with
``training.strategy = "horovod"``.

Differences from the Lightning path, on purpose:

* ``batch_size`` is per worker, and is lowered (not below 16) so that each worker's epoch has
  at least 10 steps of its shard.
* The learning rate is ``learning_rate * world_size``: the effective batch is ``batch_size *
  world_size`` rows, and Horovod's convention (Goyal et al., "Accurate, Large Minibatch SGD")
  scales the rate linearly with it. The bundle records the rate used as
  ``training.learning_rate``; ``hyperparameters.learning_rate`` stays the configured one.
* ``devices`` and ``strategy`` of :class:`~kfgpu.training.config.TrainConfig` are not used:
  ``horovodrun -np N`` sets the number of workers. Checkpointing (``checkpoint_dir``), a
  user's ``datamodule`` and a user's LightningModule with its own ``training_step`` belong to
  the Lightning path and are refused.
* ``accumulate_grad_batches`` is Horovod's ``backward_passes_per_step``: gradients are
  summed locally and allreduced once per optimiser step.

Run it as::

    horovodrun -np 2 -H localhost:2 --gloo python -m kfgpu.training.horovod \\
        --train train.parquet --val val.parquet --transform transform.json \\
        --target is_fraud --task classification --bundle out/bundle --config '{"max_epochs": 5}'

Horovod is not a dependency of kfgpu: it must be built against the installed torch
(``scripts/install-horovod``), or run in the Horovod image.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, KfgpuError, TrainingError

if TYPE_CHECKING:
    import torch

    from kfgpu.training.config import TrainConfig

__all__ = ["main", "train_horovod"]

_INSTALL_HINT = (
    "Horovod is not installed (or not built with PyTorch support): run scripts/install-horovod "
    "to build it against the installed torch, or run in the kfgpu Horovod image"
)


def _import_horovod() -> Any:
    """``horovod.torch``, or a ConfigError saying how to get it."""
    try:
        import horovod.torch as hvd
    except ImportError as e:
        raise ConfigError(f"{_INSTALL_HINT} ({e})") from e
    return hvd


def train_horovod(
    train_path: str,
    val_path: str,
    transform_path: str,
    target: str,
    task: str,
    bundle_path: str,
    config: TrainConfig,
    profile_path: str = "",
    fp16_compression: bool = False,
    transformed: bool = True,
) -> dict[str, Any]:
    """Train on every Horovod worker; rank 0 writes the bundle at ``bundle_path``.

    Call it in each process that ``horovodrun`` starts (``python -m kfgpu.training.horovod``
    does). ``train_path`` and ``val_path`` are Parquet splits: engineer_features' transformed
    output, or raw splits with ``transformed=False``; ``profile_path`` a reference profile directory copied into the bundle.
    ``fp16_compression`` sends gradients over the wire in fp16 (half the bytes).

    Returns:
        ``rank``, ``world_size``, ``bundle_path`` (``None`` on ranks other than 0),
        ``metrics``, ``epochs_run``, ``best_epoch`` and ``seconds``.

    Raises:
        ConfigError: Horovod is missing, or the settings cannot run on this machine.
        TrainingError: the data cannot train a model, or the loss diverged.
    """
    from kfgpu.training.prepare import check_task

    check_task(task)
    if getattr(config, "checkpoint_dir", ""):
        raise ConfigError(
            "checkpoint_dir is not supported by Horovod training (it neither writes nor resumes "
            "checkpoints); leave it empty, or train with the Lightning strategies"
        )
    if getattr(config, "datamodule", ""):
        raise ConfigError(
            f"datamodule={config.datamodule!r} is not supported by Horovod training (a plain "
            "PyTorch loop); leave it empty, or train with the Lightning strategies"
        )
    from kfgpu.training.families import own_training_logic

    if own_training_logic(config.model_family):
        raise ConfigError(
            f"model_family={config.model_family!r} brings its own training_step, which only "
            "the Lightning strategies run; use them, or drop training_step to train the "
            "network here"
        )
    hvd = _import_horovod()

    import torch
    from torch.nn import functional as F

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.bundling import package_model, score_model
    from kfgpu.training.data import make_batches
    from kfgpu.training.families import build_network
    from kfgpu.training.optim import make_optimizer, make_schedule, optimizer_steps
    from kfgpu.training.prepare import prepare_training, resolve_accelerator
    from kfgpu.training.report import StepClock, local_step_seconds
    from kfgpu.training.resume import ResumePlan
    from kfgpu.training.streaming import ShardedSplit, open_splits

    hvd.init()
    rank, world_size = int(hvd.rank()), int(hvd.size())
    accelerator = resolve_accelerator(config)
    if accelerator == "gpu":
        torch.cuda.set_device(int(hvd.local_rank()))
        device = torch.device("cuda", int(hvd.local_rank()))
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic
    else:
        # One thread per worker: N workers on N cores, not N x N threads fighting over them.
        torch.set_num_threads(1)
        device = torch.device("cpu")
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(config.seed)

    def say(message: str) -> None:
        if rank == 0:
            print(message, flush=True)

    transform = FittedTransform.load(transform_path)
    # Above config.stream_threshold_mb each worker streams only its share of a split.
    train_df, val_df = open_splits(
        train_path,
        val_path,
        transform=transform,
        target=target,
        task=task,
        transformed=transformed,
        threshold_mb=config.stream_threshold_mb,
    )
    setup = prepare_training(
        train_df,
        val_df,
        transform=transform,
        target=target,
        task=task,
        config=config,
        transformed=transformed,
        workers=world_size,
        say=say,
    )
    train_t, val_t = setup.train, setup.val
    batch_size = setup.batch_size
    pin = accelerator == "gpu"
    accumulate = config.accumulate_grad_batches
    batches = make_batches(
        train_t,
        batch_size=batch_size,
        shuffle=True,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        pin_memory=pin,
        weights=setup.row_weights,
        device=device,
    )
    class_weight = None if setup.class_weight is None else setup.class_weight.to(device)
    # Validation: each worker scores its share of the rows (every world_size-th row in
    # memory; a contiguous range of a streamed split, no row twice); sums are allreduced.
    val_batches: Any
    if isinstance(val_t, ShardedSplit):
        val_batches = make_batches(
            val_t,
            batch_size=max(batch_size, 65536),
            shuffle=False,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
            device=device,
        )
    else:
        val_shard = tuple(t[rank::world_size].to(device, non_blocking=pin) for t in val_t)
        val_batches = [
            tuple(t[start : start + 65536] for t in val_shard)
            for start in range(0, len(val_shard[-1]), 65536)
        ]

    network_config = setup.network_config
    network = build_network(config.model_family, network_config).to(device)
    learning_rate = config.learning_rate * world_size
    opt: Any = make_optimizer(
        network.parameters(), learning_rate=learning_rate, weight_decay=config.weight_decay
    )
    # Every worker starts from rank 0's weights and optimiser state.
    hvd.broadcast_parameters(network.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    opt = hvd.DistributedOptimizer(
        opt,
        named_parameters=network.named_parameters(),
        compression=hvd.Compression.fp16 if fp16_compression else hvd.Compression.none,
        backward_passes_per_step=accumulate,
    )
    schedule = make_schedule(
        opt,
        config.lr_schedule,
        max_epochs=config.max_epochs,
        total_steps=optimizer_steps(len(batches), accumulate, config.max_epochs),
    )

    autocast_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "16-mixed")

    def loss_of(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if task == "classification":
            return F.cross_entropy(out.float(), y, weight=class_weight, reduction=reduction)
        return F.mse_loss(out.float().squeeze(1), y, reduction=reduction)

    def forward(numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            out: torch.Tensor = network(numeric, codes)
        return out

    def validation_loss() -> float:
        network.eval()
        rows = 0
        with torch.inference_mode():
            total = torch.zeros((), dtype=torch.float64, device=device)
            for numeric, codes, y in val_batches:
                numeric, codes, y = (t.to(device) for t in (numeric, codes, y))
                total += loss_of(forward(numeric, codes), y, "sum").double()
                rows += len(y)
        sums = torch.stack([total.cpu(), torch.tensor(float(rows), dtype=torch.float64)])
        sums = hvd.allreduce(sums, op=hvd.Sum, name="val_loss")
        return float(sums[0] / sums[1])

    clock = StepClock()
    best_loss = math.inf
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    stale = 0
    epochs_run = 0
    global_step = 0
    t0 = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        network.train()
        train_sum = 0.0
        train_steps = 0
        n_batches = len(batches)
        opt.zero_grad()
        clock.epoch_start()
        for i, (numeric, codes, y) in enumerate(batches):
            clock.batch_start()
            numeric = numeric.to(device, non_blocking=pin)
            codes = codes.to(device, non_blocking=pin)
            y = y.to(device, non_blocking=pin)
            loss = loss_of(forward(numeric, codes), y)
            scaler.scale(loss / accumulate).backward()
            train_sum += float(loss.detach())
            train_steps += 1
            if (i + 1) % accumulate and i + 1 < n_batches:
                clock.batch_end(len(y))
                continue  # summing gradients locally; the allreduce fires on the last pass
            # Horovod's pattern for clipping and loss scaling: finish the allreduce first,
            # then step without a second synchronisation.
            opt.synchronize()
            if config.gradient_clip_val > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(network.parameters(), config.gradient_clip_val)
            with opt.skip_synchronize():
                scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            global_step += 1
            if schedule is not None:
                schedule.after_step()
            clock.batch_end(len(y))
        clock.epoch_end()
        epochs_run = epoch
        train_loss = float(
            hvd.allreduce(
                torch.tensor([train_sum / max(1, train_steps)]), op=hvd.Average, name="train_loss"
            )[0]
        )
        val_loss = validation_loss()
        if schedule is not None:
            schedule.after_epoch(val_loss)
        say(
            f"epoch {epoch}/{config.max_epochs}: train_loss {train_loss:.4f} "
            f"val_loss {val_loss:.4f}"
        )
        # val_loss is the same on every worker (allreduced), so all stop together.
        if math.isfinite(val_loss) and val_loss < best_loss:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
            if 0 < config.early_stopping_patience <= stale:
                say(f"early stop: no better val_loss for {stale} epoch(s)")
                break
    seconds = time.perf_counter() - t0
    report = clock.figures(world_size)
    if world_size > 1 and clock.steps:
        # Weak-scaling efficiency (kfgpu.training.report): this worker's forward and
        # backward alone, over the run's measured step; averaged over the workers.
        network.train()
        numeric, codes, y = (t.to(device) for t in next(iter(batches)))
        local = local_step_seconds(
            lambda: loss_of(forward(numeric, codes), y),
            list(network.parameters()),
            synchronize=torch.cuda.synchronize if device.type == "cuda" else lambda: None,
        )
        mean_local = float(hvd.allreduce(torch.tensor([local]), op=hvd.Average, name="probe")[0])
        report["scaling_efficiency"] = mean_local / clock.compute_s_per_step
    report = {key: round(float(value), 6) for key, value in report.items()}
    if not best_state:
        raise TrainingError(
            "no epoch produced a finite validation loss (training diverged); lower "
            f"learning_rate (now {config.learning_rate}, x{world_size} workers) or use "
            "precision='32-true'"
        )

    result: dict[str, Any] = {
        "rank": rank,
        "world_size": world_size,
        "bundle_path": None,
        "metrics": {"val_loss": best_loss},
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "seconds": round(seconds, 3),
    }
    if rank == 0:
        # Scored on the whole validation split in fp32, as train_tabular does (streamed
        # when the split is).
        val_all = val_t if isinstance(val_t, ShardedSplit) else tuple(t.to(device) for t in val_t)
        score = score_model(network, best_state, val_all, setup=setup, config=config)
        extras = (
            {"reference": lambda d: shutil.copytree(profile_path, d, dirs_exist_ok=True)}
            if profile_path
            else {}
        )
        packaged = package_model(
            setup,
            config=config,
            transform=transform,
            score=score,
            state=best_state,
            bundle_path=bundle_path,
            extras=extras,
            training={
                "strategy": "horovod",
                "epochs_run": epochs_run,
                "best_epoch": best_epoch,
                "global_step": global_step,
                "resumed_from": None,
                "seconds": round(seconds, 3),
                "accelerator": accelerator,
                "devices": int(hvd.local_size()),
                "nodes": int(hvd.cross_size()),
                "world_size": world_size,
                "train_rows": setup.train_rows,
                "batch_size": batch_size,
                "val_rows": setup.val_rows,
                "learning_rate": learning_rate,
                "gradient_compression": "fp16" if fp16_compression else "none",
                "report": report,
            },
            lineage={
                "mlflow_run_id": None,
                "mlflow_tracking_uri": None,
                # Horovod training neither writes nor resumes checkpoints: never resumed.
                "resume": ResumePlan(None).lineage(),
            },
        )
        result.update(bundle_path=str(packaged.bundle_path), metrics=score.metrics)
    # No worker leaves before rank 0 has written the bundle.
    hvd.allreduce(torch.zeros(1), name="bundle_written")
    return result


def _parse_config(value: str) -> TrainConfig:
    from kfgpu.training.config import TrainConfig

    text = value.strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--config {value!r} is neither a JSON object nor a JSON file")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError("--config must be a JSON object of TrainConfig settings")
    return TrainConfig.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    """Command line of one Horovod worker; rank 0 prints the result as one JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m kfgpu.training.horovod",
        description="Train a tabular model with Horovod (run under horovodrun).",
    )
    parser.add_argument("--train", required=True, help="training split (Parquet)")
    parser.add_argument("--val", required=True, help="validation split (Parquet)")
    parser.add_argument("--transform", required=True, help="fitted transform (transform.json)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", required=True, choices=["classification", "regression"])
    parser.add_argument(
        "--bundle", required=True, help="output bundle directory, or a URI rank 0 uploads it to"
    )
    parser.add_argument("--config", default="{}", help="TrainConfig as JSON, or a JSON file")
    parser.add_argument("--profile", default="", help="reference profile directory")
    parser.add_argument("--fp16-compression", action="store_true", help="send gradients in fp16")
    parser.add_argument(
        "--raw", action="store_true", help="the splits are raw rows, not engineer_features' output"
    )
    args = parser.parse_args(argv)
    import tempfile
    from pathlib import Path

    from kfgpu.training.distributed import copy_tree, fetch

    try:
        # Inside an MPIJob the artifacts are object-storage URIs: small ones are fetched,
        # the bundle is written locally and uploaded by rank 0.
        with tempfile.TemporaryDirectory(prefix="kfgpu-hvd-") as tmp:
            remote_bundle = "://" in args.bundle
            bundle = str(Path(tmp) / "bundle") if remote_bundle else args.bundle
            result = train_horovod(
                args.train,
                args.val,
                fetch(args.transform, Path(tmp)),
                args.target,
                args.task,
                bundle,
                _parse_config(args.config),
                profile_path=fetch(args.profile, Path(tmp)) if args.profile else "",
                fp16_compression=args.fp16_compression,
                transformed=not args.raw,
            )
            if remote_bundle and result["rank"] == 0:
                copy_tree(bundle, args.bundle)
                result["bundle_path"] = args.bundle
    except KfgpuError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    if result["rank"] == 0:
        print(json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
