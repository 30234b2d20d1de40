"""Create a Kubeflow training job, wait for it, and say which rank failed first.

:func:`launch` creates a job rendered by :mod:`kfgpu.kube.jobs` with the real ``kubernetes``
client, polls it until a terminal condition (``Succeeded`` or ``Failed``; ``Complete`` for a
``TrainJob``), hands each new condition to ``on_condition`` once, deletes the job on timeout or
cancel (Ctrl-C, SIGTERM), and on failure finds, among the job's pods, the container that
terminated first with a non-zero exit code: its rank, pod, exit code, reason and last log lines.

The ``kubernetes`` package is imported inside the functions that talk to a cluster.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any, Literal

from kfgpu.errors import ConfigError, TrainingError
from kfgpu.kube.jobs import JOB_RESOURCES, JobKind

__all__ = ["LaunchResult", "default_api_client", "launch", "pod_selector"]

Status = Literal["Succeeded", "Failed"]

_SUCCESS_TYPES = frozenset({"Succeeded", "Complete"})
_FAILURE_TYPES = frozenset({"Failed"})
#: Log lines returned for the failing container.
LOG_TAIL_LINES = 50


@dataclass(frozen=True)
class LaunchResult:
    """How a launched job ended.

    Attributes:
        status: ``"Succeeded"`` or ``"Failed"``.
        conditions: every condition seen, in the order seen, as the API returned them.
        failed_rank: on failure, the container that terminated first with a non-zero exit:
            ``rank`` (node rank; ``None`` for an MPI launcher), ``role``, ``pod``,
            ``container``, ``exit_code``, ``reason``, ``message``, ``finished_at`` (ISO 8601)
            and ``log_tail`` (its last lines); ``None`` on success or when no pod was found.
        seconds: wall-clock seconds from create to the terminal condition.
    """

    status: Status
    conditions: list[dict[str, Any]] = field(default_factory=list)
    failed_rank: dict[str, Any] | None = None
    seconds: float = 0.0

    def raise_for_status(self, name: str = "job") -> None:
        """Raise :class:`~kfgpu.errors.TrainingError` naming the first failed rank, if failed."""
        if self.status == "Succeeded":
            return
        last = self.conditions[-1] if self.conditions else {}
        if self.failed_rank is None:
            raise TrainingError(
                f"{name} failed ({last.get('reason', '?')}: {last.get('message', '')}); no failed pod was found; check the operator's events"
            )
        r = self.failed_rank
        tail = "\n".join(r.get("log_tail", [])[-10:])
        raise TrainingError(
            f"{name} failed: rank {r['rank']} ({r['role']}, pod {r['pod']}) exited {r['exit_code']} "
            f"({r['reason']}) first; last log lines:\n{tail}"
        )


class _Cancelled(BaseException):
    """SIGTERM arrived while waiting (a BaseException, like KeyboardInterrupt)."""


@contextmanager
def _sigterm_cancels() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Cancelled` while waiting (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Cancelled()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_api_client() -> Any:
    """A Kubernetes ``ApiClient``: the in-cluster config inside a pod, else kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as e:
            raise ConfigError(
                f"api_client=None and no cluster configuration was found ({e}); run inside a pod with a service account, set KUBECONFIG, or pass api_client"
            ) from e
    return client.ApiClient()


def _describe(cond: dict[str, Any]) -> str:
    text = f"{cond.get('type')}={cond.get('status')}"
    if cond.get("reason"):
        text += f" ({cond['reason']})"
    if cond.get("message"):
        text += f": {cond['message']}"
    return text


def _terminal(conditions: list[dict[str, Any]]) -> Status | None:
    for cond in reversed(conditions):
        if str(cond.get("status")) != "True":
            continue
        if cond.get("type") in _SUCCESS_TYPES:
            return "Succeeded"
        if cond.get("type") in _FAILURE_TYPES:
            return "Failed"
    return None


def pod_selector(kind: JobKind, name: str) -> str:
    """The label selector that lists the pods of job ``name`` of ``kind``."""
    if kind == "TrainJob":
        # A TrainJob runs as a JobSet of the same name.
        return f"jobset.sigs.k8s.io/jobset-name={name}"
    return f"training.kubeflow.org/job-name={name}"


