"""Synthetic objectives that exercise the tuning machinery without training a model.

Both are objective factories (``kfgpu.tuning.synthetic:NAME``) for
:func:`kfgpu.tuning.study.run_study` and worker processes; ``bench/tuning.py`` and the
tests use them to measure coordination overhead and pruning on known curves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kfgpu.tuning.config import TuneConfig
from kfgpu.tuning.space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["CURVE_SPACE", "curve_loss", "fixed_duration", "learning_curve"]

#: The space :func:`learning_curve` is meant for.
CURVE_SPACE: dict[str, Any] = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def fixed_duration(
    *, space: SearchSpace, config: TuneConfig, seconds: float = 0.1
) -> Callable[[optuna.Trial], float]:
    """Suggest the space, keep one CPU core busy for ``seconds``, return a smooth bowl.

    A busy wait rather than a sleep: like training, a trial occupies a core, so two
    workers on two cores can at best halve the wall time.
    """

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        _busy_wait(seconds)
        return float(sum((float(v) - 0.5) ** 2 for v in params.values() if _numeric(v)))

    return objective


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def curve_loss(params: dict[str, Any], epoch: int) -> float:
    """The validation loss after ``epoch`` (0-based) epochs of a made-up training run:
    exponential decay from 1.5 towards a floor set by ``x`` and ``y``, at a rate that
    ``y`` also sets (so curves of different trials can cross)."""
    floor = 0.1 + (params["x"] - 0.3) ** 2 + 0.5 * (params["y"] - 0.6) ** 2
    rate = 0.12 + 0.2 * params["y"]
    return floor + (1.5 - floor) * math.exp(-rate * (epoch + 1))


def learning_curve(
    *, space: SearchSpace, config: TuneConfig, epochs: int = 30, epoch_seconds: float = 0.0
) -> Callable[[optuna.Trial], float]:
    """Report :func:`curve_loss` each epoch (pruning on it) and return the last epoch's.

    Records the epochs run as the trial's ``epochs_run`` user attribute, as the tabular
    objective does.
    """
    import optuna

    def objective(trial: optuna.Trial) -> float:
        params = {"x": 0.5, "y": 0.5, **space.suggest(trial)}
        loss = math.inf
        for epoch in range(epochs):
            if epoch_seconds:
                _busy_wait(epoch_seconds)
            loss = curve_loss(params, epoch)
            trial.set_user_attr("epochs_run", epoch + 1)
            if not config.multi_objective:
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} (loss {loss:.4f})")
        return loss

    return objective
