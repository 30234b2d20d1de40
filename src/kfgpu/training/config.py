"""The one typed, frozen configuration of a training run, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from kfgpu.errors import ConfigError

__all__ = ["Accelerator", "Precision", "Strategy", "TrainConfig", "parse_int_list"]

Precision = Literal["32-true", "16-mixed", "bf16-mixed"]
Accelerator = Literal["auto", "cpu", "gpu"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "fsdp"]

# One source each: the Literal types above; these are their runtime values.
_PRECISIONS: tuple[str, ...] = get_args(Precision)
_ACCELERATORS: tuple[str, ...] = get_args(Accelerator)
_STRATEGIES: tuple[str, ...] = get_args(Strategy)


def parse_int_list(value: str | list[int] | tuple[int, ...], *, field: str) -> tuple[int, ...]:
    """``"256,128"`` or ``[256, 128]`` -> ``(256, 128)``, naming ``field`` on bad input."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    else:
        parts = list(value)  # type: ignore[arg-type]
    try:
        out = tuple(int(float(p)) for p in parts)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{field}={value!r} must be comma-separated integers like '256,128'"
        ) from e
    if not out:
        raise ConfigError(f"{field} is empty; give at least one layer width like '256'")
    return out


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run.

    Args:
        model_family: a registered family (``kfgpu.training.families``), or a user's own
            network class as ``package.module:Class`` (see ``build_network``). A user's
            ``LightningModule`` that defines ``training_step`` brings its own training
            logic too (loss, optimiser, schedule): kfgpu then fits it as it is (see
            :func:`~kfgpu.training.families.own_training_logic`).
        hidden_sizes: widths of the MLP's hidden layers.
        dropout: dropout after each hidden layer.
        max_epochs: upper bound on epochs; early stopping may end sooner.
        batch_size: rows per optimiser step (per device).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        precision: ``32-true``, ``16-mixed`` (CUDA only) or ``bf16-mixed``.
        accelerator: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``gpu``.
        devices: devices per node; ``-1`` for all visible; ``0`` for no GPU: one process on
            the CPU (the training pipeline passes its ``gpus`` here, so one setting sizes
            both the pod's GPU limit and the trainer).
        strategy: ``auto``, ``ddp``, ``ddp_spawn``, or ``fsdp`` (CUDA only: parameters,
            gradients and optimiser state sharded across ranks, for networks too big to
            replicate; submodules of over a million parameters are wrapped separately).
        accumulate_grad_batches: optimiser steps every this many batches (gradients summed
            in between): a larger effective batch without more device memory.
        lr_schedule: ``cosine`` (annealed over ``max_epochs``), ``constant``, ``onecycle``
            (warm-up then anneal, per step) or ``plateau`` (halve on a stalled validation
            loss); see :mod:`kfgpu.training.optim`.
        datamodule: a user's ``LightningDataModule`` subclass as ``package.module:Class``,
            constructed as ``Class(train, val, batch_size=, seed=, pin_memory=)`` with the
            encoded splits as ``(numeric, codes, y)`` tensor tuples, and yielding batches of
            that form (subclass :class:`~kfgpu.training.lightning.TabularDataModule` to
            change sampling, e.g. a class-balanced sampler). Empty: kfgpu's own.
        seed: seeds weights, shuffling and dropout.
        deterministic: ask torch for deterministic kernels (slower on GPU).
        early_stopping_patience: epochs without a better validation loss before stopping;
            0 turns early stopping off.
        gradient_clip_val: clip the gradient norm to this; 0 turns clipping off.
        checkpoint_dir: the run's checkpoint location: a local or mounted directory that
            outlives a retry of the step (a PVC, or the run's artifact bucket through a
            FUSE mount); not a ``s3://``-style URL. Empty: checkpoints go to a
            temporary directory and a re-run starts over. Set: a full-state ``last.ckpt``
            (weights, optimiser, scheduler, loop and data-order state) is written there
            atomically at each epoch end and every ``checkpoint_every_n_steps`` steps, the
            best epoch's weights to ``best.ckpt``; a run resumes from the ``last.ckpt`` it
            finds only if ``run-identity.json`` beside it records the same data and
            settings, and sets any other aside (``kfgpu.training.resume``); on SIGTERM the run saves ``last.ckpt`` at the next step boundary and
            raises :class:`~kfgpu.errors.TrainingError` (``preempted: ...``) without
            writing a bundle, so a retry resumes.
        checkpoint_every_n_steps: also write ``last.ckpt`` every this many optimiser steps;
            0 writes it at epoch ends only. Needs ``checkpoint_dir``.
        num_nodes: nodes of a multi-node run (set by the launch_training component; each
            node runs ``devices`` processes).
        threshold_policy: how a binary model's probability becomes a label: ``f1``,
            ``precision_at_recall:R``, ``recall_at_precision:P``, ``cost:fn=10,fp=1``,
            ``argmax`` or a number; chosen on the validation rows once training ends and
            stored in the bundle, where every consumer applies it (see
            :mod:`kfgpu.decision`).
        class_weight: classification loss weights: ``none``, ``balanced`` (class ``c``
            weighs ``rows / (classes * rows_c)``) or a mapping ``"fraud=20,ok=1"`` / JSON
            ``{"1": 20}`` (classes left out weigh 1).
        sampler: ``shuffle`` (every row once an epoch) or ``balanced`` (classification:
            rows drawn with replacement, each class equally often; kfgpu's datamodule only;
            a streamed split draws within each shuffle window).
        stream_threshold_mb: a Parquet training split whose decoded size (rows x (4 x
            dense features + 8 x embedding columns + 8) bytes) exceeds this many megabytes
            is streamed per rank from its row groups (:mod:`kfgpu.training.streaming`:
            bounded memory, each rank reads only its share); at or below it, it is read
            into memory, which is faster (the streaming loader measured 0.93 of its
            throughput) but peaks at about 3-4 x the split's decoded size on top of the
            process: the default, 64, keeps a training step under 1 GB for any table
            (issue 19's goal; at 1024, a 3,000,000-row validation split in memory made it
            2.2 GB). 0 streams every Parquet split. The validation split follows the
            same rule on its own size.
        val_sample_rows: the best weights' ``val_roc_auc`` and decision threshold are
            computed on the outputs of every validation row up to this many, else on a
            seeded uniform sample of this many (``val_loss``, ``val_accuracy`` and
            ``val_r2`` are exact over every row either way); the bundle's
            ``training.validation_scoring`` says which.
    """

    model_family: str = "tabular_mlp"
    hidden_sizes: tuple[int, ...] = (256, 256)
    dropout: float = 0.1
    max_epochs: int = 20
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    precision: Precision = "32-true"
    accelerator: Accelerator = "auto"
    devices: int = 1
    strategy: Strategy = "auto"
    seed: int = 0
    deterministic: bool = False
    early_stopping_patience: int = 3
    gradient_clip_val: float = 0.0
    checkpoint_dir: str = ""
    checkpoint_every_n_steps: int = 0
    num_nodes: int = 1
    accumulate_grad_batches: int = 1
    lr_schedule: str = "cosine"
    datamodule: str = ""
    threshold_policy: str = "f1"
    class_weight: str = "none"
    sampler: str = "shuffle"
    stream_threshold_mb: float = 64.0
    val_sample_rows: int = 1_000_000

    def __post_init__(self) -> None:
        def bad(name: str, fix: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r} is invalid: {fix}")

        from kfgpu.training.families import FAMILIES, is_import_path
        from kfgpu.training.optim import LR_SCHEDULES

        if self.model_family not in FAMILIES and not is_import_path(self.model_family):
            raise bad(
                "model_family", f"use one of {list(FAMILIES)} or your own 'package.module:Class'"
            )
        if self.precision not in _PRECISIONS:
            raise bad("precision", f"use one of {list(_PRECISIONS)}")
        if self.accelerator not in _ACCELERATORS:
            raise bad("accelerator", f"use one of {list(_ACCELERATORS)}")
        if self.strategy not in _STRATEGIES:
            raise bad("strategy", f"use one of {list(_STRATEGIES)}")
        if self.max_epochs < 1:
            raise bad("max_epochs", "train for at least 1 epoch")
        if self.batch_size < 1:
            raise bad("batch_size", "use a positive batch size such as 1024")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise bad("learning_rate", "use a positive number such as 1e-3")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise bad("weight_decay", "use 0 or a positive number")
        if not (0.0 <= self.dropout < 1.0):
            raise bad("dropout", "use a value in [0, 1)")
        if self.num_nodes < 1:
            raise bad("num_nodes", "use 1 or more nodes")
        if self.devices < -1:
            raise bad("devices", "use a positive count, -1 for every visible device, or 0 for CPU")
        if self.devices == 0 and self.accelerator == "gpu":
            raise bad("devices", "devices=0 means no GPU; with accelerator='gpu' give 1 or more")
        if self.early_stopping_patience < 0:
            raise bad("early_stopping_patience", "use 0 (off) or a positive number of epochs")
        if not (self.gradient_clip_val >= 0 and math.isfinite(self.gradient_clip_val)):
            raise bad("gradient_clip_val", "use 0 (off) or a positive norm")
        if not isinstance(self.checkpoint_dir, str):
            raise bad("checkpoint_dir", "give a directory path, or '' for none")
        if "://" in self.checkpoint_dir:
            raise bad(
                "checkpoint_dir",
                "give a local or mounted directory (a PVC, or a bucket mounted with a FUSE "
                "driver): checkpoints are renamed into place there, which object stores "
                "cannot do atomically",
            )
        if (
            isinstance(self.checkpoint_every_n_steps, bool)
            or not isinstance(self.checkpoint_every_n_steps, int)
            or self.checkpoint_every_n_steps < 0
        ):
            raise bad("checkpoint_every_n_steps", "use 0 (epoch ends only) or a positive count")
        if self.checkpoint_every_n_steps and not self.checkpoint_dir:
            raise bad(
                "checkpoint_every_n_steps",
                "set checkpoint_dir too (step checkpoints without a directory are never resumed)",
            )
        if (
            isinstance(self.accumulate_grad_batches, bool)
            or not isinstance(self.accumulate_grad_batches, int)
            or self.accumulate_grad_batches < 1
        ):
            raise bad("accumulate_grad_batches", "use 1 (no accumulation) or a larger count")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"use one of {list(LR_SCHEDULES)}")
        if self.datamodule and not is_import_path(self.datamodule):
            raise bad("datamodule", "give your LightningDataModule as 'package.module:Class'")
        from kfgpu.decision import parse_policy
        from kfgpu.training.imbalance import SAMPLERS, parse_class_weight

        parse_policy(self.threshold_policy)
        parse_class_weight(self.class_weight)
        if self.sampler not in SAMPLERS:
            raise bad("sampler", f"use one of {list(SAMPLERS)}")
        if self.sampler == "balanced" and self.datamodule:
            raise bad(
                "sampler",
                "a balanced sampler needs kfgpu's own datamodule; sample in your "
                f"datamodule={self.datamodule!r} instead, or set sampler='shuffle'",
            )
        if not (
            isinstance(self.stream_threshold_mb, (int, float))
            and not isinstance(self.stream_threshold_mb, bool)
            and self.stream_threshold_mb >= 0
            and math.isfinite(self.stream_threshold_mb)
        ):
            raise bad(
                "stream_threshold_mb", "use 0 (always stream) or a size in megabytes such as 64"
            )
        if (
            isinstance(self.val_sample_rows, bool)
            or not isinstance(self.val_sample_rows, int)
            or self.val_sample_rows < 1000
        ):
            raise bad("val_sample_rows", "use an integer of at least 1000, such as 1000000")
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise bad("hidden_sizes", "give positive layer widths such as (256, 256)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("class_weight"), dict):
            import json

            d["class_weight"] = json.dumps(d["class_weight"], sort_keys=True)
        if "hidden_sizes" in d:
            d["hidden_sizes"] = parse_int_list(d["hidden_sizes"], field="hidden_sizes")
        for key in ("checkpoint_every_n_steps", "accumulate_grad_batches"):
            value = d.get(key)
            if isinstance(value, float) and value.is_integer():
                d[key] = int(value)  # JSON through KFP can turn 5 into 5.0
        return cls(**d)
