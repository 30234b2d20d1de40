"""Horovod training on two CPU workers (gloo), launched by horovodrun in a subprocess.

scripts/check builds Horovod first (scripts/install-horovod); elsewhere these tests skip
when it is not built.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

needs_horovod = pytest.mark.skipif(
    importlib.util.find_spec("horovod") is None,
    reason="horovod is not built; run scripts/install-horovod",
)

TARGET = "is_fraud"


def _horovodrun() -> str:
    beside = Path(sys.executable).parent / "horovodrun"
    found = str(beside) if beside.is_file() else shutil.which("horovodrun")
    if not found:
        pytest.fail("horovod is importable but horovodrun is not on PATH")
    return found


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from kfgpu.data import fraud, write_parquet
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.features.step import transformed_frame

    root = tmp_path_factory.mktemp("horovod-splits")
    train, val, test = split_frame(fraud(4000, seed=3), TARGET, task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, TARGET))
    fitted.save(root / "transform.json")
    write_parquet(transformed_frame(fitted, train, TARGET), str(root / "train.parquet"))
    write_parquet(transformed_frame(fitted, val, TARGET), str(root / "val.parquet"))
    write_parquet(test.drop(columns=[TARGET]), str(root / "test.parquet"))
    profile = root / "profile"
    profile.mkdir()
    (profile / "profile.json").write_text('{"rows": 1}\n')
    return {
        "train": root / "train.parquet",
        "val": root / "val.parquet",
        "test": root / "test.parquet",
        "transform": root / "transform.json",
        "profile": profile,
    }


def _run(
    splits: dict[str, Path], bundle: Path, *extra: str, steps: int = 30, **settings: object
) -> dict[str, object]:
    config = {"max_epochs": 3, "accelerator": "cpu", "early_stopping_patience": 0, **settings}
    cmd = [
        _horovodrun(),
        *("-np", "2", "-H", "localhost:2", "--gloo"),
        *(sys.executable, "-m", "kfgpu.training.horovod"),
        *("--train", str(splits["train"]), "--val", str(splits["val"])),
        *("--transform", str(splits["transform"]), "--target", TARGET),
        *("--task", "classification", "--bundle", str(bundle)),
        *("--config", json.dumps(config)),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return _check_bundle(bundle, splits["test"], steps)


def _check_bundle(bundle: Path, test_path: Path, steps: int = 30) -> dict[str, object]:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import read_parquet

    loaded = load_bundle(bundle)
    test = read_parquet(str(test_path))
    proba = loaded.predict_raw(test)
    assert proba.shape == (len(test), 2)
    assert abs(proba.sum(axis=1) - 1).max() < 1e-5
    desc = loaded.description.to_dict()
    training = desc["training"]
    assert training["strategy"] == "horovod"
    assert training["world_size"] == 2
    assert training["epochs_run"] == 3
    assert 1 <= training["best_epoch"] <= 3
    assert training["report"]["throughput_samples_per_s"] > 0
    assert 0 <= training["report"]["data_stall_fraction"] < 1
    assert 0 < training["report"]["scaling_efficiency"] < 1.5
    assert training["global_step"] == steps  # 3 epochs of 1400 rows per worker, batches of 140
    assert 0 < desc["metrics"]["val_loss"] < math.log(2)  # below chance-level cross-entropy
    assert len(desc["labels"]["classes"]) == 2
    assert not list(bundle.parent.glob(f".{bundle.name}.partial-*"))
    return desc


@pytest.mark.slow
@needs_horovod
def test_horovodrun_two_workers_writes_one_bundle(splits: dict[str, Path], tmp_path: Path) -> None:
    desc = _run(splits, tmp_path / "bundle")
    assert desc["training"]["gradient_compression"] == "none"
    assert not (tmp_path / "bundle" / "reference").exists()


@pytest.mark.slow
@needs_horovod
def test_horovodrun_fp16_compression_and_reference_profile(
    splits: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    desc = _run(splits, bundle, "--fp16-compression", "--profile", str(splits["profile"]))
    assert desc["training"]["gradient_compression"] == "fp16"
    assert (bundle / "reference" / "profile.json").read_text() == '{"rows": 1}\n'


@pytest.mark.slow
@needs_horovod
def test_horovodrun_accumulates_gradients_with_a_one_cycle_schedule(
    splits: dict[str, Path], tmp_path: Path
) -> None:
    # 10 batches per epoch in groups of 4: steps after batches 4, 8 and 10.
    desc = _run(
        splits, tmp_path / "bundle", steps=3 * 3, accumulate_grad_batches=4, lr_schedule="onecycle"
    )
    assert desc["hyperparameters"]["accumulate_grad_batches"] == 4


@pytest.mark.slow
@needs_horovod
def test_horovodrun_class_weight_and_balanced_sampler(
    splits: dict[str, Path], tmp_path: Path
) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import read_parquet

    bundle = tmp_path / "bundle"
    config = {
        "max_epochs": 3,
        "accelerator": "cpu",
        "early_stopping_patience": 0,
        "learning_rate": 0.01,
        "class_weight": "balanced",
        "sampler": "balanced",
    }
    cmd = [
        _horovodrun(),
        *("-np", "2", "-H", "localhost:2", "--gloo"),
        *(sys.executable, "-m", "kfgpu.training.horovod"),
        *("--train", str(splits["train"]), "--val", str(splits["val"])),
        *("--transform", str(splits["transform"]), "--target", TARGET),
        *("--task", "classification", "--bundle", str(bundle)),
        *("--config", json.dumps(config)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    loaded = load_bundle(bundle)
    desc = loaded.description.to_dict()
    assert desc["hyperparameters"]["class_weight"] == "balanced"
    assert desc["hyperparameters"]["sampler"] == "balanced"
    assert desc["decision"]["chosen_on"] == "validation"
    # 2% positives: both workers trained on balanced draws with balanced weights, which
    # puts the mean P(positive) far above the real rate.
    proba = loaded.predict_raw(read_parquet(str(splits["test"])))
    assert proba[:, 1].mean() > 0.4


def test_horovod_refuses_the_lightning_only_settings() -> None:
    from kfgpu.errors import ConfigError
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.horovod import train_horovod

    with pytest.raises(ConfigError, match=r"^datamodule='pkg.data:Balanced' is not supported"):
        train_horovod(
            "t",
            "v",
            "x",
            TARGET,
            "classification",
            "b",
            TrainConfig(datamodule="pkg.data:Balanced"),
        )


def test_missing_horovod_is_a_config_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kfgpu.errors import ConfigError
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.horovod import train_horovod

    # A None entry makes `import horovod.torch` raise ImportError, as on a box without it.
    monkeypatch.setitem(sys.modules, "horovod", None)
    monkeypatch.setitem(sys.modules, "horovod.torch", None)
    with pytest.raises(ConfigError, match="scripts/install-horovod"):
        train_horovod("t", "v", "x", TARGET, "classification", "b", TrainConfig())
