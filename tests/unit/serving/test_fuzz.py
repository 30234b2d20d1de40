"""Seeded fuzzing of the real server (issue 17): at least 5,000 mutated V1 and V2 (JSON and
binary) requests, not one answered with a 5xx, every refusal a JSON ``{"error"}``, and the
server ready and correct afterwards. One server, four client threads, keep-alive."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from tests.unit.serving.conftest import TOKEN, Server
from tests.unit.serving.test_server import NUMERIC

SEED = 17
REQUESTS = 5_000
THREADS = 4

_DATATYPES = [
    "FP64",
    "FP32",
    "FP16",
    "INT64",
    "INT32",
    "INT8",
    "UINT8",
    "UINT64",
    "BOOL",
    "BYTES",
    "fp64",
    "",
    "STRING",
    None,
    7,
]
_VALUES: list[Any] = [
    0,
    -1,
    1.5,
    2**31,
    2**63,
    2**64,
    2**70,
    -(2**70),
    1e308,
    -1e-308,
    True,
    False,
    None,
    "",
    "12.5",
    "US",
    "ü" * 3,
    "\x00",
    [],
    [1],
    {},
    {"a": 1},
    [[1, 2]],
    "NaN",
    "x" * 500,
]


def _value(rng: random.Random) -> Any:
    return rng.choice(_VALUES)


def _flip(rng: random.Random, data: bytes) -> bytes:
    """A few random byte edits: replace, delete, insert or cut."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        i = rng.randrange(len(b))
        op = rng.random()
        if op < 0.4:
            b[i] = rng.randrange(256)
        elif op < 0.6:
            del b[i]
        elif op < 0.8:
            b.insert(i, rng.choice(b'{}[]",:0-e\\ \x00'))
        else:
            del b[i:]
    return bytes(b)


def _mutate_record(rng: random.Random, rec: dict[str, Any]) -> Any:
    rec = dict(rec)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        keys = list(rec)
        if op < 0.5 and keys:
            rec[rng.choice(keys)] = _value(rng)
        elif op < 0.7 and keys:
            rec.pop(rng.choice(keys))
        elif op < 0.85:
            rec[rng.choice(["colour", "", "amount ", "0"])] = _value(rng)
        else:
            return _value(rng)
    return rec


def _v1(rng: random.Random, rec: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    n = rng.choice([1, 1, 2, 3])
    rows = [_mutate_record(rng, rec) if rng.random() < 0.8 else dict(rec) for _ in range(n)]
    if rng.random() < 0.2:
        rows = [list(r.values()) if isinstance(r, dict) else r for r in rows]
    body: Any = {"instances": rows}
    if rng.random() < 0.1:
        body = rng.choice([{"rows": rows}, rows, {"instances": rows, "x": 1}, _value(rng)])
    data = json.dumps(body, allow_nan=True).encode()
    if rng.random() < 0.25:
        data = _flip(rng, data)
    ct = rng.choice(["application/json"] * 8 + ["text/plain", "application/octet-stream"])
    return "v1", data, {"Content-Type": ct}


def _tensors(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": k,
            "shape": [1],
            "datatype": "FP64" if k in NUMERIC else "BYTES",
            "data": [v if k in NUMERIC or v is None else str(v)],
        }
        for k, v in rec.items()
    ]


def _mutate_tensors(rng: random.Random, inputs: list[dict[str, Any]]) -> None:
    for _ in range(rng.randint(1, 3)):
        if not inputs:
            return
        t = rng.choice(inputs)
        op = rng.random()
        if op < 0.2:
            t["shape"] = rng.choice(
                [[2], [1, 1], [1, 2], [], ["1"], [True], [-1], [2**40], None, "1", [1.0]]
            )
        elif op < 0.4:
            t["datatype"] = rng.choice(_DATATYPES)
        elif op < 0.6:
            t["data"] = rng.choice([[_value(rng)], [_value(rng), _value(rng)], None, _value(rng)])
        elif op < 0.7:
            t.pop(rng.choice(["name", "shape", "datatype", "data"]), None)
        elif op < 0.8:
            inputs.remove(t)
        elif op < 0.9:
            inputs.append(dict(t))
        else:
            t["parameters"] = rng.choice([{"binary_data_size": 8}, "x", None, {"a": []}])


