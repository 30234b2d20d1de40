"""Objective factories for tuning tests, importable by worker processes by path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import optuna

from kfgpu.tuning import SearchSpace, TuneConfig


def record_devices(
    *, space: SearchSpace, config: TuneConfig, seconds: float = 0.2, **_: Any
) -> Callable[[optuna.Trial], float]:
    """A trial that records the CUDA devices its process was given."""

    def objective(trial: optuna.Trial) -> float:
        space.suggest(trial)
        trial.set_user_attr("cuda_visible_devices", os.environ.get("CUDA_VISIBLE_DEVICES"))
        time.sleep(seconds)
        return 0.0

    return objective
