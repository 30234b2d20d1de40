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

Goals (printed, not asserted): kfgpu >= 10x Evidently, >= 0.5x the scipy loop, and the
10M-row Parquet check under 2 GB peak RSS.
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
        "goal_kfgpu_over_evidently": 10.0,
        "goal_kfgpu_over_scipy": 0.5,
        "goal_parquet_10m_peak_rss_mb": 2048.0,
    }
    del ref, cur
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-drift-") as tmp:
        figures.update(_parquet_check(reference, file_rows, Path(tmp)))
    return figures