def _rank(kind: JobKind, labels: dict[str, str]) -> tuple[int | None, str]:
    """Node rank and role of a pod from its labels."""

    def as_int(key: str) -> int | None:
        value = labels.get(key)
        return int(value) if value is not None and value.isdigit() else None

    if kind == "TrainJob":
        role = labels.get("jobset.sigs.k8s.io/replicatedjob-name", "node")
        index = as_int("batch.kubernetes.io/job-completion-index")
        if index is None:
            index = as_int("jobset.sigs.k8s.io/job-index")
        return index, role
    index = as_int("training.kubeflow.org/replica-index")
    if kind == "PyTorchJob":
        role = labels.get("training.kubeflow.org/replica-type", "").lower() or "worker"
        if role == "master":
            return 0, role
        return (index + 1 if index is not None else None), role
    role = (
        labels.get("training.kubeflow.org/job-role")
        or labels.get("training.kubeflow.org/replica-type", "")
    ).lower()
    if role == "launcher":
        return None, role
    return index, role or "worker"


def _first_failure(kind: JobKind, pods: list[Any]) -> dict[str, Any] | None:
    """The container that terminated earliest with a non-zero exit code among ``pods``."""
    best: dict[str, Any] | None = None
    best_at: datetime | None = None
    for pod in pods:
        labels = dict(pod.metadata.labels or {})
        statuses = list(pod.status.init_container_statuses or []) + list(
            pod.status.container_statuses or []
        )
        for cs in statuses:
            for state in (cs.state, cs.last_state):
                term = state.terminated if state is not None else None
                if term is None or not term.exit_code:
                    continue
                at = term.finished_at
                if best is not None and (at is None or (best_at is not None and at >= best_at)):
                    continue
                rank, role = _rank(kind, labels)
                best_at = at
                best = {
                    "rank": rank,
                    "role": role,
                    "pod": pod.metadata.name,
                    "container": cs.name,
                    "exit_code": term.exit_code,
                    "reason": term.reason or "Error",
                    "message": term.message or "",
                    "finished_at": at.isoformat() if at is not None else None,
                    "log_tail": [],
                }
    return best


