"""How much of a local ``training`` pipeline run is step compute, and how much orchestration.

Runs the pipeline under ``kfp.local`` (:func:`kfgpu.local.run_local`) and splits its wall
time into the seconds spent inside the four library step functions (from the step
events) and everything else: process start-up, imports in each step's interpreter, KFP's
executor input and output handling, artifact copies. Then, as the baseline, calls the
same four step functions one after another in this process and compares wall times.

Settings (environment): ``KFGPU_BENCH_ROWS`` (default 20000), ``KFGPU_BENCH_EPOCHS``
(default 3). MLflow tracking is off in both runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench._harness import benchmark, progress

PIPELINE = "training"
TARGET = "is_fraud"
STEPS = ("validate_data", "engineer_features", "train_model", "evaluate_model")
# The pipeline parameters the train component puts into the step's config.
_TRAIN_CONFIG_KEYS = (
    "max_epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "hidden_sizes",
    "dropout",
    "precision",
    "accelerator",
    "devices",
    "strategy",
    "seed",
    "early_stopping_patience",
)
# Read by the step libraries when their argument is empty; the benchmark wants them unset.
_UNSET = ("MLFLOW_TRACKING_URI", "KFGPU_EVENTS_FILE")


def _settings() -> tuple[int, int]:
    rows = int(os.environ.get("KFGPU_BENCH_ROWS", "20000"))
    epochs = int(os.environ.get("KFGPU_BENCH_EPOCHS", "3"))
    if rows <= 0 or epochs <= 0:
        raise ValueError("KFGPU_BENCH_ROWS and KFGPU_BENCH_EPOCHS must be positive")
    return rows, epochs


def _arguments(rows: int, epochs: int) -> dict[str, object]:
    return {
        "data_uri": f"kfgpu://fraud?rows={rows}&seed=0",
        "target": TARGET,
        "max_epochs": epochs,
        "mlflow_tracking_uri": "",
    }


@contextlib.contextmanager
def _clean_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in _UNSET if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _warm_page_cache() -> None:
    """Import the heavy libraries once in a throwaway interpreter.

    Both timed runs then read shared libraries from a warm page cache, and this process's
    module table stays untouched (the in-process run still pays its own imports, once).
    """
    code = "import torch, pytorch_lightning, pandas, pyarrow, sklearn, kfp, kfgpu.local"
    subprocess.run([sys.executable, "-c", code], check=True)


def _run_pipeline(arguments: dict[str, object], workdir: Path) -> dict[str, float]:
    from kfgpu.local import run_local

    run = run_local(PIPELINE, arguments, workdir=workdir)
    steps = run.step_seconds()
    missing = [s for s in STEPS if s not in steps]
    if missing:
        raise RuntimeError(f"no success event for step(s) {missing}; log: {run.log_path}")
    wall = run.wall_seconds
    compute = sum(steps.values())
    overhead = wall - compute
    figures = {
        "wall_s": wall,
        "compute_s": compute,
        "overhead_s": overhead,
        "compute_fraction": compute / wall,
        "overhead_per_step_s": overhead / len(steps),
    }
    for name in STEPS:
        figures[f"step.{name}_s"] = steps[name]
    return figures


def _train_config(arguments: dict[str, object]) -> dict[str, object]:
    """The train step's config exactly as the pipeline builds it: its defaults, our overrides."""
    from kfgpu.local import pipeline_parameters

    values = {k: default for k, (_kind, default) in pipeline_parameters(PIPELINE).items()}
    values.update(arguments)
    values["devices"] = values["gpus"]  # the pipeline's one GPU setting is train_model's devices
    return {k: values[k] for k in _TRAIN_CONFIG_KEYS}


def _run_inprocess(arguments: dict[str, object], workdir: Path) -> float:
    """The four library steps called in turn in this process, as the components call them."""
    from kfgpu.evaluation.step import evaluate_model_step
    from kfgpu.features.step import engineer_features_step
    from kfgpu.training.step import train_model_step
    from kfgpu.validation.step import validate_data_step

    p = {
        name: str(workdir / name)
        for name in (
            "dataset",
            "schema",
            "validation_report",
            "train",
            "validation",
            "test",
            "transform",
            "model",
            "report",
            "evaluation",
        )
    }
    t0 = time.perf_counter()
    validated = validate_data_step(
        data_uri=str(arguments["data_uri"]),
        target=TARGET,
        dataset_path=p["dataset"],
        schema_path=p["schema"],
        report_path=p["validation_report"],
    )
    task = validated.output.task
    features = engineer_features_step(
        dataset_path=p["dataset"],
        target=TARGET,
        task=task,
        train_path=p["train"],
        val_path=p["validation"],
        test_path=p["test"],
        transform_path=p["transform"],
    )
    train_meta = features.metadata.get("train", {})
    train_model_step(
        train_path=p["train"],
        val_path=p["validation"],
        transform_path=p["transform"],
        target=TARGET,
        task=task,
        bundle_path=p["model"],
        config=_train_config(arguments),
        mlflow_tracking_uri="",
        lineage={
            "train_fingerprint": train_meta.get("fingerprint"),
            "data_fingerprint": train_meta.get("source_fingerprint"),
            "pipeline_run": "bench-inprocess",
        },
    )
    evaluate_model_step(
        bundle_path=p["model"],
        test_path=p["test"],
        report_path=p["report"],
        evaluation_path=p["evaluation"],
        mlflow_tracking_uri="",
    )
    return time.perf_counter() - t0


@benchmark("pipeline_overhead")
def pipeline_overhead() -> dict[str, float]:
    """Local training pipeline: step compute vs orchestration, against an in-process run."""
    rows, epochs = _settings()
    arguments = _arguments(rows, epochs)
    with _clean_env(), tempfile.TemporaryDirectory(prefix="kfgpu-bench-") as tmp:
        progress("pipeline_overhead: warming the page cache")
        _warm_page_cache()
        progress(f"pipeline_overhead: kfp.local run ({rows} rows, {epochs} epochs)")
        figures = _run_pipeline(arguments, Path(tmp) / "local")
        progress(f"pipeline_overhead: kfp.local wall {figures['wall_s']:.1f}s")
        progress("pipeline_overhead: in-process baseline")
        inprocess_dir = Path(tmp) / "inprocess"
        inprocess_dir.mkdir()
        inprocess = _run_inprocess(arguments, inprocess_dir)
    figures["inprocess_wall_s"] = inprocess
    figures["kfp_local_over_inprocess"] = figures["wall_s"] / inprocess
    figures["rows"] = float(rows)
    figures["epochs"] = float(epochs)
    return figures
