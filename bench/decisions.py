"""Decisions kfgpu makes for its user: does tuning ship what won, does class weighting help.

``tuned_vs_default`` (issue 15, acceptance 3): on three data sets made from
scikit-learn, a 10-trial study (``KFGPU_BENCH_TRIALS``) through the real steps
(engineer_features -> tune_hyperparameters -> train_model with the tuned configuration ->
evaluate_model), beside the untuned default (train_model with the pipeline's own settings,
no study) on the same splits. Figures per data set: the best trial's validation metric and
the shipped model's (a refit with that trial's configuration), their relative difference,
and both models' held-out headline metric with the default's bootstrap half-width.

``class_weight`` (acceptance 5): the default fraud data (``kfgpu://fraud``, 2% positives,
``KFGPU_BENCH_FRAUD_ROWS`` rows, default 100,000), trained with ``class_weight=none``,
``balanced``, and the balanced sampler: the test rows' recall, precision and F1 at the
stored F1 threshold (chosen on the validation rows), recall and F1 at the plain 0.5 cut,
and PR AUC / ROC AUC.

:func:`tune_and_compare` is also what ``tests/e2e/test_tuning_ships_what_won.py`` runs,
with small settings.

``KFGPU_BENCH_MAX_EPOCHS`` (default 20, the pipeline's) caps every run's epochs, for a
loaded or small machine; the figures are then those of that cap.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench._harness import benchmark, progress

#: The training pipeline's default search space (kfgpu.pipelines.tuning).
SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "hidden_sizes": {"type": "categorical", "choices": ["128", "256,256", "512,256"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.4},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True},
}


def diabetes() -> tuple[Any, str, str]:
    """scikit-learn's diabetes data: 442 rows, 10 numeric features, regression."""
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True).frame, "target", "regression"


def breast_cancer(missing: float = 0.05, seed: int = 0) -> tuple[Any, str, str]:
    """Breast cancer (569 rows) with string labels, two string feature columns (binned
    from numeric ones) and ``missing`` of every feature's values blanked at random."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer(as_frame=True)
    df = raw.frame.copy()
    df["target"] = np.where(df["target"] == 1, "benign", "malignant")
    df["size_band"] = pd.qcut(df.pop("mean radius"), 3, labels=["small", "medium", "large"])
    df["size_band"] = df["size_band"].astype(str)
    df["texture_band"] = pd.qcut(df.pop("mean texture"), 4, labels=list("abcd")).astype(str)
    rng = np.random.default_rng(seed)
    for col in df.columns.drop("target"):
        mask = rng.random(len(df)) < missing
        if df[col].dtype == object:
            df[col] = df[col].where(~mask, None)
        else:
            df[col] = df[col].astype("float64").where(~mask, np.nan)
    return df, "target", "classification"


def imbalanced(rows: int = 200_000) -> tuple[Any, str, str]:
    """``make_classification(n_samples=rows, weights=[0.97], random_state=0)``."""
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, weights=[0.97], random_state=0)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    df["y"] = y
    return df, "y", "classification"


def _train(
    paths: dict[str, str], target: str, task: str, config: dict[str, Any], out: Path, **kw: Any
) -> dict[str, Any]:
    from kfgpu.training.step import train_model_step

    train_model_step(
        train_path=paths["train"],
        val_path=paths["val"],
        transform_path=paths["transform"],
        target=target,
        task=task,
        bundle_path=str(out / "bundle"),
        config=config,
        **kw,
    )
    from kfgpu.evaluation.step import evaluate_model_step

    evaluate_model_step(
        bundle_path=str(out / "bundle"),
        test_path=paths["test"],
        report_path=str(out / "report.html"),
        evaluation_path=str(out / "evaluation.json"),
        slice_columns="",
        bootstrap=200,
        track=False,
    )
    evaluation = json.loads((out / "evaluation.json").read_text())
    bundle = json.loads((out / "bundle" / "bundle.json").read_text())
    return {"evaluation": evaluation, "bundle": bundle}


def tune_and_compare(
    frame: Any,
    target: str,
    task: str,
    *,
    workdir: Path,
    trials: int = 10,
    space: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Split ``frame``, run a ``trials``-trial study whose trials start from
    ``train_config``, train the shipped model (train_model with ``train_config`` and the
    tuned configuration) and the untuned default (``train_config`` alone), and evaluate both.

    Returns the best trial's number, value and metric name; the shipped and the default
    model's validation metric (from their bundles) and held-out evaluation.
    """
    from kfgpu.data import write_parquet
    from kfgpu.features.step import engineer_features_step
    from kfgpu.tuning.step import tune_hyperparameters_step

    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data.parquet"
    write_parquet(frame, str(data))
    paths = {k: str(workdir / k) for k in ("train", "val", "test", "transform")}
    engineer_features_step(
        dataset_path=str(data),
        target=target,
        task=task,
        train_path=paths["train"],
        val_path=paths["val"],
        test_path=paths["test"],
        transform_path=paths["transform"],
        seed=seed,
    )
    base = dict(train_config or {})
    tuned = tune_hyperparameters_step(
        train_path=paths["train"],
        val_path=paths["val"],
        transform_path=paths["transform"],
        target=target,
        task=task,
        search_space=space or SPACE,
        config={"n_trials": trials, "seed": seed, "pruner": "none"},
        base_config=base,
        summary_path=str(workdir / "summary.json"),
    )
    summary = tuned.output.summary
    shipped = _train(
        paths, target, task, base, workdir / "shipped", overrides=tuned.output.best_params
    )
    default = _train(paths, target, task, base, workdir / "default")
    metric = "val_roc_auc" if task == "classification" else "val_r2"
    return {
        "best_trial": summary["best"]["number"],
        "best_value": float(summary["best"]["values"][0]),
        "compared_on": summary["shipped"]["compared_on"],
        "metric": metric,
        "shipped_val": float(shipped["bundle"]["metrics"][metric]),
        "default_val": float(default["bundle"]["metrics"][metric]),
        "shipped_config": shipped["bundle"]["hyperparameters"],
        "best_config": summary["shipped"]["config"],
        "headline": shipped["evaluation"]["headline"],
        "shipped_test": float(shipped["evaluation"]["metrics"][shipped["evaluation"]["headline"]]),
        "default_test": float(default["evaluation"]["metrics"][default["evaluation"]["headline"]]),
        "default_interval": default["evaluation"]["intervals"][default["evaluation"]["headline"]],
    }


@benchmark("tuned_vs_default")
def tuned_vs_default() -> dict[str, float]:
    """Tuning ships what won: shipped vs best-trial validation metric, tuned vs default held out."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = int(os.environ.get("KFGPU_BENCH_TRIALS", "10"))
    rows = int(os.environ.get("KFGPU_BENCH_IMBALANCED_ROWS", "200000"))
    out: dict[str, float] = {}
    sets = {
        "diabetes": diabetes,
        "breast_cancer": breast_cancer,
        "imbalanced": lambda: imbalanced(rows),
    }
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-tune-") as tmp:
        for name, make in sets.items():
            progress(f"tuned_vs_default: {name}, {trials} trials")
            frame, target, task = make()
            r = tune_and_compare(
                frame,
                target,
                task,
                workdir=Path(tmp) / name,
                trials=trials,
                train_config={"accelerator": "cpu", "max_epochs": _max_epochs()},
            )
            lo, hi = r["default_interval"]
            out.update(
                {
                    f"{name}.best_trial_val": r["best_value"],
                    f"{name}.shipped_val": r["shipped_val"],
                    f"{name}.shipped_over_best_val": r["shipped_val"] / r["best_value"],
                    f"{name}.default_val": r["default_val"],
                    f"{name}.shipped_test": r["shipped_test"],
                    f"{name}.default_test": r["default_test"],
                    f"{name}.test_gain": r["shipped_test"] - r["default_test"],
                    f"{name}.default_half_width": (hi - lo) / 2,
                }
            )
    out["max_epochs"] = float(_max_epochs())
    out["imbalanced_rows"] = float(rows)
    return out


def _max_epochs() -> int:
    return int(os.environ.get("KFGPU_BENCH_MAX_EPOCHS", "20"))


def _fraud_run(paths: dict[str, str], out: Path, **settings: Any) -> dict[str, float]:
    config = {"accelerator": "cpu", "max_epochs": _max_epochs(), **settings}
    r = _train(paths, "is_fraud", "classification", config, out)
    m = r["evaluation"]["metrics"]
    at_half = r["evaluation"]["threshold"].get("argmax_metrics", {})
    return {
        "threshold": float(r["bundle"]["decision"]["threshold"]),
        "recall_at_0.5": float(at_half.get("recall", float("nan"))),
        "f1_at_0.5": float(at_half.get("f1", float("nan"))),
        "recall": m["recall"],
        "precision": m["precision"],
        "f1": m["f1"],
        "pr_auc": m["pr_auc"],
        "roc_auc": m["roc_auc"],
    }


@benchmark("class_weight")
def class_weight() -> dict[str, float]:
    """class_weight none vs balanced vs the balanced sampler on kfgpu://fraud (test rows)."""
    from kfgpu.data import fraud, write_parquet
    from kfgpu.features.step import engineer_features_step

    rows = int(os.environ.get("KFGPU_BENCH_FRAUD_ROWS", "100000"))
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-cw-") as tmp:
        root = Path(tmp)
        write_parquet(fraud(rows, seed=0), str(root / "data.parquet"))
        paths = {k: str(root / k) for k in ("train", "val", "test", "transform")}
        engineer_features_step(
            dataset_path=str(root / "data.parquet"),
            target="is_fraud",
            task="classification",
            train_path=paths["train"],
            val_path=paths["val"],
            test_path=paths["test"],
            transform_path=paths["transform"],
        )
        for name, settings in (
            ("none", {}),
            ("balanced", {"class_weight": "balanced"}),
            ("sampler", {"sampler": "balanced"}),
        ):
            progress(f"class_weight: {name} on {rows} fraud rows")
            for k, v in _fraud_run(paths, root / name, **settings).items():
                out[f"{name}.{k}"] = v
    for k in ("recall", "pr_auc"):
        out[f"balanced_minus_none.{k}"] = out[f"balanced.{k}"] - out[f"none.{k}"]
    out["rows"] = float(rows)
    out["max_epochs"] = float(_max_epochs())
    return out
