"""engineer_features streams sharded data and gives what the in-memory path gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.data.shards import open_shards, write_shards
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.features import fit_transform, infer_feature_spec, split_frame
from kfgpu.features.step import engineer_features_step, transformed_frame
from kfgpu.features.transform import FittedTransform


def _run(tmp_path: Path, data: str, **kw: object) -> dict[str, str]:
    out = {
        name: str(tmp_path / "out" / name)
        for name in ("train", "val", "test", "transform", "profile", "report", "spec")
    }
    engineer_features_step(
        dataset_path=data,
        target=LABEL_COLUMN,
        task="classification",
        train_path=out["train"],
        val_path=out["val"],
        test_path=out["test"],
        transform_path=out["transform"],
        profile_path=out["profile"],
        report_path=out["report"],
        spec_path=out["spec"],
        **kw,  # type: ignore[arg-type]
    )
    return out


def test_streamed_features_equal_the_in_memory_path(tmp_path: Path) -> None:
    df = fraud(3_000, seed=21)
    src = str(tmp_path / "data")
    write_shards(df, src, file_rows=700, row_group_rows=256)
    out = _run(tmp_path, src, batch_rows=500)

    train, val, test = split_frame(df, LABEL_COLUMN, task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, LABEL_COLUMN))
    streamed = FittedTransform.load(out["transform"])
    assert streamed.dense_names == fitted.dense_names
    assert streamed.cardinalities == fitted.cardinalities
    for name, raw in (("train", train), ("val", val)):
        shards = open_shards(out[name])
        assert shards.manifest is not None and len(shards.files) >= 1
        got = pd.read_parquet(out[name])
        want = transformed_frame(fitted, raw, LABEL_COLUMN)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
        np.testing.assert_allclose(
            got.to_numpy(dtype=float), want.to_numpy(dtype=float), rtol=1e-6, atol=1e-9
        )
    pd.testing.assert_frame_equal(pd.read_parquet(out["test"]), test)
    assert Path(out["profile"], "profile.json").is_file()
    assert "train 2100, validation 450, test 450" in Path(out["report"]).read_text()


def test_a_given_spec_naming_a_missing_column_fails_before_writing(tmp_path: Path) -> None:
    from kfgpu.errors import ConfigError

    src = str(tmp_path / "data")
    write_shards(fraud(500, seed=2), src)
    spec = '{"columns": {"nope": "numeric"}}'
    with pytest.raises(ConfigError, match=r"\['nope'\]"):
        _run(tmp_path, src, feature_spec=spec)
    assert not (tmp_path / "out" / "train").exists()
