"""tune_hyperparameters end to end on real training: the library step, the KFP component
under kfp.local, and ``kfgpu tune``; all on small built-in data with few, short trials."""

# No `from __future__ import annotations`: KFP reads the pipeline's real annotations.

import json
import warnings
from pathlib import Path

import pytest

from kfgpu.data import fraud, write_parquet
from kfgpu.errors import ConfigError
from kfgpu.features.step import engineer_features_step
from kfgpu.tuning.step import tune_hyperparameters_step
from tests.conftest import run_kfgpu

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "hidden_sizes": {"type": "categorical", "choices": ["16", "32,16"]},
}
BASE = {"max_epochs": 3, "accelerator": "cpu", "batch_size": 256, "early_stopping_patience": 0}


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("splits")
    write_parquet(fraud(3000, seed=0), str(d / "data.parquet"))
    paths = {k: str(d / k) for k in ("train", "val", "test", "transform")}
    engineer_features_step(
        dataset_path=str(d / "data.parquet"),
        target="is_fraud",
        task="classification",
        train_path=paths["train"],
        val_path=paths["val"],
        test_path=paths["test"],
        transform_path=paths["transform"],
    )
    return paths


def _step(splits: dict[str, str], out: Path, **config: object):
    return tune_hyperparameters_step(
        train_path=splits["train"],
        val_path=splits["val"],
        transform_path=splits["transform"],
        target="is_fraud",
        task="classification",
        search_space=SPACE,
        config={"n_trials": 4, "n_startup_trials": 1, "n_warmup_steps": 0, **config},
        base_config=BASE,
        best_params_path=str(out / "best.json"),
        summary_path=str(out / "summary.json"),
        report_path=str(out / "report.html"),
    )


def test_step_trains_prunes_and_writes_outputs(splits: dict[str, str], tmp_path: Path) -> None:
    result = _step(splits, tmp_path)
    best = json.loads((tmp_path / "best.json").read_text())
    summary = json.loads((tmp_path / "summary.json").read_text())
    # The best trial's complete training configuration: its parameters over the base
    # config, every model setting (epochs, schedule, seed), placement left to training.
    assert best == result.output.best_params == summary["shipped"]["config"]
    assert {k: best[k] for k in ("learning_rate", "hidden_sizes")} == {
        "learning_rate": summary["best"]["params"]["learning_rate"],
        "hidden_sizes": [int(h) for h in summary["best"]["params"]["hidden_sizes"].split(",")],
    }
    assert best["max_epochs"] == BASE["max_epochs"] and best["lr_schedule"] == "cosine"
    assert "seed" in best and "devices" not in best and "threshold_policy" not in best
    assert (
        summary["shipped"]["how"] == "refit"
        and summary["shipped"]["trial"] == (summary["best"]["number"])
    )
    # Compared on the gate's metric (ROC AUC) on validation rows, maximised.
    assert summary["objectives"] == ["val_metric"] and summary["directions"] == ["maximize"]
    assert "val_roc_auc" in summary["shipped"]["compared_on"]
    states = summary["trials_by_state"]
    assert states["COMPLETE"] + states["PRUNED"] == 4
    # The Lightning callback reported every epoch's validation loss to the trial.
    assert all(t["epochs_run"] >= 1 for t in summary["trials"])
    assert summary["epochs_spent"] == sum(t["epochs_run"] for t in summary["trials"])
    html = (tmp_path / "report.html").read_text()
    assert all(title in html for title in ("Optimisation history", "Parameter importances"))
    # plotly.js is inline (the report opens offline); a bool, so a failure prints no 4 MB diff.
    offline = "Plotly.newPlot" in html and '<script src="http' not in html
    assert offline
    assert result.metrics["best_val_metric"] == max(
        t["values"][0] for t in summary["trials"] if t["state"] == "COMPLETE"
    )
    assert "shipped model" in html and "refit with trial" in html
    assert result.metadata["best_params"]["trial"] == summary["best"]["number"]


def test_multi_objective_val_loss_against_model_size(
    splits: dict[str, str], tmp_path: Path
) -> None:
    result = _step(splits, tmp_path, n_trials=3, pruner="none", objectives="val_loss,n_params")
    summary = result.output.summary
    assert summary["pareto_front"] and all(len(p["values"]) == 2 for p in summary["pareto_front"])
    assert result.metrics["best_n_params"] > 0
    has_front = "Pareto front" in (tmp_path / "report.html").read_text()
    assert has_front


def test_space_naming_an_unknown_setting_fails_before_training(splits, tmp_path) -> None:
    with pytest.raises(ConfigError, match="'layers' is not a tunable training setting"):
        tune_hyperparameters_step(
            train_path=splits["train"],
            val_path=splits["val"],
            transform_path=splits["transform"],
            target="is_fraud",
            task="classification",
            search_space={"layers": {"type": "int", "low": 1, "high": 3}},
            config={},
        )


