"""GPU platform settings and the caching policy for pipeline tasks.

:class:`PlatformConfig` holds what a cluster needs on a task: the accelerator and its count,
the GPU product, tolerations, node selectors, a memory-backed ``/dev/shm``, PVC mounts for
data, Secrets as environment (object storage, MLflow), retries, a timeout and resources.
:func:`apply_gpu_settings` applies it to a ``PipelineTask`` with KFP core and
``kfp-kubernetes``. Build one in code, or with :meth:`PlatformConfig.from_file` from YAML/JSON.

What can come from pipeline parameters (kfp 2.17):

* GPU count: ``PipelineTask.set_accelerator_limit`` takes a ``PipelineChannel``
  (``kfp/dsl/pipeline_task.py``); the compiler writes it as ``resources.accelerator.
  resourceCount: "{{$.inputs.parameters['pipelinechannel--gpus']}}"`` for the backend to
  resolve at run time (``kfp/compiler/pipeline_spec_builder.py``). The accelerator type (the
  resource name, ``nvidia.com/gpu``) can be a parameter the same way (``resourceType``).
* GPU product: a node selector. ``kfp.kubernetes.add_node_selector`` takes literals only;
  ``add_node_selector_json`` takes a ``dict`` pipeline parameter (``{"nvidia.com/gpu.product":
  "NVIDIA-H100-80GB-HBM3"}``), and then replaces the literal node selectors of the task.
* Tolerations can come from a parameter through ``add_toleration_json``; ``/dev/shm``, PVC
  mounts (the claim name may be a parameter), Secrets (the name may be a parameter), retries
  and timeouts are compile-time settings.

Caching policy (:func:`apply_cache_policy`): KFP's cache key includes the task's input
parameter values and input artifact names, not the bytes behind a URI. A step that reads a
mutable URI must be keyed on a fingerprint of the content: ``fingerprint_data`` computes it
(never cached: its job is to look again every run) and ``validate_data`` takes it as the
``data_fingerprint`` parameter, so its cache key holds URI and content together. A cache hit
on ``validate_data`` hands on the same artifacts, so every downstream step hits too; new data
gives a new fingerprint, a miss, new artifacts, and misses all the way down. Stale data can
never be served from the cache.

Steps with side effects are never cached (:data:`SIDE_EFFECTS`, :func:`no_cache`): a cache hit
skips the body, so a deploy, promotion, rollback, registration or retraining trigger would be
reported done without happening. KFP caches every task unless told otherwise, so the shipped
pipelines turn it off on each of them, and a pipeline of your own should too::

    deploy_model(...).set_caching_options(False)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kfgpu.errors import ConfigError
from kfgpu.kube.storage import S3_KEYS, use_object_storage

__all__ = [
    "GPU_PRODUCT_LABEL",
    "MLFLOW_SECRET_KEYS",
    "OBJECT_STORAGE_SECRET_KEYS",
    "SIDE_EFFECTS",
    "STUDY_STORAGE_SECRET",
    "PlatformConfig",
    "PvcMount",
    "SecretEnv",
    "Toleration",
    "apply_cache_policy",
    "apply_gpu_settings",
    "no_cache",
    "use_study_storage",
]

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
#: Secret key -> environment variable, for S3-compatible object storage (fsspec/s3fs, boto3):
#: the keys of kfgpu's object-storage Secret (:mod:`kfgpu.kube.storage`).
OBJECT_STORAGE_SECRET_KEYS = {k: k for k in S3_KEYS}
#: Secret key -> environment variable, for an MLflow server behind basic auth.
MLFLOW_SECRET_KEYS = {
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_DURATION = re.compile(r"^[0-9]+s$")


@dataclass(frozen=True)
class Toleration:
    """A pod toleration (see Kubernetes' ``Toleration``)."""

    key: str
    operator: str = "Exists"
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self) -> None:
        if self.operator not in ("Exists", "Equal"):
            raise ConfigError(f"toleration {self.key!r}: operator must be Exists or Equal")
        if self.effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(
                f"toleration {self.key!r}: effect must be NoSchedule, PreferNoSchedule, "
                "NoExecute or empty"
            )


@dataclass(frozen=True)
class PvcMount:
    """A PersistentVolumeClaim mounted into the task (training data, checkpoints)."""

    claim: str
    mount_path: str
    sub_path: str = ""


@dataclass(frozen=True)
class SecretEnv:
    """Keys of a Secret exposed as environment variables (key -> variable)."""

    secret: str
    keys: dict[str, str]
    optional: bool = False


