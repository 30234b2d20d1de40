"""Data larger than memory: every step of the data path on a 20,000,000-row x 30-column table.

Generates the synthetic fraud table widened to 30 columns (``row_id``, the 12 fraud
columns, 17 noise columns) straight into sharded Parquet (streamed, never in memory), then
runs each step in its own child process and reads that child's peak RSS
(``ru_maxrss``), so every peak belongs to one step:

* ``validate``: ``validate_data_step`` on the shards (streamed checks + byte copy);
* ``split``: ``split_source`` of the validated data into train/validation/test shards
  (its worker threads each read, assign and write whole units of row groups); before it,
  as its baseline, ``split_serial``: the same split with ``overlap=False`` (the same
  files, one unit after the other in one thread; its output is deleted), and the ratio
  ``split_over_serial`` of their rows/s;
* ``fit``: ``fit_source`` of a feature transform on the training shards;
* ``features``: ``engineer_features_step`` (split + fit + transform, written as shards);
* ``train``: ``train_model_step``, one epoch; ``evaluate``: ``evaluate_model_step``;
  ``predict``: ``batch_predict_step`` on the test split.

Before ``validate`` it validates the table's first file (1,048,576 rows) twice, in memory
as ``validate_data`` did before it streamed (``file_inmemory``: ``read_table`` +
``validate``) and streamed (``file_streamed``), and prints the ratio
``file_streamed_over_inmemory`` of their rows/s.

Each step starts after ``os.sync()``, so that the previous step's writes are not still
being flushed to disk (and throttling this step's) while it runs.

Per step it prints ``<step>.rows_per_s`` (rows of the step's input over the wall seconds
of the step's call, imports included, interpreter start-up not; ``<step>.process_wall_s``
is the whole child),
``<step>.cpu_rows_per_s`` (over the child's user + system CPU seconds: on a shared machine
the wall figure also measures the neighbours), ``<step>.peak_rss_mb``, ``<step>.wall_s``,
and ``<step>.rss_over_data`` (peak RSS over the table's decoded size). A step that fails
prints ``<step>.failed: 1`` and its error goes to stderr. When ``bench/_loader.py`` exists
its ``loader_figures()`` are added (``loader.*``).

Settings (environment): ``KFGPU_BENCH_ROWS`` (default 20000000), ``KFGPU_BENCH_STEPS``
(comma-separated subset of ``validate,split,fit,features,train,evaluate,predict``;
default all; a step whose input an earlier step writes needs that step run before, in
this run or an earlier one on the same ``KFGPU_BENCH_DIR``), ``KFGPU_BENCH_DIR`` (work
folder, kept, and its table reused when it has the requested rows; default a temporary
one, deleted after), ``KFGPU_BENCH_TRAIN_CONFIG`` (JSON merged into the ``train`` step's
config: one epoch on the CPU in batches of 4,096; e.g. ``{"stream_threshold_mb": 0}``
streams a training split that would fit in memory, as a 20M-row one is streamed).
``loader.*`` figures are added only when ``train`` is among the steps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._harness import benchmark, progress

TARGET = "is_fraud"
STEPS = ("validate", "split", "fit", "features", "train", "evaluate", "predict")
# The baseline: one file of the table (1,048,576 rows) validated in memory, as validate_data
# did before it streamed, beside the streamed validation of the same file.
BASELINE = ("file_inmemory", "file_streamed")
EXTRA_COLUMNS = 17  # row_id + 12 fraud columns + 17 = 30
# What each step reads that an earlier step writes (all of them: the validated dataset).
NEEDS: dict[str, tuple[str, ...]] = {
    "split": ("dataset",),
    "split_serial": ("dataset",),
    "fit": ("split/train",),
    "features": ("dataset",),
    "train": ("features/train", "features/val", "features/transform"),
    "evaluate": ("model", "features/test"),
    "predict": ("model", "features/test"),
}


def _child(step: str, work: Path, rows: int) -> dict[str, Any]:
    """Run one step in this (child) process; return what it processed."""
    src, data = str(work / "source"), str(work / "dataset")
    feat = {n: str(work / "features" / n) for n in ("train", "val", "test", "transform")}
    done: dict[str, Any] = {}
    first_file = str(work / "source" / "part-000000.parquet")
    if step == "file_inmemory":
        from kfgpu.data import read_table
        from kfgpu.validation.checks import validate

        df = read_table(first_file)
        validate(df, TARGET)
        done = {"rows": len(df)}
    elif step == "file_streamed":
        from kfgpu.validation.stream import validate_source

        done = {"rows": validate_source(first_file, TARGET).rows}
    elif step == "generate":
        from kfgpu.data.synthetic import write_fraud_shards

        info = write_fraud_shards(src, rows, extra_columns=EXTRA_COLUMNS)
        done = {"rows": info["rows"], "columns": info["columns"]}
    elif step == "validate":
        from kfgpu.validation.step import validate_data_step

        validate_data_step(
            data_uri=src,
            target=TARGET,
            dataset_path=data,
            schema_path=str(work / "schema.json"),
            report_path=str(work / "validation.md"),
        )
        done = {"rows": rows}
    elif step in ("split", "split_serial"):
        from kfgpu.features.split import SPLIT_NAMES, SplitConfig, split_source

        folder = "split" if step == "split" else "split_serial"
        outs = {n: str(work / folder / n) for n in SPLIT_NAMES}
        config = SplitConfig(TARGET, "classification")
        result = split_source(data, outs, config, overlap=step == "split")
        done = {"rows": rows, **{f"{k}_rows": v for k, v in result.rows.items()}}
        if step == "split_serial":  # the same files, written without threads
            shutil.rmtree(work / folder, ignore_errors=True)
    elif step == "fit":
        from kfgpu.data.shards import open_shards
        from kfgpu.features import fit_source

        train = str(work / "split" / "train")
        fit_source(train, None, target=TARGET)
        done = {"rows": open_shards(train).rows}
    elif step == "features":
        from kfgpu.features.step import engineer_features_step

        engineer_features_step(
            dataset_path=data,
            target=TARGET,
            task="classification",
            train_path=feat["train"],
            val_path=feat["val"],
            test_path=feat["test"],
            transform_path=feat["transform"],
        )
        done = {"rows": rows}
    elif step == "train":
        from kfgpu.data.shards import open_shards
        from kfgpu.training.step import train_model_step

        shutil.rmtree(work / "model", ignore_errors=True)  # a kept folder's last bundle

        train_model_step(
            train_path=feat["train"],
            val_path=feat["val"],
            transform_path=feat["transform"],
            target=TARGET,
            task="classification",
            bundle_path=str(work / "model"),
            config=_train_config(),
            mlflow_tracking_uri="",
        )
        done = {"rows": open_shards(feat["train"]).rows}
    elif step == "evaluate":
        from kfgpu.data.shards import open_shards
        from kfgpu.evaluation.step import evaluate_model_step

        evaluate_model_step(
            bundle_path=str(work / "model"),
            test_path=feat["test"],
            report_path=str(work / "evaluation.md"),
            mlflow_tracking_uri="",
            track=False,
        )
        done = {"rows": open_shards(feat["test"]).rows}
    elif step == "predict":
        from kfgpu.data.shards import open_shards
        from kfgpu.serving.batch import batch_predict_step

        batch_predict_step(
            bundle_path=str(work / "model"),
            data_uri=feat["test"],
            output_path=str(work / "predictions.parquet"),
        )
        done = {"rows": open_shards(feat["test"]).rows}
    else:
        raise ValueError(f"unknown step {step!r}")
    return done


def _train_config() -> dict[str, Any]:
    """One epoch on the CPU in batches of 4,096 (the data path's cost, not the optimiser's
    per-step overhead), merged with ``KFGPU_BENCH_TRAIN_CONFIG`` (JSON) when set."""
    config: dict[str, Any] = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "devices": 1,
        "batch_size": 4096,
    }
    extra = os.environ.get("KFGPU_BENCH_TRAIN_CONFIG", "")
    if extra:
        config.update(json.loads(extra))
    return config


def _run_child(step: str, work: Path, rows: int) -> dict[str, Any] | None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    env.pop("KFGPU_EVENTS_FILE", None)
    # The previous step's gigabytes still being written back to disk would throttle this
    # step's writes and count against it: start each step with them on disk.
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.data_scale", step, str(work), str(rows)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stderr[-4000:])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        progress(f"data_scale: step {step} failed (exit {proc.returncode})")
        return None
    out: dict[str, Any] = json.loads(lines[-1])
    out["wall_s"] = wall
    return out


def _existing_rows(work: Path) -> int:
    from kfgpu.data.shards import read_manifest

    if not (work / "source").is_dir():
        return -1
    manifest = read_manifest(str(work / "source"))
    return -1 if manifest is None else manifest.rows


def _decoded_bytes_per_row(work: Path) -> float:
    from kfgpu.data.shards import open_shards

    shards = open_shards(str(work / "source"))
    batch = next(shards.iter_batches(batch_rows=65_536))
    return batch.nbytes / batch.num_rows


@benchmark("data_scale")
def data_scale() -> dict[str, float]:
    """20M x 30 Parquet through validate/split/fit/features/train/evaluate/predict: rows/s, RSS."""
    rows = int(os.environ.get("KFGPU_BENCH_ROWS", "20000000"))
    wanted = os.environ.get("KFGPU_BENCH_STEPS", ",".join(STEPS)).split(",")
    unknown = [s for s in wanted if s not in STEPS]
    if rows <= 0 or unknown:
        raise ValueError(f"KFGPU_BENCH_ROWS must be > 0 and KFGPU_BENCH_STEPS from {STEPS}")
    keep = os.environ.get("KFGPU_BENCH_DIR", "")
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="kfgpu-data-scale-")
    work = Path(keep or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, float] = {"rows": float(rows)}
    try:
        if _existing_rows(work) != rows:  # a kept KFGPU_BENCH_DIR is reused
            progress(f"data_scale: generating {rows} rows x 30 columns of sharded Parquet")
            gen = _run_child("generate", work, rows)
            if gen is None:
                raise RuntimeError("generating the table failed; see stderr")
            figures["generate.wall_s"] = gen["wall_s"]
            figures["generate.peak_rss_mb"] = gen["peak_rss_mb"]
        data_mb = _decoded_bytes_per_row(work) * rows / 2**20
        figures["data_decoded_mb"] = data_mb
        steps = [s for s in STEPS if s in wanted]
        if "validate" in wanted:
            steps = [*BASELINE, *steps]
        if "split" in wanted:  # its baseline: the same split without the threads
            steps.insert(steps.index("split"), "split_serial")
        for step in steps:
            progress(f"data_scale: {step}")
            absent = [n for n in NEEDS.get(step, ()) if not (work / n).exists()]
            if absent:  # the earlier step that writes it failed or was never run here
                progress(
                    f"data_scale: step {step} needs {absent} in {work}; add the steps that "
                    f"write them (before it in {','.join(STEPS)}) to KFGPU_BENCH_STEPS"
                )
                figures[f"{step}.failed"] = 1.0
                continue
            res = _run_child(step, work, rows)
            if res is None:
                figures[f"{step}.failed"] = 1.0
                continue
            n = float(res["rows"])
            figures[f"{step}.rows"] = n
            figures[f"{step}.wall_s"] = res["step_s"]
            figures[f"{step}.process_wall_s"] = res["wall_s"]
            figures[f"{step}.rows_per_s"] = n / res["step_s"]
            figures[f"{step}.cpu_rows_per_s"] = n / max(res["cpu_s"], 1e-9)
            figures[f"{step}.peak_rss_mb"] = res["peak_rss_mb"]
            figures[f"{step}.rss_over_data"] = res["peak_rss_mb"] / data_mb
            progress(
                f"data_scale: {step} {n / res['step_s']:,.0f} rows/s, "
                f"peak RSS {res['peak_rss_mb']:.0f} MB"
            )
        if "split_serial.rows_per_s" in figures and "split.rows_per_s" in figures:
            figures["split_over_serial"] = (
                figures["split.rows_per_s"] / figures["split_serial.rows_per_s"]
            )
        if "file_inmemory.rows_per_s" in figures and "file_streamed.rows_per_s" in figures:
            figures["file_streamed_over_inmemory"] = (
                figures["file_streamed.rows_per_s"] / figures["file_inmemory.rows_per_s"]
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    if "train" in wanted and importlib.util.find_spec("bench._loader") is not None:
        from bench import _loader  # written by the streaming-loader work

        for k, v in _loader.loader_figures().items():
            figures[f"loader.{k}"] = float(v)
    return figures


def _main(argv: list[str]) -> None:
    import resource

    step, work, rows = argv[0], Path(argv[1]), int(argv[2])
    t0 = time.perf_counter()
    done = _child(step, work, rows)
    done["step_s"] = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    done["cpu_s"] = usage.ru_utime + usage.ru_stime
    done["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(done), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
