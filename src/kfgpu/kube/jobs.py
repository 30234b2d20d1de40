"""Render one multi-node training launch into a Kubeflow job object.

KFP cannot take a GPU count from a runtime parameter, so a launcher component renders the job
itself. One :class:`LaunchConfig`, validated on construction, renders into any of:

* :func:`render_trainjob`: a Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``)
  that points at the ``torch-distributed`` ``ClusterTrainingRuntime``; pod-level settings
  (the ``/dev/shm`` volume, tolerations, node selector, service account) go in
  ``spec.runtimePatches``, the field the kubeflow-trainer-api 2.3 models define (it replaced
  the older ``podSpecOverrides`` / ``podTemplateOverrides``).
* :func:`render_pytorchjob`: a Training Operator v1 ``PyTorchJob`` (``kubeflow.org/v1``), one
  ``Master`` and ``num_nodes - 1`` ``Worker`` replicas, container ``pytorch``.
* :func:`render_mpijob`: an MPI Operator ``MPIJob`` (``kubeflow.org/v2beta1``) for Horovod,
  one ``Launcher`` (container ``mpi-launcher``, runs ``cfg.command``) and ``num_nodes``
  ``Worker`` replicas (container ``mpi-worker``, the image's own entrypoint starts sshd).

Every renderer returns a plain dict ready for
``CustomObjectsApi.create_namespaced_custom_object``; quantities are strings, as the API server
returns them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from kfgpu._image import TRAIN_IMAGE
from kfgpu.errors import ConfigError
from kfgpu.kube.storage import GCS_FILE_ENV, GCS_KEY, MOUNT_PATH, S3_KEYS

__all__ = [
    "JOB_RESOURCES",
    "JobKind",
    "LaunchConfig",
    "render",
    "render_mpijob",
    "render_pytorchjob",
    "render_trainjob",
]

JobKind = Literal["TrainJob", "PyTorchJob", "MPIJob"]
RestartPolicy = Literal["Never", "OnFailure", "ExitCode"]
#: The replica restart policies the MPI Operator's validation admits.
MPI_RESTART_POLICIES: tuple[str, ...] = ("Never", "OnFailure")

#: ``kind -> (group, version, plural)``: where each job kind lives on the API server.
JOB_RESOURCES: dict[str, tuple[str, str, str]] = {
    "TrainJob": ("trainer.kubeflow.org", "v1alpha1", "trainjobs"),
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "MPIJob": ("kubeflow.org", "v2beta1", "mpijobs"),
}

#: The replicated job and container that Kubeflow Trainer's torch runtimes name ``node``.
TRAINER_NODE = "node"
#: Who owns the runtime patch kfgpu adds to a TrainJob.
TRAINER_PATCH_MANAGER = "kfgpu.dev/launcher"
#: The pod volume holding the object-storage Secret's files (``LaunchConfig.storage_secret``).
STORAGE_VOLUME = "kfgpu-storage"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
_TOLERATION_EFFECTS = frozenset({"", "NoSchedule", "PreferNoSchedule", "NoExecute"})
# Longest name that still leaves room for the suffixes operators add to pod and service
# names (``-worker-123``, ``-launcher``, JobSet's ``-node-0-12``).
_MAX_NAME = 40


def _fail(field_name: str, value: object, why: str, fix: str) -> ConfigError:
    return ConfigError(f"LaunchConfig.{field_name}={value!r} {why}; {fix}")


@dataclass(frozen=True)
class LaunchConfig:
    """One multi-node training launch, validated on construction.

    Attributes:
        name: job name, a DNS-1035 label of at most 40 characters (operators append suffixes).
        namespace: namespace the job is created in.
        image: container image of every training pod.
        command: entrypoint of the training container. For a TrainJob or PyTorchJob, empty
            means the runtime's or image's own; for an MPIJob it is the launcher's
            ``horovodrun``/``mpirun`` line and is required.
        args: arguments of the training container.
        num_nodes: number of nodes (pods), at least 1.
        gpus_per_node: GPUs each node requests, 0 for a CPU-only job.
        gpu_resource: extended resource name of a GPU.
        gpu_type: value of the ``gpu_type_label`` node selector (for example
            ``NVIDIA-H100-80GB-HBM3``); ``None`` selects any GPU node.
        gpu_type_label: node label that ``gpu_type`` selects on.
        cpu: CPU request and limit per node (a Kubernetes quantity) or ``None``.
        memory: memory request and limit per node (a Kubernetes quantity) or ``None``.
        shm_size: size limit of the memory-backed ``emptyDir`` mounted at ``/dev/shm`` (NCCL
            and DataLoader workers need more than the container runtime's 64 MiB); ``None``
            mounts none.
        env: extra environment variables; they override the NCCL defaults.
        nccl_debug: ``NCCL_DEBUG`` level.
        nccl_socket_ifname: ``NCCL_SOCKET_IFNAME`` (and ``GLOO_SOCKET_IFNAME``, for the
            trainer's CPU control group), unset unless given.
        nccl_ib_disable: ``NCCL_IB_DISABLE`` (``True`` -> ``"1"``), unset unless given.
        tolerations: pod tolerations, each a dict with Kubernetes' camelCase keys.
        node_selector: extra node selector labels.
        service_account: service account of the training pods.
        restart_policy: replica restart policy (PyTorchJob; an MPIJob takes Never or OnFailure).
        backoff_limit: retries before the job is marked failed (PyTorchJob and MPIJob;
            a TrainJob takes it from its runtime).
        ttl_seconds_after_finished: seconds after which a finished job is garbage collected
            (PyTorchJob and MPIJob), ``None`` keeps it.
        active_deadline_seconds: seconds the job may run before the operator fails it, or
            ``None`` for no limit.
        labels: labels put on the job and on its pods.
        runtime: the ``ClusterTrainingRuntime`` a TrainJob refers to.
        storage_secret: the object-storage Secret (:mod:`kfgpu.kube.storage`) every
            training container gets, optional at run time: its S3 keys as environment
            variables and its files (a GCS key) mounted read-only; ``None``: none.
    """

    name: str
    namespace: str = "kubeflow"
    image: str = TRAIN_IMAGE
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    num_nodes: int = 1
    gpus_per_node: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    gpu_type: str | None = None
    gpu_type_label: str = "nvidia.com/gpu.product"
    cpu: str | None = None
    memory: str | None = None
    shm_size: str | None = "8Gi"
    env: dict[str, str] = field(default_factory=dict)
    nccl_debug: str = "WARN"
    nccl_socket_ifname: str | None = None
    nccl_ib_disable: bool | None = None
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    restart_policy: RestartPolicy = "Never"
    backoff_limit: int = 0
    ttl_seconds_after_finished: int | None = 3600
    active_deadline_seconds: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "torch-distributed"
    storage_secret: str | None = None

    def __post_init__(self) -> None:
        # Copy the mutable inputs so a caller mutating its list cannot change a frozen config.
        for name in ("command", "args"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise _fail(name, value, "is not a list of strings", "pass e.g. ['torchrun']")
            object.__setattr__(self, name, list(value))
        for name in ("env", "node_selector", "labels"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise _fail(
                    name, value, "is not a mapping of strings to strings", "quote the values"
                )
            object.__setattr__(self, name, dict(value))
        object.__setattr__(self, "tolerations", [dict(t) for t in self.tolerations])
        self._validate()

    def _validate(self) -> None:
        if len(self.name) > _MAX_NAME or not _DNS1035.match(self.name):
            raise _fail(
                "name",
                self.name,
                f"is not a DNS-1035 label of at most {_MAX_NAME} characters",
                "use lower-case letters, digits and '-', starting with a letter",
            )
        if len(self.namespace) > 63 or not _DNS1123.match(self.namespace):
            raise _fail(
                "namespace", self.namespace, "is not a DNS-1123 label", "use e.g. 'kubeflow'"
            )
        if not self.image or self.image != self.image.strip():
            raise _fail(
                "image",
                self.image,
                "is not an image reference",
                "pass e.g. kfgpu._image.TRAIN_IMAGE",
            )
        for name in ("num_nodes", "gpus_per_node", "backoff_limit"):
            value = getattr(self, name)
            low = 1 if name == "num_nodes" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise _fail(name, value, f"is not an integer >= {low}", f"pass an integer >= {low}")
        for name in ("ttl_seconds_after_finished", "active_deadline_seconds"):
            value = getattr(self, name)
            low = 0 if name == "ttl_seconds_after_finished" else 1
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise _fail(
                    name, value, f"is not an integer >= {low}", f"pass an integer >= {low} or None"
                )
        for name in ("cpu", "memory", "shm_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _QUANTITY.match(value)):
                raise _fail(
                    name,
                    value,
                    "is not a Kubernetes quantity",
                    "pass e.g. '8', '500m' or '64Gi', or None",
                )
        if "/" not in self.gpu_resource:
            raise _fail(
                "gpu_resource",
                self.gpu_resource,
                "is not an extended resource name",
                "pass e.g. 'nvidia.com/gpu'",
            )
        if self.gpu_type is not None and not self.gpu_type:
            raise _fail("gpu_type", self.gpu_type, "is empty", "pass the node label value or None")
        if self.restart_policy not in get_args(RestartPolicy):
            raise _fail(
                "restart_policy",
                self.restart_policy,
                "is not a restart policy",
                f"pick one of {get_args(RestartPolicy)}",
            )
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise _fail(
                    "env",
                    key,
                    "is not a valid environment variable name",
                    "use letters, digits, '_', '-' and '.'",
                )
        for i, tol in enumerate(self.tolerations):
            unknown = set(tol) - _TOLERATION_KEYS
            if unknown:
                raise _fail(
                    f"tolerations[{i}]",
                    tol,
                    f"has unknown keys {sorted(unknown)}",
                    f"use only {sorted(_TOLERATION_KEYS)}",
                )
            if tol.get("operator", "Equal") not in ("Equal", "Exists"):
                raise _fail(
                    f"tolerations[{i}].operator",
                    tol.get("operator"),
                    "is not 'Equal' or 'Exists'",
                    "pick one of those",
                )
            if tol.get("effect", "") not in _TOLERATION_EFFECTS:
                raise _fail(
                    f"tolerations[{i}].effect",
                    tol.get("effect"),
                    "is not a taint effect",
                    f"pick one of {sorted(_TOLERATION_EFFECTS)}",
                )
            if tol.get("operator") == "Exists" and tol.get("value"):
                raise _fail(
                    f"tolerations[{i}].value",
                    tol.get("value"),
                    "is set with operator 'Exists'",
                    "drop the value or use 'Equal'",
                )
        if self.storage_secret is not None and not _DNS1123.match(self.storage_secret):
            raise _fail(
                "storage_secret",
                self.storage_secret,
                "is not a DNS-1123 name",
                "pass the Secret's name (e.g. 'kfgpu-storage') or None",
            )
        if self.service_account is not None and not _DNS1123.match(self.service_account):
            raise _fail(
                "service_account",
                self.service_account,
                "is not a DNS-1123 name",
                "pass an existing service account's name",
            )

    def effective_env(self) -> dict[str, str]:
        """The environment of every training container: NCCL defaults, then :attr:`env`."""
        out = {"NCCL_DEBUG": self.nccl_debug}
        if self.nccl_socket_ifname is not None:
            out["NCCL_SOCKET_IFNAME"] = self.nccl_socket_ifname
            # The trainer's CPU control group (gloo: the ranks' stop vote) uses the same NIC.
            out["GLOO_SOCKET_IFNAME"] = self.nccl_socket_ifname
        if self.nccl_ib_disable is not None:
            out["NCCL_IB_DISABLE"] = "1" if self.nccl_ib_disable else "0"
        out.update(self.env)
        return out

    def effective_node_selector(self) -> dict[str, str]:
        """:attr:`node_selector` plus the GPU-type label when :attr:`gpu_type` is set."""
        out = dict(self.node_selector)
        if self.gpu_type is not None and self.gpus_per_node > 0:
            out[self.gpu_type_label] = self.gpu_type
        return out


# --- pieces shared by the renderers -------------------------------------------------------


def _env_list(cfg: LaunchConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in cfg.effective_env().items()]
    if cfg.storage_secret is not None:
        env += [
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {"name": cfg.storage_secret, "key": key, "optional": True}
                },
            }
            for key in S3_KEYS
            if key not in cfg.env
        ]
        env.append({"name": GCS_FILE_ENV, "value": f"{MOUNT_PATH}/{GCS_KEY}"})
    return env


def _resources(cfg: LaunchConfig, *, gpus: bool = True) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cfg.cpu is not None:
        requests["cpu"] = limits["cpu"] = cfg.cpu
    if cfg.memory is not None:
        requests["memory"] = limits["memory"] = cfg.memory
    if gpus and cfg.gpus_per_node > 0:
        # Extended resources are limits only; the API server copies them into requests.
        limits[cfg.gpu_resource] = str(cfg.gpus_per_node)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _volumes(cfg: LaunchConfig, *, shm: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if shm and cfg.shm_size is not None:
        out.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}})
    if cfg.storage_secret is not None:
        out.append(
            {
                "name": STORAGE_VOLUME,
                "secret": {"secretName": cfg.storage_secret, "optional": True},
            }
        )
    return out


def _mounts(cfg: LaunchConfig, *, shm: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if shm and cfg.shm_size is not None:
        out.append({"name": "dshm", "mountPath": "/dev/shm"})
    if cfg.storage_secret is not None:
        out.append({"name": STORAGE_VOLUME, "mountPath": MOUNT_PATH, "readOnly": True})
    return out


def _metadata(cfg: LaunchConfig) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": cfg.name, "namespace": cfg.namespace}
    if cfg.labels:
        meta["labels"] = dict(cfg.labels)
    return meta


def _pod_settings(cfg: LaunchConfig, *, gpu_node: bool = True) -> dict[str, Any]:
    """Pod-level fields every training pod carries (volumes are added by the caller)."""
    spec: dict[str, Any] = {}
    if cfg.tolerations:
        spec["tolerations"] = [dict(t) for t in cfg.tolerations]
    selector = cfg.effective_node_selector() if gpu_node else dict(cfg.node_selector)
    if selector:
        spec["nodeSelector"] = selector
    if cfg.service_account is not None:
        spec["serviceAccountName"] = cfg.service_account
    return spec


def _pod_template(
    cfg: LaunchConfig,
    container_name: str,
    *,
    command: list[str],
    args: list[str],
    gpus: bool = True,
    shm: bool = True,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": container_name, "image": cfg.image}
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = list(args)
    container["env"] = _env_list(cfg)
    resources = _resources(cfg, gpus=gpus)
    if resources:
        container["resources"] = resources
    mounts = _mounts(cfg, shm=shm)
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {"containers": [container], **_pod_settings(cfg, gpu_node=gpus)}
    volumes = _volumes(cfg, shm=shm)
    if volumes:
        spec["volumes"] = volumes
    template: dict[str, Any] = {"spec": spec}
    if cfg.labels:
        template["metadata"] = {"labels": dict(cfg.labels)}
    return template


def _run_policy(cfg: LaunchConfig) -> dict[str, Any]:
    # cleanPodPolicy None keeps the pods of a failed job so the launcher can read their
    # exit codes and logs; the TTL removes them later.
    policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": cfg.backoff_limit}
    if cfg.ttl_seconds_after_finished is not None:
        policy["ttlSecondsAfterFinished"] = cfg.ttl_seconds_after_finished
    if cfg.active_deadline_seconds is not None:
        policy["activeDeadlineSeconds"] = cfg.active_deadline_seconds
    return policy


# --- renderers ----------------------------------------------------------------------------


def render_trainjob(cfg: LaunchConfig) -> dict[str, Any]:
    """Render a Kubeflow Trainer v2 ``TrainJob`` on the ``cfg.runtime`` cluster runtime.

    Args:
        cfg: the launch.

    Returns:
        The ``trainer.kubeflow.org/v1alpha1`` ``TrainJob`` as a plain dict. ``backoff_limit``,
        ``restart_policy`` and ``ttl_seconds_after_finished`` come from the runtime and are
        not rendered.
    """
    trainer: dict[str, Any] = {"image": cfg.image}
    if cfg.command:
        trainer["command"] = list(cfg.command)
    if cfg.args:
        trainer["args"] = list(cfg.args)
    trainer["numNodes"] = cfg.num_nodes
    if cfg.gpus_per_node > 0:
        trainer["numProcPerNode"] = cfg.gpus_per_node
    resources = _resources(cfg)
    if resources:
        trainer["resourcesPerNode"] = resources
    trainer["env"] = _env_list(cfg)

    pod_spec: dict[str, Any] = _pod_settings(cfg)
    volumes = _volumes(cfg)
    if volumes:
        pod_spec["volumes"] = volumes
        pod_spec["containers"] = [{"name": TRAINER_NODE, "volumeMounts": _mounts(cfg)}]
    spec: dict[str, Any] = {
        "runtimeRef": {
            "name": cfg.runtime,
            "kind": "ClusterTrainingRuntime",
            "apiGroup": "trainer.kubeflow.org",
        },
        "trainer": trainer,
    }
    if cfg.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = cfg.active_deadline_seconds
    if pod_spec or cfg.labels:
        pod_template: dict[str, Any] = {}
        if cfg.labels:
            pod_template["metadata"] = {"labels": dict(cfg.labels)}
        if pod_spec:
            pod_template["spec"] = pod_spec
        spec["runtimePatches"] = [
            {
                "manager": TRAINER_PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": TRAINER_NODE,
                                    "template": {"spec": {"template": pod_template}},
                                }
                            ]
                        }
                    }
                },
            }
        ]
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": _metadata(cfg),
        "spec": spec,
    }


def render_pytorchjob(cfg: LaunchConfig) -> dict[str, Any]:
    """Render a Training Operator v1 ``PyTorchJob``: one Master and ``num_nodes - 1`` Workers.

    Args:
        cfg: the launch.

    Returns:
        The ``kubeflow.org/v1`` ``PyTorchJob`` as a plain dict (no ``elasticPolicy``).
    """

    def replica(replicas: int) -> dict[str, Any]:
        return {
            "replicas": replicas,
            "restartPolicy": cfg.restart_policy,
            "template": _pod_template(cfg, "pytorch", command=cfg.command, args=cfg.args),
        }

    specs = {"Master": replica(1)}
    if cfg.num_nodes > 1:
        specs["Worker"] = replica(cfg.num_nodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(cfg),
        "spec": {
            "nprocPerNode": str(cfg.gpus_per_node) if cfg.gpus_per_node > 0 else "auto",
            "runPolicy": _run_policy(cfg),
            "pytorchReplicaSpecs": specs,
        },
    }


def render_mpijob(cfg: LaunchConfig) -> dict[str, Any]:
    """Render an MPI Operator ``MPIJob`` v2beta1 for Horovod: one Launcher, ``num_nodes`` Workers.

    The launcher runs ``cfg.command`` + ``cfg.args`` (``horovodrun ...`` or ``mpirun ...``)
    without GPUs; each worker keeps its image's entrypoint (sshd) and gets the GPUs, the
    ``/dev/shm`` volume and the GPU node selector.

    Args:
        cfg: the launch; ``cfg.command`` is required.

    Returns:
        The ``kubeflow.org/v2beta1`` ``MPIJob`` as a plain dict.

    Raises:
        ConfigError: ``cfg.command`` is empty.
    """
    if not cfg.command:
        raise _fail(
            "command",
            cfg.command,
            "is empty but an MPIJob launcher needs one",
            "pass e.g. ['horovodrun', '-np', '16', 'python', 'train.py']",
        )
    if cfg.restart_policy not in MPI_RESTART_POLICIES:
        # The MPI Operator's validation admits only these two (ExitCode is PyTorchJob's).
        raise _fail(
            "restart_policy",
            cfg.restart_policy,
            "is not accepted by the MPI Operator",
            f"pick one of {MPI_RESTART_POLICIES} for an MPIJob",
        )
    launcher = {
        "replicas": 1,
        "restartPolicy": cfg.restart_policy,
        "template": _pod_template(
            cfg, "mpi-launcher", command=cfg.command, args=cfg.args, gpus=False, shm=False
        ),
    }
    worker = {
        "replicas": cfg.num_nodes,
        "restartPolicy": cfg.restart_policy,
        "template": _pod_template(cfg, "mpi-worker", command=[], args=[]),
    }
    return {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": _metadata(cfg),
        "spec": {
            "slotsPerWorker": cfg.gpus_per_node if cfg.gpus_per_node > 0 else 1,
            "runPolicy": _run_policy(cfg),
            "mpiImplementation": "OpenMPI",
            "mpiReplicaSpecs": {"Launcher": launcher, "Worker": worker},
        },
    }


_RENDERERS: dict[str, Callable[[LaunchConfig], dict[str, Any]]] = {
    "TrainJob": render_trainjob,
    "PyTorchJob": render_pytorchjob,
    "MPIJob": render_mpijob,
}


def render(cfg: LaunchConfig, kind: JobKind) -> dict[str, Any]:
    """Render ``cfg`` as a job of ``kind``.

    Raises:
        ConfigError: ``kind`` is not one of :data:`JobKind`.
    """
    try:
        renderer = _RENDERERS[kind]
    except KeyError:
        raise ConfigError(
            f"kind={kind!r} is not a job kind kfgpu renders; pick one of {sorted(_RENDERERS)}"
        ) from None
    return renderer(cfg)
