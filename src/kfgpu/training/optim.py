"""The optimiser and learning-rate schedules: one definition for every trainer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["LR_SCHEDULES", "LRSchedule", "Schedule", "make_optimizer", "make_schedule"]

LRSchedule = Literal["cosine", "constant", "onecycle", "plateau"]

#: ``cosine``: cosine annealing over ``max_epochs``, stepped per epoch (the default).
#: ``constant``: the learning rate as given.
#: ``onecycle``: warm up to the learning rate over the first 30% of optimiser steps and
#: anneal to ~0, stepped per optimiser step (needs the run's total steps).
#: ``plateau``: halve the learning rate after 2 epochs without a better validation loss.
LR_SCHEDULES: tuple[str, ...] = ("cosine", "constant", "onecycle", "plateau")


@dataclass
class Schedule:
    """A scheduler and when it steps: ``epoch``, ``step``, or ``plateau`` (epoch, on val_loss)."""

    scheduler: Any
    interval: Literal["epoch", "step", "plateau"]


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
