"""Hyperparameter tuning with Optuna: studies on shared storage, workers, pruning.

* :class:`SearchSpace` - the space as data (int, float, log-scaled, categorical,
  conditional), validated with errors naming the parameter;
* :class:`TuneConfig` - budget, sampler (TPE, random, CMA-ES, grid), pruner (median,
  hyperband), storage, workers, heartbeats;
* :func:`kfgpu.tuning.study.run_study` - open or resume a study by name and run workers
  (in this process, or several processes) until its budget is spent;
* :func:`kfgpu.tuning.step.tune_hyperparameters_step` - the pipeline step: trains kfgpu's
  tabular model per trial and writes best parameters, a summary and an HTML report.

Importing this package loads neither Optuna nor torch; the modules that need them import
them inside their functions.
"""

from __future__ import annotations

from kfgpu.tuning.config import TuneConfig
from kfgpu.tuning.space import Param, SearchSpace

__all__ = ["Param", "SearchSpace", "TuneConfig"]
