"""validate_data on a CSV: streamed (parsed chunk by chunk into Parquet shards) against the
in-memory path it replaced, each in its own child process (peak RSS is the child's).

The table is the 30-column synthetic fraud table of ``data_scale`` (``row_id``, 12 fraud
columns, 17 noise columns), written as one CSV file. Children:

* ``inmemory``: what ``validate_data`` did with a CSV before it streamed: ``read_table``
  (the whole file), ``validate``, ``write_shards`` of the frame;
* ``streamed``: ``validate_data_step`` (``stream_to_shards``, streamed checks on a
  262,144-row sample, byte copy of the shards).

Figures per child: ``<child>.rows_per_s`` (rows over the wall seconds of the call, imports
included), ``<child>.cpu_rows_per_s`` (over the child's user + system CPU seconds),
``<child>.peak_rss_mb``; then ``streamed_over_inmemory`` (rows/s ratio),
``rss_inmemory_over_streamed`` and ``load_avg_1m`` (the machine's 1-minute load average
before the first child: the wall figures also measure the neighbours).

Settings (environment): ``KFGPU_BENCH_TEXT_ROWS`` (default 500000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._harness import benchmark, progress

TARGET = "is_fraud"
CHILDREN = ("inmemory", "streamed")


def _child(kind: str, work: Path) -> int:
    csv = str(work / "table.csv")
    if kind == "inmemory":
        from kfgpu.data import read_table
        from kfgpu.data.shards import write_shards
        from kfgpu.validation.checks import validate

        df = read_table(csv)
        validate(df, TARGET).raise_for_errors()
        write_shards(df, str(work / "inmemory"))
        return len(df)
    from kfgpu.validation.step import validate_data_step

    validate_data_step(
        data_uri=csv,
        target=TARGET,
        dataset_path=str(work / "streamed"),
        schema_path=str(work / "schema.json"),
        report_path=str(work / "report.md"),
    )
    return int(json.loads((work / "streamed" / "_manifest.json").read_text())["rows"])


def _run_child(kind: str, work: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.validate_text", kind, str(work)],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(proc.stderr[-4000:])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"validate_text: child {kind} failed (exit {proc.returncode})")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def _write_csv(work: Path, rows: int) -> None:
    import pyarrow.csv as pacsv

    from kfgpu.data.shards import open_shards
    from kfgpu.data.synthetic import write_fraud_shards

    write_fraud_shards(str(work / "source"), rows, extra_columns=17)
    shards = open_shards(str(work / "source"))
    with pacsv.CSVWriter(str(work / "table.csv"), shards.schema) as writer:
        for batch in shards.iter_batches():
            writer.write_batch(batch)


@benchmark("validate_text")
def validate_text() -> dict[str, float]:
    """validate_data on a 30-column CSV: streamed vs read whole (rows/s, peak RSS)."""
    rows = int(os.environ.get("KFGPU_BENCH_TEXT_ROWS", "500000"))
    if rows <= 0:
        raise ValueError("KFGPU_BENCH_TEXT_ROWS must be > 0")
    figures: dict[str, float] = {"rows": float(rows)}
    with tempfile.TemporaryDirectory(prefix="kfgpu-validate-text-") as tmp:
        work = Path(tmp)
        progress(f"validate_text: writing a {rows}-row x 30-column CSV")
        _write_csv(work, rows)
        figures["csv_mb"] = (work / "table.csv").stat().st_size / 2**20
        figures["load_avg_1m"] = os.getloadavg()[0]
        for kind in CHILDREN:
            progress(f"validate_text: {kind}")
            res = _run_child(kind, work)
            figures[f"{kind}.wall_s"] = res["step_s"]
            figures[f"{kind}.rows_per_s"] = res["rows"] / res["step_s"]
            figures[f"{kind}.cpu_rows_per_s"] = res["rows"] / max(res["cpu_s"], 1e-9)
            figures[f"{kind}.peak_rss_mb"] = res["peak_rss_mb"]
    figures["streamed_over_inmemory"] = (
        figures["streamed.rows_per_s"] / figures["inmemory.rows_per_s"]
    )
    figures["rss_inmemory_over_streamed"] = (
        figures["inmemory.peak_rss_mb"] / figures["streamed.peak_rss_mb"]
    )
    return figures


def _main(argv: list[str]) -> None:
    import resource

    kind, work = argv[0], Path(argv[1])
    t0 = time.perf_counter()
    rows = _child(kind, work)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "rows": rows,
                "step_s": time.perf_counter() - t0,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
