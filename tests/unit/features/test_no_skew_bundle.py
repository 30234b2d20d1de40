"""No training/serving skew, through a real bundle: the offline NumPy transform and the
bundle's torch module give the same features for the same raw rows, with a spec that uses
every kind of output, on rows with missing values, unseen categories and absurd numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kfgpu.bundle import load_bundle
from kfgpu.data import fraud
from kfgpu.features import FeatureSpec, fit_transform
from kfgpu.training.config import TrainConfig
from kfgpu.training.trainer import train_tabular

SPEC = """
columns:
  amount: {type: numeric, scale: log1p, missing_indicator: true, clip_quantiles: [0.01, 0.99]}
  distance_km: {type: numeric, impute: median, scale: robust, missing_indicator: true, bucketize: 8}
  account_age_days: {type: numeric, scale: minmax, bucketize: 5, bucket_encode: onehot}
  velocity_score: {type: numeric}
  merchant_category: {type: categorical, encode: onehot}
  country: {type: categorical, encode: hashing, hash_buckets: 16}
  channel: {type: categorical, encode: ordinal}
  device_type: {type: categorical, impute: most_frequent}
  event_time: {type: datetime, parts: [hour, dayofweek, month]}
crosses:
  - {columns: [channel, device_type], buckets: 32}
"""


def _with_time(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC").value // 10**9
    seconds = rng.integers(0, 180 * 86400, len(df))
    return df.assign(event_time=pd.to_datetime(start + seconds, unit="s", utc=True))


def _hostile(df: pd.DataFrame) -> pd.DataFrame:
    bad = df.head(12).copy()
    bad.loc[bad.index[0], "amount"] = np.nan
    bad.loc[bad.index[1], "amount"] = np.inf
    bad.loc[bad.index[2], "amount"] = -1e300
    bad.loc[bad.index[3], "distance_km"] = 1e30
    bad.loc[bad.index[4], "merchant_category"] = "never-seen"
    bad.loc[bad.index[5], "country"] = None
    bad.loc[bad.index[6], "channel"] = "carrier-pigeon"
    bad.loc[bad.index[7], "device_type"] = None
    bad["event_time"] = bad["event_time"].astype(object)
    bad.loc[bad.index[8], "event_time"] = None
    bad.loc[bad.index[9], "account_age_days"] = -np.inf
    return bad


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    df = _with_time(fraud(4000, seed=11), seed=1)
    train, val = df.iloc[:3200], df.iloc[3200:]
    fitted = fit_transform(train, FeatureSpec.from_yaml(SPEC))
    path = tmp_path_factory.mktemp("bundle") / "bundle"
    train_tabular(
        train,
        val,
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(accelerator="cpu", max_epochs=1, hidden_sizes=(16,)),
        bundle_path=path,
    )
    return fitted, load_bundle(path), df


def test_spec_uses_every_kind_of_output(trained) -> None:
    fitted, _, _ = trained
    assert fitted.n_dense > 20  # scaled values, indicators, one-hot blocks, ordinal
    assert len(fitted.cardinalities) >= 6  # embedding, hashing, bucket, 3 time parts, cross


def test_offline_and_bundle_module_agree_on_clean_and_hostile_rows(trained) -> None:
    fitted, bundle, df = trained
    for frame in (df.sample(500, random_state=0), _hostile(df)):
        dense_np, emb_np = fitted.transform(frame)
        num, codes = bundle.transform.raw_arrays(frame)
        with torch.inference_mode():
            dense_t, emb_t = bundle.module.transform(torch.from_numpy(num), torch.from_numpy(codes))
        assert np.isfinite(dense_np).all()
        np.testing.assert_allclose(dense_t.numpy(), dense_np, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(emb_t.numpy(), emb_np)


def test_hostile_rows_predict_without_crashing(trained) -> None:
    _, bundle, df = trained
    out = bundle.predict(_hostile(df).drop(columns=["is_fraud"]))
    probs = out[["proba_0", "proba_1"]].to_numpy()
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_bundle_transform_is_the_fitted_one(trained, tmp_path: Path) -> None:
    fitted, bundle, _ = trained
    assert bundle.transform.to_dict() == fitted.to_dict()
