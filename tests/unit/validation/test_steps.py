"""The validation steps: reference loading, skew, validate_data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfgpu.bundle import load_reference
from kfgpu.data import fraud, write_parquet
from kfgpu.errors import BundleError
from kfgpu.validation.profile import build_profile
from kfgpu.validation.step import skew_anomalies, validate_data_step
from tests.drift_files import drift_files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return drift_files(tmp_path_factory.mktemp("drift"))


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
