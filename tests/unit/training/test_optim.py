"""Learning-rate schedules and gradient accumulation, in both trainers' shared pieces."""

from __future__ import annotations

import itertools

import pytest
import torch

from kfgpu.training.optim import LR_SCHEDULES, make_optimizer, make_schedule


def _lrs(schedule: str, *, epochs: int = 6, steps_per_epoch: int = 5, losses=None) -> list[float]:
    """The learning rate after every epoch, stepping as the trainers do."""
    net = torch.nn.Linear(2, 1)
    opt = make_optimizer(net.parameters(), learning_rate=0.1, weight_decay=0.0)
    sched = make_schedule(opt, schedule, max_epochs=epochs, total_steps=epochs * steps_per_epoch)
    out = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            opt.step()
            if sched is not None and sched.interval == "step":
                sched.scheduler.step()
        if sched is not None and sched.interval == "epoch":
            sched.scheduler.step()
        elif sched is not None and sched.interval == "plateau":
            sched.scheduler.step(losses[epoch])
        out.append(opt.param_groups[0]["lr"])
    return out


def test_constant_keeps_the_rate() -> None:
    assert _lrs("constant") == [0.1] * 6


def test_cosine_anneals_to_zero_over_max_epochs() -> None:
    lrs = _lrs("cosine")
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_onecycle_warms_up_then_anneals_per_step() -> None:
    lrs = _lrs("onecycle")
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1  # rises first, then falls
    assert max(lrs) == pytest.approx(0.1, rel=0.05)
    assert lrs[-1] < 0.1 / 100


def test_plateau_halves_after_two_stalled_epochs() -> None:
    lrs = _lrs("plateau", losses=[1.0, 0.9, 0.9, 0.9, 0.8, 0.8])
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05]


def test_every_schedule_is_buildable() -> None:
    for schedule in LR_SCHEDULES:
        _lrs(schedule, losses=[1.0] * 6)
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        _lrs("exponential")
