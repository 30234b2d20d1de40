"""Each Lightning internal kfgpu patches: present in the installed Lightning, and a loud
error naming it when it is gone (shown by taking it away)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loops.training_epoch_loop import _TrainingEpochLoop
from pytorch_lightning.profilers import Profiler

from kfgpu.errors import ConfigError
from kfgpu.training.lightning import BestCheckpoint, StopEarly, TabularTask
from kfgpu.training.lightning_internals import (
    MEASURED_ON,
    CachedStepKwargs,
    LightningVersionWarning,
    QuietProfiler,
    check_launcher,
    check_lightning_version,
    launched_pids,
    trim_step_overhead,
)


def _task() -> TabularTask:
    return TabularTask(
        torch.nn.Linear(2, 2), task="classification", learning_rate=1e-3, weight_decay=0.0,
        max_epochs=1,
    )  # fmt: skip


def _trainer(**kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, **kwargs,
    )  # fmt: skip


def test_installed_lightning_is_a_measured_release() -> None:
    # Fails (a LightningVersionWarning, an error under this suite) when Lightning moves on:
    # re-measure `python -m bench training`, then add the release to MEASURED_ON.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_lightning_version()
    assert check_lightning_version("2.6.0")  # the same series
    with pytest.warns(LightningVersionWarning, match=rf"2\.7\.1 is installed.*{MEASURED_ON[-1]}"):
        assert not check_lightning_version("2.7.1")


def test_current_fx_name(monkeypatch: pytest.MonkeyPatch) -> None:
    task = _task()
    task._current_fx_name = "training_step"
    # Set plainly, never through nn.Module's registry; Lightning's own name is still read.
    assert vars(task)["_current_fx_name"] == "training_step"
    task._loss_sum = torch.ones(())
    assert "_loss_sum" not in task._buffers and "_loss_sum" in vars(task)

    init = pl.LightningModule.__init__

    def without(self: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        del self.__dict__["_current_fx_name"]

    monkeypatch.setattr(pl.LightningModule, "__init__", without)
    with pytest.raises(ConfigError, match=r"LightningModule\._current_fx_name"):
        _task()


def test_build_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer()
    trim_step_overhead(trainer, sigterm_handled=False)
    loop = trainer.fit_loop.epoch_loop
    assert isinstance(vars(loop)["_build_kwargs"], CachedStepKwargs)  # this loop only
    assert not isinstance(vars(_TrainingEpochLoop)["_build_kwargs"], CachedStepKwargs)

    monkeypatch.setattr(_TrainingEpochLoop, "_build_kwargs", lambda self, batch, batch_idx: {})
    with pytest.raises(ConfigError, match=r"_TrainingEpochLoop\._build_kwargs.*parameters"):
        trim_step_overhead(_trainer(), sigterm_handled=False)
    monkeypatch.delattr(_TrainingEpochLoop, "_build_kwargs")
    with pytest.raises(ConfigError, match=r"_TrainingEpochLoop\._build_kwargs.*does not have"):
        trim_step_overhead(_trainer(), sigterm_handled=False)


def test_broadcast_sigterm_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = _trainer()
    trim_step_overhead(trainer, sigterm_handled=True)
    assert "_broadcast_sigterm_tensor" in vars(trainer.fit_loop.epoch_loop)

    monkeypatch.delattr(_TrainingEpochLoop, "_broadcast_sigterm_tensor")
    trim_step_overhead(_trainer(), sigterm_handled=False)  # not patched: not needed
    with pytest.raises(ConfigError, match=r"_TrainingEpochLoop\._broadcast_sigterm_tensor"):
        trim_step_overhead(_trainer(), sigterm_handled=True)


def test_profiler_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    profiler = QuietProfiler()
    assert profiler.profile("a") is profiler.profile("b")  # one shared no-op context

    monkeypatch.delattr(Profiler, "profile")
    with pytest.raises(ConfigError, match=r"Profiler\.profile"):
        QuietProfiler()


def test_callback_state_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    best = BestCheckpoint(dirpath=tmp_path, monitor="val_loss")
    assert best.state_key == ModelCheckpoint.state_key.fget(best)  # type: ignore[attr-defined]
    assert vars(best)["_state_key_once"] == best.state_key  # computed once
    StopEarly("val_loss")

    monkeypatch.setattr(ModelCheckpoint, "state_key", "fixed")
    with pytest.raises(ConfigError, match=r"ModelCheckpoint\.state_key.*not a property"):
        BestCheckpoint(dirpath=tmp_path, monitor="val_loss")
    monkeypatch.delattr(EarlyStopping, "state_key")
    monkeypatch.delattr(Callback, "state_key")
    with pytest.raises(ConfigError, match=r"StopEarly\.state_key.*does not have"):
        StopEarly("val_loss")


def test_launcher_procs(monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = _trainer(devices=2, strategy="ddp_spawn").strategy.launcher
    check_launcher(launcher)
    check_launcher(None)  # one process: nothing launched
    assert launched_pids(launcher) == set() and launched_pids(None) == set()

    monkeypatch.delattr(launcher, "procs")
    with pytest.raises(ConfigError, match=r"_MultiProcessingLauncher\.procs"):
        check_launcher(launcher)
