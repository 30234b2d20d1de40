"""Deploy an InferenceService and check that it really serves, or roll it back.

:func:`deploy` applies the object with the Kubernetes ``CustomObjectsApi`` (create, or
replace the running one), then, in order:

1. waits until ``Ready`` is True *for this generation* (``status.observedGeneration``), so
   a Ready left over from the previous spec is not taken for the new one;
2. verifies that the traffic split in the status is the one requested: Serverless,
   ``status.components.predictor.traffic`` (the latest revision holds
   ``canaryTrafficPercent``, or 100, and the targets add up to 100); RawDeployment,
   ``status.canaryStatuses`` (each ``spec.canary`` entry ready with its
   ``trafficPercent``, no other canary taking traffic);
3. sends a smoke request to the endpoint in the status (a V1 predict with a given body,
   or the V2 readiness route) and checks the answer.

When any of these fails, the previous spec is restored (or the new service deleted when
there was none) and :class:`~kfgpu.errors.DeployError` says what failed and what was
rolled back. :func:`promote_canary` and :func:`rollback_canary` end a canary the same way:
apply, wait, verify, or restore.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kfgpu.errors import ConfigError, DeployError
from kfgpu.serving.isvc import API_VERSION, deployment_mode

__all__ = [
    "DeployResult",
    "HttpCall",
    "custom_objects_api",
    "deploy",
    "promote_canary",
    "read_inference_service",
    "rollback_canary",
]

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "inferenceservices"

#: ``(method, url, body or None, headers, timeout_s) -> (status, body)``: how smoke
#: requests are sent (injectable: tests point it at a local KServe server).
HttpCall = Callable[[str, str, bytes | None, Mapping[str, str], float], tuple[int, bytes]]


@dataclass
class DeployResult:
    """What a rollout did and what it verified."""

    name: str
    namespace: str
    action: str
    url: str = ""
    traffic: list[dict[str, Any]] = field(default_factory=list)
    smoke: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _http(
    method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


def custom_objects_api(api_client: Any) -> Any:
    """A ``CustomObjectsApi`` on ``api_client``; ``None``: in-cluster config, else kubeconfig."""
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def _is_404(e: Exception) -> bool:
    return getattr(e, "status", None) == 404


def read_inference_service(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The live InferenceService ``namespace/name`` (``api``: :func:`custom_objects_api`),
    or ``None`` when there is none."""
    try:
        obj: dict[str, Any] = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return obj
    except Exception as e:
        if _is_404(e):
            return None
        raise


def _apply(api: Any, obj: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    body = copy.deepcopy(dict(obj))
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if current is None:
        out: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        return out
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    out = api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, body)
    return out


def _ready(obj: Mapping[str, Any], generation: int | None) -> tuple[bool, str]:
    status = obj.get("status") or {}
    conds = status.get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and int(observed) < int(generation):
        return False, f"controller has not observed generation {generation} yet (at {observed})"
    if ready is None:
        return False, "no Ready condition yet"
    detail = f"Ready={ready.get('status')} {ready.get('reason', '')} {ready.get('message', '')}"
    return ready.get("status") == "True", detail.strip()


