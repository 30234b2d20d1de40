"""Serving on KServe: the bundle predictor, batch prediction, InferenceService building,
deployment with a verified canary.

Modules (each imports its heavy dependencies only when called):

* :mod:`kfgpu.serving.schema`: strict decoding of V1 / V2 requests into raw columns;
* :mod:`kfgpu.serving.batcher`: the adaptive asyncio micro-batcher;
* :mod:`kfgpu.serving.predictor`: ``BundleModel``, a ``kserve.Model`` for a bundle;
* :mod:`kfgpu.serving.server`: ``serve()``, the real KServe ModelServer around it;
* :mod:`kfgpu.serving.batch`: ``batch_predict_step``, Parquet in, Parquet out;
* :mod:`kfgpu.serving.isvc`: the InferenceService builder and the ONNX / Triton export;
* :mod:`kfgpu.serving.deploy`: apply, wait, verify traffic, smoke, roll back; canaries.
"""

from __future__ import annotations

__all__: list[str] = []
