"""Multi-node training on Kubernetes: render Kubeflow job objects and launch them.

:mod:`kfgpu.kube.jobs` renders a :class:`~kfgpu.kube.jobs.LaunchConfig` into a Kubeflow
Trainer v2 ``TrainJob``, a Training Operator v1 ``PyTorchJob`` or an ``MPIJob`` v2beta1 (Horovod)
as plain dicts; :mod:`kfgpu.kube.launcher` creates one, waits for it, streams its conditions and
reports the rank that failed first. Neither imports the ``kubernetes`` client until a function
that talks to a cluster runs.
"""

from __future__ import annotations

from kfgpu.kube.jobs import (
    JobKind,
    LaunchConfig,
    render,
    render_mpijob,
    render_pytorchjob,
    render_trainjob,
)
from kfgpu.kube.launcher import LaunchResult, launch

__all__ = [
    "JobKind",
    "LaunchConfig",
    "LaunchResult",
    "launch",
    "render",
    "render_mpijob",
    "render_pytorchjob",
    "render_trainjob",
]
