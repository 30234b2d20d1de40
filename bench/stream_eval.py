"""Streamed evaluation and batch inference (issue 19): peak RSS and the AUC sketch's error.

``stream_eval``: a trained fraud bundle (20,000 rows, 2 epochs) scores a
``KFGPU_BENCH_EVAL_ROWS``-row (default 1,000,000) x 26-column Parquet test split, each in a
fresh child process whose peak RSS is measured (``RUSAGE_CHILDREN`` of a small launcher,
as in ``bench/drift.py``):

* ``evaluate_model`` as it runs now (record batches, running sums, a 250,000-row sample,
  the AUC sketch above it);
* the in-memory evaluation it replaced (``read_parquet``, one ``predict_raw``,
  ``evaluate_classification``), which is also the exact reference for the AUC;
* ``batch_predict`` (streamed, written as shards) and, as its baseline, ``Bundle.predict``
  on the whole table;
* the floor: a child that imports the same modules and predicts 1,000 rows; and the
  streamed evaluation on a quarter of the rows (its peak should not depend on the rows).

Figures: each run's peak RSS and seconds, the streamed/in-memory RSS ratios, and
``roc_auc_abs_diff`` (sketch vs exact) beside the sketch's own ``roc_auc_error_bound``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench._harness import benchmark, progress

_LAUNCHER = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    proc = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(out))
    """
)

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    mode, bundle_path, test, tmp = sys.argv[1:5]
    t0 = time.perf_counter()
    out = {}
    if mode == "stream_eval":
        from kfgpu.evaluation.step import evaluate_model_step
        evaluate_model_step(bundle_path=bundle_path, test_path=test,
            report_path=tmp + "/r.html", evaluation_path=tmp + "/e.json",
            slice_columns="", track=False)
        ev = json.load(open(tmp + "/e.json"))
        out = {"roc_auc": ev["metrics"]["roc_auc"], "accuracy": ev["metrics"]["accuracy"],
               "bound": ev["settings"]["streaming"].get("roc_auc_error_bound", 0.0)}
    elif mode == "memory_eval":
        from kfgpu.bundle import load_bundle
        from kfgpu.data import read_parquet
        from kfgpu.evaluation.metrics import evaluate_classification
        bundle = load_bundle(bundle_path)
        df = read_parquet(test)
        raw = bundle.predict_raw(df.drop(columns=["is_fraud"]))
        ev = evaluate_classification(df["is_fraud"].to_numpy(), raw, bundle.classes,
            positive_class=bundle.decision.get("positive_class"), decision=bundle.decision)
        out = {"roc_auc": ev.metrics["roc_auc"], "accuracy": ev.metrics["accuracy"]}
    elif mode == "floor":
        import pandas as pd
        from kfgpu.bundle import load_bundle
        from kfgpu.evaluation.step import evaluate_model_step
        from kfgpu.serving.batch import batch_predict_step
        load_bundle(bundle_path).predict(pd.read_parquet(test).head(1000))
    elif mode == "stream_predict":
        from kfgpu.serving.batch import batch_predict_step
        r = batch_predict_step(bundle_path=bundle_path, data_uri=test, output_path=tmp + "/p")
        out = {"rows": r.metrics["rows"]}
    else:
        import pandas as pd
        from kfgpu.bundle import load_bundle
        pred = load_bundle(bundle_path).predict(pd.read_parquet(test))
        pred.to_parquet(tmp + "/p.parquet")
        out = {"rows": len(pred)}
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out))
    """
)


def _run(mode: str, bundle: Path, test: Path, tmp: Path, name: str = "") -> dict[str, Any]:
    work = tmp / (name or mode)
    work.mkdir()
    child = [sys.executable, "-c", _CHILD, mode, str(bundle), str(test), str(work)]
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *child], check=True, capture_output=True, text=True
    )
    out = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    progress(f"stream_eval: {name or mode}: {out}")
    return out


@benchmark("stream_eval")
def stream_eval() -> dict[str, float]:
    """evaluate_model and batch_predict streamed vs in memory: peak RSS, AUC sketch error."""
    from kfgpu.data import fraud
    from kfgpu.data.synthetic import write_fraud_parquet
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    rows = int(os.environ.get("KFGPU_BENCH_EVAL_ROWS", "1000000"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        train, val, _ = split_frame(fraud(20_000, seed=1), "is_fraud", task="classification")
        fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
        progress("stream_eval: training the bundle")
        train_tabular(
            train,
            val,
            transform=fitted,
            target="is_fraud",
            task="classification",
            config=TrainConfig(accelerator="cpu", max_epochs=2, hidden_sizes=(64,)),
            bundle_path=tmp / "bundle",
        )
        test = tmp / "test.parquet"
        progress(f"stream_eval: writing a {rows}-row test split")
        write_fraud_parquet(str(test), rows, seed=7)
        quarter = tmp / "quarter.parquet"
        write_fraud_parquet(str(quarter), rows // 4, seed=7)
        res = {m: _run(m, tmp / "bundle", test, tmp) for m in ("stream_eval", "memory_eval")}
        res["floor"] = _run("floor", tmp / "bundle", quarter, tmp)
        res["quarter"] = _run("stream_eval", tmp / "bundle", quarter, tmp, "quarter")
        res.update(
            {m: _run(m, tmp / "bundle", test, tmp) for m in ("stream_predict", "memory_predict")}
        )
    s, m = res["stream_eval"], res["memory_eval"]
    sp, mp = res["stream_predict"], res["memory_predict"]
    return {
        "rows": float(rows),
        "floor_peak_rss_mb": res["floor"]["peak_rss_mb"],
        "evaluate_stream_quarter_rows_peak_rss_mb": res["quarter"]["peak_rss_mb"],
        "evaluate_stream_peak_rss_mb": s["peak_rss_mb"],
        "evaluate_memory_peak_rss_mb": m["peak_rss_mb"],
        "evaluate_rss_ratio": s["peak_rss_mb"] / m["peak_rss_mb"],
        "evaluate_stream_s": s["seconds"],
        "evaluate_memory_s": m["seconds"],
        "roc_auc_abs_diff": abs(s["roc_auc"] - m["roc_auc"]),
        "roc_auc_error_bound": s["bound"],
        "accuracy_abs_diff": abs(s["accuracy"] - m["accuracy"]),
        "predict_stream_peak_rss_mb": sp["peak_rss_mb"],
        "predict_memory_peak_rss_mb": mp["peak_rss_mb"],
        "predict_rss_ratio": sp["peak_rss_mb"] / mp["peak_rss_mb"],
        "predict_stream_s": sp["seconds"],
        "predict_memory_s": mp["seconds"],
    }
