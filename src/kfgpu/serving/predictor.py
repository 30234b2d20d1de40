"""``BundleModel``: a ``kserve.Model`` that serves a kfgpu bundle.

* ``load`` verifies every checksum and rebuilds the served module from safetensors and
  JSON (:func:`kfgpu.bundle.load_bundle`): no pickle anywhere;
* V1 (``/v1/models/<name>:predict``): ``{"instances": [...]}`` as records or lists ->
  ``{"predictions": [{"label": ..., "probabilities": {...}}]}`` (regression:
  ``{"value": ...}``);
* V2 (``/v2/models/<name>/infer``, JSON or the binary tensor extension): one tensor per
  raw column -> ``label`` (BYTES ``[n]``) and ``probabilities`` (FP32 ``[n, k]``, class
  order in the tensor's ``classes`` parameter); regression: ``value`` (FP32 ``[n]``);
* the bundle's fitted transform runs on raw values, with no pandas on the request path:
  decoded columns go straight to the transform's arrays
  (:meth:`~kfgpu.features.transform.FittedTransform.column_arrays`); on CPU its back half
  runs in NumPy (``transform_arrays``), on CUDA inside the served module;
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
from kserve.errors import InvalidInput, ModelNotFound
from kserve.model import InferenceVerb
from kserve.model_repository import ModelRepository
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from kfgpu.errors import ConfigError, RequestError
from kfgpu.serving.batcher import MicroBatcher
from kfgpu.serving.metrics import serving_metrics
from kfgpu.serving.schema import RequestSchema, Rows, smoke_instance

__all__ = ["BundleModel", "BundleRepository", "RequestRejected"]

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
        allow_modules: module prefixes a bundle's ``model.family`` import path may name
            (:func:`kfgpu.serving.loading.check_family`); kfgpu's own families always load.
        version: the version V2 responses carry (``model_version``); default the bundle's
            fingerprint (the first 12 hex digits of the sha256 of its checksum file).
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
        allow_modules: Sequence[str] = (),
        version: str = "",
    ) -> None:
        super().__init__(name)
        self.logger = logger
        self.allow_modules = tuple(allow_modules)
        self.version = version
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
        self._series: dict[tuple[str, str], Any] = {}
        self._rows_series: Any = None
        self._latency_series: dict[str, Any] = {}
        self._kserve_series: tuple[Any, ...] = ()
        self._forward_transformed: Any = None
        self._metrics = serving_metrics()

    # ---- lifecycle -----------------------------------------------------------------------
    def load(self) -> bool:
        """Verify and load the bundle, warm the forward pass up, then report ready."""
        import torch

        from kfgpu.serving.loading import load_served_bundle

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
        self.bundle = load_served_bundle(
            self.bundle_path, device=device, allow_modules=self.allow_modules
        )
        if not self.version:
            self.version = bundle_fingerprint(self.bundle_path)
        self.schema = RequestSchema.from_transform(self.bundle.transform, max_rows=self.max_rows)
        from kfgpu.serving.lean import lean_forward

        self._forward_transformed = (
            lean_forward(self.bundle.module) if device == "cpu" else None
        ) or self.bundle.module.forward_transformed
        self.classes = [c for c in self.bundle.classes]
        self.labels = [str(c) for c in self.classes]
        self.task = self.bundle.task
        labels = {"model": self.name}
        m = self._metrics
        # The labelled series, looked up once (a lookup per request costs microseconds).
        batch_rows = m["batch_rows"].labels(**labels)
        batch_requests = m["batch_requests"].labels(**labels)
        forward = m["forward"].labels(**labels)
        self._series = {
            (protocol, outcome): m["requests"].labels(self.name, protocol, outcome)
            for protocol in ("v1", "v2")
            for outcome in ("ok", "invalid", "error")
        }
        self._rows_series = m["rows"].labels(self.name)
        self._latency_series = {p: m["latency"].labels(self.name, p) for p in ("v1", "v2")}
        from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels

        kserve_labels = get_labels(self.name)
        self._kserve_series = tuple(
            h.labels(**kserve_labels) for h in (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)
        )

        def on_batch(items: int, rows: int, seconds: float) -> None:
            batch_rows.observe(rows)
            batch_requests.observe(items)
            forward.observe(seconds)

        self._batcher = MicroBatcher(
            self._predict_parts,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            size=lambda r: r.n,
            on_batch=on_batch,
            # A forward pass under 1 ms runs on the event loop: the hop to a worker thread
            # and back would cost about as much again.
            inline_below_ms=1.0,
        )
        # Warm-up: the first forward allocates; do it before reporting ready.
        warm = self.schema.parse_v1({"instances": [smoke_instance(self.bundle.transform)]})
        self._predict_parts([warm])
        self.ready = True
        return self.ready

    def serving(self) -> bool:
        """Loaded, ready, and its batcher runs."""
        return bool(self.ready and self._batcher is not None and self._batcher.healthy())

    async def healthy(self) -> bool:
        return self.serving()

    def stop(self) -> None:
        """Unloaded (KServe's repository ``unload``): not ready until :meth:`load` again."""
        self.ready = False

    # ---- multi-process serving (KServe's --workers spawns processes) ----------------------
    def __getstate__(self) -> dict[str, Any]:
        """What a worker process receives: the settings, not the loaded model, threads or
        metrics; :meth:`__setstate__` loads the bundle there again."""
        if self.logger is not None:
            raise ConfigError(
                "inference logging (--log-uri) runs in one process; serve with --workers 1 "
                "and scale with replicas"
            )
        state = dict(self.__dict__)
        for key in (
            "bundle",
            "schema",
            "_forward_transformed",
            "_batcher",
            "_metrics",
            "_series",
            "_rows_series",
            "_latency_series",
            "_kserve_series",
        ):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.bundle = None
        self.schema = None
        self._forward_transformed = None
        self._batcher = None
        self._metrics = serving_metrics()
        self._series, self._rows_series, self._latency_series = {}, None, {}
        self._kserve_series = ()
        # Loaded later, by ensure_loaded() in the worker: KServe pings a worker 5 s after
        # spawning it and kills it as hung if unpickling (this) has not finished by then.
        self._load_pending = bool(state.get("ready"))
        self.ready = False

    def ensure_loaded(self) -> None:
        """Load the bundle in a worker process that received this model unloaded."""
        if getattr(self, "_load_pending", False):
            self._load_pending = False
            self.load()

    # ---- the forward pass, in the worker thread --------------------------------------------
    def forward_frame(self, df: Any) -> np.ndarray:
        """Probabilities ``(n, k)`` (classification) or values ``(n,)`` of a raw frame."""
        num, codes = self.bundle.transform.raw_arrays(df)
        return self.forward_arrays(num, codes)

    def forward_arrays(self, num: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, k)`` (classification) or values ``(n,)`` of the transform's
        raw arrays (:meth:`~kfgpu.features.transform.FittedTransform.column_arrays`)."""
        import torch

        module = self.bundle.module
        if self.device == "cpu":
            # On CPU the transform's arithmetic in NumPy costs a fraction of the torch
            # module's many small ops at the batch sizes a server sees (same arithmetic,
            # FittedTransform.transform_arrays); the network still runs in torch, through
            # the same operators called directly where kfgpu.serving.lean knows the module.
            dense, emb = self.bundle.transform.transform_arrays(num, codes)
            with torch.inference_mode():
                out = self._forward_transformed(torch.from_numpy(dense), torch.from_numpy(emb))
                return out.float().numpy()
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
        # Decoded columns go straight to the transform's arrays: no frame per request.
        columns, n = self.schema.merged(parts)
        out = self.forward_arrays(*self.bundle.transform.column_arrays(columns, n))
        results: list[np.ndarray] = []
        start = 0
        for p in parts:
            results.append(out[start : start + p.n])
            start += p.n
        return results

    # ---- requests ------------------------------------------------------------------------
    async def __call__(
        self,
        body: Any,
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> tuple[Any, dict[str, str]]:
        """KServe's ``Model.__call__`` for a prediction (preprocess, validate, predict,
        postprocess, each timed into KServe's histograms) with the histograms' series
        looked up once instead of three times a request. Anything else (explain, KServe's
        latency log, response headers) goes to KServe's own."""
        series = self._kserve_series
        if (
            verb is not InferenceVerb.PREDICT
            or not series
            or self.enable_latency_logging
            or self.required_response_headers
        ):
            return await super().__call__(body, headers, verb)
        pre, predict, post = series
        clock = time.perf_counter
        # Observed whether the step succeeds or raises, as KServe's timers do.
        t0 = clock()
        try:
            payload = await self.preprocess(body, headers)
        finally:
            pre.observe(clock() - t0)
        payload = self.validate(payload)
        t0 = clock()
        try:
            response = await self.predict(payload, headers)
        finally:
            predict.observe(clock() - t0)
        t0 = clock()
        try:
            response = await self.postprocess(response, headers)
        finally:
            post.observe(clock() - t0)
        return response, {}

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
        series = self._series
        t0 = time.perf_counter()
        try:
            rows = self._decode(payload)
        except RequestError as e:
            series[protocol, "invalid"].inc()
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
            series[protocol, "error"].inc()
            raise
        if self.logger is not None:
            # A reference to the request's columns and outputs goes on a queue; sampling,
            # conversion and writing happen in the logger's thread.
            request_id = (headers or {}).get("x-request-id", "") or (
                payload.id if isinstance(payload, InferRequest) and payload.id else ""
            )
            self.logger.log(rows.columns, rows.n, out, request_id=request_id or uuid.uuid4().hex)
        series[protocol, "ok"].inc()
        self._rows_series.inc(rows.n)
        self._latency_series[protocol].observe(time.perf_counter() - t0)
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
            model_version=self.version or None,
            infer_outputs=outputs,
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )


