"""A small trained fraud bundle with its reference profile, shared by the monitoring tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fraud_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular
    from kfgpu.validation.profile import build_profile

    train, val, _ = split_frame(fraud(6000, seed=1), "is_fraud", task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    # As engineer_features writes it: the raw inputs and the label.
    profile = build_profile(train, categorical=[*fitted.categorical, "is_fraud"], seed=0)
    root = tmp_path_factory.mktemp("bundle") / "bundle"
    train_tabular(
        train,
        val,
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(accelerator="cpu", max_epochs=2, hidden_sizes=(32,)),
        bundle_path=root,
        extras={"reference": lambda d: profile.save(d)},
    )
    return root
