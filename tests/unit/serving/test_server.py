"""The real KServe server on 127.0.0.1, called over V1 and V2 (JSON, binary, tritonclient).

Served predictions must equal the bundle's offline ``Bundle.predict`` within float
tolerance; a corpus of malformed requests must each get a 4xx naming the problem, and the
server must keep answering good requests afterwards.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.unit.serving.conftest import Server

NUMERIC = {
    "amount",
    "hour",
    "account_age_days",
    "n_tx_24h",
    "distance_km",
    "velocity_score",
    "merchant_risk",
}
TOL = 1e-5


@pytest.fixture(scope="module")
def offline(bundle_path: Any, records: list[dict[str, Any]]) -> pd.DataFrame:
    from kfgpu.bundle import load_bundle

    return load_bundle(bundle_path).predict(pd.DataFrame(records))


def _v1(server: Server, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{server.model}:predict", json=body, timeout=30, **kw)


def _v2_inputs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": k,
            "shape": [len(records)],
            "datatype": "FP64" if k in NUMERIC else "BYTES",
            "data": [r[k] for r in records],
        }
        for k in records[0]
    ]


def _check_v1(preds: list[dict[str, Any]], offline: pd.DataFrame) -> None:
    assert len(preds) == len(offline)
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in preds])
    want = offline[["proba_0", "proba_1"]].to_numpy()
    np.testing.assert_allclose(got, want, atol=TOL)
    assert [p["label"] for p in preds] == offline["prediction"].tolist()


def test_v1_records_match_offline(
    server: Server, records: list[dict[str, Any]], offline: pd.DataFrame
) -> None:
    r = _v1(server, {"instances": records})
    assert r.status_code == 200, r.text
    _check_v1(r.json()["predictions"], offline)


def test_v1_lists_in_signature_order_match_offline(
    server: Server, records: list[dict[str, Any]], offline: pd.DataFrame
) -> None:
    meta = httpx.get(f"{server.url}/v2/models/{server.model}", timeout=10).json()
    order = [i["name"] for i in meta["inputs"]]
    assert sorted(order) == sorted(records[0])
    r = _v1(server, {"instances": [[rec[c] for c in order] for rec in records]})
    assert r.status_code == 200, r.text
    _check_v1(r.json()["predictions"], offline)


def test_v2_json_matches_offline(
    server: Server, records: list[dict[str, Any]], offline: pd.DataFrame
) -> None:
    r = httpx.post(
        f"{server.url}/v2/models/{server.model}/infer",
        json={"id": "r1", "inputs": _v2_inputs(records)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "r1"
    probs = np.asarray(out["probabilities"]["data"]).reshape(out["probabilities"]["shape"])
    np.testing.assert_allclose(probs, offline[["proba_0", "proba_1"]].to_numpy(), atol=TOL)
    assert json.loads(out["probabilities"]["parameters"]["classes"]) == ["0", "1"]
    assert out["label"]["data"] == [str(v) for v in offline["prediction"]]


def _binary_body(records: list[dict[str, Any]]) -> tuple[bytes, int]:
    """A V2 binary-extension request built by hand: JSON header, then raw tensors."""
    n = len(records)
    inputs, blobs = [], []
    for k in records[0]:
        values = [r[k] for r in records]
        if k in NUMERIC:
            blob = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float32
            ).tobytes()
            dtype = "FP32"
        else:
            parts = [str(v).encode() for v in values]
            blob = b"".join(len(p).to_bytes(4, "little") + p for p in parts)
            dtype = "BYTES"
        inputs.append(
            {
                "name": k,
                "shape": [n],
                "datatype": dtype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = json.dumps(
        {
            "inputs": inputs,
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + b"".join(blobs), len(header)


def test_v2_binary_extension_matches_offline(
    server: Server, records: list[dict[str, Any]], offline: pd.DataFrame
) -> None:
    body, json_len = _binary_body(records)
    r = httpx.post(
        f"{server.url}/v2/models/{server.model}/infer",
        content=body,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(json_len),
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    head_len = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:head_len])
    (out,) = head["outputs"]
    assert out["name"] == "probabilities" and out["parameters"]["binary_data_size"] == 8 * len(
        records
    )
    probs = np.frombuffer(r.content[head_len:], dtype=np.float32).reshape(out["shape"])
    # FP32 inputs: the server sees the same float32 values the offline transform makes.
    np.testing.assert_allclose(probs, offline[["proba_0", "proba_1"]].to_numpy(), atol=TOL)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_v2_http(
    server: Server, records: list[dict[str, Any]], offline: pd.DataFrame, binary: bool
) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_model_ready(server.model)
        inputs = []
        for k in records[0]:
            values = [r[k] for r in records]
            if k in NUMERIC:
                t = triton.InferInput(k, [len(values)], "FP64")
                t.set_data_from_numpy(
                    np.array([np.nan if v is None else v for v in values], dtype=np.float64),
                    binary_data=binary,
                )
            else:
                t = triton.InferInput(k, [len(values)], "BYTES")
                t.set_data_from_numpy(
                    np.array([str(v) for v in values], dtype=object), binary_data=binary
                )
            inputs.append(t)
        outputs = [
            triton.InferRequestedOutput("label", binary_data=binary),
            triton.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        res = client.infer(server.model, inputs, outputs=outputs)
        np.testing.assert_allclose(
            res.as_numpy("probabilities"), offline[["proba_0", "proba_1"]].to_numpy(), atol=TOL
        )
        labels = [v.decode() if isinstance(v, bytes) else str(v) for v in res.as_numpy("label")]
        assert labels == [str(v) for v in offline["prediction"]]
    finally:
        client.close()


# --- the malformed corpus ------------------------------------------------------------------


def _good(records: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(records[0])


def _case(name: str) -> Any:
    return pytest.param(name, id=name)


CORPUS = [
    # (id, protocol, how to build the request, expected status, words the message must hold)
    ("bad_json", 400, "Unrecognized request format"),
    ("not_an_object", 400, "JSON object"),
    ("no_instances", 400, "instances"),
    ("extra_top_level_field", 400, "unknown field 'extra'"),
    ("instances_not_a_list", 400, "instances"),
    ("empty_batch", 400, "instances is empty"),
    ("missing_field", 400, "instances[0].amount is missing (field 'amount' not sent)"),
    ("extra_field", 400, "unknown field 'colour'"),
    ("wrong_type_string_for_number", 400, "instances[0].amount must be a number"),
    ("null_where_not_allowed", 400, "instances[0].amount is None (missing)"),
    ("object_for_category", 400, "instances[0].country must be a string"),
    ("list_row_wrong_length", 400, "instances[0] has 3 values"),
    ("mixed_rows", 400, "instances[1] is a list"),
    ("too_many_rows", 413, "at most 1000"),
    ("huge_payload", 413, "the limit is 262144"),
    ("wrong_content_type", 415, "not JSON"),
    ("unknown_model_v1", 404, "does not exist"),
    ("unknown_model_v2", 404, "does not exist"),
    ("v2_wrong_datatype", 400, "inputs.amount has datatype BYTES"),
    ("v2_wrong_shape", 400, "inputs.amount has shape [1, 2]"),
    ("v2_shape_data_mismatch", 400, "holds 2 values but its shape [3]"),
    ("v2_rows_disagree", 400, "inputs.hour has 2 rows"),
    ("v2_missing_tensor", 400, "inputs.country is missing (input tensor 'country' not sent)"),
    ("v2_unknown_tensor", 400, "unknown input tensor 'colour'"),
    ("v2_nan_where_not_allowed", 400, "inputs.amount[0] is nan (missing)"),
    ("v2_unknown_output", 400, "unknown output 'score'"),
    ("v2_no_inputs_field", 400, "is missing from the request body"),
    ("v2_binary_without_header", 415, "Inference-Header-Content-Length"),
]


def _send(server: Server, case: str, records: list[dict[str, Any]]) -> httpx.Response:
    rec = _good(records)
    v1 = f"{server.url}/v1/models/{server.model}:predict"
    v2 = f"{server.url}/v2/models/{server.model}/infer"
    json_ct = {"Content-Type": "application/json"}

    def post(url: str, body: Any) -> httpx.Response:
        return httpx.post(url, json=body, timeout=30)

    def v2_with(mutate: Any) -> httpx.Response:
        inputs = _v2_inputs([rec])
        mutate(inputs)
        return post(v2, {"inputs": inputs})

    def set_input(name: str, **kw: Any) -> Any:
        def f(inputs: list[dict[str, Any]]) -> None:
            next(i for i in inputs if i["name"] == name).update(kw)

        return f

    if case == "bad_json":
        return httpx.post(v1, content=b'{"instances": [', headers=json_ct, timeout=30)
    if case == "not_an_object":
        return post(v1, [rec])
    if case == "no_instances":
        return post(v1, {"rows": [rec]})
    if case == "extra_top_level_field":
        return post(v1, {"instances": [rec], "extra": 1})
    if case == "instances_not_a_list":
        return post(v1, {"instances": rec})
    if case == "empty_batch":
        return post(v1, {"instances": []})
    if case == "missing_field":
        return post(v1, {"instances": [{k: v for k, v in rec.items() if k != "amount"}]})
    if case == "extra_field":
        return post(v1, {"instances": [{**rec, "colour": "red"}]})
    if case == "wrong_type_string_for_number":
        return post(v1, {"instances": [{**rec, "amount": "12.5"}]})
    if case == "null_where_not_allowed":
        return post(v1, {"instances": [{**rec, "amount": None}]})
    if case == "object_for_category":
        return post(v1, {"instances": [{**rec, "country": {"code": "US"}}]})
    if case == "list_row_wrong_length":
        return post(v1, {"instances": [[1, 2, 3]]})
    if case == "mixed_rows":
        return post(v1, {"instances": [rec, list(rec.values())]})
    if case == "too_many_rows":
        return post(v1, {"instances": [rec] * 1001})
    if case == "huge_payload":
        return httpx.post(v1, content=b" " * 300_000 + b"{}", headers=json_ct, timeout=30)
    if case == "wrong_content_type":
        return httpx.post(
            v1,
            content=json.dumps({"instances": [rec]}),
            headers={"Content-Type": "text/plain"},
            timeout=30,
        )
    if case == "unknown_model_v1":
        return post(f"{server.url}/v1/models/nope:predict", {"instances": [rec]})
    if case == "unknown_model_v2":
        return post(f"{server.url}/v2/models/nope/infer", {"inputs": _v2_inputs([rec])})
    if case == "v2_wrong_datatype":
        return v2_with(set_input("amount", datatype="BYTES", data=["12.5"]))
    if case == "v2_wrong_shape":
        return v2_with(set_input("amount", shape=[1, 2], data=[1.0, 2.0]))
    if case == "v2_shape_data_mismatch":

        def f(inputs: list[dict[str, Any]]) -> None:
            for i in inputs:
                i["shape"] = [3]
                i["data"] = i["data"] * 3
            next(i for i in inputs if i["name"] == "amount")["data"] = [1.0, 2.0]

        return v2_with(f)
    if case == "v2_rows_disagree":
        return v2_with(set_input("hour", shape=[2], data=[1, 2]))
    if case == "v2_missing_tensor":
        return v2_with(
            lambda inputs: inputs.remove(next(i for i in inputs if i["name"] == "country"))
        )
    if case == "v2_unknown_tensor":
        return v2_with(
            lambda inputs: inputs.append(
                {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}
            )
        )
    if case == "v2_nan_where_not_allowed":
        body, json_len = _binary_body([{**rec, "amount": float("nan")}])
        return httpx.post(
            v2,
            content=body,
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(json_len),
            },
            timeout=30,
        )
    if case == "v2_unknown_output":
        return post(v2, {"inputs": _v2_inputs([rec]), "outputs": [{"name": "score"}]})
    if case == "v2_no_inputs_field":
        return post(v2, {"tensors": _v2_inputs([rec])})
    if case == "v2_binary_without_header":
        body, _ = _binary_body([rec])
        return httpx.post(
            v2, content=body, headers={"Content-Type": "application/octet-stream"}, timeout=30
        )
    raise AssertionError(case)


@pytest.mark.parametrize(("case", "status", "words"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_request_gets_4xx_naming_the_problem(
    server: Server, records: list[dict[str, Any]], case: str, status: int, words: str
) -> None:
    r = _send(server, case, records)
    assert r.status_code == status, r.text
    assert words.lower() in r.text.lower(), r.text
    assert server.alive()


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 12


def test_good_requests_still_work_after_the_corpus(
    server: Server, records: list[dict[str, Any]], offline: pd.DataFrame
) -> None:
    for case, _status, _words in CORPUS:
        _send(server, case, records)
    r = _v1(server, {"instances": records})
    assert r.status_code == 200, r.text
    _check_v1(r.json()["predictions"], offline)


def test_health_routes_and_metrics(server: Server, records: list[dict[str, Any]]) -> None:
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v1/models/{server.model}", timeout=10).json()["ready"] is True
    _v1(server, {"instances": records[:3]})
    _v1(server, {"instances": []})
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert (
        f'kfgpu_serving_requests_total{{model="{server.model}",outcome="ok",protocol="v1"}}' in text
    )
    assert 'outcome="invalid"' in text
    assert "kfgpu_serving_rows_total" in text
    assert "kfgpu_serving_batch_rows_bucket" in text
    assert "kfgpu_serving_request_seconds_bucket" in text


# ---- the V1 short path (kfgpu.serving._rest.V1FastPath) against KServe's own route ---------
# Content-Type: application/json takes the short path; the same body with no Content-Type
# goes through FastAPI's router and KServe's data plane (the route every request took
# before). Both must answer the same bytes, success or refusal.
_SAME_ANSWER = [
    ("records", lambda recs: {"instances": recs}),
    ("one_row", lambda recs: {"instances": recs[:1]}),
    ("instances_not_a_list", lambda recs: {"instances": {"a": 1}}),
    ("unknown_field", lambda recs: {"instances": recs[:1], "extra": 1}),
    ("wrong_type", lambda recs: {"instances": [{**recs[0], "amount": "lots"}]}),
    ("empty", lambda recs: {"instances": []}),
]


@pytest.mark.parametrize(("case", "make"), _SAME_ANSWER, ids=[c[0] for c in _SAME_ANSWER])
def test_v1_short_path_answers_the_bytes_kserves_route_answers(
    server: Server, records: list[dict[str, Any]], case: str, make: Any
) -> None:
    body = json.dumps(make(records)).encode()
    url = f"{server.url}/v1/models/{server.model}:predict"
    short = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30)
    routed = httpx.post(url, content=body, timeout=30)
    assert short.status_code == routed.status_code
    assert short.content == routed.content
    assert short.headers["content-type"] == routed.headers["content-type"]
    if case in ("records", "one_row"):
        assert short.status_code == 200, short.text
    else:
        assert 400 <= short.status_code < 500 and "error" in short.json(), short.text


def test_served_probabilities_are_bit_identical_to_the_in_process_forward(
    server: Server, bundle_path: Any, records: list[dict[str, Any]]
) -> None:
    """No step of the server (decode, batching, encode) changes a bit of the forward's
    float32 output: the JSON floats equal the in-process predictor's exactly."""
    from kfgpu.serving.predictor import BundleModel

    model = BundleModel("m", bundle_path, device="cpu")
    model.load()

    def forward(rows: list[dict[str, Any]]) -> Any:
        assert model.schema is not None
        parsed = model.schema.parse_v1({"instances": rows})
        arrays = model.bundle.transform.column_arrays(parsed.columns, parsed.n)
        return model.forward_arrays(*arrays).astype(np.float64)

    def served(rows: list[dict[str, Any]]) -> Any:
        preds = _v1(server, {"instances": rows}).json()["predictions"]
        return np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in preds])

    assert np.array_equal(served(records), forward(records))
    for r in records[:5]:  # one row alone: the short path's usual request
        assert np.array_equal(served([r]), forward([r]))
