"""`kfgpu run` on a user's file, and its one-line errors on bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_kfgpu

pytestmark = pytest.mark.slow


def _bundles(workdir: Path) -> list[Path]:
    return [p for p in workdir.rglob("train-model/model") if p.exists()]


def test_run_trains_on_a_users_csv(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    csv = tmp_path / "my.csv"
    frame.to_csv(csv, index=False)
    work = tmp_path / "work"
    proc = run_kfgpu(
        "run",
        "--data",
        str(csv),
        "--target",
        "diagnosis",
        "--workdir",
        str(work),
        "--param",
        "max_epochs=30",
        "--param",
        "hidden_sizes=32",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r"held-out roc_auc: ([0-9.]+) \(constant predictor: ([0-9.]+)\)", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) > 0.95 > float(match.group(2))
    assert len(_bundles(work)) == 1
    assert len(list((work / "latest").glob("*/train-model/model/bundle.json"))) == 1
    assert "MLflow run:" in proc.stdout
    assert (work / "mlflow.db").is_file()
    # Progress was shown on stderr, one line per finished step; the gate blessed the first
    # model of this registry, which was registered and promoted.
    assert proc.stderr.count("✓") == 7
    assert "gate:          blessed" in proc.stdout
    # The registered name follows the data and the target, and is said before the run.
    assert "registered model: my-diagnosis (from the data and target" in proc.stderr
    assert "registered my-diagnosis v1 and promoted it to champion" in proc.stdout


def _write_cases(root: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    good = pd.DataFrame({"x": rng.normal(size=100), "c": rng.choice(["a", "b"], 100)})
    good["label"] = (good["x"] > 0).astype(int)
    good.to_csv(root / "good.csv", index=False)
    (root / "empty.csv").write_text("x,c,label\n")
    one = good.assign(label=1)
    one.to_csv(root / "one_class.csv", index=False)
    (root / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(300))
    return {
        "missing file": (root / "absent.csv", "does not exist"),
        "missing target": (root / "good.csv", "target column 'label2' not found"),
        "empty file": (root / "empty.csv", "no usable table"),
        "one class": (root / "one_class.csv", "single class"),
        "not tabular": (root / "photo.csv", "not a table"),
    }


@pytest.mark.parametrize(
    "case", ["missing file", "missing target", "empty file", "one class", "not tabular"]
)
def test_bad_input_gives_one_line_and_no_bundle(tmp_path: Path, case: str) -> None:
    path, expected = _write_cases(tmp_path)[case]
    target = "label2" if case == "missing target" else "label"
    work = tmp_path / "work"
    proc = run_kfgpu("run", "--data", str(path), "--target", target, "--workdir", str(work))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert expected in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert _bundles(work) == []
    # The failed step still explains itself in its report.
    (report,) = work.rglob("validate-data/report")
    assert "FAIL" in report.read_text().upper()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_kfgpu(
        "--debug",
        "run",
        "--data",
        str(tmp_path / "nope.csv"),
        "--target",
        "y",
        "--workdir",
        str(tmp_path / "w"),
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--data", "x.csv"], "--data needs --target"),
        (["run", "--param", "nope=1"], "has no parameter 'nope'"),
        (["run", "--param", "max_epochs=many"], "max_epochs='many' must be integer"),
        (["run", "--param", "max_epochs"], "must look like NAME=VALUE"),
        (["run", "unknown-pipeline"], "unknown pipeline 'unknown-pipeline'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_kfgpu(*args, "--workdir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["run", "--help"],
        ["compile", "--help"],
        ["components", "--help"],
        ["data", "synth", "--help"],
    ):
        proc = run_kfgpu(*args)
        assert proc.returncode == 0 and "Usage:" in proc.stdout, args


def test_components_lists_inputs_and_outputs() -> None:
    proc = run_kfgpu("components")
    assert proc.returncode == 0
    for name in ("validate_data", "engineer_features", "train_model", "evaluate_model"):
        assert f"{name}:" in proc.stdout
    assert "model (Model)" in proc.stdout
