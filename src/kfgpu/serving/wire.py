"""Checks of a V2 (Open Inference Protocol) request body before KServe decodes it.

KServe 0.21 trusts what a binary-extension request says about itself: a
``binary_data_size`` that is not a multiple of the element size, a BYTES length prefix past
the end, or a shape whose product disagrees with the data make its decoder raise (HTTP 500);
a ``binary_data_size`` larger than the bytes sent, or an ``Inference-Header-Content-Length``
past the body, are silently cut short. Its JSON model coerces ``"shape": ["1"]`` and
``[true]`` to ``[1]``. These functions check the body as sent and raise
:class:`~kfgpu.errors.RequestError` (HTTP 400) naming the field; nothing here imports
kserve, so the rules are unit-tested on their own.

Rules, for JSON and binary bodies alike:

* the body (binary: its JSON header) is a JSON object with an ``inputs`` list of objects;
  ``id`` a string, ``parameters`` an object, ``outputs`` a list of ``{"name": ...}`` objects;
* each input: ``name`` a string, ``datatype`` one the protocol defines, ``shape`` a list of
  non-negative integers (``true`` and ``"1"`` are not integers), ``parameters`` an object;
* each input carries its values either as ``data`` (a list) or, in a binary body, as
  ``parameters.binary_data_size`` (a non-negative integer), never both and never neither;
* binary: ``Inference-Header-Content-Length`` is a decimal integer within the body; each
  fixed-size tensor's size is exactly ``product(shape) x element size``; a BYTES tensor's
  4-byte length prefixes stay inside its bytes and count ``product(shape)`` elements; the
  sizes add up to exactly the bytes after the header.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from kfgpu.errors import RequestError

__all__ = ["ELEMENT_SIZES", "check_binary_request", "check_v2_json", "loads"]

#: Bytes per element of each fixed-size V2 datatype (BYTES is length-prefixed).
ELEMENT_SIZES = {
    "BOOL": 1,
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT16": 2,
    "FP16": 2,
    "INT32": 4,
    "UINT32": 4,
    "FP32": 4,
    "INT64": 8,
    "UINT64": 8,
    "FP64": 8,
}
_DATATYPES = frozenset([*ELEMENT_SIZES, "BYTES"])
_PREFIX = struct.Struct("<I")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def loads(body: bytes, what: str = "the request body") -> Any:
    """Parse JSON; a :class:`RequestError` naming ``what`` if it is not.

    orjson first (fast); what it refuses is tried with the standard library, which also
    reads ``NaN`` and ``Infinity`` (tritonclient writes them for missing values) and
    integers beyond 64 bits (the schema then says which tensor holds them).
    """
    import json

    try:
        import orjson

        return orjson.loads(body)
    except ImportError:  # pragma: no cover - kserve depends on orjson
        pass
    except ValueError:  # orjson.JSONDecodeError
        pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise RequestError(f"{what} is not valid JSON: {e}", field="body") from e


def _check_header(head: Any, *, binary: bool) -> list[tuple[str, str, list[int], int | None]]:
    """The inputs' (name, datatype, shape, binary_data_size or None), once the request's
    JSON structure is valid."""
    where = "the JSON header" if binary else "the request body"
    if not isinstance(head, Mapping):
        raise RequestError(
            f"{where} must be a JSON object, got {type(head).__name__}; send "
            '{"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]}',
            field="body",
        )
    if "id" in head and not isinstance(head["id"], str):
        raise RequestError(f'"id" must be a string, got {_show(head["id"])}', field="id")
    if "parameters" in head and not isinstance(head["parameters"], Mapping):
        raise RequestError(
            f'"parameters" must be an object, got {_show(head["parameters"])}', field="parameters"
        )
    outputs = head.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise RequestError(
                f'"outputs" must be a list of {{"name": ...}} objects, got {_show(outputs)}',
                field="outputs",
            )
        for k, o in enumerate(outputs):
            if not isinstance(o, Mapping) or not isinstance(o.get("name"), str):
                raise RequestError(
                    f'outputs[{k}] must be an object with a string "name", got {_show(o)}',
                    field=f"outputs[{k}]",
                )
            if "parameters" in o and not isinstance(o["parameters"], Mapping):
                raise RequestError(
                    f"outputs[{k}].parameters must be an object", field=f"outputs[{k}]"
                )
    if "inputs" not in head:
        raise RequestError(
            f'field "inputs" is missing from {where}; send {{"inputs": [...]}}'
            + (f" (got fields {sorted(map(str, head))})" if head else ""),
            field="inputs",
        )
    inputs = head["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(
            f'"inputs" must be a non-empty list of tensors, got {_show(inputs)}', field="inputs"
        )
    out: list[tuple[str, str, list[int], int | None]] = []
    for k, t in enumerate(inputs):
        at = f"inputs[{k}]"
        if not isinstance(t, Mapping):
            raise RequestError(f"{at} must be an object, got {_show(t)}", field=at)
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(f"{at}.name must be a non-empty string, got {_show(name)}", field=at)
        at = f"inputs.{name}"
        datatype = t.get("datatype")
        if not isinstance(datatype, str) or datatype not in _DATATYPES:
            raise RequestError(
                f"{at}.datatype is {_show(datatype)}; use one of {sorted(_DATATYPES)}", field=at
            )
        shape = t.get("shape")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise RequestError(
                f"{at}.shape is {_show(shape)}; send a list of non-negative integers such as [n]",
                field=at,
            )
        params = t.get("parameters")
        if params is not None and not isinstance(params, Mapping):
            raise RequestError(f"{at}.parameters must be an object, got {_show(params)}", field=at)
        size = (params or {}).get("binary_data_size")
        has_data = t.get("data") is not None
        if size is not None:
            if not binary:
                raise RequestError(
                    f"{at} has binary_data_size but the request is JSON; send the binary "
                    "extension (Inference-Header-Content-Length) or put the values in data",
                    field=at,
                )
            if type(size) is not int or size < 0:
                raise RequestError(
                    f"{at}.parameters.binary_data_size is {_show(size)}; send the tensor's "
                    "byte count (an integer >= 0)",
                    field=at,
                )
            if has_data:
                raise RequestError(
                    f"{at} has both data and binary_data_size; send one of them", field=at
                )
        elif not has_data:
            raise RequestError(
                f"{at} has no data"
                + (" and no binary_data_size" if binary else "")
                + "; send the tensor's values as a list in data",
                field=at,
            )
        elif not isinstance(t["data"], list):
            raise RequestError(f"{at}.data must be a list, got {_show(t['data'])}", field=at)
        out.append((name, datatype, shape, size))
    return out


def check_v2_json(body: bytes) -> Any:
    """Check a JSON V2 infer body; return it parsed.

    Raises:
        RequestError: the body is not JSON or not a V2 request (named, with the fix).
    """
    if not body.strip():
        raise RequestError(
            'the request body is empty; send {"inputs": [...]} as JSON', field="body"
        )
    parsed = loads(body)
    _check_header(parsed, binary=False)
    return parsed


def check_binary_request(body: bytes, header_length: str) -> None:
    """Check a binary-extension V2 infer body against its ``Inference-Header-Content-Length``.

    Raises:
        RequestError: the header length, the JSON header or a tensor's bytes are not what
            the request says they are.
    """
    text = header_length.strip()
    if not text.isdigit() or not text.isascii():
        raise RequestError(
            f"Inference-Header-Content-Length is {_show(header_length)}; send the JSON "
            "header's length in bytes (a decimal integer)",
            field="inference-header-content-length",
        )
    json_len = int(text)
    if not 0 < json_len <= len(body):
        raise RequestError(
            f"Inference-Header-Content-Length is {json_len} but the body has {len(body)} "
            "bytes; send the JSON header's length (at most the body's)",
            field="inference-header-content-length",
        )
    inputs = _check_header(loads(body[:json_len], "the JSON header"), binary=True)
    offset = json_len
    end = len(body)
    for name, datatype, shape, size in inputs:
        if size is None:
            continue
        at = f"inputs.{name}"
        if offset + size > end:
            raise RequestError(
                f"{at}.parameters.binary_data_size is {size} but only {end - offset} bytes "
                "follow; send the tensor's bytes, or its real size",
                field=at,
            )
        count = math.prod(shape)
        if datatype == "BYTES":
            n, pos, stop = 0, offset, offset + size
            while pos < stop:
                if pos + 4 > stop:
                    raise RequestError(
                        f"{at} element {n} has a cut length prefix ({stop - pos} bytes); each "
                        "BYTES element is a 4-byte little-endian length, then that many bytes",
                        field=at,
                    )
                (length,) = _PREFIX.unpack_from(body, pos)
                pos += 4
                if length > stop - pos:
                    raise RequestError(
                        f"{at} element {n} says it has {length} bytes but {stop - pos} remain "
                        "in the tensor; send the element's real length",
                        field=at,
                    )
                pos += length
                n += 1
            if n != count:
                raise RequestError(
                    f"{at} holds {n} BYTES elements but its shape {shape} says {count}; send "
                    "one element per value",
                    field=at,
                )
        else:
            item = ELEMENT_SIZES[datatype]
            if size != count * item:
                raise RequestError(
                    f"{at}.parameters.binary_data_size is {size} but shape {shape} of "
                    f"{datatype} ({item} bytes each) needs {count * item}; send "
                    "product(shape) x element size bytes",
                    field=at,
                )
        offset += size
    if offset != end:
        raise RequestError(
            f"the body has {end - offset} bytes after the last tensor; the binary_data_size "
            "values and Inference-Header-Content-Length must add up to the body's length",
            field="body",
        )
