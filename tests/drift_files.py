"""Reference and current fraud files for the drift tests of validation and monitoring."""

from __future__ import annotations

from pathlib import Path

from kfgpu.data import fraud, write_parquet
from kfgpu.validation.profile import build_profile

CATEGORICAL = ["merchant_category", "country", "channel", "device_type", "is_fraud"]


def drift_files(root: Path) -> dict[str, Path]:
    """A saved reference profile and its data (8,000 rows), a same-distribution batch and a
    drifted one (drift 0.6), both without the label, under ``root``."""
    ref = fraud(8000, seed=0)
    profile_dir = root / "profile"
    build_profile(ref, categorical=CATEGORICAL, sample_rows=500).save(profile_dir)
    paths = {"profile": profile_dir, "reference_data": root / "ref.parquet"}
    write_parquet(ref, str(paths["reference_data"]))
    for name, seed, drift in (("same", 1, 0.0), ("drifted", 2, 0.6)):
        paths[name] = root / f"{name}.parquet"
        write_parquet(
            fraud(8000, seed=seed, drift=drift).drop(columns=["is_fraud"]), str(paths[name])
        )
    return paths