@dataclass(frozen=True)
class PlatformConfig:
    """What a GPU cluster needs on a task. Every field is optional; the defaults set nothing.

    Attributes:
        gpus: GPUs per task (the container's accelerator limit); 0: none.
        gpu_resource: the extended resource counted (KFP's "accelerator type").
        gpu_product: the ``nvidia.com/gpu.product`` node label to pin to, e.g.
            ``NVIDIA-H100-80GB-HBM3``; empty: any GPU.
        tolerate_gpu_taint: with GPUs, tolerate the ``nvidia.com/gpu:NoSchedule`` taint
            GPU node pools usually carry.
        tolerations: further tolerations.
        node_selector: further node labels to require.
        shm_size: a memory-backed ``/dev/shm`` of this size (DDP workers and DataLoader
            workers share tensors there; the container default is 64 MiB); empty: none.
        pvc_mounts: claims to mount.
        object_storage_secret: kfgpu's object-storage Secret (S3 keys, a GCS key; see
            :mod:`kfgpu.kube.storage`), optional at run time: the ``AWS_*`` keys as those
            variables, its files mounted for the GCS key.
        mlflow_secret: a Secret with ``MLFLOW_TRACKING_USERNAME`` and
            ``MLFLOW_TRACKING_PASSWORD``, exposed as those variables (optional at run time).
        secret_env: further Secrets as environment.
        env: plain environment variables (``AWS_ENDPOINT_URL``, ``MLFLOW_TRACKING_URI``).
        retries: retries after a failure (preemption); 0: none.
        retry_backoff: the first retry's delay, e.g. ``60s``.
        retry_backoff_factor: each later delay is this much longer.
        timeout_seconds: the pod's ``activeDeadlineSeconds``; 0: none.
        cpu_request, memory_request, memory_limit: container resources; empty: unchanged.
    """

    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    gpu_product: str = ""
    tolerate_gpu_taint: bool = True
    tolerations: tuple[Toleration, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    shm_size: str = ""
    pvc_mounts: tuple[PvcMount, ...] = ()
    object_storage_secret: str = ""
    mlflow_secret: str = ""
    secret_env: tuple[SecretEnv, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    retry_backoff: str = "60s"
    retry_backoff_factor: float = 2.0
    timeout_seconds: int = 0
    cpu_request: str = ""
    memory_request: str = ""
    memory_limit: str = ""

    def __post_init__(self) -> None:
        where = "platform config"
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ConfigError(f"{where}: gpus must be a non-negative integer, got {self.gpus!r}")
        for name in ("shm_size", "memory_request", "memory_limit"):
            value = getattr(self, name)
            if value and not _QUANTITY.match(value):
                raise ConfigError(
                    f"{where}: {name} {value!r} is not a Kubernetes quantity (e.g. 8Gi)"
                )
        if not _DURATION.match(self.retry_backoff):
            raise ConfigError(
                f"{where}: retry_backoff {self.retry_backoff!r} must be seconds like '60s'"
            )
        for name in ("retries", "timeout_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}: {name} must be a non-negative integer, got {value!r}")

    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], *, where: str = "platform config"
    ) -> PlatformConfig:
        """Build from a mapping (YAML/JSON); unknown keys and bad values name the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(known)}"
            )
        kwargs = dict(data)
        try:
            if "tolerations" in kwargs:
                kwargs["tolerations"] = tuple(Toleration(**t) for t in kwargs["tolerations"])
            if "pvc_mounts" in kwargs:
                kwargs["pvc_mounts"] = tuple(PvcMount(**m) for m in kwargs["pvc_mounts"])
            if "secret_env" in kwargs:
                kwargs["secret_env"] = tuple(SecretEnv(**s) for s in kwargs["secret_env"])
            return cls(**kwargs)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from e

    @classmethod
    def from_file(cls, path: str | Path) -> PlatformConfig:
        """Read a YAML or JSON file (see :meth:`from_mapping`)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"platform config {str(p)!r} does not exist")
        text = p.read_text()
        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"platform config {p}: cannot parse ({e})") from e
        return cls.from_mapping(data or {}, where=f"platform config {p}")


