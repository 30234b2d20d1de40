"""V2 body checks before KServe decodes (:mod:`kfgpu.serving.wire`): each lie a binary or
JSON request can tell is refused with a message naming the tensor."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from kfgpu.errors import RequestError
from kfgpu.serving.wire import check_binary_request, check_v2_json


def _body(
    tensors: list[tuple[str, str, list[Any], bytes]], *, extra: bytes = b""
) -> tuple[bytes, str]:
    head = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
                for n, d, s, b in tensors
            ]
        }
    ).encode()
    return head + b"".join(b for *_, b in tensors) + extra, str(len(head))


def _bytes(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


GOOD = [
    ("x", "FP64", [2], np.array([1.0, 2.0]).tobytes()),
    ("c", "BYTES", [2], _bytes(b"a", b"bc")),
    ("i", "INT32", [2, 1], np.array([1, 2], dtype=np.int32).tobytes()),
]


def test_a_well_formed_binary_request_passes() -> None:
    body, length = _body(GOOD)
    check_binary_request(body, length)


def test_binary_json_inputs_mixed_with_binary_ones_pass() -> None:
    head = json.dumps(
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [1], "data": [1.0]},
                {
                    "name": "b",
                    "datatype": "FP32",
                    "shape": [1],
                    "parameters": {"binary_data_size": 4},
                },
            ]
        }
    ).encode()
    check_binary_request(head + np.float32(1).tobytes(), str(len(head)))


@pytest.mark.parametrize(
    ("tensors", "extra", "length", "words"),
    [
        ([("x", "FP64", [1], b"\x00" * 7)], b"", None, "needs 8"),
        ([("x", "FP32", [3], b"\x00" * 8)], b"", None, "needs 12"),
        ([("x", "FP64", [1], b"\x00" * 8)], b"junk", None, "4 bytes after the last tensor"),
        ([("c", "BYTES", [1], struct.pack("<I", 2**31) + b"ab")], b"", None, "2147483648 bytes"),
        ([("c", "BYTES", [2], _bytes(b"a"))], b"", None, "holds 1 BYTES elements"),
        ([("c", "BYTES", [1], b"\x01\x00")], b"", None, "cut length prefix"),
        ([("x", "FP64", [1], b"\x00" * 8)], b"", "0", "Inference-Header-Content-Length is 0"),
        ([("x", "FP64", [1], b"\x00" * 8)], b"", "99999", "but the body has"),
        ([("x", "FP64", [1], b"\x00" * 8)], b"", "1e3", "decimal integer"),
        ([("x", "FP64", [1], b"\x00" * 8)], b"", "-4", "decimal integer"),
        ([("x", "FP64", [1], b"\x00" * 8)], b"", "١٢", "decimal integer"),
        ([("x", "FP64", ["1"], b"\x00" * 8)], b"", None, "non-negative integers"),
        ([("x", "FP64", [True], b"\x00" * 8)], b"", None, "non-negative integers"),
        ([("x", "FP99", [1], b"\x00" * 8)], b"", None, "datatype is 'FP99'"),
    ],
)
def test_binary_lies_are_refused(
    tensors: list[tuple[str, str, list[Any], bytes]], extra: bytes, length: str | None, words: str
) -> None:
    body, real = _body(tensors, extra=extra)
    with pytest.raises(RequestError, match=None) as info:
        check_binary_request(body, real if length is None else length)
    assert words in str(info.value)
    assert info.value.status == 400


def test_binary_size_past_the_body_is_refused() -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [100],
                    "parameters": {"binary_data_size": 800},
                }
            ]
        }
    ).encode()
    with pytest.raises(RequestError, match="is 800 but only 8 bytes follow"):
        check_binary_request(head + b"\x00" * 8, str(len(head)))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"{}", 'field "inputs" is missing'),
        (b"[]", "must be a JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": [1]}', "inputs[0] must be an object"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": null}]}',
            "inputs.x has no data",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": 1}]}',
            "inputs.x.data must be a list",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1.0], "data": [1]}]}',
            "non-negative integers",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1],'
            b' "parameters": {"binary_data_size": 8}}]}',
            "has binary_data_size but the request",
        ),
        (b'{"id": 3, "inputs": []}', '"id" must be a string'),
        (b'{"outputs": [{"nom": "x"}], "inputs": []}', "outputs[0]"),
    ],
)
def test_v2_json_structure_is_checked(body: bytes, words: str) -> None:
    with pytest.raises(RequestError) as info:
        check_v2_json(body)
    assert words in str(info.value)


def test_v2_json_reads_nan_and_big_integers_for_the_schema_to_judge() -> None:
    body = (
        b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [NaN, '
        b"1180591620717411303424]}]}"
    )
    parsed = check_v2_json(body)
    assert parsed["inputs"][0]["data"][1] == 2**70
