"""The per-run training report, one definition for every trainer.

* ``throughput_samples_per_s``: training rows over all ranks per second of training loop
  (validation excluded).
* ``step_time_ms``: the loop's time per optimiser-step batch, fetching included.
* ``data_stall_fraction``: the loop's share spent between one batch's end and the next
  one's start (fetching and moving the batch).
* ``scaling_efficiency`` (runs of 2+ workers): the time one worker's forward and backward
  take on a training batch alone, without gradient exchange (timed on every rank after
  training, then averaged), over the run's measured compute time per step (exchange and
  optimiser step included). 1.0 is perfect weak scaling; the time lost to synchronising
  and waiting for the slowest rank pulls it down. The optimiser step is in the
  denominator only, so the figure is a slight underestimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["REPORT_KEYS", "StepClock", "local_step_seconds"]

REPORT_KEYS = (
    "throughput_samples_per_s",
    "step_time_ms",
    "data_stall_fraction",
    "scaling_efficiency",
)


class StepClock:
    """Running totals of a training loop: call the four marks around each epoch and batch."""

    def __init__(self) -> None:
        self.loop_s = self.stall_s = 0.0
        self.steps = self.samples = 0
        self._start = self._epoch_end = 0.0
        self._last: float | None = None

    def epoch_start(self) -> None:
        self._start = self._last = self._epoch_end = time.perf_counter()

    def batch_start(self) -> None:
        if self._last is not None:
            self.stall_s += time.perf_counter() - self._last

    def batch_end(self, rows: int) -> None:
        self._last = self._epoch_end = time.perf_counter()
        self.steps += 1
        self.samples += rows

    def epoch_end(self) -> None:
        self.loop_s += self._epoch_end - self._start
        self._last = None

    @property
    def compute_s_per_step(self) -> float:
        """Seconds per batch between its start and its end (the stall left out)."""
        return (self.loop_s - self.stall_s) / self.steps if self.steps else 0.0

    def figures(self, world_size: int) -> dict[str, float]:
        """Throughput over all ranks, step time and stall; empty before a whole epoch."""
        if self.steps == 0 or self.loop_s <= 0:
            return {}
        return {
            "throughput_samples_per_s": self.samples * max(1, world_size) / self.loop_s,
            "step_time_ms": 1000.0 * self.loop_s / self.steps,
            "data_stall_fraction": self.stall_s / self.loop_s,
        }


def local_step_seconds(
    loss_of_batch: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    repeats: int = 10,
    warmup: int = 2,
    synchronize: Callable[[], None] = lambda: None,
) -> float:
    """Mean seconds of one forward and backward on this worker alone.

    Gradients come from ``torch.autograd.grad``, which accumulates into no ``.grad``: the
    gradient-exchange hooks of DDP and Horovod (on gradient accumulation) stay silent and
    the parameters and their gradients are left as they were. ``synchronize`` waits for
    the device (``torch.cuda.synchronize`` on GPU).
    """
    import torch

    params = [p for p in params if p.requires_grad]
    for i in range(warmup + repeats):
        if i == warmup:
            synchronize()
            t0 = time.perf_counter()
        loss = loss_of_batch()
        torch.autograd.grad(loss, params, allow_unused=True)
    synchronize()
    return (time.perf_counter() - t0) / repeats
