"""Request decoding rules that the server corpus does not reach, and models:/ resolution."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kfgpu.errors import BundleError, RequestError
from kfgpu.serving.schema import InputField, RequestSchema

SCHEMA = RequestSchema(
    fields=(
        InputField("x", "numeric", nullable=False),
        InputField("y", "numeric", nullable=True),
        InputField("c", "categorical", nullable=False),
        InputField("t", "datetime", nullable=True),
    ),
    max_rows=3,
)
ROW = {"x": 1.5, "y": None, "c": "a", "t": "2026-01-01T10:00:00Z"}


def test_records_and_lists_decode_to_the_same_rows() -> None:
    a = SCHEMA.parse_v1({"instances": [ROW, {**ROW, "x": 2}]})
    b = SCHEMA.parse_v1({"instances": [list(ROW.values()), [2, None, "a", ROW["t"]]]})
    assert a.columns == b.columns and a.n == 2
    df = SCHEMA.frame([a, b])
    assert len(df) == 4 and df["x"].tolist() == [1.5, 2.0, 1.5, 2.0]


@pytest.mark.parametrize(
    ("body", "words", "status"),
    [
        (
            {"instances": [{**ROW, "t": "not a time"}]},
            "instances[0].t is 'not a time', not a timestamp",
            400,
        ),
        ({"instances": [{**ROW, "c": None}]}, "instances[0].c is None (missing)", 400),
        ({"instances": [{**ROW, "c": [1]}]}, "instances[0].c must be a string", 400),
        ({"instances": [ROW] * 4}, "at most 3", 413),
        ({"instances": [ROW, 5]}, "instances[1] is a int", 400),
        ({"instances": ["x"]}, "instances[0] is a str", 400),
    ],
)
def test_v1_errors(body: Any, words: str, status: int) -> None:
    with pytest.raises(RequestError) as err:
        SCHEMA.parse_v1(body)
    assert words in str(err.value) and err.value.status == status


def _t(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> Any:
    return SimpleNamespace(name=name, datatype=datatype, data=data, shape=shape or [len(data)])


def test_v2_accepts_column_vectors_and_rejects_bools_as_numbers() -> None:
    rows = SCHEMA.parse_v2(
        [
            _t("x", "FP32", [[1.0], [2.0]], [2, 1]),
            _t("y", "FP64", [float("nan"), 3.0]),
            _t("c", "BYTES", [b"a", "b"]),
            _t("t", "BYTES", ["2026-01-01", None]),
        ]
    )
    assert rows.columns["x"] == [1.0, 2.0] and rows.columns["y"] == [None, 3.0]
    assert rows.columns["c"] == ["a", "b"]
    with pytest.raises(RequestError, match=r"inputs.x\[0\] is True, not a valid INT64 value"):
        SCHEMA.parse_v2(
            [
                _t("x", "INT64", [True]),
                _t("y", "FP64", [1.0]),
                _t("c", "BYTES", ["a"]),
                _t("t", "BYTES", [None]),
            ]
        )
    with pytest.raises(RequestError, match="sent twice"):
        SCHEMA.parse_v2([_t("x", "FP32", [1.0]), _t("x", "FP32", [1.0])])


def test_schema_from_a_bundle_follows_training_missingness(bundle_path: Path) -> None:
    from kfgpu.bundle import load_bundle

    schema = RequestSchema.from_transform(load_bundle(bundle_path).transform)
    nullable = {f.name: f.nullable for f in schema.fields}
    # fraud(500, seed=1) has missing account_age_days and device_type, never amount or country.
    assert nullable["account_age_days"] and nullable["device_type"]
    assert not nullable["amount"] and not nullable["country"]


def test_resolve_bundle_paths_and_bad_uris(bundle_path: Path, tmp_path: Path) -> None:
    from kfgpu.serving.server import resolve_bundle

    assert resolve_bundle(str(bundle_path)) == bundle_path
    assert resolve_bundle(bundle_path.as_uri()) == bundle_path
    with pytest.raises(BundleError, match="does not exist"):
        resolve_bundle(str(tmp_path / "nope"))


@pytest.mark.slow
def test_resolve_models_uri_downloads_the_registered_bundle(
    bundle_path: Path, tmp_path: Path
) -> None:
    from kfgpu.bundle import verify_bundle
    from kfgpu.registry.models import register_bundle
    from kfgpu.serving.server import resolve_bundle

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = register_bundle(str(bundle_path), name="fraud", tracking_uri=uri, alias="champion")
    from kfgpu.serving import server

    for source in ("models:/fraud@champion", f"models:/fraud/{info['version']}"):
        local = resolve_bundle(source, tracking_uri=uri, download_dir=str(tmp_path / source[-3:]))
        assert verify_bundle(local) == verify_bundle(bundle_path)
        # The served version is the registry's number, also for an alias (which moves).
        _, version = server.resolve_source(
            source, tracking_uri=uri, download_dir=str(tmp_path / f"v{source[-3:]}")
        )
        assert version == f"fraud/{info['version']}"
    with pytest.raises(BundleError, match="cannot resolve"):
        resolve_bundle("models:/fraud@nope", tracking_uri=uri)
