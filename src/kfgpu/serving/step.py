"""The serving steps the components and the CLI call: deploy a bundle, end a canary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfgpu._step import StepResult, step
from kfgpu.data._atomic import atomic_write_text
from kfgpu.errors import DeployError

__all__ = ["DeployOutput", "canary_step", "deploy_model_step"]


@dataclass(frozen=True)
class DeployOutput:
    """What :func:`deploy_model_step` and :func:`canary_step` return.

    Attributes:
        url: the InferenceService's URL.
        result: the rollout's record (action, traffic, timings), as written to the outcome.
    """

    url: str
    result: dict[str, Any]


def _write(path: str, payload: dict[str, Any]) -> None:
    if path:
        atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


@step("deploy_model")
def deploy_model_step(
    *,
    bundle_path: str,
    storage_uri: str,
    name: str,
    namespace: str = "kubeflow",
    runtime: str = "kfgpu",
    deployment_mode: str = "Serverless",
    gpus: int = 0,
    gpu_type: str = "",
    cpu: str = "1",
    memory: str = "2Gi",
    min_replicas: int = 1,
    max_replicas: int = 3,
    scale_metric: str = "",
    scale_target: int = 0,
    canary_traffic_percent: int | None = None,
    kserve_version: str = "0.21",
    service_account: str = "",
    auth_token_secret: str = "",
    cluster_local: bool = False,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    outcome_path: str = "",
    smoke_url: str = "",
    api_client: Any = None,
    http: Any = None,
) -> StepResult[DeployOutput]:
    """Build the InferenceService for a bundle and :func:`~kfgpu.serving.deploy.deploy` it.

    The smoke request is one row made from the bundle's fitted transform (fill values,
    known categories), sent through the endpoint. ``outcome_path`` gets the result (or
    the failure and what was rolled back) as JSON before the step returns or fails.
    With ``auth_token_secret``, the smoke request carries ``$KFGPU_AUTH_TOKEN`` of this
    process: give the step the same Secret as that environment variable.
    """
    from kfgpu.bundle import TRANSFORM_FILE, verify_bundle
    from kfgpu.features.transform import FittedTransform
    from kfgpu.serving.deploy import custom_objects_api, deploy, read_inference_service
    from kfgpu.serving.isvc import ServiceConfig, build_inference_service
    from kfgpu.serving.schema import smoke_instance

    verify_bundle(bundle_path)
    cfg = ServiceConfig(
        name=name,
        storage_uri=storage_uri,
        namespace=namespace,
        runtime=runtime,  # type: ignore[arg-type]
        deployment_mode=deployment_mode,  # type: ignore[arg-type]
        gpus=gpus,
        gpu_type=gpu_type,
        cpu=cpu,
        memory=memory,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_metric=scale_metric,
        scale_target=scale_target,
        canary_traffic_percent=canary_traffic_percent,
        kserve_version=kserve_version,
        service_account=service_account,
        auth_token_secret=auth_token_secret,
        cluster_local=cluster_local,
    )
    api = custom_objects_api(api_client)
    current = read_inference_service(api, namespace, name)
    isvc = build_inference_service(
        cfg, stable_predictor=(current or {}).get("spec", {}).get("predictor")
    )
    smoke = None
    if runtime == "kfgpu":
        transform = FittedTransform.load(Path(bundle_path) / TRANSFORM_FILE)
        smoke = {"instances": [smoke_instance(transform)]}
    try:
        result = deploy(
            isvc,
            api_client=api.api_client,
            timeout_s=timeout_s,
            poll_s=poll_s,
            smoke_request=smoke,
            smoke_url=smoke_url,
            http=http,
        )
    except DeployError as e:
        _write(
            outcome_path,
            {
                "status": "failed",
                "reason": e.reason,
                "rolled_back": e.rolled_back,
                "message": str(e),
                "inference_service": isvc,
            },
        )
        raise
    _write(outcome_path, {"status": "ok", **result.to_dict(), "inference_service": isvc})
    split = ", ".join(
        f"{t.get('revisionName', t.get('predictor'))}={t.get('percent')}%" for t in result.traffic
    )
    return StepResult(
        metrics={"seconds": result.seconds, "canary_percent": float(canary_traffic_percent or 0)},
        metadata={"inference_service": {"name": name, "namespace": namespace, "url": result.url}},
        summary=f"deploy_model: {namespace}/{name} {result.action}, Ready, traffic {split}, "
        f"smoke OK at {result.url}",
        output=DeployOutput(url=str(result.url), result=result.to_dict()),
    )


@step("canary")
def canary_step(
    *,
    action: str,
    name: str,
    namespace: str = "kubeflow",
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    outcome_path: str = "",
    api_client: Any = None,
) -> StepResult[DeployOutput]:
    """``action="promote"``: the canary takes all traffic; ``"rollback"``: none."""
    from kfgpu.errors import ConfigError
    from kfgpu.serving.deploy import promote_canary, rollback_canary

    if action not in ("promote", "rollback"):
        raise ConfigError(f"action={action!r} is invalid; use 'promote' or 'rollback'")
    try:
        if action == "promote":
            result = promote_canary(
                name, namespace, api_client=api_client, timeout_s=timeout_s, poll_s=poll_s
            )
        else:
            result = rollback_canary(
                name, namespace, api_client=api_client, timeout_s=timeout_s, poll_s=poll_s
            )
    except DeployError as e:
        _write(outcome_path, {"status": "failed", "reason": e.reason, "message": str(e)})
        raise
    _write(outcome_path, {"status": "ok", **result.to_dict()})
    return StepResult(
        metrics={"seconds": result.seconds},
        summary=f"canary {action}: {namespace}/{name} {result.action}, traffic verified",
        output=DeployOutput(url=str(result.url), result=result.to_dict()),
    )