def _wait_ready(
    api: Any, namespace: str, name: str, generation: int | None, timeout_s: float, poll_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = "not found"
    while True:
        obj = read_inference_service(api, namespace, name)
        if obj is not None:
            ok, last = _ready(obj, generation)
            if ok:
                return obj
        if time.monotonic() >= deadline:
            raise DeployError(
                f"InferenceService {namespace}/{name} was not Ready within {timeout_s:g}s "
                f"({last}); check `kubectl describe isvc {name} -n {namespace}` and the "
                "predictor pod's logs, or raise timeout_s",
                reason="not_ready",
            )
        time.sleep(poll_s)


def _verify_traffic(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Check the status's traffic split against the spec; the split as found."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    name = obj["metadata"]["name"]
    if deployment_mode(obj) == "Serverless":
        want = spec.get("predictor", {}).get("canaryTrafficPercent")
        want = 100 if want is None else int(want)
        traffic = ((status.get("components") or {}).get("predictor") or {}).get("traffic") or []
        if not traffic:
            raise DeployError(
                f"{name}: status.components.predictor.traffic is empty; expected the latest "
                f"revision at {want}%",
                reason="traffic",
            )
        latest = sum(int(t.get("percent") or 0) for t in traffic if t.get("latestRevision"))
        total = sum(int(t.get("percent") or 0) for t in traffic)
        if latest != want or total != 100:
            found = [
                f"{t.get('revisionName', '?')}{' (latest)' if t.get('latestRevision') else ''}"
                f"={t.get('percent', 0)}%"
                for t in traffic
            ]
            raise DeployError(
                f"{name}: traffic split is {', '.join(found)}; requested {want}% on the latest "
                f"revision and {100 - want}% on the previous one",
                reason="traffic",
            )
        return [dict(t) for t in traffic]
    wanted = {
        str(c["predictor"].get("name")): int(c.get("trafficPercent", 0))
        for c in spec.get("canary") or []
    }
    statuses = {str(s.get("name")): s for s in status.get("canaryStatuses") or []}
    for cname, pct in wanted.items():
        s = statuses.get(cname)
        if s is None or int(s.get("trafficPercent") or 0) != pct or not s.get("ready"):
            raise DeployError(
                f"{name}: canary {cname!r} should take {pct}% and be ready, status says "
                + (json.dumps(s, sort_keys=True) if s else "nothing about it")
                + " (a KServe older than 0.20 ignores canaries in RawDeployment mode: "
                "kserve issue 5335)",
                reason="traffic",
            )
    stray = [
        n for n, s in statuses.items() if n not in wanted and int(s.get("trafficPercent") or 0)
    ]
    if stray:
        raise DeployError(
            f"{name}: canary {stray[0]!r} still takes traffic although the spec has none",
            reason="traffic",
        )
    main = 100 - sum(wanted.values())
    return [{"predictor": "main", "percent": main}] + [
        {"predictor": n, "percent": p} for n, p in wanted.items()
    ]


def _endpoint(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    url = ((status.get("address") or {}).get("url")) or status.get("url") or ""
    return str(url).rstrip("/")


def _smoke(
    obj: Mapping[str, Any],
    request: Mapping[str, Any] | None,
    url: str,
    http: HttpCall,
    timeout_s: float,
) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    base = (url or _endpoint(obj)).rstrip("/")
    if not base:
        raise DeployError(
            f"{name}: the status has no URL to send a smoke request to", reason="smoke"
        )
    if request is None:
        target = f"{base}/v2/models/{name}/ready"
        status, body = _call(http, "GET", target, None, timeout_s, name)
        if status != 200:
            raise DeployError(
                f"{name}: smoke GET {target} answered {status}: {body[:300]!r}", reason="smoke"
            )
        return {"url": target, "status": status}
    target = f"{base}/v1/models/{name}:predict"
    data = json.dumps(dict(request)).encode()
    status, body = _call(http, "POST", target, data, timeout_s, name)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    n = len(request.get("instances", []))
    preds = answer.get("predictions") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(preds, list) or len(preds) != n:
        raise DeployError(
            f"{name}: smoke request to {target} answered {status}: {body[:300]!r}; expected "
            f"200 with {n} prediction(s)",
            reason="smoke",
        )
    return {"url": target, "status": status, "predictions": preds}


def _call(
    http: HttpCall, method: str, url: str, body: bytes | None, timeout_s: float, name: str
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("KFGPU_AUTH_TOKEN", "").strip()
    if token:  # a predictor deployed with auth_token_secret needs the same token
        headers["Authorization"] = f"Bearer {token}"
    try:
        return http(method, url, body, headers, timeout_s)
    except Exception as e:
        raise DeployError(f"{name}: smoke {method} {url} failed: {e}", reason="smoke") from e


def _restore(api: Any, previous: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> str:
    """Put back ``previous`` (or delete the new object); a line saying what was done."""
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    if previous is None:
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return f"deleted the new InferenceService {ns}/{name}"
    current = read_inference_service(api, ns, name)
    meta = previous["metadata"]
    body = {
        "apiVersion": previous.get("apiVersion", API_VERSION),
        "kind": previous.get("kind", "InferenceService"),
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": meta.get("labels") or {},
            "annotations": meta.get("annotations") or {},
        },
        "spec": copy.deepcopy(previous["spec"]),
    }
    _apply(api, body, current)
    return f"restored the previous spec of {ns}/{name} (generation {meta.get('generation', '?')})"


def _rollout(
    api: Any,
    obj: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    *,
    action: str,
    timeout_s: float,
    poll_s: float,
    smoke_request: Mapping[str, Any] | None,
    smoke_url: str,
    http: HttpCall | None,
    smoke: bool,
) -> DeployResult:
    t0 = time.monotonic()
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        applied = _apply(api, obj, previous)
    except Exception as e:
        raise DeployError(
            f"applying InferenceService {ns}/{name} failed: {e}; nothing was changed",
            reason="api",
        ) from e
    generation = (applied.get("metadata") or {}).get("generation")
    try:
        live = _wait_ready(api, ns, name, generation, timeout_s, poll_s)
        traffic = _verify_traffic({**live, "spec": live.get("spec") or obj["spec"]})
        checked = (
            _smoke(live, smoke_request, smoke_url, http or _http, min(timeout_s, 60.0))
            if smoke
            else {"skipped": True}
        )
    except DeployError as e:
        try:
            what = _restore(api, previous, obj)
            rolled = True
        except Exception as e2:
            what = f"rollback failed too: {e2}"
            rolled = False
        raise DeployError(f"{e}; {what}", reason=e.reason, rolled_back=rolled) from e
    return DeployResult(
        name=name,
        namespace=ns,
        action=action,
        url=_endpoint(live),
        traffic=traffic,
        smoke=checked,
        seconds=time.monotonic() - t0,
    )


def deploy(
    isvc: Mapping[str, Any],
    *,
    api_client: Any = None,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    smoke_request: Mapping[str, Any] | None = None,
    smoke_url: str = "",
    http: HttpCall | None = None,
) -> DeployResult:
    """Apply ``isvc``, wait for Ready, verify traffic, smoke-test; roll back on failure.

    Args:
        isvc: the InferenceService (:func:`kfgpu.serving.isvc.build_inference_service`).
        api_client: a ``kubernetes.client.ApiClient``; default in-cluster config, else
            the kubeconfig.
        timeout_s: seconds to wait for Ready.
        poll_s: seconds between status reads.
        smoke_request: a V1 body (``{"instances": [...]}``) for the smoke request;
            None: only the V2 readiness route is called (Triton).
        smoke_url: the endpoint's base URL; default the status's address (in-cluster).
        http: how smoke requests are sent (default urllib).

    Raises:
        ConfigError: a canary is requested but no InferenceService runs yet.
        DeployError: not Ready in time, a wrong traffic split or a failed smoke request
            (after rolling back), or the API refused the object.
    """
    api = custom_objects_api(api_client)
    meta = isvc["metadata"]
    previous = read_inference_service(api, meta["namespace"], meta["name"])
    spec = isvc.get("spec") or {}
    canary = "canaryTrafficPercent" in spec.get("predictor", {}) or bool(spec.get("canary"))
    if canary and previous is None:
        raise ConfigError(
            f"{meta['namespace']}/{meta['name']} does not exist yet, so a canary has nothing "
            "to split traffic with; deploy without canary_traffic_percent first"
        )
    return _rollout(
        api,
        isvc,
        previous,
        action="created" if previous is None else "updated",
        timeout_s=timeout_s,
        poll_s=poll_s,
        smoke_request=smoke_request,
        smoke_url=smoke_url,
        http=http,
        smoke=True,
    )


def _canary_change(
    name: str,
    namespace: str,
    *,
    promote: bool,
    api_client: Any,
    timeout_s: float,
    poll_s: float,
    smoke_request: Mapping[str, Any] | None,
    smoke_url: str,
    http: HttpCall | None,
) -> DeployResult:
    api = custom_objects_api(api_client)
    current = read_inference_service(api, namespace, name)
    if current is None:
        raise ConfigError(f"InferenceService {namespace}/{name} does not exist")
    spec = copy.deepcopy(current.get("spec") or {})
    predictor = spec.get("predictor") or {}
    if deployment_mode(current) == "Serverless":
        if predictor.get("canaryTrafficPercent") is None:
            raise ConfigError(
                f"{namespace}/{name} has no canary (no predictor.canaryTrafficPercent) to "
                + ("promote" if promote else "roll back")
            )
        if promote:
            del predictor["canaryTrafficPercent"]  # the latest revision takes all traffic
        else:
            predictor["canaryTrafficPercent"] = 0  # all traffic back on the previous revision
    else:
        canaries = spec.get("canary") or []
        if not canaries:
            raise ConfigError(
                f"{namespace}/{name} has no spec.canary to "
                + ("promote" if promote else "roll back")
            )
        if promote:
            # As KServe documents it: the predictor takes the canary's name and spec, and
            # the canary entry goes; the canary's Deployment carries on without a restart.
            spec["predictor"] = copy.deepcopy(canaries[0]["predictor"])
        spec.pop("canary", None)
    body = {
        "apiVersion": current.get("apiVersion", API_VERSION),
        "kind": current.get("kind", "InferenceService"),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": current["metadata"].get("labels") or {},
            "annotations": current["metadata"].get("annotations") or {},
        },
        "spec": spec,
    }
    return _rollout(
        api,
        body,
        current,
        action="promoted" if promote else "rolled back",
        timeout_s=timeout_s,
        poll_s=poll_s,
        smoke_request=smoke_request,
        smoke_url=smoke_url,
        http=http,
        smoke=promote,
    )


def promote_canary(
    name: str,
    namespace: str,
    *,
    api_client: Any = None,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    smoke_request: Mapping[str, Any] | None = None,
    smoke_url: str = "",
    http: HttpCall | None = None,
) -> DeployResult:
    """Give the canary all traffic; verified like :func:`deploy`, restored on failure."""
    return _canary_change(
        name,
        namespace,
        promote=True,
        api_client=api_client,
        timeout_s=timeout_s,
        poll_s=poll_s,
        smoke_request=smoke_request,
        smoke_url=smoke_url,
        http=http,
    )


def rollback_canary(
    name: str,
    namespace: str,
    *,
    api_client: Any = None,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
) -> DeployResult:
    """Take all traffic off the canary (Serverless: ``canaryTrafficPercent: 0``;
    RawDeployment: the canary entry is removed); the split is verified."""
    return _canary_change(
        name,
        namespace,
        promote=False,
        api_client=api_client,
        timeout_s=timeout_s,
        poll_s=poll_s,
        smoke_request=None,
        smoke_url="",
        http=None,
    )