def _v2_json(rng: random.Random, rec: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    inputs = _tensors(rec)
    _mutate_tensors(rng, inputs)
    body: dict[str, Any] = {"inputs": inputs}
    if rng.random() < 0.2:
        body[rng.choice(["outputs", "id", "parameters", "inputs"])] = _value(rng)
    if rng.random() < 0.1:
        body["outputs"] = [{"name": rng.choice(["label", "probabilities", "score", 3])}]
    data = json.dumps(body, allow_nan=True).encode()
    if rng.random() < 0.25:
        data = _flip(rng, data)
    headers = {} if rng.random() < 0.3 else {"Content-Type": "application/json"}
    return "v2", data, headers


def _v2_binary(rng: random.Random, rec: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    inputs, blobs = [], []
    for k, v in rec.items():
        if k in NUMERIC:
            dtype = rng.choice(["FP64", "FP32", "INT64", "FP64", "FP64"])
            arr = np.array([np.nan if v is None else v], dtype=np.float64)
            blob = arr.astype(
                {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64}[dtype], casting="unsafe"
            ).tobytes()
        else:
            dtype = "BYTES"
            b = str(v).encode()
            blob = struct.pack("<I", len(b)) + b
        inputs.append(
            {
                "name": k,
                "shape": [1],
                "datatype": dtype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    for _ in range(rng.randint(0, 3)):
        k = rng.randrange(len(inputs))
        op = rng.random()
        if op < 0.3:
            inputs[k]["parameters"]["binary_data_size"] = rng.choice(
                [0, 1, 3, 7, 9, 800, 2**31, -8, "8", None, 8.0]
            )
        elif op < 0.5:
            blobs[k] = _flip(rng, blobs[k])
        elif op < 0.6:
            blobs[k] = struct.pack("<I", rng.choice([2**31, 2**32 - 1, 0, 5])) + blobs[k][4:]
        elif op < 0.8:
            inputs[k]["shape"] = rng.choice([[2], [0], [1, 1], [3, 1], ["1"], [True], [2**62]])
        else:
            inputs[k]["datatype"] = rng.choice(_DATATYPES)
    head = json.dumps({"inputs": inputs}).encode()
    if rng.random() < 0.15:
        head = _flip(rng, head)
    body = head + b"".join(blobs)
    length: Any = len(head)
    if rng.random() < 0.2:
        length = rng.choice([0, 1, len(head) - 1, len(head) + 1, len(body) + 10, -1, "x", ""])
    headers = {"Inference-Header-Content-Length": str(length)}
    if rng.random() < 0.7:
        headers["Content-Type"] = rng.choice(["application/octet-stream", "application/json"])
    return "v2", body, headers


def _requests(seed: int, n: int, rec: dict[str, Any]) -> list[tuple[str, bytes, dict[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        req = (
            _v1(rng, rec)
            if kind < 0.4
            else _v2_json(rng, rec)
            if kind < 0.7
            else _v2_binary(rng, rec)
        )
        if rng.random() < 0.97:
            req[2]["Authorization"] = f"Bearer {TOKEN}"
        out.append(req)
    return out


def test_fuzzed_requests_never_get_a_5xx(guarded: Server, records: list[dict[str, Any]]) -> None:
    rec = dict(records[0])
    requests = _requests(SEED, REQUESTS, rec)
    v1 = f"{guarded.url}/v1/models/{guarded.model}:predict"
    v2 = f"{guarded.url}/v2/models/{guarded.model}/infer"
    bad: list[tuple[int, bytes, bytes]] = []

    def run(chunk: list[tuple[str, bytes, dict[str, str]]]) -> Counter[int]:
        seen: Counter[int] = Counter()
        with httpx.Client(timeout=30) as client:
            for proto, body, headers in chunk:
                r = client.post(v1 if proto == "v1" else v2, content=body, headers=headers)
                seen[r.status_code] += 1
                if r.status_code >= 500 or (
                    r.status_code >= 400 and "error" not in _json(r.content)
                ):
                    bad.append((r.status_code, body[:300], r.content[:300]))
        return seen

    chunks = [requests[i::THREADS] for i in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        statuses = sum(pool.map(run, chunks), Counter())
    assert sum(statuses.values()) == REQUESTS
    assert not bad, bad[:5]
    # The mutations reach both sides: some requests are still valid, most are refused.
    assert statuses[200] > 100 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 2500
    assert httpx.get(f"{guarded.url}/v2/health/ready", timeout=10).status_code == 200
    r = httpx.post(
        v1, json={"instances": [rec]}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    assert "Traceback" not in guarded.log.read_text()


def _json(content: bytes) -> dict[str, Any]:
    try:
        out = json.loads(content)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
