"""`kfgpu validate` and `kfgpu drift` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfgpu.data import fraud, write_parquet
from tests.conftest import run_kfgpu

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"


def test_validate_writes_a_schema_that_can_be_pinned(tmp_path: Path) -> None:
    out = tmp_path / "v"
    proc = run_kfgpu(
        "validate", str(CORPUS / "good.csv"), "--target", "label", "--output-dir", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    schema = json.loads((out / "schema.json").read_text())
    assert schema["target"] == "label" and schema["task"] == "classification"
    # The schema just written, pinned against data with a column gone, is an error.
    pinned = run_kfgpu(
        "validate",
        str(CORPUS / "missing_column.csv"),
        "--target",
        "label",
        "--schema",
        str(out / "schema.json"),
        "--output-dir",
        str(tmp_path / "w"),
    )
    assert pinned.returncode == 1
    assert "schema_missing_column" in pinned.stdout
    assert pinned.stderr.startswith("error: data validation found 1 error(s): age:")
    assert len(pinned.stderr.strip().splitlines()) == 1


def test_validate_lists_warnings_and_passes(tmp_path: Path) -> None:
    proc = run_kfgpu(
        "validate",
        str(CORPUS / "duplicate_rows.csv"),
        "--target",
        "label",
        "--output-dir",
        str(tmp_path),
    )
    assert proc.returncode == 0
    assert "warning" in proc.stdout and "duplicate_rows" in proc.stdout
    anomalies = json.loads((tmp_path / "anomalies.json").read_text())
    assert anomalies["ok"] is True and anomalies["n_warnings"] >= 1


def test_drift_cli_flags_drift_and_exits_3_when_asked(tmp_path: Path) -> None:
    write_parquet(fraud(6000, seed=0), str(tmp_path / "ref.parquet"))
    write_parquet(fraud(6000, seed=1, drift=0.6), str(tmp_path / "cur.parquet"))
    write_parquet(fraud(6000, seed=2), str(tmp_path / "same.parquet"))
    drifted = run_kfgpu(
        "drift",
        str(tmp_path / "ref.parquet"),
        str(tmp_path / "cur.parquet"),
        "--output-dir",
        str(tmp_path / "d"),
        "--fail-on-drift",
    )
    assert drifted.returncode == 3
    assert "DRIFT amount" in drifted.stdout and "drift: share of columns:" in drifted.stdout
    assert (tmp_path / "d" / "drift.html").stat().st_size > 10_000
    quiet = run_kfgpu(
        "drift",
        str(tmp_path / "ref.parquet"),
        str(tmp_path / "same.parquet"),
        "--output-dir",
        str(tmp_path / "s"),
        "--fail-on-drift",
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "no drift: share of columns: 0 of 12" in quiet.stdout


def test_drift_cli_bad_config_is_one_line(tmp_path: Path) -> None:
    write_parquet(fraud(500, seed=0), str(tmp_path / "ref.parquet"))
    proc = run_kfgpu(
        "drift",
        str(tmp_path / "ref.parquet"),
        str(tmp_path / "ref.parquet"),
        "--config",
        '{"numeric_method": "cosine"}',
        "--output-dir",
        str(tmp_path),
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "numeric_method" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
