"""detect_drift_step and ``kfgpu drift`` end to end on files: the verdict in drift.json and
in the HTML report, small samples, the 569-row CSV cases, and a bundle as the reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.data import fraud, write_parquet
from kfgpu.errors import ConfigError, DriftDetected, SchemaError
from kfgpu.monitoring.step import detect_drift_step
from kfgpu.validation.profile import build_profile
from tests.drift_files import drift_files

from .conftest import with_unused


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return drift_files(tmp_path_factory.mktemp("drift"))


def _run(
    files: dict[str, Path], tmp_path: Path, current: str, reference: str = "profile", **kw: object
) -> dict:
    detect_drift_step(
        reference_uri=str(files[reference]),
        current_uri=str(files[current]),
        result_path=str(tmp_path / "drift.json"),
        report_path=str(tmp_path / "drift.html"),
        **kw,  # type: ignore[arg-type]
    )
    return json.loads((tmp_path / "drift.json").read_text())


def _page_verdict(page: str) -> tuple[str, str]:
    """The verdict and the rules the HTML report states."""
    verdict = re.search(r"id='kfgpu-verdict'>([^<]+)<", page)
    rules = re.search(r"id='kfgpu-rules'>([^<]+)<", page)
    assert verdict is not None and rules is not None
    return verdict.group(1), rules.group(1)


def test_drift_is_flagged_and_reported(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(files, tmp_path, "drifted")
    assert result["dataset_drift"] is True and result["rules"] == ["share_of_columns"]
    assert result["columns"][0]["column"] == "amount" and result["columns"][0]["drifted"]
    assert result["model"] is None and result["prediction"] is None
    # The label is not in the serving data: said in the notes, not silently dropped.
    assert result["absent_columns"] == ["is_fraud"]
    assert any("is_fraud" in n for n in result["notes"])
    page = (tmp_path / "drift.html").read_text()
    assert _page_verdict(page) == ("DRIFT", "share_of_columns")
    assert "500 reference rows" in page  # the sample sizes behind Evidently's half


def test_same_distribution_is_quiet(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(files, tmp_path, "same")
    assert result["status"] == "no_drift" and result["n_drifted"] == 0
    assert _page_verdict((tmp_path / "drift.html").read_text()) == ("no drift", "none")


def test_fail_on_drift_raises_after_writing_outputs(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DriftDetected, match=r"^drift: share of columns"):
        _run(files, tmp_path, "drifted", fail_on_drift=True)
    assert json.loads((tmp_path / "drift.json").read_text())["dataset_drift"] is True
    assert (tmp_path / "drift.html").stat().st_size > 1000


def test_config_is_honoured_and_checked(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(
        files,
        tmp_path,
        "same",
        config_json=json.dumps({"alpha": 0.01, "columns": {"amount": {"method": "psi"}}}),
    )
    amount = next(c for c in result["columns"] if c["column"] == "amount")
    assert amount["method"] == "psi" and result["config"]["alpha"] == 0.01
    with pytest.raises(ConfigError, match="not JSON"):
        _run(files, tmp_path, "same", config_json="{method: psi")


def test_unrelated_data_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    write_parquet(pd.DataFrame({"x": range(100), "y": range(100)}), str(other))
    files = {**files, "other": other}
    with pytest.raises(SchemaError, match="has none of the columns"):
        _run(files, tmp_path, "other")


# --------------------------------------------------------------- the 569-row CSV cases


@pytest.fixture(scope="module")
def wdbc() -> pd.DataFrame:
    """The 569-row breast cancer table as its usual CSV has it: id, diagnosis (M/B), 30
    measurements (32 columns)."""
    from kfgpu.data import read_table

    df = read_table("kfgpu://breast_cancer")
    diagnosis = np.where(df.pop("label") == 0, "M", "B")
    df.insert(0, "diagnosis", diagnosis)
    df.insert(0, "id", np.arange(842302, 842302 + len(df)))
    assert df.shape == (569, 32)
    return df


def _kfgpu(*args: str, cwd: Path) -> tuple[int, str]:
    """``kfgpu ARGS`` in this process (click's runner), from ``cwd``: exit code, output."""
    import os

    from click.testing import CliRunner

    from kfgpu.cli import cli

    here = Path.cwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(cli, list(args))
    finally:
        os.chdir(here)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def _halves(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = np.random.default_rng(seed).permutation(len(df))
    return df.iloc[idx[:285]], df.iloc[idx[285:]]


def test_half_splits_of_a_569_row_csv_raise_no_alarm(wdbc: pd.DataFrame) -> None:
    """The case that used to alarm 17 times in 40: now at most alpha (5%) of 40 splits."""
    from kfgpu.validation.drift import detect_drift

    alarms = 0
    for seed in range(40):
        a, b = _halves(wdbc, seed)
        result = detect_drift(
            build_profile(a, categorical=["diagnosis"], sample_rows=0),
            build_profile(b, categorical=["diagnosis"], sample_rows=0),
        )
        assert result.status != "insufficient_data"  # 284 rows >= min_rows 100
        alarms += result.dataset_drift
    assert alarms <= 2


def test_kfgpu_drift_cli_on_the_569_row_csv(wdbc: pd.DataFrame, tmp_path: Path) -> None:
    a, b = _halves(wdbc, 0)
    a.to_csv(tmp_path / "reference.csv", index=False)
    # +2 standard deviations on one measurement, and a new diagnosis mix (70% malignant).
    moved = b.copy()
    moved["mean_radius"] = moved["mean_radius"] + 2 * a["mean_radius"].std()
    rng = np.random.default_rng(1)
    moved["diagnosis"] = np.where(rng.random(len(moved)) < 0.7, "M", "B")
    moved.to_csv(tmp_path / "moved.csv", index=False)

    # Too few rows: said plainly, in the JSON and on the page (without Evidently's views,
    # which the slower CLI run below renders).
    from kfgpu.validation.drift import detect_drift
    from kfgpu.validation.drift_report import render_drift_html

    few = detect_drift(
        build_profile(a, categorical=["diagnosis"], sample_rows=0),
        build_profile(b.head(60), categorical=["diagnosis"], sample_rows=0),
    )
    data = few.to_dict()
    assert data["status"] == "insufficient_data" and data["dataset_drift"] is False
    assert data["summary"] == (
        "insufficient data: reference 285 rows, current 60 rows; at least min_rows 100 on "
        "each side are needed for a verdict"
    )
    page = render_drift_html(data, reference_sample=None, current_sample=None)
    assert _page_verdict(page) == ("insufficient data", "none")

    code, out = _kfgpu(
        "drift", "reference.csv", "moved.csv", "--output-dir", "moved", "--fail-on-drift",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 3, out
    assert "drift: share of columns: 2 of 32 columns drifted (6.2% >= 5%)" in out
    data = json.loads((tmp_path / "moved" / "drift.json").read_text())
    assert sorted(data["drifted_columns"]) == ["diagnosis", "mean_radius"]
    assert _page_verdict((tmp_path / "moved" / "drift.html").read_text()) == (
        "DRIFT",
        "share_of_columns",
    )


# ------------------------------------------------------------- a bundle as the reference


def test_bundle_reference_gives_a_model_aware_verdict(
    unused_column_bundle: Path, tmp_path: Path
) -> None:
    """Prediction drift at 10,000 rows, in drift.json and in the HTML report."""
    from kfgpu.bundle import load_bundle

    bundle = load_bundle(unused_column_bundle)
    pool = with_unused(fraud(60_000, seed=31), seed=31).drop(columns=["is_fraud"])
    scores = bundle.predict_raw(pool)[:, 1]
    rng = np.random.default_rng(2)
    # Covariate shift: rows drawn towards higher scores, +5 points of mean P(fraud).
    base = scores.mean()
    for lam in np.linspace(0.0, 30.0, 301):
        w = np.exp(lam * (scores - scores.max()))
        if (w * scores).sum() / w.sum() >= base + 0.05:
            break
    current = pool.iloc[rng.choice(len(pool), 10_000, replace=True, p=w / w.sum())]
    write_parquet(current, str(tmp_path / "current.parquet"))
    detect_drift_step(
        reference_uri=str(unused_column_bundle),
        current_uri=str(tmp_path / "current.parquet"),
        result_path=str(tmp_path / "drift.json"),
        report_path=str(tmp_path / "drift.html"),
    )
    data = json.loads((tmp_path / "drift.json").read_text())
    assert data["model_aware"] and "prediction_drift" in data["rules"], data["summary"]
    pred = data["prediction"]
    assert pred["drifted"] and pred["current_rows"] == 10_000
    assert pred["details"]["current_mean"] - pred["details"]["reference_mean"] > 0.03
    assert data["model"]["output"] == "P(is_fraud=1)"
    assert data["model"]["importance"][0]["share"] > 0
    page = (tmp_path / "drift.html").read_text()
    verdict, rules = _page_verdict(page)
    assert verdict == "DRIFT" and rules == ", ".join(data["rules"])
    assert "Prediction drift (P(is_fraud=1))" in page
