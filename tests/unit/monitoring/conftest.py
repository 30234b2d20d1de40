"""A fraud bundle whose reference profile also holds a column the model does not use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

UNUSED = "ingest_lag_s"
"""A column the inference logs carry and the reference profiles, but the model ignores."""


def with_unused(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``df`` plus :data:`UNUSED` (exponential, mean 30 s)."""
    rng = np.random.default_rng(seed)
    return df.assign(**{UNUSED: rng.exponential(30.0, len(df))})


@pytest.fixture(scope="session")
def unused_column_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained fraud classifier; its reference profile includes :data:`UNUSED`."""
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular
    from kfgpu.validation.profile import build_profile

    data = with_unused(fraud(8000, seed=2), seed=2)
    train, val, _ = split_frame(data, "is_fraud", task="classification")
    inputs = train.drop(columns=[UNUSED])
    fitted = fit_transform(inputs, infer_feature_spec(inputs, "is_fraud"))
    profile = build_profile(train, categorical=[*fitted.categorical, "is_fraud"], seed=0)
    root = tmp_path_factory.mktemp("unused-bundle") / "bundle"
    train_tabular(
        inputs,
        val.drop(columns=[UNUSED]),
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(accelerator="cpu", max_epochs=3, hidden_sizes=(32,)),
        bundle_path=root,
        extras={"reference": lambda d: profile.save(d)},
    )
    return root
