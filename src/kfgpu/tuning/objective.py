"""The tabular objective: one trial trains kfgpu's model through ``train_tabular``.

Each trial's parameters override the base training config; the Lightning callback
:class:`PruningCallback` reports the validation loss at every epoch end to the trial and
stops training when the pruner says so. The trial's value is, with the best epoch's
weights (the ones a bundle would hold), the gate's headline metric on the validation
rows (``val_metric``: ROC AUC or R²) or the validation loss (and, multi-objective, the
network's parameter count or its inference latency). Each trial stores the complete
training configuration it ran with, which train_model refits with when it wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl

from kfgpu.tuning.config import TuneConfig, check_tunable
from kfgpu.tuning.space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = ["PruningCallback", "tabular_objective"]


class PruningCallback(pl.Callback):
    """Report ``monitor`` to the trial at each validation end; stop when it should prune.

    Stopping goes through ``trainer.should_stop`` (training ends cleanly after the
    epoch); the objective then raises :class:`optuna.TrialPruned`.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        monitor: str = "val_loss",
        report: bool = True,
        sign: float = 1.0,
    ):
        self.trial = trial
        # -1 when the study maximises: the pruner then compares the negated loss.
        self.sign = sign
        self.monitor = monitor
        self.report = report
        self.pruned_at: int | None = None
        self.epochs = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.epochs = epoch + 1
        self.trial.set_user_attr("epochs_run", self.epochs)
        if not self.report:
            return
        self.trial.report(self.sign * float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True


def _n_params(network: Any) -> int:
    return int(sum(p.numel() for p in network.parameters()))


LATENCY_ROWS = 1024
"""Validation rows of one timed forward pass (the latency objective)."""


def _latency_ms(network: Any, numeric: Any, codes: Any, rows: int = LATENCY_ROWS) -> float:
    """Median milliseconds of one forward pass over ``rows`` validation rows."""
    import torch

    network.eval()
    x, c = numeric[:rows], codes[:rows]
    times = []
    with torch.inference_mode():
        network(x, c)
        for _ in range(5):
            t0 = time.perf_counter()
            network(x, c)
            times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


def tabular_objective(
    *,
    space: SearchSpace,
    config: TuneConfig,
    train_path: str,
    val_path: str,
    transform_path: str,
    target: str,
    task: str,
    base_config: dict[str, Any] | None = None,
) -> Callable[[optuna.Trial], float | Sequence[float]]:
    """An objective training on engineer_features' splits, opened once per worker.

    The splits are opened as every trainer opens them
    (:func:`~kfgpu.training.streaming.open_splits`): read into memory up to the base
    configuration's ``stream_threshold_mb``, else streamed by each trial, so a worker's
    memory does not grow with the table.
    """
    import optuna
    import pandas as pd
    import torch

    from kfgpu.data.shards import open_shards
    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.families import build_network
    from kfgpu.training.prepare import model_inputs
    from kfgpu.training.streaming import open_splits
    from kfgpu.training.trainer import train_tabular
    from kfgpu.tuning.config import LEFT_TO_TRAINING
    from kfgpu.tuning.report import CONFIG_ATTR

    check_tunable(space)
    base = dict(base_config or {})
    known = {f.name for f in fields(TrainConfig)}
    base_cfg = TrainConfig.from_dict(base)  # bad base settings fail before any trial
    fitted = FittedTransform.load(transform_path)
    train_df, val_df = open_splits(
        train_path,
        val_path,
        transform=fitted,
        target=target,
        task=task,
        transformed=True,
        threshold_mb=base_cfg.stream_threshold_mb,
    )
    # The latency objective times 1,024 validation rows: the first ones, read alone.
    head = (
        val_df.head(LATENCY_ROWS)
        if isinstance(val_df, pd.DataFrame)
        else next(open_shards(val_path).iter_frames(batch_rows=LATENCY_ROWS))
    )
    val_x, val_c = (torch.from_numpy(a) for a in model_inputs(head, fitted))

    def objective(trial: optuna.Trial) -> float | Sequence[float]:
        params = space.suggest(trial)
        cfg = TrainConfig.from_dict({**base, **{k: v for k, v in params.items() if k in known}})
        callback = PruningCallback(
            trial,
            report=not config.multi_objective,
            sign=-1.0 if config.directions[0] == "maximize" else 1.0,
        )
        trial.set_user_attr(
            CONFIG_ATTR, {k: v for k, v in cfg.to_dict().items() if k not in LEFT_TO_TRAINING}
        )
        outcome = train_tabular(
            train_df,
            val_df,
            transform=fitted,
            target=target,
            task=task,
            config=cfg,
            bundle_path=None,
            callbacks=[callback],
            transformed=True,
        )
        trial.set_user_attr("epochs_run", int(outcome.epochs_run))
        trial.set_user_attr("best_epoch", int(outcome.best_epoch))
        if callback.pruned_at is not None:
            raise optuna.TrialPruned(
                f"pruned after epoch {callback.pruned_at + 1}: val_loss not promising"
            )
        val_loss = float(outcome.metrics["val_loss"])
        trial.set_user_attr("val_loss", val_loss)
        quality = val_loss
        if config.objectives[0] == "val_metric":
            name = "val_roc_auc" if task == "classification" else "val_r2"
            if name not in outcome.metrics:
                name = "val_accuracy" if task == "classification" else name
            quality = float(outcome.metrics.get(name, float("nan")))
            trial.set_user_attr("val_metric_name", name)
        if not config.multi_objective:
            return quality
        network = build_network(cfg.model_family, outcome.description["model"]["config"])
        size = float(_n_params(network))
        trial.set_user_attr("n_params", size)
        if config.objectives[1] == "n_params":
            return quality, size
        latency = _latency_ms(network, val_x, val_c)
        trial.set_user_attr("latency_ms", latency)
        return quality, latency

    return objective