def _find_failed_rank(core: Any, kind: JobKind, name: str, namespace: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        pods = core.list_namespaced_pod(namespace, label_selector=pod_selector(kind, name)).items
    except ApiException:
        return None
    failed = _first_failure(kind, pods)
    if failed is None:
        return None
    try:
        log = core.read_namespaced_pod_log(
            failed["pod"], namespace, container=failed["container"], tail_lines=LOG_TAIL_LINES
        )
        failed["log_tail"] = str(log).splitlines()[-LOG_TAIL_LINES:]
    except ApiException as e:
        failed["log_tail"] = [f"<log unavailable: {e.status} {e.reason}>"]
    return failed


def launch(
    job: dict[str, Any],
    *,
    kind: JobKind,
    namespace: str | None = None,
    timeout_s: float,
    poll_s: float = 5,
    api_client: Any = None,
    on_condition: Callable[[str], object] = print,
) -> LaunchResult:
    """Create ``job``, wait for a terminal condition, and report how it ended.

    Args:
        job: a job object from :mod:`kfgpu.kube.jobs` (``metadata.name`` required).
        kind: ``"TrainJob"``, ``"PyTorchJob"`` or ``"MPIJob"``; must match ``job["kind"]``.
        namespace: namespace to create it in; defaults to ``job["metadata"]["namespace"]``.
        timeout_s: seconds to wait after creating it before deleting it.
        poll_s: seconds between two reads of the job's status.
        api_client: a ``kubernetes.client.ApiClient``; ``None`` loads the in-cluster
            configuration, then the kubeconfig.
        on_condition: called once with a line for each new condition, in order.

    Returns:
        The :class:`LaunchResult`; a failed job is returned, not raised (see
        :meth:`LaunchResult.raise_for_status`).

    Raises:
        ConfigError: ``kind``, ``job``, ``timeout_s`` or ``poll_s`` is unusable.
        TrainingError: the job could not be created or read, did not finish within
            ``timeout_s`` (it is deleted), or was cancelled by SIGTERM (it is deleted).
        KeyboardInterrupt: re-raised after the job is deleted.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    if kind not in JOB_RESOURCES:
        raise ConfigError(
            f"kind={kind!r} is not a job kind kfgpu launches; pick one of {sorted(JOB_RESOURCES)}"
        )
    if job.get("kind") != kind:
        raise ConfigError(
            f"job['kind']={job.get('kind')!r} does not match kind={kind!r}; render the job with the same kind"
        )
    name = (job.get("metadata") or {}).get("name")
    if not name:
        raise ConfigError("job['metadata']['name'] is missing; render the job from a LaunchConfig")
    namespace = namespace or (job.get("metadata") or {}).get("namespace")
    if not namespace:
        raise ConfigError(
            "namespace=None and job['metadata']['namespace'] is missing; pass namespace"
        )
    if timeout_s <= 0 or poll_s <= 0:
        raise ConfigError(f"timeout_s={timeout_s!r}, poll_s={poll_s!r}: both must be > 0")
    group, version, plural = JOB_RESOURCES[kind]
    label = f"{kind} {namespace}/{name}"

    api_client = api_client if api_client is not None else default_api_client()
    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)

    body = dict(job)
    body["metadata"] = {**job["metadata"], "namespace": namespace}
    try:
        custom.create_namespaced_custom_object(group, version, namespace, plural, body)
    except ApiException as e:
        fix = (
            "pick another name or delete the old job"
            if e.status == 409
            else "check the operator is installed and the service account may create it"
        )
        raise TrainingError(f"could not create {label}: {e.status} {e.reason}; {fix}") from e

    def delete() -> None:
        try:
            custom.delete_namespaced_custom_object(
                group, version, namespace, plural, name, propagation_policy="Background"
            )
        except ApiException as e:
            if e.status != 404:
                on_condition(f"[{label}] delete failed: {e.status} {e.reason}")

    start = time.monotonic()
    deadline = start + timeout_s
    seen: list[dict[str, Any]] = []
    seen_keys: set[tuple[str, ...]] = set()
    status: Status | None = None
    try:
        with _sigterm_cancels():
            while True:
                try:
                    obj = custom.get_namespaced_custom_object(
                        group, version, namespace, plural, name
                    )
                except ApiException as e:
                    delete()
                    raise TrainingError(
                        f"could not read {label}: {e.status} {e.reason}; it was deleted"
                    ) from e
                for cond in (obj.get("status") or {}).get("conditions") or []:
                    key = tuple(
                        str(cond.get(k, ""))
                        for k in ("type", "status", "reason", "lastTransitionTime")
                    )
                    if key in seen_keys:
                        continue
                    seen_keys.add(key)
                    seen.append(dict(cond))
                    on_condition(f"[{label}] {_describe(cond)}")
                status = _terminal(seen)
                if status is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    delete()
                    last = _describe(seen[-1]) if seen else "none"
                    raise TrainingError(
                        f"{label} did not finish within timeout_s={timeout_s}s (last condition: {last}); it was deleted; raise timeout_s or check why it is stuck"
                    )
                time.sleep(min(poll_s, remaining))
    except KeyboardInterrupt:
        delete()
        on_condition(f"[{label}] cancelled; deleted")
        raise
    except _Cancelled as e:
        delete()
        raise TrainingError(f"{label} was cancelled by SIGTERM; it was deleted") from e

    seconds = time.monotonic() - start
    failed_rank = None
    if status == "Failed":
        failed_rank = _find_failed_rank(core, kind, name, namespace)
        if failed_rank is not None:
            on_condition(
                f"[{label}] first failure: rank {failed_rank['rank']} ({failed_rank['role']}) pod {failed_rank['pod']} exit {failed_rank['exit_code']} ({failed_rank['reason']})"
            )
    return LaunchResult(status=status, conditions=seen, failed_rank=failed_rank, seconds=seconds)
