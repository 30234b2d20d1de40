"""The malformed corpus (tests/data/malformed): every case is reported under its name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kfgpu.data import read_table
from kfgpu.errors import DataError
from kfgpu.validation import Schema, validate

CORPUS = Path(__file__).resolve().parents[2] / "data" / "malformed"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
GENERATED = {"good.csv", "schema.json", "cases.json"} | {c["file"] for c in CASES}
REQUIRED = {
    "wrong_types.csv": "schema_kind_mismatch",
    "missing_column.csv": "schema_missing_column",
    "extra_column.csv": "schema_extra_column",
    "all_null_column.csv": "all_null",
    "nan_inf.csv": "infinite_values",
    "empty.csv": "empty",
    "header_only.csv": "empty",
    "broken_quoting.csv": "parse",
    "mixed_types.csv": "mixed_types",
    "out_of_range.csv": "schema_out_of_range",
    "unseen_categories.csv": "schema_unseen_categories",
    "duplicate_rows.csv": "duplicate_rows",
    "constant_label.csv": "class_count",
    "leaked_label.csv": "label_leakage",
    "high_cardinality.csv": "high_cardinality",
    "non_utf8.csv": "encoding",
    "missing_target.csv": "target_present",
    "binary.csv": "binary_content",
    "all_null_target.csv": "target_not_null",
}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_case_is_reported_under_its_check(case: dict[str, Any]) -> None:
    path = CORPUS / case["file"]
    try:
        df = read_table(str(path))
    except DataError as err:
        assert err.check == case["check"], f"{case['file']}: {err}"
        assert case["severity"] == "error"
        assert str(path) in str(err)
        return
    schema = Schema.read_json(CORPUS / case["schema"]) if case["schema"] else None
    result = validate(df, case["target"], schema=schema)
    wanted = (case["check"], case["severity"], case["column"])
    found = [a for a in result.anomalies if (a.check, a.severity, a.column) == wanted]
    assert found, f"{case['file']}: no {wanted} in {[a.one_line() for a in result.anomalies]}"
    # a warning case draws no error; an error case fails validation
    assert result.ok == (case["severity"] == "warning")


def test_cases_cover_the_required_list() -> None:
    listed = {c["file"]: c["check"] for c in CASES}
    for name, check in REQUIRED.items():
        assert listed.get(name) == check, name
    assert len(listed) == len(CASES), "a file is listed twice"
    for c in CASES:
        assert set(c) == {"file", "target", "schema", "check", "severity", "column"}
        assert c["severity"] in ("error", "warning")
        assert c["schema"] in (None, "schema.json")


def test_files_are_small_and_all_listed() -> None:
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_file()} - {"make_corpus.py"}
    assert on_disk == GENERATED
    for name in on_disk:
        assert (CORPUS / name).stat().st_size < 20_000, name


def test_good_csv_has_no_anomaly() -> None:
    df = read_table(str(CORPUS / "good.csv"))
    assert len(df) == 200
    assert set(df["city"]) == {"Berlin", "Lisbon", "Madrid", "Oslo", "Paris"}
    assert df["label"].nunique() == 2
    for schema in (None, Schema.read_json(CORPUS / "schema.json")):
        result = validate(df, "label", schema=schema)
        assert result.errors == []
        assert result.anomalies == (), [a.one_line() for a in result.anomalies]


def test_good_csv_is_learnable_but_not_leaked() -> None:
    from kfgpu.validation.checks import check_label_leakage

    df = read_table(str(CORPUS / "good.csv"))
    scores = {
        a.column: a.value["score"]  # type: ignore[index]
        for a in validate(
            df, "label", leakage_threshold=1e-9, checks=[check_label_leakage]
        ).anomalies
    }
    assert set(scores) == {"amount", "age", "city", "channel"}
    assert 0.6 < scores["amount"] < 0.9


def test_make_corpus_regenerates_identical_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(CORPUS / "make_corpus.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    made = {p.name for p in tmp_path.iterdir()}
    assert made == GENERATED
    for name in sorted(made):
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name
