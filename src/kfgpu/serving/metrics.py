"""Prometheus metrics of the predictor, in the default registry (KServe's ``/metrics``).

* ``kfgpu_serving_requests_total{model, protocol, outcome}``: requests by outcome
  (``ok``, ``invalid``, ``error``);
* ``kfgpu_serving_rows_total{model}``: rows predicted;
* ``kfgpu_serving_request_seconds{model, protocol}``: time in the predictor per request
  (validation, queueing, forward, encoding);
* ``kfgpu_serving_batch_rows{model}`` and ``kfgpu_serving_batch_requests{model}``: rows and
  requests per forward pass (how well micro-batching works);
* ``kfgpu_serving_forward_seconds{model}``: one forward pass.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["serving_metrics"]

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


@functools.cache
def serving_metrics() -> dict[str, Any]:
    """The metric objects, created once per process."""
    from prometheus_client import Counter, Histogram

    return {
        "requests": Counter(
            "kfgpu_serving_requests",
            "Prediction requests by outcome",
            ["model", "protocol", "outcome"],
        ),
        "rows": Counter("kfgpu_serving_rows", "Rows predicted", ["model"]),
        "latency": Histogram(
            "kfgpu_serving_request_seconds",
            "Seconds in the predictor per request",
            ["model", "protocol"],
            buckets=_LATENCY_BUCKETS,
        ),
        "batch_rows": Histogram(
            "kfgpu_serving_batch_rows", "Rows per forward pass", ["model"], buckets=_BATCH_BUCKETS
        ),
        "batch_requests": Histogram(
            "kfgpu_serving_batch_requests",
            "Requests per forward pass",
            ["model"],
            buckets=_BATCH_BUCKETS,
        ),
        "forward": Histogram(
            "kfgpu_serving_forward_seconds",
            "Seconds per forward pass",
            ["model"],
            buckets=_LATENCY_BUCKETS,
        ),
    }
