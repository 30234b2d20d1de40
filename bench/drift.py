"""Drift detection throughput: kfgpu's sketches against a scipy KS loop and Evidently 0.7.

Twenty numeric columns (normal, lognormal, uniform; some shifted in the current set),
``KFGPU_BENCH_DRIFT_ROWS`` rows each for reference and current (default 1,000,000). The
reference profile is prepared before timing; each detector then checks the same current
data in this process:

* kfgpu: :func:`~kfgpu.validation.profile.build_profile` of the current frame in chunks
  plus :func:`~kfgpu.validation.drift.detect_drift`;
* scipy: ``scipy.stats.ks_2samp`` per column on the raw rows;
* Evidently: ``Report([DataDriftPreset()]).run(current_data=..., reference_data=...)``.

Figures are values per second (current rows x columns). Then a
``KFGPU_BENCH_DRIFT_FILE_ROWS``-row Parquet file (default 10,000,000, written in row
groups) is profiled by :func:`~kfgpu.validation.profile.profile_source` and checked in a
child process, whose peak RSS is reported (``RUSAGE_CHILDREN`` of a small launcher
process, since ``ru_maxrss`` survives exec and a child of this process would report this
process's own peak).

Goals (printed, not asserted): kfgpu >= 50x Evidently, >= 2x the scipy loop, and the
10M-row Parquet check under 2 GB peak RSS.

Then the verdicts' false-alarm rate and power, for kfgpu's defaults and Evidently's
``DataDriftPreset`` defaults on the same seeded splits of the synthetic fraud data (a
``KFGPU_BENCH_DRIFT_POOL``-row pool, default 60,000): ``KFGPU_BENCH_DRIFT_SPLITS`` splits
(default 20) at each of ``KFGPU_BENCH_DRIFT_SIZES`` rows per side (default
``200,1000,10000``). A small fraud classifier is trained first (as the tests' fixture);

* ``fa_*``: the share of same-distribution splits whose dataset verdict is drift;
* ``power_*``: the share of splits, with the model's most important numeric feature
  shifted by one standard deviation on the current side, whose verdict is drift.

kfgpu is judged twice: ``kfgpu_model`` with the bundle (feature importance and the model's
output, the model-aware verdict) and ``kfgpu_data`` with a data set as the reference (the
share rule); both from ``build_profile`` + ``detect_drift`` on the split's rows. Evidently
is ``Report([DataDriftPreset()])`` on the same rows; ``evidently_column`` is how often it
flags the shifted column itself.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from bench._harness import benchmark, progress

COLUMNS = 20
CHUNK_ROWS = 250_000
FILE_ROW_GROUP = 500_000
SEED = 0


def _settings() -> tuple[int, int]:
    rows = int(os.environ.get("KFGPU_BENCH_DRIFT_ROWS", "1000000"))
    file_rows = int(os.environ.get("KFGPU_BENCH_DRIFT_FILE_ROWS", "10000000"))
    if rows <= 0 or file_rows <= 0:
        raise ValueError("KFGPU_BENCH_DRIFT_ROWS and KFGPU_BENCH_DRIFT_FILE_ROWS must be positive")
    return rows, file_rows


def _columns(rows: int, seed: int, shifted: bool) -> dict[str, Any]:
    """Twenty columns; with ``shifted`` every fourth column moves (mean, scale or range)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for i in range(COLUMNS):
        shift = shifted and i % 4 == 0
        kind = i % 3
        if kind == 0:
            out[f"n{i:02d}"] = rng.normal(0.5 if shift else 0.0, 1.0, rows)
        elif kind == 1:
            out[f"l{i:02d}"] = rng.lognormal(0.0, 1.3 if shift else 1.0, rows)
        else:
            out[f"u{i:02d}"] = rng.uniform(0.0, 12.0 if shift else 10.0, rows)
    return out


def _frame(rows: int, seed: int, shifted: bool) -> Any:
    import pandas as pd

    return pd.DataFrame(_columns(rows, seed, shifted))


def _chunks(df: Any, size: int) -> Any:
    return (df.iloc[i : i + size] for i in range(0, len(df), size))


def _time_kfgpu(reference: Any, cur: Any) -> tuple[float, Any]:
    from kfgpu.validation.drift import detect_drift
    from kfgpu.validation.profile import build_profile

    t0 = time.perf_counter()
    current = build_profile(_chunks(cur, CHUNK_ROWS))
    result = detect_drift(reference, current)
    return time.perf_counter() - t0, result


def _time_scipy(ref: Any, cur: Any) -> float:
    from scipy import stats

    t0 = time.perf_counter()
    for c in cur.columns:
        stats.ks_2samp(ref[c].to_numpy(), cur[c].to_numpy())
    return time.perf_counter() - t0


def _time_evidently(ref: Any, cur: Any) -> float:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    t0 = time.perf_counter()
    Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    return time.perf_counter() - t0


def _write_parquet(path: Path, rows: int) -> None:
    """Stream ``rows`` shifted rows into ``path``, one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for b, start in enumerate(range(0, rows, FILE_ROW_GROUP)):
            n = min(FILE_ROW_GROUP, rows - start)
            table = pa.table(_columns(n, 1_000 + b, shifted=True))
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema, compression="snappy")
            writer.write_table(table, row_group_size=n)
    finally:
        if writer is not None:
            writer.close()


_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from kfgpu.validation.drift import detect_drift
    from kfgpu.validation.profile import ReferenceProfile, profile_source

    reference = ReferenceProfile.load(sys.argv[1])
    t0 = time.perf_counter()
    current = profile_source(sys.argv[2], chunk_rows=int(sys.argv[3]))
    result = detect_drift(reference, current)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "seconds": seconds,
        "rows": current.rows,
        "n_drifted": result.n_drifted,
        "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))
    """
)


