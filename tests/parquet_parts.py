"""Small Parquet folders for the streaming tests: plain part files, as a user's folder
holds them (no kfgpu manifest), and the two-column transform the DDP tests train with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def write_parts(df: pd.DataFrame, root: Path, files: int = 3, group: int = 50) -> str:
    """Write ``df`` to ``root`` as ``files`` Parquet files in row groups of ``group`` rows."""
    root.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), files)):
        pq.write_table(
            pa.Table.from_pandas(df.iloc[part], preserve_index=False),
            root / f"part-{i}.parquet",
            row_group_size=group,
        )
    return str(root)


def save_ab_transform(root: Path, rng: np.random.Generator) -> None:
    """Fit the transform of two dense columns ``a``, ``b`` and a binary ``label`` on 200
    rows drawn from ``rng``, and save it as ``root/transform.json``."""
    from kfgpu.features import infer_feature_spec
    from kfgpu.features.transform import fit_transform

    raw = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200), "label": 0})
    raw.loc[::2, "label"] = 1
    transform = fit_transform(raw, infer_feature_spec(raw, "label"))
    assert transform.dense_names == ("a", "b")
    transform.save(root / "transform.json")
