"""The server as a hostile network meets it (issue 17): auth, the repository switch,
readiness, and a corpus of hostile requests over V1 and V2, JSON and binary.

Every hostile request must get the 4xx it names with a ``{"error": "..."}`` JSON body, and
the server must stay ready and answer correctly after each. The corpus holds the 28 cases
of ``test_server.py`` (sent with the token) and the attacks of issue 17.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.unit.serving.conftest import TOKEN, Server
from tests.unit.serving.test_server import CORPUS, NUMERIC, _send, _v2_inputs

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def offline(bundle_path: Any, records: list[dict[str, Any]]) -> pd.DataFrame:
    from kfgpu.bundle import load_bundle

    return load_bundle(bundle_path).predict(pd.DataFrame(records))


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _raw(server: Server, data: bytes, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send raw bytes, read the response until the server closes: (status, body)."""
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            head, sep, rest = b"".join(chunks).partition(b"\r\n\r\n")
            if sep:
                length = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _binary(
    header: dict[str, Any], blobs: bytes, *, header_length: int | str | None = None
) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    length = len(head) if header_length is None else header_length
    return head + blobs, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(length),
        **AUTH,
    }


def _good_binary(rec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """One row as binary tensors: (input headers, blobs)."""
    inputs, blobs = [], []
    for k, v in rec.items():
        if k in NUMERIC:
            blob = np.array([np.nan if v is None else v], dtype=np.float64).tobytes()
            dtype = "FP64"
        else:
            b = str(v).encode()
            blob = struct.pack("<I", len(b)) + b
            dtype = "BYTES"
        inputs.append(
            {
                "name": k,
                "shape": [1],
                "datatype": dtype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    return inputs, blobs


Case = Callable[[Server, dict[str, Any]], tuple[int, bytes]]


def _post(path: str, **kw: Any) -> Case:
    def run(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
        r = httpx.post(f"{server.url}{path.format(m=server.model)}", timeout=30, **kw)
        return r.status_code, r.content

    return run


def _get(path: str, **kw: Any) -> Case:
    def run(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
        r = httpx.get(f"{server.url}{path.format(m=server.model)}", timeout=30, **kw)
        return r.status_code, r.content

    return run


def _v2_json(mutate: Callable[[dict[str, Any]], Any]) -> Case:
    def run(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
        body: dict[str, Any] = {"inputs": _v2_inputs([rec])}
        out = mutate(body)
        content = out if isinstance(out, bytes) else json.dumps(body).encode()
        r = httpx.post(
            f"{server.url}/v2/models/{server.model}/infer",
            content=content,
            headers={"Content-Type": "application/json", **AUTH},
            timeout=30,
        )
        return r.status_code, r.content

    return run


def _set(name: str, **kw: Any) -> Callable[[dict[str, Any]], None]:
    def f(body: dict[str, Any]) -> None:
        next(i for i in body["inputs"] if i["name"] == name).update(kw)

    return f


def _v2_binary(mutate: Callable[[list[dict[str, Any]], list[bytes]], Any]) -> Case:
    """A good one-row binary request, mutated: ``mutate(inputs, blobs)`` may return a
    header length to send instead of the real one."""

    def run(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
        inputs, blobs = _good_binary(rec)
        length = mutate(inputs, blobs)
        content, headers = _binary({"inputs": inputs}, b"".join(blobs), header_length=length)
        r = httpx.post(
            f"{server.url}/v2/models/{server.model}/infer",
            content=content,
            headers=headers,
            timeout=30,
        )
        return r.status_code, r.content

    return run


def _tensor(inputs: list[dict[str, Any]], name: str) -> int:
    return next(i for i, t in enumerate(inputs) if t["name"] == name)


def _size_not_multiple(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    k = _tensor(inputs, "amount")
    blobs[k] = blobs[k][:7]
    inputs[k]["parameters"]["binary_data_size"] = 7


def _size_lies(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    # binary_data_size 800 with the last tensor's bytes sent as they are
    inputs[-1]["parameters"]["binary_data_size"] = 800


def _bytes_prefix_huge(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    k = _tensor(inputs, "country")
    blobs[k] = struct.pack("<I", 2**31) + blobs[k][4:]


def _bytes_count(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    k = _tensor(inputs, "country")
    blobs[k] = blobs[k] + blobs[k]
    inputs[k]["parameters"]["binary_data_size"] = len(blobs[k])


def _reshape(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    for t in inputs:
        t["shape"] = [2] if t["name"] != "amount" else [3]
    for k, t in enumerate(inputs):
        blobs[k] = blobs[k] * (3 if t["name"] == "amount" else 2)
        t["parameters"]["binary_data_size"] = len(blobs[k])
    inputs[_tensor(inputs, "amount")]["shape"] = [2]


def _trailing(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    blobs.append(b"junk")


def _prefix_cut(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    k = _tensor(inputs, "country")
    blobs[k] = b"\x01\x00"
    inputs[k]["parameters"]["binary_data_size"] = 2


def _no_data(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    k = _tensor(inputs, "amount")
    del inputs[k]["parameters"]
    del blobs[k]


def _size_negative(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    inputs[_tensor(inputs, "amount")]["parameters"]["binary_data_size"] = -8


def _size_string(inputs: list[dict[str, Any]], blobs: list[bytes]) -> None:
    inputs[_tensor(inputs, "amount")]["parameters"]["binary_data_size"] = "8"


def _header(value: Any) -> Callable[[list[dict[str, Any]], list[bytes]], Any]:
    return lambda inputs, blobs: value


def _raw_case(build: Callable[[Server], bytes]) -> Case:
    return lambda server, rec: _raw(server, build(server))


def _chunked_over_limit(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 10_000

    r = httpx.post(
        f"{server.url}/v2/models/{server.model}/infer",
        content=chunks(),
        headers={"Content-Type": "application/json", **AUTH},
        timeout=30,
    )
    return r.status_code, r.content


def _v1_auth(headers: dict[str, str]) -> Case:
    def run(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
        r = httpx.post(
            f"{server.url}/v1/models/{server.model}:predict",
            json={"instances": [rec]},
            headers=headers,
            timeout=30,
        )
        return r.status_code, r.content

    return run


HOSTILE: list[tuple[str, int, Case]] = [
    # ---- auth: every inference, metadata and repository route -----------------------
    ("no_token_v1", 401, _v1_auth({})),
    ("wrong_token_v1", 401, _v1_auth({"Authorization": "Bearer nope"})),
    ("basic_scheme_v1", 401, _v1_auth({"Authorization": f"Basic {TOKEN}"})),
    ("token_prefix_v1", 401, _v1_auth({"Authorization": f"Bearer {TOKEN[:-1]}"})),
    ("empty_bearer_v1", 401, _v1_auth({"Authorization": "Bearer"})),
    ("no_token_v2", 401, _post("/v2/models/{m}/infer", json={"inputs": []})),
    ("no_token_metadata", 401, _get("/v2/models/{m}")),
    ("no_token_server_metadata", 401, _get("/v2")),
    ("no_token_model_list", 401, _get("/v1/models")),
    ("no_token_unload", 401, _post("/v2/repository/models/{m}/unload")),
    ("no_token_load", 401, _post("/v2/repository/models/{m}/load")),
    ("no_token_repository_index", 401, _post("/v2/repository/index")),
    (
        "wrong_token_unload",
        401,
        _post("/v2/repository/models/{m}/unload", headers={"Authorization": "Bearer x"}),
    ),
    # ---- V2 JSON: the protocol's 400, never FastAPI's 422 -----------------------------
    ("v2_open_brace", 400, _v2_json(lambda b: b"{")),
    ("v2_empty_object", 400, _v2_json(lambda b: b"{}")),
    ("v2_empty_body", 400, _v2_json(lambda b: b"")),
    ("v2_data_null", 400, _v2_json(_set("amount", data=None))),
    ("v2_shape_string", 400, _v2_json(_set("amount", shape=["1"]))),
    ("v2_shape_bool", 400, _v2_json(_set("amount", shape=[True]))),
    ("v2_shape_negative", 400, _v2_json(_set("amount", shape=[-1]))),
    ("v2_shape_empty", 400, _v2_json(_set("amount", shape=[]))),
    ("v2_unknown_datatype", 400, _v2_json(_set("amount", datatype="FP128"))),
    ("v2_int64_2_to_70", 400, _v2_json(_set("amount", datatype="INT64", data=[2**70]))),
    ("v2_int32_fraction", 400, _v2_json(_set("amount", datatype="INT32", data=[3.5]))),
    ("v2_uint8_negative", 400, _v2_json(_set("amount", datatype="UINT8", data=[-1]))),
    ("v2_bool_tensor_number", 400, _v2_json(_set("amount", datatype="BOOL", data=[1]))),
    ("v2_data_object", 400, _v2_json(_set("amount", data={"v": 1}))),
    ("v2_inputs_not_list", 400, _v2_json(lambda b: b.update(inputs={"name": "amount"}))),
    ("v2_inputs_empty", 400, _v2_json(lambda b: b.update(inputs=[]))),
    ("v2_input_not_object", 400, _v2_json(lambda b: b["inputs"].append(7))),
    ("v2_input_no_name", 400, _v2_json(lambda b: b["inputs"][0].pop("name"))),
    ("v2_outputs_not_list", 400, _v2_json(lambda b: b.update(outputs="label"))),
    ("v2_id_number", 400, _v2_json(lambda b: b.update(id=5))),
    ("v2_parameters_string", 400, _v2_json(lambda b: b.update(parameters="x"))),
    ("v2_binary_size_in_json", 400, _v2_json(_set("amount", parameters={"binary_data_size": 8}))),
    (
        "v2_nan_literal_not_nullable",
        400,
        _v2_json(
            lambda b: (
                json.dumps(b)
                .replace('"data": [' + json.dumps(b["inputs"][0]["data"][0]), '"data": [NaN', 1)
                .encode()
            )
        ),
    ),
    (
        "v2_text_plain",
        415,
        _post(
            "/v2/models/{m}/infer", content=b"{}", headers={"Content-Type": "text/plain", **AUTH}
        ),
    ),
    ("v2_chunked_over_limit", 413, _chunked_over_limit),
    ("v2_wrong_version", 404, _post("/v2/models/{m}/versions/999/infer", json={}, headers=AUTH)),
    # ---- V2 binary extension: checked before KServe decodes ---------------------------
    ("bin_size_not_multiple", 400, _v2_binary(_size_not_multiple)),
    ("bin_size_800_with_8_sent", 400, _v2_binary(_size_lies)),
    ("bin_bytes_prefix_2_31", 400, _v2_binary(_bytes_prefix_huge)),
    ("bin_bytes_count_mismatch", 400, _v2_binary(_bytes_count)),
    ("bin_reshape_mismatch", 400, _v2_binary(_reshape)),
    ("bin_trailing_bytes", 400, _v2_binary(_trailing)),
    ("bin_prefix_cut", 400, _v2_binary(_prefix_cut)),
    ("bin_no_data_no_size", 400, _v2_binary(_no_data)),
    ("bin_size_negative", 400, _v2_binary(_size_negative)),
    ("bin_size_string", 400, _v2_binary(_size_string)),
    ("bin_header_length_past_body", 400, _v2_binary(_header(10**6))),
    ("bin_header_length_zero", 400, _v2_binary(_header(0))),
    ("bin_header_length_text", 400, _v2_binary(_header("12abc"))),
    ("bin_header_length_negative", 400, _v2_binary(_header(-5))),
    ("bin_header_length_cuts_json", 400, _v2_binary(_header(20))),
    # ---- HTTP itself ------------------------------------------------------------------
    ("malformed_request_line", 400, _raw_case(lambda s: b"GARBAGE\r\n\r\n")),
    ("bad_http_version", 400, _raw_case(lambda s: b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")),
    (
        "huge_header",
        431,
        _raw_case(
            lambda s: (
                b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
            )
        ),
    ),
    (
        "content_length_not_a_number",
        400,
        _raw_case(
            lambda s: (
                f"POST /v1/models/{s.model}:predict HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 12x\r\n\r\n{}".encode()
            )
        ),
    ),
    ("unknown_route", 404, _get("/admin", headers=AUTH)),
    (
        "v1_explain_without_explainer",
        404,
        _post("/v1/models/{m}:explain", json={"instances": []}, headers=AUTH),
    ),
    ("wrong_method", 405, _get("/v2/models/{m}/infer", headers=AUTH)),
    (
        "v1_unknown_model_with_token",
        404,
        _post("/v1/models/nope:predict", json={"instances": [{}]}, headers=AUTH),
    ),
    (
        "v1_int_beyond_64_bits",
        400,
        _post(
            "/v1/models/{m}:predict",
            content=b'{"instances": [{"amount": 1180591620717411303424}]}',
            headers={"Content-Type": "application/json", **AUTH},
        ),
    ),
    (
        "v1_invalid_utf8",
        400,
        _post(
            "/v1/models/{m}:predict",
            content=b'{"instances": ["\xff"]}',
            headers={"Content-Type": "application/json", **AUTH},
        ),
    ),
    (
        "v1_deep_nesting",
        400,
        _post(
            "/v1/models/{m}:predict",
            content=b"[" * 100_000,
            headers={"Content-Type": "application/json", **AUTH},
        ),
    ),
]


def _corpus_case(name: str) -> Case:
    """One of test_server.py's 28 cases, sent with the token."""

    def run(server: Server, rec: dict[str, Any]) -> tuple[int, bytes]:
        with pytest.MonkeyPatch.context() as mp:
            real_post = httpx.post

            def post(url: str, **kw: Any) -> httpx.Response:
                kw["headers"] = {**(kw.get("headers") or {}), **AUTH}
                return real_post(url, **kw)

            mp.setattr(httpx, "post", post)
            r = _send(server, name, [rec])
        return r.status_code, r.content

    return run


ALL = [(f"corpus_{c[0]}", c[1], _corpus_case(c[0])) for c in CORPUS] + HOSTILE


def test_the_hostile_corpus_is_large_enough() -> None:
    assert len(ALL) >= 60
    assert len({name for name, _, _ in ALL}) == len(ALL)


@pytest.mark.parametrize(("name", "status", "case"), ALL, ids=[c[0] for c in ALL])
def test_hostile_request_gets_its_4xx_with_a_json_error(
    guarded: Server, records: list[dict[str, Any]], name: str, status: int, case: Case
) -> None:
    got, body = case(guarded, dict(records[0]))
    assert got == status, body[:300]
    error = json.loads(body)["error"]
    assert isinstance(error, str) and error, body[:300]
    assert guarded.alive()
    assert httpx.get(f"{guarded.url}/v2/health/ready", timeout=10).status_code == 200


def test_correct_after_the_corpus(
    guarded: Server, records: list[dict[str, Any]], offline: pd.DataFrame
) -> None:
    for _name, _status, case in ALL:
        case(guarded, dict(records[0]))
    r = httpx.post(
        f"{guarded.url}/v1/models/{guarded.model}:predict",
        json={"instances": records},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    got = np.array(
        [[p["probabilities"]["0"], p["probabilities"]["1"]] for p in r.json()["predictions"]]
    )
    np.testing.assert_allclose(got, offline[["proba_0", "proba_1"]].to_numpy(), atol=1e-5)
    log = guarded.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_open_routes_need_no_token(guarded: Server) -> None:
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        f"/v2/models/{guarded.model}/ready",
        f"/v1/models/{guarded.model}",
        "/metrics",
        "/",
    ):
        assert httpx.get(f"{guarded.url}{path}", timeout=10).status_code == 200, path


def test_token_opens_inference_and_metadata(guarded: Server, records: list[dict[str, Any]]) -> None:
    r = httpx.post(
        f"{guarded.url}/v2/models/{guarded.model}/infer",
        json={"inputs": _v2_inputs(records[:2])},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    # V2 responses carry the served version: the bundle's fingerprint.
    version = r.json()["model_version"]
    assert isinstance(version, str) and len(version) == 12
    meta = httpx.get(f"{guarded.url}/v2/models/{guarded.model}", headers=AUTH, timeout=10)
    assert meta.status_code == 200
    r = httpx.post(
        f"{guarded.url}/v2/models/{guarded.model}/versions/{version}/infer",
        json={"inputs": _v2_inputs(records[:1])},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_missing_key_and_null_are_alike(
    guarded: Server, bundle_path: Any, records: list[dict[str, Any]]
) -> None:
    from kfgpu.bundle import load_bundle
    from kfgpu.serving.schema import RequestSchema

    url = f"{guarded.url}/v1/models/{guarded.model}:predict"
    schema = RequestSchema.from_transform(load_bundle(bundle_path).transform)
    checked = 0
    for f in schema.fields:
        rec = dict(records[0])
        as_null = httpx.post(url, json={"instances": [{**rec, f.name: None}]}, headers=AUTH)
        rec.pop(f.name)
        as_missing = httpx.post(url, json={"instances": [rec]}, headers=AUTH)
        assert as_null.status_code == as_missing.status_code == (200 if f.nullable else 400)
        if f.nullable:
            assert as_null.json() == as_missing.json()
        checked += 1
    assert checked == len(schema.fields)
    assert any(f.nullable for f in schema.fields) and not all(f.nullable for f in schema.fields)


def test_unload_and_load_need_the_token_and_readiness_follows(
    guarded: Server, records: list[dict[str, Any]]
) -> None:
    repo = f"{guarded.url}/v2/repository/models/{guarded.model}"
    assert httpx.post(f"{repo}/unload", timeout=10).status_code == 401
    assert httpx.post(f"{repo}/load", timeout=10).status_code == 401
    assert httpx.get(f"{guarded.url}/v2/health/ready", timeout=10).status_code == 200
    try:
        assert httpx.post(f"{repo}/unload", headers=AUTH, timeout=10).status_code == 200
        ready = httpx.get(f"{guarded.url}/v2/health/ready", timeout=10)
        assert ready.status_code == 503 and "not loaded" in ready.json()["error"]
        r = httpx.post(
            f"{guarded.url}/v1/models/{guarded.model}:predict",
            json={"instances": records[:1]},
            headers=AUTH,
            timeout=10,
        )
        assert r.status_code == 404 and "error" in r.json()
    finally:
        assert httpx.post(f"{repo}/load", headers=AUTH, timeout=60).status_code == 200
    assert httpx.get(f"{guarded.url}/v2/health/ready", timeout=10).status_code == 200
    r = httpx.post(
        f"{guarded.url}/v1/models/{guarded.model}:predict",
        json={"instances": records[:1]},
        headers=AUTH,
        timeout=10,
    )
    assert r.status_code == 200, r.text


def test_repository_routes_are_off_by_default(server: Server) -> None:
    for action in ("unload", "load"):
        r = httpx.post(f"{server.url}/v2/repository/models/{server.model}/{action}", timeout=10)
        assert r.status_code == 404 and "--enable-repository" in r.json()["error"]
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
