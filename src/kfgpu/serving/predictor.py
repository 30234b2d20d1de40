"""``BundleModel``: a ``kserve.Model`` that serves a kfgpu bundle.

* ``load`` verifies every checksum and rebuilds the served module from safetensors and
  JSON (:func:`kfgpu.bundle.load_bundle`): no pickle anywhere;
* V1 (``/v1/models/<name>:predict``): ``{"instances": [...]}`` as records or lists ->
  ``{"predictions": [{"label": ..., "probabilities": {...}}]}`` (regression:
  ``{"value": ...}``);
* V2 (``/v2/models/<name>/infer``, JSON or the binary tensor extension): one tensor per
  raw column -> ``label`` (BYTES ``[n]``) and ``probabilities`` (FP32 ``[n, k]``, class
  order in the tensor's ``classes`` parameter); regression: ``value`` (FP32 ``[n]``);
* the bundle's fitted transform runs inside the served module, on raw values;
* strict validation (:mod:`kfgpu.serving.schema`): a bad request gets 400 (413 for too
  many rows, 415 for a body that is not JSON) with a message naming the field;
* concurrent requests are micro-batched (:mod:`kfgpu.serving.batcher`);
* on CUDA the network runs under float16 autocast (``precision="auto"`` or ``"16"``);
  the transform's arithmetic and the softmax stay float32.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from kfgpu.errors import ConfigError, RequestError
from kfgpu.serving.batcher import MicroBatcher
from kfgpu.serving.metrics import serving_metrics
from kfgpu.serving.schema import RequestSchema, Rows, smoke_instance

__all__ = ["BundleModel", "RequestRejected"]

Precision = Literal["auto", "32", "16"]


class RequestRejected(InvalidInput):
    """A request kfgpu refuses, with its HTTP status (400, 413 or 415).

    A subclass of KServe's ``InvalidInput`` so that any KServe server answers 400 at
    least; :func:`kfgpu.serving.server.serve` registers a handler that answers ``status``.
    """

    def __init__(self, reason: str, status: int = 400, field: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.field = field


def _rejected(e: RequestError) -> RequestRejected:
    return RequestRejected(str(e), status=e.status, field=e.field)


class BundleModel(kserve.Model):
    """Serve the bundle at ``bundle_path`` under ``name``.

    Args:
        name: the model name in the URL paths.
        bundle_path: a local, complete bundle directory.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (float16 autocast on CUDA, float32 on CPU), ``32`` or ``16``.
        max_batch_size: rows per forward pass; 1 turns micro-batching off.
        max_wait_ms: how long a batch may wait to fill under concurrent load.
        max_rows: most rows in one request (more: 413).
        logger: an :class:`~kfgpu.monitoring.logger.InferenceLogger` that gets a sample of
            each answered request's raw columns and outputs (off the request path); None:
            no inference logging.
    """

    def __init__(
        self,
        name: str,
        bundle_path: str | Path,
        *,
        device: str = "auto",
        precision: Precision = "auto",
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        max_rows: int = 10_000,
        logger: Any = None,
    ) -> None:
        super().__init__(name)
        self.logger = logger
        if precision not in ("auto", "32", "16"):
            raise ConfigError(f"precision={precision!r} is not supported; use 'auto', '32' or '16'")
        self.bundle_path = Path(bundle_path)
        self.device_request = device
        self.precision = precision
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.max_rows = max_rows
        self.bundle: Any = None
        self.schema: RequestSchema | None = None
        self._batcher: MicroBatcher[Rows, np.ndarray] | None = None
        self._metrics = serving_metrics()

    # ---- lifecycle -----------------------------------------------------------------------
    def load(self) -> bool:
        """Verify and load the bundle, warm the forward pass up, then report ready."""
        import torch

        from kfgpu.bundle import load_bundle

        device = self.device_request
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available; use 'cpu' or 'auto'")
        half = device.startswith("cuda") and self.precision in ("auto", "16")
        if self.precision == "16" and not device.startswith("cuda"):
            raise ConfigError("precision='16' needs a CUDA device; use '32' or 'auto' on CPU")
        self.device = device
        self.half = half
        self.bundle = load_bundle(self.bundle_path, device=device)
        self.schema = RequestSchema.from_transform(self.bundle.transform, max_rows=self.max_rows)
        self.classes = [c for c in self.bundle.classes]
        self.labels = [str(c) for c in self.classes]
        self.task = self.bundle.task
        labels = {"model": self.name}
        m = self._metrics

        def on_batch(items: int, rows: int, seconds: float) -> None:
            m["batch_rows"].labels(**labels).observe(rows)
            m["batch_requests"].labels(**labels).observe(items)
            m["forward"].labels(**labels).observe(seconds)

        self._batcher = MicroBatcher(
            self._predict_parts,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            size=lambda r: r.n,
            on_batch=on_batch,
        )
        # Warm-up: the first forward allocates; do it before reporting ready.
        warm = self.schema.parse_v1({"instances": [smoke_instance(self.bundle.transform)]})
        self._predict_parts([warm])
        self.ready = True
        return self.ready

    async def healthy(self) -> bool:
        return bool(self.ready and self._batcher is not None and self._batcher.healthy())

    # ---- the forward pass, in the worker thread --------------------------------------------
    def forward_frame(self, df: Any) -> np.ndarray:
        """Probabilities ``(n, k)`` (classification) or values ``(n,)`` of a raw frame."""
        import torch

        num, codes = self.bundle.transform.raw_arrays(df)
        module = self.bundle.module
        with torch.inference_mode():
            x = torch.from_numpy(num).to(self.device, non_blocking=True)
            c = torch.from_numpy(codes).to(self.device, non_blocking=True)
            if self.half:
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    out = module(x, c)
            else:
                out = module(x, c)
            return out.float().cpu().numpy()

    def _predict_parts(self, parts: Sequence[Rows]) -> list[np.ndarray]:
        assert self.schema is not None
        out = self.forward_frame(self.schema.frame(parts))
        results: list[np.ndarray] = []
        start = 0
        for p in parts:
            results.append(out[start : start + p.n])
            start += p.n
        return results

    # ---- requests ------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        assert self.schema is not None
        return [
            {"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in self.schema.fields
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        if self.task == "classification":
            return [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.labels)]},
            ]
        return [{"name": "value", "datatype": "FP32", "shape": [-1]}]

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest | bytes,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        protocol = "v2" if isinstance(payload, InferRequest) else "v1"
        m = self._metrics
        t0 = time.perf_counter()
        try:
            rows = self._decode(payload)
        except RequestError as e:
            m["requests"].labels(self.name, protocol, "invalid").inc()
            raise _rejected(e) from e
        assert self._batcher is not None
        try:
            out = await self._batcher.submit(rows)
            response = (
                self._encode_v2(payload, out)
                if isinstance(payload, InferRequest)
                else self._encode_v1(out)
            )
        except Exception:
            m["requests"].labels(self.name, protocol, "error").inc()
            raise
        if self.logger is not None:
            # A reference to the request's columns and outputs goes on a queue; sampling,
            # conversion and writing happen in the logger's thread.
            request_id = (headers or {}).get("x-request-id", "") or (
                payload.id if isinstance(payload, InferRequest) and payload.id else ""
            )
            self.logger.log(rows.columns, rows.n, out, request_id=request_id or uuid.uuid4().hex)
        m["requests"].labels(self.name, protocol, "ok").inc()
        m["rows"].labels(self.name).inc(rows.n)
        m["latency"].labels(self.name, protocol).observe(time.perf_counter() - t0)
        return response

    def _decode(self, payload: Any) -> Rows:
        assert self.schema is not None
        if isinstance(payload, (bytes, bytearray, str)):
            raise RequestError(
                "the request body is not JSON (Content-Type is not application/json); send "
                '{"instances": [...]} with Content-Type: application/json',
                field="content-type",
                status=415,
            )
        if isinstance(payload, InferRequest):
            self._check_outputs(payload)
            return self.schema.parse_v2(payload.inputs)
        return self.schema.parse_v1(payload)

    def _check_outputs(self, request: InferRequest) -> None:
        known = [o["name"] for o in self.get_output_types()]
        for o in request.request_outputs or []:
            if o.name not in known:
                raise RequestError(
                    f"unknown output {o.name!r} requested; this model returns {known}",
                    field=f"outputs.{o.name}",
                )

    def _label_index(self, out: np.ndarray) -> np.ndarray:
        """Each row's class index under the bundle's stored decision rule (the threshold
        chosen on validation rows at training time; argmax for multiclass)."""
        return self.bundle.label_indices(out)

    def _encode_v1(self, out: np.ndarray) -> dict[str, Any]:
        if self.task != "classification":
            return {"predictions": [{"value": float(v)} for v in out.tolist()]}
        classes, labels = self.classes, self.labels
        best = self._label_index(out).tolist()
        preds = [
            {"label": classes[b], "probabilities": dict(zip(labels, row, strict=True))}
            for b, row in zip(best, out.tolist(), strict=True)
        ]
        return {"predictions": preds}

    def _encode_v2(self, request: InferRequest, out: np.ndarray) -> InferResponse:
        n = int(out.shape[0])
        if self.task == "classification":
            label = np.asarray(self.labels, dtype=object)[self._label_index(out)]
            outputs = [
                InferOutput("label", [n], "BYTES", data=label.tolist()),
                InferOutput(
                    "probabilities",
                    [n, len(self.labels)],
                    "FP32",
                    data=np.ascontiguousarray(out, dtype=np.float32),
                    parameters={"classes": json.dumps(self.labels)},
                ),
            ]
        else:
            outputs = [InferOutput("value", [n], "FP32", data=out.astype(np.float32))]
        return InferResponse(
            response_id=request.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )
