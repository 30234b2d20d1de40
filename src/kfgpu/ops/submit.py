"""Start a run of a pipeline on Kubeflow and follow it.

Parameters arrive as ``NAME=VALUE`` strings and are typed against the compiled pipeline's
parameters (unknown names and bad values fail before anything is sent). By default the run
refers to the uploaded, content-named version (uploaded first if missing, see
:mod:`kfgpu.ops.upload`), so the run's pipeline is visible and reusable in the UI;
``from_package=True`` sends the package inline instead. :func:`submit_pipeline` starts the
newest uploaded version of a pipeline by name or ID, compiling nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kfgpu.errors import ConfigError, OpsError
from kfgpu.ops.client import api_call
from kfgpu.ops.upload import CompiledPipeline, find_uploaded, upload

__all__ = [
    "FINAL_STATES",
    "Parameterised",
    "SubmitResult",
    "coerce_parameters",
    "ensure_experiment",
    "submit",
    "submit_pipeline",
    "wait",
]

#: States after which a run does not change any more (``V2beta1RuntimeState``).
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})

_TYPES = {
    "STRING": "string",
    "NUMBER_INTEGER": "integer",
    "NUMBER_DOUBLE": "number",
    "BOOLEAN": "boolean",
    "STRUCT": "JSON object",
    "LIST": "JSON list",
}


class Parameterised(Protocol):
    """A pipeline's name and its parameters as its spec declares them (``parameterType``,
    ``defaultValue``): a compiled package, an uploaded version, a pipeline kfgpu knows."""

    @property
    def name(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Mapping[str, Any]]: ...


def coerce_parameters(
    package: Parameterised, raw: Mapping[str, Any], *, where: str = "--param"
) -> dict[str, Any]:
    """Type ``NAME=VALUE`` strings (or already typed values) by the pipeline's declared
    parameter types. kfgpu's one coercer: ``kfgpu run`` (local), ``submit``, ``schedule``
    and the retraining trigger all type their parameters here.

    Raises:
        ConfigError: an unknown name (the known ones listed) or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        spec = package.parameters.get(key)
        if spec is None:
            raise ConfigError(
                f"{where}: pipeline {package.name!r} has no parameter {key!r}; known: "
                f"{', '.join(sorted(package.parameters))}"
            )
        kind = spec.get("parameterType", "STRING")
        try:
            out[key] = _coerce(kind, value)
        except (ValueError, TypeError) as e:
            example = spec.get("defaultValue")
            if kind == "NUMBER_INTEGER" and isinstance(example, float) and example.is_integer():
                example = int(example)  # the spec stores every number as a double
            raise ConfigError(
                f"{where}: parameter {key}={value!r} must be {_TYPES.get(kind, kind)}"
                + (f", e.g. {key}={json.dumps(example)}" if example is not None else "")
            ) from e
    return out


def _coerce(kind: str, value: Any) -> Any:
    if kind == "NUMBER_INTEGER":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind == "NUMBER_DOUBLE":
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return text in ("true", "1", "yes")
    if kind in ("STRUCT", "LIST"):
        parsed = json.loads(value) if isinstance(value, str) else value
        if not isinstance(parsed, dict if kind == "STRUCT" else list):
            raise TypeError(value)
        return parsed
    if not isinstance(value, str):
        if isinstance(value, (dict, list)):
            raise TypeError(value)
        return str(value)
    return value


def ensure_experiment(client: Any, name: str, namespace: str = "") -> str:
    """The ID of the experiment called ``name``, created when missing."""
    experiment = api_call(
        f"get or create experiment {name!r}",
        client.create_experiment,
        name=name,
        namespace=namespace or None,
    )
    return str(experiment.experiment_id)


@dataclass(frozen=True)
class SubmitResult:
    """A started run (and its final state when waited for)."""

    run_id: str
    run_name: str
    experiment_id: str
    version_id: str
    state: str = ""