# ru_maxrss survives execve: a child started (fork/vfork + exec) from this large process
# would report this process's peak. A small launcher process starts the measured child, so
# the launcher's RUSAGE_CHILDREN is the measured child's own peak.
_LAUNCHER = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    proc = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["children_maxrss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(out))
    """
)


def _parquet_check(reference: Any, file_rows: int, tmp: Path) -> dict[str, float]:
    ref_dir = tmp / "reference"
    reference.save(ref_dir)
    path = tmp / "current.parquet"
    progress(f"drift: writing a {file_rows}-row x {COLUMNS}-column Parquet file")
    t0 = time.perf_counter()
    _write_parquet(path, file_rows)
    progress(
        f"drift: wrote {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f}s; "
        "profiling it in a child process"
    )
    child = [sys.executable, "-c", _CHILD, str(ref_dir), str(path), str(CHUNK_ROWS)]
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *child], check=True, capture_output=True, text=True
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["rows"] != file_rows:
        raise RuntimeError(f"child profiled {out['rows']} rows, expected {file_rows}")
    progress(
        f"drift: child peak RSS {out['children_maxrss_kb'] / 1024:.0f} MB (RUSAGE_CHILDREN of "
        f"the launcher), {out['self_maxrss_kb'] / 1024:.0f} MB (child's RUSAGE_SELF); this "
        f"process's RUSAGE_CHILDREN "
        f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB includes "
        "its own peak, inherited across exec"
    )
    return {
        "parquet_10m_peak_rss_mb": out["children_maxrss_kb"] / 1024.0,
        "parquet_10m_seconds": out["seconds"],
        "parquet_10m_file_mb": path.stat().st_size / 2**20,
        "parquet_10m_rows": float(file_rows),
        "parquet_10m_drifted_columns": float(out["n_drifted"]),
    }


@benchmark("drift")
def drift() -> dict[str, float]:
    """Drift check values/s: kfgpu sketches vs a scipy KS loop vs Evidently; 10M-row peak RSS."""
    from kfgpu.validation.profile import build_profile

    rows, file_rows = _settings()
    progress(f"drift: generating reference and current ({rows} rows x {COLUMNS} columns)")
    ref = _frame(rows, SEED, shifted=False)
    cur = _frame(rows, SEED + 1, shifted=True)
    values = float(rows * COLUMNS)
    reference = build_profile(_chunks(ref, CHUNK_ROWS))  # prepared at training time

    progress("drift: kfgpu (profile current + detect_drift)")
    _time_kfgpu(reference, cur.iloc[: min(rows, 50_000)])  # warm imports (scipy.stats)
    kfgpu_s, result = _time_kfgpu(reference, cur)
    progress(f"drift: kfgpu {kfgpu_s:.2f}s; {result.summary()}")
    progress("drift: scipy ks_2samp loop")
    scipy_s = _time_scipy(ref, cur)
    progress(f"drift: scipy {scipy_s:.2f}s")
    progress("drift: Evidently DataDriftPreset (slow)")
    evidently_s = _time_evidently(ref, cur)
    progress(f"drift: Evidently {evidently_s:.1f}s")

    figures = {
        "rows": float(rows),
        "columns": float(COLUMNS),
        "kfgpu_seconds": kfgpu_s,
        "scipy_seconds": scipy_s,
        "evidently_seconds": evidently_s,
        "kfgpu_values_per_s": values / kfgpu_s,
        "scipy_values_per_s": values / scipy_s,
        "evidently_values_per_s": values / evidently_s,
        "kfgpu_over_evidently": evidently_s / kfgpu_s,
        "kfgpu_over_scipy": scipy_s / kfgpu_s,
        "kfgpu_drifted_columns": float(result.n_drifted),
        "goal_kfgpu_over_evidently": 50.0,
        "goal_kfgpu_over_scipy": 2.0,
        "goal_parquet_10m_peak_rss_mb": 2048.0,
    }
    del ref, cur
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-drift-") as tmp:
        figures.update(_parquet_check(reference, file_rows, Path(tmp)))
        figures.update(_calibration(Path(tmp)))
    return figures


# --------------------------------------------------------------- false alarms and power


def _calibration_settings() -> tuple[int, int, list[int]]:
    pool = int(os.environ.get("KFGPU_BENCH_DRIFT_POOL", "60000"))
    splits = int(os.environ.get("KFGPU_BENCH_DRIFT_SPLITS", "20"))
    sizes = [int(x) for x in os.environ.get("KFGPU_BENCH_DRIFT_SIZES", "200,1000,10000").split(",")]
    if splits <= 0 or any(n <= 0 or 2 * n > pool for n in sizes):
        raise ValueError("KFGPU_BENCH_DRIFT_SPLITS > 0 and every size <= half the pool")
    return pool, splits, sizes


def _train_bundle(root: Path) -> Path:
    """A small fraud classifier with its reference profile, as the tests' fixture."""
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular
    from kfgpu.validation.profile import build_profile

    train, val, _ = split_frame(fraud(8000, seed=2), "is_fraud", task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    profile = build_profile(train, categorical=[*fitted.categorical, "is_fraud"], seed=0)
    path = root / "bundle"
    train_tabular(
        train,
        val,
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(accelerator="cpu", max_epochs=3, hidden_sizes=(32,)),
        bundle_path=path,
        extras={"reference": lambda d: profile.save(d)},
    )
    return path


def _evidently_verdict(ref: Any, cur: Any, column: str) -> tuple[bool, bool]:
    """Evidently's dataset drift (its DriftedColumnsCount share >= 0.5) and its verdict on
    ``column``."""
    import warnings

    import numpy as np

    # Evidently's own notices (deprecations, a division by zero in its chi-square on
    # empty categories) say nothing about the figures.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        for category in (
            DeprecationWarning,
            PendingDeprecationWarning,
            FutureWarning,
            RuntimeWarning,
        ):
            warnings.simplefilter("ignore", category)
        from evidently import Report
        from evidently.presets import DataDriftPreset

        metrics = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
    dataset = column_drift = False
    for m in metrics["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("DriftedColumnsCount"):
            dataset = float(m["value"]["share"]) >= float(cfg["drift_share"])
        elif cfg["type"].endswith("ValueDrift") and cfg.get("column") == column:
            value, threshold = float(m["value"]), float(cfg["threshold"])
            column_drift = value < threshold if "p_value" in cfg["method"] else value >= threshold
    return dataset, column_drift


def _calibration(tmp: Path) -> dict[str, float]:
    import numpy as np

    from kfgpu.bundle import load_reference
    from kfgpu.data import fraud
    from kfgpu.monitoring.drift_check import ModelView
    from kfgpu.validation.drift import PREDICTION_COLUMN, detect_drift
    from kfgpu.validation.profile import ColumnProfile, NumericSketch, build_profile

    pool_rows, splits, sizes = _calibration_settings()
    progress("drift: training a small fraud classifier for the model-aware verdict")
    bundle = _train_bundle(tmp)
    view = ModelView.from_bundle(str(bundle), load_reference(str(bundle)))
    assert view is not None
    categorical = list(view.bundle.transform.categorical)
    pool = fraud(pool_rows, seed=123).drop(columns=["is_fraud"])
    numeric = [c for c in view.importance if c not in categorical]
    feature = max(numeric, key=lambda c: view.importance[c])
    shifted = pool.copy()
    shifted[feature] = shifted[feature] + float(np.nanstd(pool[feature]))
    out = view.bundle.predict_raw(pool)[:, 1].astype(np.float64)
    out_shifted = view.bundle.predict_raw(shifted)[:, 1].astype(np.float64)
    progress(
        f"drift: most important numeric feature {feature!r} "
        f"({view.importance[feature]:.1%} of the importance); {splits} splits per size"
    )

    def outputs(values: Any) -> Any:
        return ColumnProfile(PREDICTION_COLUMN, "numeric", NumericSketch().add(values))

    figures: dict[str, float] = {
        "calibration_splits": float(splits),
        "calibration_shifted_importance": view.importance[feature],
    }
    rng = np.random.default_rng(2026)
    table = []
    for rows in sizes:
        counts = dict.fromkeys(
            [
                f"{kind}_{who}"
                for kind in ("fa", "power")
                for who in ("kfgpu_model", "kfgpu_data", "evidently", "evidently_column")
            ],
            0,
        )
        t0 = time.perf_counter()
        for _ in range(splits):
            idx = rng.choice(pool_rows, 2 * rows, replace=False)
            a, b = idx[:rows], idx[rows:]
            ref_df = pool.iloc[a].reset_index(drop=True)
            ref_profile = build_profile(ref_df, categorical=categorical, sample_rows=0)
            ref_out = outputs(out[a])
            for kind, frame, cur_out in (("fa", pool, out[b]), ("power", shifted, out_shifted[b])):
                cur_df = frame.iloc[b].reset_index(drop=True)
                cur_profile = build_profile(cur_df, categorical=categorical, sample_rows=0)
                model = detect_drift(
                    ref_profile,
                    cur_profile,
                    importance=view.importance,
                    predictions=(ref_out, outputs(cur_out)),
                )
                data = detect_drift(ref_profile, cur_profile)
                ev_dataset, ev_column = _evidently_verdict(ref_df, cur_df, feature)
                counts[f"{kind}_kfgpu_model"] += model.dataset_drift
                counts[f"{kind}_kfgpu_data"] += data.dataset_drift
                counts[f"{kind}_evidently"] += ev_dataset
                counts[f"{kind}_evidently_column"] += ev_column
        for key, n in counts.items():
            figures[f"{key}_{rows}"] = n / splits
        progress(f"drift: {rows} rows per side, {splits} splits: {time.perf_counter() - t0:.0f}s")
        table.append((rows, counts))
    progress("drift: dataset verdicts (share of splits); fa = same distribution, power = 1-std")
    progress(f"drift:   shift of {feature!r}; evidently_column = Evidently flags {feature!r}")
    head = f"{'rows':>7} | " + " | ".join(
        f"{k:>22}" for k in ("kfgpu_model", "kfgpu_data", "evidently", "evidently_column")
    )
    progress("drift: " + head)
    for rows, counts in table:
        cells = " | ".join(
            f"fa {counts['fa_' + w] / splits:5.2f} power {counts['power_' + w] / splits:4.2f}"
            for w in ("kfgpu_model", "kfgpu_data", "evidently", "evidently_column")
        )
        progress(f"drift: {rows:>7} | {cells}")
    return figures
