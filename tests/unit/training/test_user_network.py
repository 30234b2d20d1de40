"""A user's own network by import path: trained by kfgpu, bundled, served from the path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kfgpu.errors import ConfigError
from kfgpu.training.config import TrainConfig

USER_DIR = Path(__file__).resolve().parents[2] / "data" / "user_models"


@pytest.fixture
def user_path(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.syspath_prepend(str(USER_DIR))
    return "my_models:WideAndDeep"


def test_trains_bundles_and_serves_from_the_import_path(user_path: str, tmp_path: Path) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.trainer import train_tabular

    train, val, test = split_frame(fraud(4000, seed=9), "is_fraud", task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    outcome = train_tabular(
        train,
        val,
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(model_family=user_path, accelerator="cpu", max_epochs=3),
        bundle_path=tmp_path / "bundle",
    )
    assert outcome.description["model"]["family"] == user_path
    assert outcome.metrics["val_loss"] < np.log(2)
    raw = test.drop(columns=["is_fraud"])
    local = load_bundle(tmp_path / "bundle").predict_raw(raw)
    # A fresh process imports the user's class by the recorded path.
    script = (
        "import sys, numpy as np, pandas as pd\n"
        f"sys.path.insert(0, {str(USER_DIR)!r})\n"
        "from kfgpu.bundle import load_bundle\n"
        f"raw = pd.read_parquet({str(tmp_path / 'raw.parquet')!r})\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, load_bundle({str(tmp_path / 'bundle')!r})"
        ".predict_raw(raw))\n"
    )
    raw.to_parquet(tmp_path / "raw.parquet")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), local, rtol=1e-6, atol=1e-7)


def test_bad_import_paths_name_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    from kfgpu.training.families import build_network

    monkeypatch.syspath_prepend(str(USER_DIR))
    with pytest.raises(ConfigError, match="cannot be imported"):
        build_network("no_such_pkg.models:Net", {})
    with pytest.raises(ConfigError, match=r"not a torch\.nn\.Module"):
        build_network("my_models:NotANetwork", {})
    with pytest.raises(ConfigError, match=r"package\.module:Class"):
        TrainConfig(model_family="my_models.WideAndDeep")


@pytest.fixture
def fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., tuple]:
    """Fit kfgpu's trainer on a small fraud table with the user's classes importable.

    Returns ``fit(**settings) -> (outcome, test split)``; the bundle is ``tmp_path/bundle``.
    """
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.trainer import train_tabular

    monkeypatch.syspath_prepend(str(USER_DIR))
    train, val, test = split_frame(fraud(4000, seed=9), "is_fraud", task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))

    def run(**settings: object) -> tuple:
        config = TrainConfig(accelerator="cpu", max_epochs=2, batch_size=256, **settings)  # type: ignore[arg-type]
        outcome = train_tabular(
            train,
            val,
            transform=fitted,
            target="is_fraud",
            task="classification",
            config=config,
            bundle_path=tmp_path / "bundle",
        )
        return outcome, test.drop(columns=["is_fraud"])

    return run


def test_a_lightning_module_with_its_own_training_logic_is_fitted_as_it_is(
    fit: Callable[..., tuple], tmp_path: Path
) -> None:
    import my_models

    from kfgpu.bundle import load_bundle

    my_models.FocalLossMLP.training_steps = 0
    outcome, raw = fit(model_family="my_models:FocalLossMLP")
    # The user's training_step ran, once per optimiser step kfgpu counted.
    assert my_models.FocalLossMLP.training_steps == outcome.description["training"]["global_step"]
    assert outcome.description["training"]["global_step"] > 0
    # Its weights are the bundle's (no kfgpu wrapper prefix), and serving rebuilds it.
    bundle = load_bundle(tmp_path / "bundle")
    proba = bundle.predict_raw(raw)
    assert proba.shape == (len(raw), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    rebuilt = my_models.FocalLossMLP(**outcome.description["model"]["config"])
    assert set(rebuilt.state_dict()) == set(bundle.module.network.state_dict())


def test_own_training_logic_without_validation_step_is_refused(
    fit: Callable[..., tuple], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"model_family='my_models:NoValidation'.*val_loss"):
        fit(model_family="my_models:NoValidation")
    assert not (tmp_path / "bundle").exists()


def test_a_users_datamodule_feeds_training(fit: Callable[..., tuple], tmp_path: Path) -> None:
    import my_models

    from kfgpu.bundle import load_bundle

    my_models.Balanced.train_batches = 0
    outcome, raw = fit(datamodule="my_models:Balanced")
    assert my_models.Balanced.train_batches == outcome.description["training"]["global_step"] > 0
    assert len(load_bundle(tmp_path / "bundle").predict_raw(raw)) == len(raw)


def test_a_datamodule_that_is_not_one_names_the_field(fit: Callable[..., tuple]) -> None:
    with pytest.raises(
        ConfigError, match=r"^datamodule='my_models:WideAndDeep'.*LightningDataModule"
    ):
        fit(datamodule="my_models:WideAndDeep")


def test_a_loader_without_a_length_still_closes_each_epochs_accumulation_group(
    fit: Callable[..., tuple], tmp_path: Path
) -> None:
    """The epoch's last batch steps the optimiser even when only the fetcher knows it."""
    import shutil

    sized, _ = fit(datamodule="my_models:Balanced", accumulate_grad_batches=1)
    shutil.rmtree(tmp_path / "bundle")
    batches = sized.description["training"]["global_step"] // 2  # 2 epochs, one step a batch
    assert batches % 4  # so that each epoch ends on a partial group of 4
    streamed, _ = fit(datamodule="my_models:Streamed", accumulate_grad_batches=4)
    assert streamed.description["training"]["global_step"] == 2 * -(-batches // 4)


def test_onecycle_without_a_loader_length_names_the_fix(fit: Callable[..., tuple]) -> None:
    with pytest.raises(ConfigError, match=r"lr_schedule='onecycle'.*no length.*'cosine'"):
        fit(datamodule="my_models:Streamed", lr_schedule="onecycle")