def bundle_fingerprint(path: str | Path) -> str:
    """A bundle's content version: the first 12 hex digits of the sha256 of its checksum
    file (which lists every file's sha256)."""
    import hashlib

    from kfgpu.bundle import CHECKSUMS_FILE

    return hashlib.sha256((Path(path) / CHECKSUMS_FILE).read_bytes()).hexdigest()[:12]


class BundleRepository(ModelRepository):
    """KServe's model repository for the served bundle models: ``unload`` makes a model
    unready and removes it, ``load`` loads it from its bundle again (only models this
    server was started with; KServe's own ``load`` does nothing and answers 503)."""

    def __init__(self) -> None:
        super().__init__()
        self._known: dict[str, BundleModel] = {}

    def update(self, model: Any, name: str | None = None) -> None:
        super().update(model, name)
        if isinstance(model, BundleModel):
            self._known[name or model.name] = model

    def load(self, name: str) -> bool:
        model = self._known.get(name)
        if model is None:
            raise ModelNotFound(name)
        if not model.ready:
            model.load()
        self.models[name] = model
        return bool(model.ready)

    def all_ready(self) -> bool:
        """Every model the server was started with is registered and ready."""
        return bool(self._known) and all(
            self.models.get(n) is m and m.serving() for n, m in self._known.items()
        )
