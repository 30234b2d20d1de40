"""A checkpoint directory resumes only its own run: other data or settings start over.

The case that used to go wrong: a second run with the same ``checkpoint_dir`` and new
data resumed the first run's finished ``last.ckpt``, trained no epoch, and shipped the
first run's weights under the new transform and lineage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from safetensors.torch import load_file

from kfgpu.bundle import WEIGHTS_FILE, read_description
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.features.split import split_frame
from kfgpu.features.transform import fit_transform, infer_feature_spec
from kfgpu.training.config import TrainConfig
from kfgpu.training.resume import IDENTITY_FILE, SET_ASIDE_DIR
from kfgpu.training.trainer import train_tabular

pytestmark = pytest.mark.filterwarnings(
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
)

EPOCHS = 3
SMALL: dict[str, Any] = {
    "max_epochs": EPOCHS,
    "hidden_sizes": (16,),
    "accelerator": "cpu",
    "batch_size": 128,
    "early_stopping_patience": 0,
}


def _run(df: pd.DataFrame, ckpt: Path, bundle: Path, **config: Any) -> dict[str, Any]:
    train, val, _ = split_frame(df, LABEL_COLUMN, task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, LABEL_COLUMN))
    train_tabular(
        train,
        val,
        transform=fitted,
        target=LABEL_COLUMN,
        task="classification",
        config=TrainConfig(**{**SMALL, "checkpoint_dir": str(ckpt), **config}),
        bundle_path=bundle,
    )
    return read_description(bundle).to_dict()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights(bundle: Path) -> dict[str, Any]:
    return load_file(str(bundle / WEIGHTS_FILE))


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """A finished run: its checkpoint directory, its description, and last.ckpt's digest."""
    root = tmp_path_factory.mktemp("first")
    desc = _run(fraud(2000, seed=3), root / "ckpt", root / "bundle")
    assert desc["lineage"]["resume"]["resumed"] is False
    stored = json.loads((root / "ckpt" / IDENTITY_FILE).read_text())
    assert stored["finished"] is True and stored["bundle"] == str(root / "bundle")
    return root, desc, _sha(root / "ckpt" / "last.ckpt")


def test_new_data_in_a_reused_checkpoint_dir_trains_from_scratch(
    first: tuple[Path, dict[str, Any], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, first_desc, first_last = first
    ckpt = tmp_path / "ckpt"
    shutil.copytree(root / "ckpt", ckpt)
    capsys.readouterr()
    desc = _run(fraud(2000, seed=7, drift=0.5), ckpt, tmp_path / "bundle")
    out = capsys.readouterr().out
    # It says why, in one line, and did not resume.
    (notice,) = [ln for ln in out.splitlines() if ln.startswith("not resuming the checkpoint")]
    assert "another run's (other data: 1400 training rows, digest" in notice
    assert "training from scratch" in notice
    assert "resumed from" not in out
    # It trained every epoch itself, and its weights are not the first run's.
    assert desc["training"]["resumed_from"] is None
    assert desc["training"]["epochs_run"] == EPOCHS
    assert desc["training"]["global_step"] == first_desc["training"]["global_step"]
    mine, theirs = _weights(tmp_path / "bundle"), _weights(root / "bundle")
    assert any(not (mine[k] == theirs[k]).all() for k in theirs)
    # The old checkpoint was moved, whole, not deleted; lineage says where and why.
    resume = desc["lineage"]["resume"]
    assert resume["resumed"] is False and resume["from"] is None
    aside = Path(resume["set_aside"])
    assert aside.parent == ckpt / SET_ASIDE_DIR
    assert {p.name for p in aside.iterdir()} == {"last.ckpt", "best.ckpt", IDENTITY_FILE}
    assert _sha(aside / "last.ckpt") == first_last
    assert resume["reason"].startswith("other data")
    # The directory now belongs to the second run: a third run with its data resumes it.
    assert _sha(ckpt / "last.ckpt") != first_last
    stored = json.loads((ckpt / IDENTITY_FILE).read_text())
    assert stored["finished"] is True and stored["data"]["train_rows"] == 1400


def test_other_settings_set_the_checkpoint_aside_and_name_the_setting(
    first: tuple[Path, dict[str, Any], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, first_last = first
    ckpt = tmp_path / "ckpt"
    shutil.copytree(root / "ckpt", ckpt)
    capsys.readouterr()
    # checkpoint_every_n_steps says how often to save, not what is trained: not identity.
    desc = _run(
        fraud(2000, seed=3),
        ckpt,
        tmp_path / "bundle",
        learning_rate=0.003,
        checkpoint_every_n_steps=5,
    )
    out = capsys.readouterr().out
    assert "other configuration: learning_rate 0.001 -> 0.003" in out
    assert "other data" not in out and "checkpoint_every_n_steps" not in out
    aside = Path(desc["lineage"]["resume"]["set_aside"])
    assert _sha(aside / "last.ckpt") == first_last
    assert desc["training"]["epochs_run"] == EPOCHS


def test_a_checkpoint_without_an_identity_is_set_aside(
    first: tuple[Path, dict[str, Any], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint written by an older kfgpu (no identity file) is never loaded."""
    root, _, first_last = first
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(root / "ckpt" / "last.ckpt", ckpt / "last.ckpt")
    capsys.readouterr()
    desc = _run(fraud(2000, seed=3), ckpt, tmp_path / "bundle")
    assert "records no run identity" in capsys.readouterr().out
    aside = Path(desc["lineage"]["resume"]["set_aside"])
    assert _sha(aside / "last.ckpt") == first_last
    assert desc["training"]["epochs_run"] == EPOCHS


def test_the_same_run_again_resumes_and_lineage_says_from_where(
    first: tuple[Path, dict[str, Any], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retry with the same data and settings is the same run (a KFP retry after a later
    failure): it resumes the finished checkpoint, trains no more, and says so."""
    root, first_desc, _ = first
    ckpt = root / "ckpt"  # in place: Lightning's best-weights state remembers its directory
    capsys.readouterr()
    desc = _run(fraud(2000, seed=3), ckpt, tmp_path / "bundle")
    out = capsys.readouterr().out
    assert "the checkpoint is a finished run with the same data and configuration" in out
    resume = desc["lineage"]["resume"]
    assert resume["resumed"] is True and resume["from"] == str(ckpt / "last.ckpt")
    assert resume["at_step"] == first_desc["training"]["global_step"]
    assert resume["set_aside"] is None
    mine, theirs = _weights(tmp_path / "bundle"), _weights(root / "bundle")
    assert all((mine[k] == theirs[k]).all() for k in theirs)
    assert not (ckpt / SET_ASIDE_DIR).exists()


def _identity(digest: str, rows: int = 10) -> dict[str, Any]:
    data = {"digest": digest, "train_rows": rows, "val_rows": 2}
    return {"digest": digest, "data": data, "config_digest": "c", "config": {"seed": 0}}


def test_only_global_rank_zero_moves_and_every_rank_decides_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under DDP every rank plans; one moves. A rank that reads the old identity and one
    that reads the new one both see no checkpoint of this run to resume."""
    from kfgpu.training.resume import plan_resume

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.ckpt").write_bytes(b"old run")
    (ckpt / IDENTITY_FILE).write_text(json.dumps({**_identity("old"), "finished": True}))
    monkeypatch.setenv("LOCAL_RANK", "1")
    before = plan_resume(ckpt, _identity("new"))  # reads the old identity: not this run's
    assert before.resume_from is None and "other data" in str(before.reason)
    assert (ckpt / "last.ckpt").read_bytes() == b"old run"  # a non-zero rank moves nothing
    monkeypatch.delenv("LOCAL_RANK")
    writer = plan_resume(ckpt, _identity("new"))
    assert writer.resume_from is None and writer.set_aside is not None
    assert (writer.set_aside / "last.ckpt").read_bytes() == b"old run"
    monkeypatch.setenv("RANK", "3")
    after = plan_resume(ckpt, _identity("new"))  # reads the new identity: nothing to resume
    assert after.resume_from is None and after.set_aside is None
    # Once this run has saved, every rank of a retry resumes it.
    (ckpt / "last.ckpt").write_bytes(b"this run")
    assert plan_resume(ckpt, _identity("new")).resume_from == ckpt / "last.ckpt"
    monkeypatch.delenv("RANK")
    assert plan_resume(ckpt, _identity("new")).resume_from == ckpt / "last.ckpt"