def apply_gpu_settings(
    task: Any,
    config: PlatformConfig,
    *,
    gpus: Any = None,
    gpu_type: Any = None,
    node_selector_param: Any = None,
) -> Any:
    """Apply ``config`` to a ``PipelineTask`` and return the task.

    Args:
        task: the task (inside a ``@dsl.pipeline`` body).
        config: the settings.
        gpus: overrides ``config.gpus``; an int or a pipeline parameter (``PipelineChannel``)
            compiled as a run-time accelerator count.
        gpu_type: overrides ``config.gpu_resource``; a string or a pipeline parameter.
        node_selector_param: a ``dict`` pipeline parameter used as the node selector at run
            time (the way to make the GPU product a parameter); it replaces the literal
            node selectors (``gpu_product``, ``node_selector``) of this task.
    """
    from kfp import kubernetes
    from kfp.dsl.pipeline_channel import PipelineChannel

    count = config.gpus if gpus is None else gpus
    wants_gpu = isinstance(count, PipelineChannel) or (isinstance(count, int) and count > 0)
    if wants_gpu:
        task.set_accelerator_type(config.gpu_resource if gpu_type is None else gpu_type)
        task.set_accelerator_limit(count)
        # kfp's compiler hands a sub-DAG (dsl.ParallelFor, dsl.If) only the channels its tasks
        # register: a count used only as a resource is otherwise missing from the loop's
        # inputs, and the task fails at run time ("pipelinechannel--<name> not found").
        channels = [c for c in (count, gpu_type) if isinstance(c, PipelineChannel)]
        if channels:
            task.register_pipeline_channels(channels)
        if config.tolerate_gpu_taint:
            # A parameterised resource name is unknown at compile time: tolerate the configured one.
            key = gpu_type if isinstance(gpu_type, str) else config.gpu_resource
            kubernetes.add_toleration(task, key=key, operator="Exists", effect="NoSchedule")
    for t in config.tolerations:
        kubernetes.add_toleration(
            task, key=t.key, operator=t.operator, value=t.value or None, effect=t.effect or None
        )
    if node_selector_param is not None:
        kubernetes.add_node_selector_json(task, node_selector_param)
    else:
        if config.gpu_product and wants_gpu:
            kubernetes.add_node_selector(task, GPU_PRODUCT_LABEL, config.gpu_product)
        for key, value in sorted(config.node_selector.items()):
            kubernetes.add_node_selector(task, key, value)
    if config.shm_size:
        kubernetes.empty_dir_mount(
            task,
            volume_name="dshm",
            mount_path="/dev/shm",
            medium="Memory",
            size_limit=config.shm_size,
        )
    for m in config.pvc_mounts:
        kubernetes.mount_pvc(task, pvc_name=m.claim, mount_path=m.mount_path, sub_path=m.sub_path)
    if config.object_storage_secret:
        use_object_storage(task, config.object_storage_secret)
    if config.mlflow_secret:
        kubernetes.use_secret_as_env(task, config.mlflow_secret, MLFLOW_SECRET_KEYS, optional=True)
    for s in config.secret_env:
        kubernetes.use_secret_as_env(task, s.secret, dict(s.keys), optional=s.optional)
    for name, value in sorted(config.env.items()):
        task.set_env_variable(name, value)
    if config.retries:
        task.set_retry(
            num_retries=config.retries,
            backoff_duration=config.retry_backoff,
            backoff_factor=config.retry_backoff_factor,
        )
    if config.timeout_seconds:
        kubernetes.set_timeout(task, config.timeout_seconds)
    if config.cpu_request:
        task.set_cpu_request(config.cpu_request)
    if config.memory_request:
        task.set_memory_request(config.memory_request)
    if config.memory_limit:
        task.set_memory_limit(config.memory_limit)
    return task


def apply_cache_policy(fingerprint_task: Any, reader_task: Any | None = None) -> None:
    """The caching policy (see the module docstring) on the two tasks it concerns.

    ``fingerprint_task`` (``fingerprint_data``) is never cached: it must look at the data
    every run. ``reader_task`` (``validate_data``, already given
    ``data_fingerprint=fingerprint_task.output``) keeps caching on: its key now includes the
    fingerprint. Raises when the reader was not given the fingerprint, so a pipeline cannot
    cache on the URI alone by mistake.
    """
    fingerprint_task.set_caching_options(False)
    if reader_task is None:
        return
    from kfp.dsl.pipeline_channel import PipelineChannel

    argument = reader_task.inputs.get("data_fingerprint")

    if not (isinstance(argument, PipelineChannel) and argument.task_name == fingerprint_task.name):
        raise ConfigError(
            "validate_data must get data_fingerprint=fingerprint_data(...).output; "
            "otherwise its cache key holds the data URI only and a changed file under the same "
            "name would be served from the cache"
        )
    reader_task.set_caching_options(True)


#: Components whose run changes the world (an endpoint, the registry's versions and aliases, a
#: new pipeline run, a webhook) or judges against state that others change (the gate reads the
#: registry's champion): never served from KFP's cache.
SIDE_EFFECTS = frozenset(
    {
        "check_gate",
        "deploy_model",
        "promote_canary",
        "register_model",
        "rollback_canary",
        "trigger_retraining",
    }
)


def no_cache(task: Any) -> Any:
    """Turn KFP's cache off on ``task`` (a step in :data:`SIDE_EFFECTS`); return the task."""
    task.set_caching_options(False)
    return task


#: The Secret (``manifests/postgres``) that holds the shared Optuna study's storage URL.
STUDY_STORAGE_SECRET = "optuna-postgres"


def use_study_storage(task: Any) -> Any:
    """Give a tuning task the shared study's storage URL, from :data:`STUDY_STORAGE_SECRET`
    (key ``url``) as ``KFGPU_TUNING_STORAGE``, when that Secret exists; return the task."""
    from kfp import kubernetes

    from kfgpu.tuning.study import STORAGE_ENV

    kubernetes.use_secret_as_env(task, STUDY_STORAGE_SECRET, {"url": STORAGE_ENV}, optional=True)
    return task
