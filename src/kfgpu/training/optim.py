"""The optimiser and learning-rate schedules: one definition for every trainer."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import torch

__all__ = [
    "LR_SCHEDULES",
    "LRSchedule",
    "Schedule",
    "make_optimizer",
    "make_schedule",
    "optimizer_steps",
]

LRSchedule = Literal["cosine", "constant", "onecycle", "plateau"]

#: ``cosine``: cosine annealing over ``max_epochs``, stepped per epoch (the default).
#: ``constant``: the learning rate as given.
#: ``onecycle``: warm up to the learning rate over the first 30% of optimiser steps and
#: anneal to ~0, stepped per optimiser step (needs the run's total steps).
#: ``plateau``: halve the learning rate after 2 epochs without a better validation loss.
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)


@dataclass
class Schedule:
    """A scheduler and when it steps: ``epoch``, ``step``, or ``plateau`` (epoch, on val_loss)."""

    scheduler: Any
    interval: Literal["epoch", "step", "plateau"]

    def after_step(self) -> None:
        """Call after every optimiser step."""
        if self.interval == "step":
            self.scheduler.step()

    def after_epoch(self, val_loss: float | None) -> None:
        """Call at each epoch's end, after its validation (``val_loss``: None if none ran)."""
        if self.interval == "epoch":
            self.scheduler.step()
        elif self.interval == "plateau" and val_loss is not None:
            self.scheduler.step(val_loss)


def optimizer_steps(batches_per_epoch: int, accumulate: int, epochs: int) -> int:
    """Optimiser steps in a run: one per group of ``accumulate`` batches, the epoch's last
    (partial) group included."""
    return math.ceil(batches_per_epoch / accumulate) * epochs


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    *,
    learning_rate: float,
    weight_decay: float,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """AdamW, fused on CUDA where torch supports it (one kernel for every parameter).

    ``fused=False`` asks for the plain one on CUDA too; None decides by the device.
    """
    import torch

    params = list(params)
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=fused)


def make_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    max_epochs: int,
    total_steps: int,
) -> Schedule | None:
    """The scheduler for ``schedule`` (one of :data:`LR_SCHEDULES`), or None for ``constant``."""
    import torch

    if schedule == "constant":
        return None
    if schedule == "cosine":
        return Schedule(
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs)),
            "epoch",
        )
    if schedule == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return Schedule(
            torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=max_lr, total_steps=max(2, total_steps), pct_start=0.3
            ),
            "step",
        )
    if schedule == "plateau":
        return Schedule(
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.5, patience=1
            ),
            "plateau",
        )
    raise ValueError(f"unknown lr_schedule {schedule!r}")  # TrainConfig validates it first
