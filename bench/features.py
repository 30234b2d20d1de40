"""Feature fitting and transforming at scale: kfgpu's one-pass transform against
scikit-learn's ColumnTransformer, and streaming a file larger than a memory cap.

Each contender runs in its own fresh child process on the same seeded data, generated in
that child: rows per second of fit + transform, and the peak memory the operation adds on
top of the data (the child resets its high-water mark after generating the data, through
``/proc/self/clear_refs``, and reads ``VmHWM`` afterwards).

* kfgpu: ``fit_transform`` (one pass, mergeable sketches and counts) then ``transform``:
  10 numeric columns mean-imputed and standardised, 5 categoricals to embedding indices
  with an out-of-vocabulary bucket.
* scikit-learn: ``ColumnTransformer`` with ``SimpleImputer`` + ``StandardScaler`` on the
  numerics and ``OneHotEncoder(handle_unknown="ignore")`` (sparse output) on the
  categoricals: ``fit_transform`` on the same frame.

Streaming: a Parquet file whose decoded size is about twice a memory cap is fitted with
``fit_source`` (one row group at a time) in a child whose address space is capped with
``RLIMIT_AS``; the figure is whether it finished, its peak RSS and the cap.

Settings (environment): ``KFGPU_BENCH_FEATURE_ROWS`` (default 5,000,000),
``KFGPU_BENCH_STREAM_CAP_MB`` (default 1024).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._harness import benchmark, progress

N_NUMERIC = 10
N_CATEGORICAL = 5

_DATA = r"""
import numpy as np, pandas as pd

def make(rows, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(N_NUMERIC):
        col = rng.normal(loc=i, scale=1 + i, size=rows)
        col[rng.random(rows) < 0.05] = np.nan
        data[f"num_{i}"] = col
    levels = [8, 30, 100, 400, 1000]
    for i, k in enumerate(levels):
        vocab = np.array([f"c{i}_{j}" for j in range(k)], dtype=object)
        codes = np.minimum(rng.zipf(1.3, size=rows) - 1, k - 1)
        data[f"cat_{i}"] = pd.Categorical.from_codes(codes, categories=vocab)
    return pd.DataFrame(data)
"""

_MEMORY = r"""
import resource, time

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")
"""

_CONTENDERS = {
    "kfgpu": r"""
from kfgpu.features import fit_transform, infer_feature_spec
spec = infer_feature_spec(df, target="__none__")
t0 = time.perf_counter()
fitted = fit_transform(df, spec)
dense, emb = fitted.transform(df)
seconds = time.perf_counter() - t0
shape = [int(dense.shape[1]), int(emb.shape[1])]
""",
    "sklearn": r"""
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
num = [c for c in df.columns if c.startswith("num_")]
cat = [c for c in df.columns if c.startswith("cat_")]
ct = ColumnTransformer([
    ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), num),
    ("cat", OneHotEncoder(handle_unknown="ignore"), cat),
])
t0 = time.perf_counter()
out = ct.fit_transform(df)
seconds = time.perf_counter() - t0
shape = [int(out.shape[1]), 0]
""",
}


def _child(contender: str, rows: int) -> dict[str, float]:
    code = (
        f"N_NUMERIC, N_CATEGORICAL = {N_NUMERIC}, {N_CATEGORICAL}\n"
        + _DATA
        + _MEMORY
        + f"df = make({rows})\n"
        + "data_mb = status('VmRSS')\nreset_peak()\n"
        + _CONTENDERS[contender]
        + "import json\nprint(json.dumps({'seconds': seconds, 'data_mb': data_mb, "
        "'peak_mb': status('VmHWM'), 'width': shape}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_STREAM = r"""
