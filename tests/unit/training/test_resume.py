"""Checkpointing, resume and preemption of train_tabular, with real signals to real processes.

Each run is a subprocess: SIGTERM and SIGKILL go to a training process, never to pytest.
The run trains on ``kfgpu.data.fraud`` with fixed seeds, dropout on (its random state is
in the checkpoint) and ``checkpoint_every_n_steps=5`` (33 steps per epoch, so most periodic
checkpoints are mid-epoch). On this CPU an interrupted-and-resumed run is bit-identical to
the uninterrupted one (same global step, best epoch and validation loss to the last bit);
the tolerance asserted on the loss, 1e-6 relative, leaves room only for float noise.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.signals import signal_when

pytestmark = pytest.mark.slow

EPOCHS = 80  # about 8 s of training on a 2-core CPU
EVERY_N_STEPS = 5
LOSS_RTOL = 1e-6

SCRIPT = """
import json, sys
from kfgpu.data import fraud
from kfgpu.features import fit_transform, infer_feature_spec
from kfgpu.features.split import split_frame
from kfgpu.training.config import TrainConfig
from kfgpu.training.trainer import train_tabular

if __name__ == "__main__":
    ckpt, bundle, epochs, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    df = fraud(6000, seed=3)
    train, val, _ = split_frame(df, "is_fraud", task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    outcome = train_tabular(
        train, val, transform=fitted, target="is_fraud", task="classification",
        config=TrainConfig(accelerator="cpu", max_epochs=epochs, batch_size=128,
                           hidden_sizes=(64, 64), dropout=0.1, seed=7,
                           early_stopping_patience=0, checkpoint_dir=ckpt or "",
                           checkpoint_every_n_steps=every),
        bundle_path=bundle,
    )
    print("RESULT " + json.dumps({"training": outcome.description["training"],
                                  "metrics": outcome.metrics}), flush=True)
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict:
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, self.stderr[-3000:]
        return json.loads(lines[-1][len("RESULT ") :])


class Trainer:
    """One run directory: its checkpoint dir and bundle path, and how to start a run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.script = root / "train.py"
        self.script.write_text(SCRIPT)
        self.ckpt = root / "ckpt"
        self.bundle = root / "bundle"
        self._n = 0

    def _argv(self) -> list[str]:
        return [sys.executable, str(self.script), str(self.ckpt), str(self.bundle),
                str(EPOCHS), str(EVERY_N_STEPS)]  # fmt: skip

    def run(self) -> Run:
        proc = subprocess.run(self._argv(), capture_output=True, text=True, timeout=300)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def run_and_signal(self, sig: int, *, after_epochs: int) -> Run:
        """Start a run; once ``after_epochs`` epochs ended and last.ckpt exists, send ``sig``."""
        self._n += 1
        marker = f"epoch {after_epochs + 1}/{EPOCHS} "
        return Run(
            *signal_when(
                self._argv(),
                self.root / f"run{self._n}.out",
                lambda text: marker in text and (self.ckpt / "last.ckpt").is_file(),
                sig=sig,
            )
        )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, dict]:
    trainer = Trainer(tmp_path_factory.mktemp("uninterrupted"))
    run = trainer.run()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "resumed from" not in run.stdout
    result = run.result
    assert result["training"]["epochs_run"] == EPOCHS
    assert result["training"]["resumed_from"] is None
    assert (trainer.bundle / "bundle.json").is_file()
    assert (trainer.ckpt / "last.ckpt").is_file() and (trainer.ckpt / "best.ckpt").is_file()
    return trainer, result


@pytest.fixture(scope="module")
def uninterrupted(finished: tuple[Trainer, dict]) -> dict:
    return finished[1]


def _assert_same_run(resumed: dict, uninterrupted: dict) -> None:
    assert resumed["training"]["global_step"] == uninterrupted["training"]["global_step"]
    assert resumed["training"]["epochs_run"] == EPOCHS
    # Best-weights tracking survived the interruption: the same epoch won.
    assert resumed["training"]["best_epoch"] == uninterrupted["training"]["best_epoch"]
    assert resumed["metrics"]["val_loss"] == pytest.approx(
        uninterrupted["metrics"]["val_loss"], rel=LOSS_RTOL
    )


def _resumed_step(stdout: str) -> int:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("resumed from ")]
    assert len(lines) == 1, stdout[-3000:]
    return int(lines[0].rsplit("global step ", 1)[1])


def test_uninterrupted_run_counts_its_steps(uninterrupted: dict) -> None:
    # 4,200 training rows in batches of 128: 33 steps an epoch.
    assert uninterrupted["training"]["global_step"] == EPOCHS * 33


def test_sigterm_saves_and_stops_then_a_rerun_resumes(uninterrupted: dict, tmp_path: Path) -> None:
    trainer = Trainer(tmp_path)
    stopped = trainer.run_and_signal(signal.SIGTERM, after_epochs=3)
    # Documented status: train_tabular raises TrainingError("preempted: ..."), so the process
    # exits 1 with that message, having written last.ckpt and no bundle.
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "SIGTERM received" in stopped.stdout
    assert "TrainingError: preempted: checkpoint saved at step" in stopped.stderr
    assert "re-run to resume" in stopped.stderr
    step = int(stopped.stderr.split("checkpoint saved at step ", 1)[1].split()[0])
    assert step > 3 * 33
    assert (trainer.ckpt / "last.ckpt").is_file()
    assert not trainer.bundle.exists()
    assert not list(tmp_path.glob(".bundle.partial-*"))
    assert not list(trainer.ckpt.glob(".last.ckpt.partial-*"))

    resumed = trainer.run()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _resumed_step(resumed.stdout) == step  # from the checkpoint SIGTERM wrote
    assert trainer.bundle.is_dir()
    _assert_same_run(resumed.result, uninterrupted)


def test_sigkill_rerun_resumes_from_the_last_periodic_checkpoint(
    uninterrupted: dict, tmp_path: Path
) -> None:
    trainer = Trainer(tmp_path)
    killed = trainer.run_and_signal(signal.SIGKILL, after_epochs=4)
    assert killed.returncode == -signal.SIGKILL
    assert (trainer.ckpt / "last.ckpt").is_file()
    assert not trainer.bundle.exists()

    resumed = trainer.run()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = _resumed_step(resumed.stdout)
    assert step >= 4 * 33
    # A periodic or an epoch-end checkpoint: every 5 steps, or at an epoch's last step.
    assert step % EVERY_N_STEPS == 0 or step % 33 == 0
    assert not list(trainer.ckpt.glob(".last.ckpt.partial-*"))
    _assert_same_run(resumed.result, uninterrupted)


def test_a_finished_checkpoint_dir_resumes_to_the_same_result(
    finished: tuple[Trainer, dict],
) -> None:
    """Re-running a finished run (a KFP retry after a later failure) trains no more."""
    trainer, uninterrupted = finished
    shutil.rmtree(trainer.bundle)  # a retry gets a fresh output directory
    again = trainer.run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert _resumed_step(again.stdout) == EPOCHS * 33
    _assert_same_run(again.result, uninterrupted)
    assert (trainer.bundle / "bundle.json").is_file()


def test_sigterm_without_a_checkpoint_dir_stops_cleanly_and_names_the_fix(tmp_path: Path) -> None:
    """No directory to save in: SIGTERM still stops at a step boundary, with the fix named."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    bundle, out = tmp_path / "bundle", tmp_path / "run.out"
    argv = [sys.executable, str(script), "", str(bundle), str(EPOCHS), "0"]
    returncode, _, stderr = signal_when(argv, out, lambda text: f"epoch 4/{EPOCHS} " in text)
    assert returncode == 1, stderr[-3000:]
    assert "TrainingError: preempted at step " in stderr
    step = int(stderr.split("preempted at step ", 1)[1].split(":")[0])
    assert 4 * 33 <= step < EPOCHS * 33  # stopped inside the run, not at its end
    assert "nothing was saved" in stderr and "set checkpoint_dir" in stderr
    assert not bundle.exists()
