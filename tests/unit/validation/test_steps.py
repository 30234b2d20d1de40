"""The validation steps: detect_drift_step end to end on files, reference loading, skew."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kfgpu.data import fraud, write_parquet
from kfgpu.errors import BundleError, ConfigError, DriftDetected, SchemaError
from kfgpu.validation.profile import build_profile
from kfgpu.validation.step import (
    detect_drift_step,
    load_reference,
    skew_anomalies,
    validate_data_step,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift")
    ref = fraud(8000, seed=0)
    profile_dir = root / "profile"
    build_profile(
        ref,
        categorical=["merchant_category", "country", "channel", "device_type", "is_fraud"],
        sample_rows=500,
    ).save(profile_dir)
    paths = {"profile": profile_dir, "reference_data": root / "ref.parquet"}
    write_parquet(ref, str(paths["reference_data"]))
    for name, seed, drift in (("same", 1, 0.0), ("drifted", 2, 0.6)):
        paths[name] = root / f"{name}.parquet"
        write_parquet(
            fraud(8000, seed=seed, drift=drift).drop(columns=["is_fraud"]), str(paths[name])
        )
    return paths


def _run(files: dict[str, Path], tmp_path: Path, current: str, **kw: object) -> dict:
    detect_drift_step(
        reference_uri=str(files["profile"]),
        current_uri=str(files[current]),
        result_path=str(tmp_path / "drift.json"),
        report_path=str(tmp_path / "drift.html"),
        **kw,  # type: ignore[arg-type]
    )
    return json.loads((tmp_path / "drift.json").read_text())


def test_drift_is_flagged_and_reported(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(files, tmp_path, "drifted")
    assert result["dataset_drift"] is True
    assert result["columns"][0]["column"] == "amount" and result["columns"][0]["drifted"]
    # The label is not in the serving data: said in the notes, not silently dropped.
    assert result["absent_columns"] == ["is_fraud"]
    assert any("is_fraud" in n for n in result["notes"])
    page = (tmp_path / "drift.html").read_text()
    assert "kfgpu-drift" in page and "DRIFT" in page
    assert "500 reference rows" in page  # the sample sizes behind Evidently's half


def test_same_distribution_is_quiet(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(files, tmp_path, "same")
    assert result["dataset_drift"] is False
    assert result["n_drifted"] == 0


def test_fail_on_drift_raises_after_writing_outputs(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DriftDetected, match="dataset drift"):
        _run(files, tmp_path, "drifted", fail_on_drift=True)
    assert json.loads((tmp_path / "drift.json").read_text())["dataset_drift"] is True
    assert (tmp_path / "drift.html").stat().st_size > 1000


def test_config_is_honoured_and_checked(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(
        files, tmp_path, "same", config_json=json.dumps({"columns": {"amount": {"method": "psi"}}})
    )
    amount = next(c for c in result["columns"] if c["column"] == "amount")
    assert amount["method"] == "psi"
    with pytest.raises(ConfigError, match="not JSON"):
        _run(files, tmp_path, "same", config_json="{method: psi")


def test_unrelated_data_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    write_parquet(pd.DataFrame({"x": range(100), "y": range(100)}), str(other))
    files = {**files, "other": other}
    with pytest.raises(SchemaError, match="has none of the columns"):
        _run(files, tmp_path, "other")


def test_reference_from_profile_dir_profile_json_and_data(files: dict[str, Path]) -> None:
    from_dir = load_reference(str(files["profile"]))
    from_json = load_reference(str(files["profile"] / "profile.json"))
    from_data = load_reference(str(files["reference_data"]))
    assert from_dir.rows == from_json.rows == from_data.rows == 8000
    assert list(from_dir.columns) == list(from_data.columns)


def test_reference_from_a_bundle_is_verified(tmp_path: Path) -> None:
    from kfgpu.bundle import write_bundle
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.training.families import build_network, tabular_mlp_config

    df = fraud(2000, seed=4)
    fitted = fit_transform(df, infer_feature_spec(df, "is_fraud"))
    cfg = tabular_mlp_config(
        n_numeric=fitted.n_dense,
        cardinalities=fitted.cardinalities,
        hidden_sizes=(8,),
        dropout=0.0,
        n_outputs=2,
    )
    net = build_network("tabular_mlp", cfg)
    profile = build_profile(df, sample_rows=100)
    bundle = write_bundle(
        tmp_path / "bundle",
        state_dict=net.state_dict(),
        transform=fitted,
        description={"task": "classification", "model": {"family": "tabular_mlp", "config": cfg}},
        extras={"reference": profile.save},
    )
    assert load_reference(str(bundle)).rows == 2000
    (bundle / "reference" / "profile.json").write_text("{}")
    with pytest.raises(BundleError, match=r"reference/profile\.json"):
        load_reference(str(bundle))


def test_skew_names_only_the_shifted_feature(files: dict[str, Path]) -> None:
    serving = fraud(4000, seed=7)
    serving["amount"] = serving["amount"] * 3
    anomalies = skew_anomalies(serving, str(files["profile"]), target="is_fraud")
    assert [a.column for a in anomalies] == ["amount"]
    assert anomalies[0].check == "train_serving_skew" and anomalies[0].severity == "warning"


def test_validate_step_reports_read_failures_as_named_anomalies(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("city,label\nZ\xfcrich,1\nBern,0\n".encode("latin-1"))
    paths = {n: str(tmp_path / n) for n in ("dataset", "schema", "report", "anomalies")}
    with pytest.raises(Exception, match="UTF-8"):
        validate_data_step(
            data_uri=str(bad),
            target="label",
            dataset_path=paths["dataset"],
            schema_path=paths["schema"],
            report_path=paths["report"],
            anomalies_path=paths["anomalies"],
        )
    anomalies = json.loads(Path(paths["anomalies"]).read_text())
    assert [a["check"] for a in anomalies["anomalies"]] == ["encoding"]
    assert "FAIL" in Path(paths["report"]).read_text().upper()
    assert not Path(paths["dataset"]).exists()


def test_validate_step_with_a_skew_reference(files: dict[str, Path], tmp_path: Path) -> None:
    paths = {n: str(tmp_path / n) for n in ("dataset", "schema", "report", "anomalies")}
    data = tmp_path / "serving.parquet"
    serving = fraud(4000, seed=8)
    serving["distance_km"] = serving["distance_km"] + 500
    write_parquet(serving, str(data))
    result = validate_data_step(
        data_uri=str(data),
        target="is_fraud",
        dataset_path=paths["dataset"],
        schema_path=paths["schema"],
        report_path=paths["report"],
        anomalies_path=paths["anomalies"],
        reference_uri=str(files["profile"]),
    )
    assert result.metrics["warnings"] >= 1
    found = json.loads(Path(paths["anomalies"]).read_text())["anomalies"]
    assert {"check": "train_serving_skew", "column": "distance_km"}.items() <= next(
        a for a in found if a["check"] == "train_serving_skew"
    ).items()