def test_component_under_kfp_local(splits: dict[str, str], tmp_path: Path) -> None:
    from kfp import dsl, local

    from kfgpu.components import tune_hyperparameters

    @dsl.pipeline(name="tune-check")
    def tune_check(train_uri: str, val_uri: str, transform_uri: str) -> str:
        train = dsl.importer(artifact_uri=train_uri, artifact_class=dsl.Dataset)
        val = dsl.importer(artifact_uri=val_uri, artifact_class=dsl.Dataset)
        transform = dsl.importer(artifact_uri=transform_uri, artifact_class=dsl.Artifact)
        task = tune_hyperparameters(
            train=train.output,
            validation=val.output,
            transform=transform.output,
            target="is_fraud",
            task="classification",
            search_space=json.dumps(SPACE),
            n_trials=2,
            pruner="none",
            base_config=json.dumps(BASE),
        )
        return task.outputs["best_params_json"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        run = tune_check(
            train_uri=splits["train"], val_uri=splits["val"], transform_uri=splits["transform"]
        )
    shipped = json.loads(run.output)
    assert {"learning_rate", "hidden_sizes", "max_epochs", "seed", "lr_schedule"} <= set(shipped)
    assert shipped["max_epochs"] == BASE["max_epochs"]
    (best,) = (tmp_path / "root").rglob("tune-hyperparameters/best_params")
    assert json.loads(best.read_text()) == json.loads(run.output)
    (report,) = (tmp_path / "root").rglob("tune-hyperparameters/report")
    has_history = "Optimisation history" in report.read_text()
    assert has_history


def test_cli_tune_with_two_worker_processes(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "learning_rate: {type: float, low: 0.0001, high: 0.03, log: true}\n"
        "dropout: {type: float, low: 0.0, high: 0.3}\n"
    )
    proc = run_kfgpu(
        "tune",
        "kfgpu://breast_cancer",
        "--target",
        "label",
        "--space",
        str(space),
        "--n-trials",
        "4",
        "--workers",
        "2",
        "--pruner",
        "none",
        "--param",
        "max_epochs=2",
        "--param",
        "hidden_sizes=16",
        "--param",
        "accelerator=cpu",
        "--output-dir",
        str(tmp_path / "out"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best parameters:" in proc.stdout
    # kfgpu tune runs the tuning pipeline: one line per step on the terminal, the steps'
    # own output (Lightning's tips, library warnings) in the run's log only.
    steps = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("  ✓ ")]
    assert steps == ["validate_data", "engineer_features", "tune_worker", "tune_hyperparameters"]
    noise = [line for line in proc.stderr.splitlines() if not line.startswith(("  … ", "  ✓ "))]
    assert noise == [], noise
    assert "log:" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials_by_state"]["COMPLETE"] == 4
    assert summary["storage"].startswith("journal:")
    # The worker pod ran two processes on the shared budget (which took which trial is a
    # race: one that starts first may take all four); the collecting step ran none.
    assert summary["workers"] == []
    assert all(t["worker"] for t in summary["trials"])
    assert len({t["worker"] for t in summary["trials"]}) <= 2
    bad = run_kfgpu("tune", "kfgpu://breast_cancer", "--target", "label", "--space", "{}")
    assert bad.returncode == 1 and "error: search_space={} is invalid" in bad.stderr


def test_empty_space_skips_tuning_with_no_overrides(tmp_path: Path) -> None:
    result = tune_hyperparameters_step(
        train_path="unused",
        val_path="unused",
        transform_path="unused",
        target="is_fraud",
        task="classification",
        search_space="",
        config={},
        best_params_path=str(tmp_path / "best.json"),
    )
    assert result.output.best_params == {}
    assert json.loads((tmp_path / "best.json").read_text()) == {}


def test_trials_stream_splits_above_the_threshold(
    splits: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``stream_threshold_mb=0`` in the base settings, the objective opens the splits as
    the trainers do and every trial streams them: reading a split whole fails the test
    (the tuning objective used to ``read_parquet`` both splits in every worker)."""
    import kfgpu.data

    def whole_read(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a split was read whole: {args}")

    monkeypatch.setattr(kfgpu.data, "read_parquet", whole_read)
    result = tune_hyperparameters_step(
        train_path=splits["train"],
        val_path=splits["val"],
        transform_path=splits["transform"],
        target="is_fraud",
        task="classification",
        search_space=SPACE,
        config={"n_trials": 2, "pruner": "none", "objectives": "val_loss,latency_ms"},
        base_config={**BASE, "max_epochs": 1, "stream_threshold_mb": 0},
        best_params_path=str(tmp_path / "best.json"),
        summary_path=str(tmp_path / "summary.json"),
        report_path=str(tmp_path / "report.html"),
    )
    trials = result.output.summary["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(len(t["values"]) == 2 and t["values"][1] > 0 for t in trials)