def submit(
    client: Any,
    package: CompiledPipeline,
    arguments: Mapping[str, Any],
    *,
    experiment: str = "Default",
    run_name: str = "",
    namespace: str = "",
    from_package: bool = False,
    service_account: str = "",
    on_line: Callable[[str], None] = lambda _line: None,
) -> SubmitResult:
    """Start a run of ``package`` with ``arguments`` (already typed).

    Args:
        experiment: the experiment the run belongs to (created when missing).
        run_name: the run's display name; default ``<pipeline> <UTC time>``.
        from_package: send the package inline instead of uploading and referring to a version.
        service_account: the Kubernetes service account the run's pods use; empty: KFP's default.
        on_line: receives one line per thing done (upload, run created).
    """
    experiment_id = ensure_experiment(client, experiment, namespace)
    name = run_name or f"{package.name} {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    kwargs: dict[str, Any] = {
        "experiment_id": experiment_id,
        "job_name": name,
        "params": dict(arguments),
        "service_account": service_account or None,
    }
    version_id = ""
    if from_package:
        kwargs["pipeline_package_path"] = str(package.path)
    else:
        uploaded = upload(client, package, namespace=namespace)
        on_line(uploaded.summary())
        version_id = uploaded.version_id
        kwargs["pipeline_id"] = uploaded.pipeline_id
        kwargs["version_id"] = uploaded.version_id
    run = api_call(f"create run {name!r}", client.run_pipeline, **kwargs)
    on_line(f"run {run.run_id} ({name!r}) created in experiment {experiment!r}")
    return SubmitResult(str(run.run_id), name, experiment_id, version_id, str(run.state or ""))


def wait(
    client: Any,
    run_id: str,
    *,
    timeout_s: float = 24 * 3600,
    poll_s: float = 5.0,
    on_line: Callable[[str], None] = lambda _line: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll the run until it reaches a final state; report each state change; return the state.

    Raises:
        OpsError: the run did not finish within ``timeout_s`` (it keeps running on the cluster).
    """
    start = clock()
    last = None
    while True:
        run = api_call(f"get run {run_id}", client.get_run, run_id=run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        if state != last:
            detail = ""
            if state in ("FAILED", "CANCELED") and run.error is not None:
                detail = f": {getattr(run.error, 'message', '') or ''}"
            on_line(f"{clock() - start:7.1f}s  {state}{detail}")
            last = state
        if state in FINAL_STATES:
            return state
        if clock() - start > timeout_s:
            raise OpsError(
                f"run {run_id} is still {state} after {timeout_s:g}s; it keeps running on the "
                "cluster (follow it in the KFP UI)"
            )
        sleep(poll_s)


def submit_pipeline(
    pipeline: str,
    *,
    host: str,
    params: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    experiment: str = "Default",
    run_name: str = "",
) -> str:
    """Start a run of the uploaded pipeline ``pipeline`` at its newest version; return the
    run's ID.

    The one-call form for code that runs in a pod (the retraining trigger): nothing is
    compiled, the run starts what ``kfgpu upload`` (or ``submit``, ``schedule apply``) put
    on the server; ``pipeline`` is its name (``kfgpu-training``, or kfgpu's short name
    ``training``) or its ID (:func:`kfgpu.ops.upload.find_uploaded`). Credentials come from
    ``KFGPU_KFP_*`` and, inside a pod, the projected KFP service-account token (see
    :mod:`kfgpu.ops.client`). ``params`` values may be strings or already typed; both are
    checked against the uploaded version's parameter types.

    Raises:
        OpsError: no such uploaded pipeline (upload it first), or the API refused.
        ConfigError: a parameter the pipeline does not have, or of the wrong type.
    """
    from kfgpu.ops.client import Connection, connect

    conn = Connection.from_env(host=host, namespace=namespace)
    client = connect(conn)
    uploaded = find_uploaded(client, pipeline, conn.namespace)
    arguments = coerce_parameters(uploaded, dict(params or {}), where="params")
    experiment_id = ensure_experiment(client, experiment, conn.namespace)
    name = run_name or f"{uploaded.name} {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    run = api_call(
        f"create run {name!r}",
        client.run_pipeline,
        experiment_id=experiment_id,
        job_name=name,
        params=arguments,
        pipeline_id=uploaded.pipeline_id,
        version_id=uploaded.version_id,
    )
    return str(run.run_id)
