"""A sink for KServe's payload logger: CloudEvents in, inference-log Parquet out.

An InferenceService with ``spec.predictor.logger: {mode: all, url: http://SINK}`` makes
KServe's agent POST every request and every response as a CloudEvent (binary mode:
``ce-type`` ``org.kubeflow.serving.inference.request`` or ``...response``, ``ce-id`` the
request id, the JSON payload as the body). This sink pairs the two halves by id, decodes
V1 (``instances`` as records or lists; kfgpu's ``predictions``) and V2 (``inputs`` /
``outputs`` tensors), and hands the rows to an :class:`InferenceLogger`, so both logging
paths write the same files. Halves left unpaired for ``pair_timeout_s`` are dropped and
counted; malformed events are answered 400 with the reason.

Run it with ``kfgpu monitor sink --bundle B --log-uri URI [--port 8080]``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kfgpu.errors import RequestError

if TYPE_CHECKING:
    import numpy as np

    from kfgpu.monitoring.logger import InferenceLogger

__all__ = ["PayloadSink", "create_app"]

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def _columns_v1(payload: Mapping[str, Any], names: Sequence[str]) -> tuple[dict[str, list], int]:
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError("the request event holds no 'instances' list", field="instances")
    if all(isinstance(r, dict) for r in instances):
        keys = list(names) or sorted({k for r in instances for k in r})
        return {k: [r.get(k) for r in instances] for k in keys}, len(instances)
    if all(isinstance(r, list) for r in instances):
        if not names or any(len(r) != len(names) for r in instances):
            raise RequestError(
                f"list instances need {len(names)} values in the bundle's input order",
                field="instances",
            )
        return {k: [r[i] for r in instances] for i, k in enumerate(names)}, len(instances)
    raise RequestError("instances must all be records or all be lists", field="instances")


def _columns_v2(payload: Mapping[str, Any]) -> tuple[dict[str, list], int]:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("the request event holds no 'inputs' tensors", field="inputs")
    columns = {str(t["name"]): list(t.get("data", [])) for t in inputs}
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise RequestError("the input tensors have different lengths", field="inputs")
    return columns, lengths.pop()


def _outputs(payload: Mapping[str, Any], labels: Sequence[str], n: int) -> np.ndarray:
    """Probabilities ``(n, k)`` in ``labels`` order (classification) or values ``(n,)``."""
    import numpy as np

    if "predictions" in payload:
        preds = payload["predictions"]
        if labels:
            return np.asarray(
                [[float(p["probabilities"][c]) for c in labels] for p in preds], dtype=np.float32
            )
        return np.asarray(
            [float(p["value"]) if isinstance(p, dict) else float(p) for p in preds],
            dtype=np.float32,
        )
    outputs = {o["name"]: o for o in payload.get("outputs", [])}
    if labels and "probabilities" in outputs:
        return np.asarray(outputs["probabilities"]["data"], dtype=np.float32).reshape(n, -1)
    if "value" in outputs:
        return np.asarray(outputs["value"]["data"], dtype=np.float32)
    raise RequestError(
        f"the response event holds neither predictions nor outputs {sorted(outputs)}",
        field="outputs",
    )


class PayloadSink:
    """Pairs request and response events by id and logs each pair.

    Args:
        logger: where the decoded rows go.
        input_names: the bundle's raw input columns, in signature order (decodes list
            instances and orders columns).
        labels: the class labels in output order (classification); empty for regression.
        pair_timeout_s: unpaired halves older than this are dropped.
    """

    def __init__(
        self,
        logger: InferenceLogger,
        *,
        input_names: Sequence[str],
        labels: Sequence[str] = (),
        pair_timeout_s: float = 60.0,
    ) -> None:
        self.logger = logger
        self.input_names = list(input_names)
        self.labels = [str(c) for c in labels]
        self.pair_timeout_s = pair_timeout_s
        self._pending: dict[str, tuple[float, str, Any]] = {}
        self.pairs = 0
        self.expired = 0

    def receive(self, ce_type: str, ce_id: str, payload: Any) -> bool:
        """Take one event; True when it completed a pair (and the rows were logged).

        Raises:
            RequestError: an unknown event type, no id, or a payload that does not decode.
        """
        if ce_type not in (REQUEST_TYPE, RESPONSE_TYPE):
            raise RequestError(
                f"ce-type {ce_type!r} is not a KServe inference event; expected "
                f"{REQUEST_TYPE!r} or {RESPONSE_TYPE!r}",
                field="ce-type",
            )
        if not ce_id:
            raise RequestError("the event has no ce-id to pair request and response", field="ce-id")
        if not isinstance(payload, dict):
            raise RequestError("the event body is not a JSON object", field="body")
        self._expire()
        other = self._pending.pop(ce_id, None)
        if other is None or other[1] == ce_type:
            self._pending[ce_id] = (time.monotonic(), ce_type, payload)
            return False
        request, response = (payload, other[2]) if ce_type == REQUEST_TYPE else (other[2], payload)
        if "inputs" in request:
            columns, n = _columns_v2(request)
        else:
            columns, n = _columns_v1(request, self.input_names)
        out = _outputs(response, self.labels, n)
        if len(out) != n:
            raise RequestError(
                f"the response has {len(out)} rows for a request of {n}", field="outputs"
            )
        ordered = {k: columns[k] for k in self.input_names if k in columns} or columns
        self.logger.log(ordered, n, out, request_id=ce_id)
        self.pairs += 1
        return True

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.pair_timeout_s
        stale = [k for k, (t, _, _) in self._pending.items() if t < cutoff]
        for k in stale:
            del self._pending[k]
        self.expired += len(stale)


def create_app(sink: PayloadSink) -> Any:
    """The ASGI app: ``POST /`` takes events (202), ``GET /healthz`` answers with counts."""
    import json

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def receive(request: Any) -> JSONResponse:
        headers = request.headers
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return JSONResponse({"error": f"the event body is not JSON: {e}"}, status_code=400)
        try:
            paired = sink.receive(headers.get("ce-type", ""), headers.get("ce-id", ""), payload)
        except RequestError as e:
            return JSONResponse({"error": str(e), "field": e.field}, status_code=400)
        except (KeyError, TypeError, ValueError) as e:
            return JSONResponse(
                {"error": f"the event does not decode: {type(e).__name__}: {e}"}, status_code=400
            )
        return JSONResponse({"paired": paired}, status_code=202)

    async def healthz(request: Any) -> JSONResponse:
        stats = sink.logger.stats
        return JSONResponse(
            {
                "pairs": sink.pairs,
                "pending": len(sink._pending),
                "expired": sink.expired,
                "rows_logged": stats.rows_logged,
                "rows_dropped": stats.rows_dropped,
            }
        )

    return Starlette(
        routes=[Route("/", receive, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])]
    )
