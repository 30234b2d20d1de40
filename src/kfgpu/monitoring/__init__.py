"""Monitoring: log what an endpoint sees, judge it against the champion, act on drift.

* :mod:`kfgpu.monitoring.logger`: sampled inference logging to Parquet, off the request path.
* :mod:`kfgpu.monitoring.sink`: the same logs from KServe's payload logger (CloudEvents).
* :mod:`kfgpu.monitoring.monitor`: the verdict (data drift, data quality, concept drift) by
  a declarative policy.
* :mod:`kfgpu.monitoring.step`: the monitoring pipeline's steps (judge; retrain, notify).

Heavy libraries load only when a function runs.
"""

from __future__ import annotations

__all__ = ["InferenceLogger", "MonitorPolicy", "MonitorVerdict", "monitor", "read_logs"]


def __getattr__(name: str) -> object:
    if name == "InferenceLogger":
        from kfgpu.monitoring.logger import InferenceLogger

        return InferenceLogger
    if name in ("MonitorPolicy", "MonitorVerdict", "monitor", "read_logs"):
        from kfgpu.monitoring import monitor as m

        return getattr(m, name)
    raise AttributeError(f"module 'kfgpu.monitoring' has no attribute {name!r}")