import json, resource, sys, time
cap = int(sys.argv[2]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from kfgpu.features import fit_source
t0 = time.perf_counter()
fitted = fit_source(sys.argv[1], None, target="__none__", chunk_rows=200_000)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "dense": fitted.n_dense}))
"""


def _write_big_parquet(path: Path, rows: int, group_rows: int = 500_000) -> float:
    """Stream a seeded table to Parquet, a row group at a time; return decoded MB."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    namespace: dict[str, object] = {"N_NUMERIC": N_NUMERIC, "N_CATEGORICAL": N_CATEGORICAL}
    exec(_DATA, namespace)  # the same generator the contenders use
    make = namespace["make"]
    decoded = 0
    writer = None
    try:
        for i, start in enumerate(range(0, rows, group_rows)):
            frame = make(min(group_rows, rows - start), seed=100 + i)  # type: ignore[operator]
            for c in frame.columns:
                if c.startswith("cat_"):
                    frame[c] = frame[c].astype(str)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            decoded += int(frame.memory_usage(deep=True).sum())
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return decoded / 2**20


@benchmark("features")
def run() -> dict[str, float]:
    """Fit + transform: kfgpu vs scikit-learn ColumnTransformer; streaming under a memory cap."""
    rows = int(os.environ.get("KFGPU_BENCH_FEATURE_ROWS", "5000000"))
    cap_mb = int(os.environ.get("KFGPU_BENCH_STREAM_CAP_MB", "1024"))
    figures: dict[str, float] = {"rows": rows}
    results = {}
    for name in ("kfgpu", "sklearn"):
        progress(f"features: {name} fit + transform on {rows} rows")
        results[name] = r = _child(name, rows)
        figures[f"{name}_rows_per_s"] = rows / r["seconds"]
        figures[f"{name}_seconds"] = r["seconds"]
        figures[f"{name}_peak_extra_mb"] = r["peak_mb"] - r["data_mb"]
        figures[f"{name}_peak_mb"] = r["peak_mb"]
        figures[f"{name}_output_width"] = r["width"][0] + r["width"][1]
        progress(f"features: {name} {r['seconds']:.1f}s, peak {r['peak_mb']:.0f} MB")
    figures["kfgpu_over_sklearn_speed"] = (
        results["sklearn"]["seconds"] / results["kfgpu"]["seconds"]
    )
    figures["kfgpu_over_sklearn_peak_memory"] = (
        results["kfgpu"]["peak_mb"] / results["sklearn"]["peak_mb"]
    )
    figures["goal_speed_ratio"] = 3

    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-features-") as tmp:
        path = Path(tmp) / "big.parquet"
        # Twice the cap once decoded (categoricals as strings, as Parquet readers give them).
        stream_rows = int(os.environ.get("KFGPU_BENCH_STREAM_ROWS", "0")) or int(
            2 * cap_mb / _decoded_mb_per_row()
        )
        progress(f"features: writing {stream_rows} rows for the streaming fit")
        decoded_mb = _write_big_parquet(path, stream_rows)
        progress(f"features: fitting {decoded_mb:.0f} MB (decoded) under a {cap_mb} MB cap")
        proc = subprocess.run(
            [sys.executable, "-c", _STREAM, str(path), str(cap_mb)],
            capture_output=True,
            text=True,
            check=False,
        )
        figures["stream_rows"] = stream_rows
        figures["stream_decoded_mb"] = decoded_mb
        figures["stream_cap_mb"] = cap_mb
        figures["stream_decoded_over_cap"] = decoded_mb / cap_mb
        figures["stream_completed"] = float(proc.returncode == 0)
        if proc.returncode == 0:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            figures["stream_seconds"] = out["seconds"]
            figures["stream_peak_rss_mb"] = out["peak_mb"]
        else:
            progress(f"features: streaming child failed:\n{proc.stderr[-2000:]}")
    return figures


def _decoded_mb_per_row() -> float:
    """Decoded in-memory size per row of the generated table (strings for categoricals)."""
    namespace: dict[str, object] = {"N_NUMERIC": N_NUMERIC, "N_CATEGORICAL": N_CATEGORICAL}
    exec(_DATA, namespace)
    frame = namespace["make"](20_000)  # type: ignore[operator]
    for c in frame.columns:
        if c.startswith("cat_"):
            frame[c] = frame[c].astype(str)
    return float(frame.memory_usage(deep=True).sum()) / 2**20 / len(frame)
