"""Kubeflow operations: upload, run and schedule pipelines as code; GPU platform settings;
a preflight of the cluster.

* :mod:`kfgpu.ops.client` builds a ``kfp.Client`` from flags or environment (host, token,
  in-cluster service-account token, namespace, CA certificate).
* :mod:`kfgpu.ops.upload` uploads a compiled pipeline and a content-named version, idempotently.
* :mod:`kfgpu.ops.submit` starts a run with typed parameters and follows its state.
* :mod:`kfgpu.ops.schedule` makes the cluster's recurring runs match a YAML file.
* :mod:`kfgpu.ops.cron` converts 5-field crons and time zones to what KFP's scheduler runs.
* :mod:`kfgpu.ops.doctor` checks what a run will need and says what is missing.
* :mod:`kfgpu.ops.platform` applies GPU platform settings and the caching policy to tasks.
* :mod:`kfgpu.ops.fingerprint` fingerprints a data source for the cache key.

Importing this package imports neither kfp nor kubernetes; each function imports what it uses.
"""

from __future__ import annotations

__all__: list[str] = []
