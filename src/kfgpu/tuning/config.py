"""The settings of a study (budget, sampler, pruner, storage), validated on construction."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    from kfgpu.tuning.space import SearchSpace

__all__ = [
    "LEFT_TO_TRAINING",
    "OBJECTIVES",
    "PRUNERS",
    "QUALITY",
    "SAMPLERS",
    "TUNABLE",
    "Objective",
    "Pruner",
    "Sampler",
    "TuneConfig",
    "check_tunable",
]

Sampler = Literal["tpe", "random", "cmaes", "grid"]
Pruner = Literal["median", "hyperband", "none"]
Objective = Literal["val_metric", "val_loss", "n_params", "latency_ms"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
PRUNERS: tuple[str, ...] = get_args(Pruner)
#: What trials are compared on. The first is the model's quality on the validation rows:
#: ``val_metric``, the gate's headline metric (ROC AUC for classification, R² for
#: regression; maximised), or ``val_loss`` (minimised). A second one, always minimised,
#: makes the study multi-objective (quality against model size or inference latency).
OBJECTIVES: tuple[str, ...] = get_args(Objective)
QUALITY = ("val_metric", "val_loss")

#: TrainConfig fields a tuned configuration leaves to the training step: where a run
#: executes, and the decision threshold's policy (chosen after training, on the
#: validation rows, whatever the weights).
LEFT_TO_TRAINING = (
    "accelerator",
    "devices",
    "strategy",
    "num_nodes",
    "checkpoint_dir",
    "checkpoint_every_n_steps",
    "threshold_policy",
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


#: TrainConfig fields a search space may tune (the others shape where and how a run
#: executes, not the model).
TUNABLE = (
    "hidden_sizes",
    "dropout",
    "learning_rate",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "gradient_clip_val",
    "accumulate_grad_batches",
    "lr_schedule",
    "early_stopping_patience",
    "model_family",
    "seed",
)


def check_tunable(space: SearchSpace) -> None:
    """Every parameter of ``space`` must be a tunable training setting."""
    for name in space.names:
        if name not in TUNABLE:
            raise ConfigError(
                f"search space parameter {name!r} is not a tunable training setting: use "
                f"one of {list(TUNABLE)}"
            )


@dataclass(frozen=True)
class TuneConfig:
    """Everything that shapes a study except the search space and the data.

    Args:
        study_name: the study's name in its storage; a study of that name is resumed.
        storage: where the study lives: ``postgresql://user:pw@host/db`` (or
            ``postgresql+psycopg://``), ``sqlite:///path.db``, or a journal file path
            (``journal:/path`` or a path ending in ``.journal``/``.log``). Empty: in memory
            for one worker, a journal file in a temporary directory for several; with
            ``KFGPU_TUNING_STORAGE`` set in the environment, that.
        n_trials: the study's budget: finished (complete or pruned) trials, over all workers.
        timeout: seconds after which a worker starts no new trial; 0 is no limit.
        sampler: ``tpe`` (default), ``random``, ``cmaes`` or ``grid``.
        pruner: ``median``, ``hyperband`` or ``none``; prunes on the per-epoch validation
            loss (single-objective studies only).
        objectives: ``val_metric`` (the gate's headline metric on the validation rows:
            ROC AUC or R², maximised) or ``val_loss`` (minimised), optionally followed by
            ``n_params`` or ``latency_ms`` (comma-separated, minimised) for a
            multi-objective study.
        n_workers: worker processes started by this call (0: none, only collect results).
        seed: seeds the sampler; worker ``i`` uses ``seed + i`` so workers do not propose
            the same sequence.
        heartbeat_interval: seconds between a running trial's heartbeats (RDB storages).
        grace_period: seconds without a heartbeat after which a trial is marked FAIL.
        max_retry: times a trial whose worker died is re-queued with the same parameters;
            0 skips it (it stays FAIL and the study goes on).
        max_failures: the study stops drawing trials after this many failed trials
            (objective errors); 0 means ``n_trials``.
        n_startup_trials: median pruner: trials that finish before any is pruned.
        n_warmup_steps: median pruner: epochs a trial runs before it can be pruned.
        min_resource: hyperband pruner: epochs of the smallest bracket.
    """

    study_name: str = "kfgpu-tune"
    storage: str = ""
    n_trials: int = 20
    timeout: float = 0.0
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    objectives: tuple[str, ...] = ("val_metric",)
    n_workers: int = 1
    seed: int = 0
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 1
    max_failures: int = 0
    n_startup_trials: int = 5
    n_warmup_steps: int = 2
    min_resource: int = 1

    def __post_init__(self) -> None:
        def bad(name: str, fix: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r} is invalid: {fix}")

        def count(name: str, minimum: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                fix = "use a positive count" if minimum > 0 else "use 0 or a positive count"
                raise bad(name, fix)

        if not isinstance(self.study_name, str) or not _NAME.match(self.study_name):
            raise bad("study_name", "use letters, digits, '_', '-' or '.' (at most 128)")
        if not isinstance(self.storage, str):
            raise bad("storage", "give a storage URL, a journal file path, or ''")
        count("n_trials", 1)
        if not (
            isinstance(self.timeout, int | float)
            and not isinstance(self.timeout, bool)
            and self.timeout >= 0
            and math.isfinite(self.timeout)
        ):
            raise bad("timeout", "use 0 (no limit) or a positive number of seconds")
        if self.sampler not in SAMPLERS:
            raise bad("sampler", f"use one of {list(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise bad("pruner", f"use one of {list(PRUNERS)}")
        objs = self.objectives
        if (
            not objs
            or objs[0] not in QUALITY
            or len(objs) > 2
            or any(o not in OBJECTIVES for o in objs)
            or any(o in QUALITY for o in objs[1:])
        ):
            raise bad(
                "objectives",
                "use 'val_metric' or 'val_loss', optionally followed by ',n_params' or "
                "',latency_ms'",
            )
        if len(objs) > 1 and self.pruner != "none":
            raise bad(
                "pruner",
                "Optuna cannot prune a multi-objective study; set pruner='none' or use a "
                "single objective ('val_metric' or 'val_loss')",
            )
        if len(objs) > 1 and self.sampler == "cmaes":
            raise bad("sampler", "CMA-ES is single-objective; use 'tpe' or 'random'")
        count("n_workers", 0)
        count("seed", 0)
        count("heartbeat_interval", 1)
        count("grace_period", 1)
        if self.grace_period <= self.heartbeat_interval:
            raise bad(
                "grace_period",
                f"use more than heartbeat_interval={self.heartbeat_interval} seconds "
                "(2-3 heartbeats), or a live trial is failed between two heartbeats",
            )
        count("max_retry", 0)
        count("max_failures", 0)
        count("n_startup_trials", 0)
        count("n_warmup_steps", 0)
        count("min_resource", 1)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        """Optuna's direction of each objective."""
        return ["maximize" if o == "val_metric" else "minimize" for o in self.objectives]

    @property
    def failure_limit(self) -> int:
        return self.max_failures or self.n_trials

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown tuning setting(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("objectives"), str):
            d["objectives"] = tuple(o.strip() for o in d["objectives"].split(",") if o.strip())
        elif d.get("objectives") is not None:
            d["objectives"] = tuple(d["objectives"])
        for key in (
            "n_trials",
            "n_workers",
            "seed",
            "heartbeat_interval",
            "grace_period",
            "max_retry",
            "max_failures",
            "n_startup_trials",
            "n_warmup_steps",
            "min_resource",
        ):
            v = d.get(key)
            if isinstance(v, float) and v.is_integer():
                d[key] = int(v)  # JSON through KFP can turn 5 into 5.0
        return cls(**d)
