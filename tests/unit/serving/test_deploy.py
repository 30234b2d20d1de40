"""Deploy, verify and roll back against a local stand-in for the Kubernetes API.

The stand-in is a threaded ``http.server`` on 127.0.0.1 that stores one InferenceService
and implements create (201), get, replace (409 on a stale resourceVersion) and delete, as
the real API server does, driven by the real ``kubernetes`` client. A scripted
"controller" function writes the status each GET returns: an honest one (Ready for the
current generation, the traffic split that the spec asks for), or one that lies in the
ways a cluster can (never Ready, a Ready left from the old generation, a canary split it
ignored as KServe does in RawDeployment mode: kserve issue 5335). The smoke request goes
to the real KServe server of the ``server`` fixture.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kfgpu.errors import ConfigError, DeployError
from kfgpu.serving.deploy import deploy, promote_canary, rollback_canary
from kfgpu.serving.isvc import ServiceConfig, build_inference_service
from kfgpu.serving.step import deploy_model_step
from tests.kube_api import kube_api
from tests.unit.serving.conftest import MODEL, Server

PATH = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices"
Controller = Callable[[dict[str, Any], "FakeKube"], dict[str, Any]]


def _ready(obj: dict[str, Any], url: str, **extra: Any) -> dict[str, Any]:
    return {
        "observedGeneration": obj["metadata"]["generation"],
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": url,
        "address": {"url": url},
        **extra,
    }


def honest(obj: dict[str, Any], kube: FakeKube) -> dict[str, Any]:
    """Ready for this generation, with exactly the traffic split the spec asks for."""
    spec, gen = obj["spec"], obj["metadata"]["generation"]
    mode = obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
    if mode == "Serverless":
        pct = spec["predictor"].get("canaryTrafficPercent")
        latest = {
            "revisionName": f"r{gen}",
            "latestRevision": True,
            "percent": 100 if pct is None else pct,
        }
        traffic = [latest]
        if pct is not None and pct < 100:
            traffic.append(
                {"revisionName": f"r{gen - 1}", "latestRevision": False, "percent": 100 - pct}
            )
        return _ready(obj, kube.url, components={"predictor": {"traffic": traffic}})
    statuses = [
        {"name": c["predictor"]["name"], "trafficPercent": c["trafficPercent"], "ready": True}
        for c in spec.get("canary", [])
    ]
    return _ready(obj, kube.url, canaryStatuses=statuses)


def ignores_canary(obj: dict[str, Any], kube: FakeKube) -> dict[str, Any]:
    """What KServe before 0.20 does in RawDeployment mode, or a Knative that did not split."""
    gen = obj["metadata"]["generation"]
    traffic = [{"revisionName": f"r{gen}", "latestRevision": True, "percent": 100}]
    return _ready(obj, kube.url, components={"predictor": {"traffic": traffic}})


def never_ready(obj: dict[str, Any], kube: FakeKube) -> dict[str, Any]:
    cond = {
        "type": "Ready",
        "status": "False",
        "reason": "RevisionMissing",
        "message": "image pull",
    }
    return {"observedGeneration": obj["metadata"]["generation"], "conditions": [cond]}


def stale_ready(obj: dict[str, Any], kube: FakeKube) -> dict[str, Any]:
    """Ready, but for the previous generation: the controller has not caught up."""
    status = honest(obj, kube)
    status["observedGeneration"] = obj["metadata"]["generation"] - 1
    return status


class FakeKube:
    def __init__(self, controller: Controller, url: str, obj: dict[str, Any] | None = None) -> None:
        self.controller = controller
        self.url = url
        self.obj = copy.deepcopy(obj)
        self.version = 1
        self.requests: list[tuple[str, int]] = []
        self.applied: list[dict[str, Any]] = []
        if self.obj is not None:
            self.obj["metadata"].update(generation=1, resourceVersion="1")


def _handler(state: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            state.requests.append((self.command, code))

        def _status(self, code: int, reason: str) -> None:
            self._send(
                code,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": reason,
                    "code": code,
                },
            )

        def _body(self) -> dict[str, Any]:
            body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            return body

        def _name(self) -> str | None:
            path = urlsplit(self.path).path
            if not path.startswith(PATH):
                return None
            return path[len(PATH) :].strip("/")

        def do_POST(self) -> None:
            if self._name() != "":
                return self._status(404, "NotFound")
            if state.obj is not None:
                return self._status(409, "AlreadyExists")
            body = self._body()
            state.version += 1
            body["metadata"].update(generation=1, resourceVersion=str(state.version), uid="u1")
            state.obj = body
            state.applied.append(copy.deepcopy(body))
            self._send(201, body)

        def do_PUT(self) -> None:
            name = self._name()
            if state.obj is None or name != state.obj["metadata"]["name"]:
                return self._status(404, "NotFound")
            body = self._body()
            if body["metadata"].get("resourceVersion") != state.obj["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict")
            state.version += 1
            gen = state.obj["metadata"]["generation"] + (body["spec"] != state.obj["spec"])
            body["metadata"].update(generation=gen, resourceVersion=str(state.version))
            state.obj = body
            state.applied.append(copy.deepcopy(body))
            self._send(200, body)

        def do_GET(self) -> None:
            name = self._name()
            if state.obj is None or name != state.obj["metadata"]["name"]:
                return self._status(404, "NotFound")
            self._send(200, {**state.obj, "status": state.controller(state.obj, state)})

        def do_DELETE(self) -> None:
            if state.obj is None or self._name() != state.obj["metadata"]["name"]:
                return self._status(404, "NotFound")
            state.obj = None
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


@contextmanager
def stand_in(state: FakeKube) -> Iterator[Any]:
    with kube_api(_handler(state)) as api:
        yield api


def _isvc(uri: str = "s3://m/v2", **kw: Any) -> dict[str, Any]:
    return build_inference_service(ServiceConfig(name=MODEL, namespace="ml", storage_uri=uri, **kw))


SMOKE_OK: Any = lambda method, url, body, headers, timeout: (  # noqa: E731
    200,
    json.dumps({"predictions": [{"label": 0}]}).encode(),
)
SMOKE = {"instances": [{"x": 1}]}


# --- deploy -------------------------------------------------------------------------------


def test_create_ready_traffic_verified_smoke_through_real_kserve(
    server: Server, bundle_path: Path, tmp_path: Path
) -> None:
    state = FakeKube(honest, server.url)
    with stand_in(state) as api:
        result = deploy_model_step(
            bundle_path=str(bundle_path),
            storage_uri="s3://m/v1",
            name=MODEL,
            namespace="ml",
            api_client=api,
            poll_s=0.01,
            timeout_s=10,
            outcome_path=str(tmp_path / "outcome.json"),
        )
    assert result.output.url == server.url
    assert ("POST", 201) in state.requests
    assert (
        state.obj is not None
        and state.obj["spec"]["predictor"]["model"]["storageUri"] == "s3://m/v1"
    )
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert outcome["status"] == "ok" and outcome["action"] == "created"
    assert outcome["traffic"] == [{"revisionName": "r1", "latestRevision": True, "percent": 100}]
    # The smoke request went through the real KServe server and got a real prediction.
    (pred,) = outcome["smoke"]["predictions"]
    assert pred["label"] in (0, 1) and set(pred["probabilities"]) == {"0", "1"}


def test_update_with_serverless_canary_verifies_the_split() -> None:
    state = FakeKube(honest, "http://svc", obj=_isvc("s3://m/v1"))
    with stand_in(state) as api:
        result = deploy(
            _isvc(canary_traffic_percent=25),
            api_client=api,
            poll_s=0.01,
            timeout_s=5,
            smoke_request=SMOKE,
            http=SMOKE_OK,
        )
    assert result.action == "updated"
    assert [t["percent"] for t in result.traffic] == [25, 75]
    assert state.obj is not None and state.obj["spec"]["predictor"]["canaryTrafficPercent"] == 25


def test_traffic_mismatch_rolls_back_to_the_previous_spec() -> None:
    before = _isvc("s3://m/v1")
    state = FakeKube(ignores_canary, "http://svc", obj=before)
    with stand_in(state) as api, pytest.raises(DeployError) as err:
        deploy(
            _isvc(canary_traffic_percent=10),
            api_client=api,
            poll_s=0.01,
            timeout_s=5,
            smoke_request=SMOKE,
            http=SMOKE_OK,
        )
    assert err.value.reason == "traffic" and err.value.rolled_back
    assert "r2 (latest)=100%" in str(err.value) and "requested 10%" in str(err.value)
    assert "restored the previous spec" in str(err.value)
    assert state.obj is not None and state.obj["spec"] == before["spec"]


def test_raw_canary_on_kserve_that_ignores_it_rolls_back() -> None:
    before = _isvc("s3://m/v1", deployment_mode="RawDeployment")
    state = FakeKube(ignores_canary, "http://svc", obj=before)
    new = build_inference_service(
        ServiceConfig(
            name=MODEL,
            namespace="ml",
            storage_uri="s3://m/v2",
            deployment_mode="RawDeployment",
            canary_traffic_percent=10,
        ),
        stable_predictor=before["spec"]["predictor"],
    )
    with stand_in(state) as api, pytest.raises(DeployError, match="kserve issue 5335") as err:
        deploy(new, api_client=api, poll_s=0.01, timeout_s=5, smoke_request=SMOKE, http=SMOKE_OK)
    assert err.value.rolled_back
    assert state.obj is not None and state.obj["spec"] == before["spec"]


def test_raw_canary_honoured_then_promoted() -> None:
    before = _isvc("s3://m/v1", deployment_mode="RawDeployment")
    state = FakeKube(honest, "http://svc", obj=before)
    cfg = ServiceConfig(
        name=MODEL,
        namespace="ml",
        storage_uri="s3://m/v2",
        deployment_mode="RawDeployment",
        canary_traffic_percent=30,
    )
    new = build_inference_service(cfg, stable_predictor=before["spec"]["predictor"])
    with stand_in(state) as api:
        result = deploy(
            new, api_client=api, poll_s=0.01, timeout_s=5, smoke_request=SMOKE, http=SMOKE_OK
        )
        assert result.traffic == [
            {"predictor": "main", "percent": 70},
            {"predictor": cfg.canary_name, "percent": 30},
        ]
        promoted = promote_canary(
            MODEL, "ml", api_client=api, poll_s=0.01, timeout_s=5, http=SMOKE_OK
        )
    assert promoted.action == "promoted"
    assert state.obj is not None and "canary" not in state.obj["spec"]
    assert state.obj["spec"]["predictor"]["name"] == cfg.canary_name
    assert state.obj["spec"]["predictor"]["model"]["storageUri"] == "s3://m/v2"


def test_not_ready_by_timeout_deletes_a_new_service() -> None:
    state = FakeKube(never_ready, "http://svc")
    with stand_in(state) as api, pytest.raises(DeployError) as err:
        deploy(
            _isvc(), api_client=api, poll_s=0.01, timeout_s=0.3, smoke_request=SMOKE, http=SMOKE_OK
        )
    assert err.value.reason == "not_ready" and err.value.rolled_back
    assert "RevisionMissing" in str(err.value) and "deleted the new InferenceService" in str(
        err.value
    )
    assert state.obj is None


def test_ready_left_from_the_old_generation_is_not_taken_for_the_new_one() -> None:
    before = _isvc("s3://m/v1")
    state = FakeKube(stale_ready, "http://svc", obj=before)
    with stand_in(state) as api, pytest.raises(DeployError, match="not observed generation 2"):
        deploy(
            _isvc(), api_client=api, poll_s=0.01, timeout_s=0.3, smoke_request=SMOKE, http=SMOKE_OK
        )
    assert state.obj is not None and state.obj["spec"] == before["spec"]


def test_smoke_failure_rolls_back() -> None:
    before = _isvc("s3://m/v1")
    state = FakeKube(honest, "http://svc", obj=before)

    def broken(method: str, url: str, body: Any, headers: Any, timeout: float) -> tuple[int, bytes]:
        assert url == f"http://svc/v1/models/{MODEL}:predict" and method == "POST"
        return 500, b'{"error": "boom"}'

    with stand_in(state) as api, pytest.raises(DeployError) as err:
        deploy(_isvc(), api_client=api, poll_s=0.01, timeout_s=5, smoke_request=SMOKE, http=broken)
    assert err.value.reason == "smoke" and err.value.rolled_back and "boom" in str(err.value)
    assert state.obj is not None and state.obj["spec"] == before["spec"]


def test_smoke_against_the_real_server_catches_a_bad_request(server: Server) -> None:
    state = FakeKube(honest, server.url)
    with stand_in(state) as api, pytest.raises(DeployError, match="answered 400"):
        deploy(
            _isvc(),
            api_client=api,
            poll_s=0.01,
            timeout_s=5,
            smoke_request={"instances": [{"x": 1}]},
        )
    assert state.obj is None


def test_canary_without_a_running_service_is_refused() -> None:
    state = FakeKube(honest, "http://svc")
    with stand_in(state) as api, pytest.raises(ConfigError, match="deploy without canary"):
        deploy(_isvc(canary_traffic_percent=10), api_client=api, poll_s=0.01)
    assert state.requests == [("GET", 404)]


# --- canary promote / rollback --------------------------------------------------------------


def test_promote_serverless_canary() -> None:
    state = FakeKube(honest, "http://svc", obj=_isvc(canary_traffic_percent=20))
    with stand_in(state) as api:
        result = promote_canary(
            MODEL, "ml", api_client=api, poll_s=0.01, timeout_s=5, http=SMOKE_OK
        )
    assert result.action == "promoted" and [t["percent"] for t in result.traffic] == [100]
    assert state.obj is not None and "canaryTrafficPercent" not in state.obj["spec"]["predictor"]


def test_rollback_serverless_canary_sends_all_traffic_back() -> None:
    state = FakeKube(honest, "http://svc", obj=_isvc(canary_traffic_percent=20))
    with stand_in(state) as api:
        result = rollback_canary(MODEL, "ml", api_client=api, poll_s=0.01, timeout_s=5)
    assert [(t["latestRevision"], t["percent"]) for t in result.traffic] == [
        (True, 0),
        (False, 100),
    ]
    assert state.obj is not None and state.obj["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_promote_that_the_cluster_ignores_restores_the_canary() -> None:
    before = _isvc(canary_traffic_percent=20)

    def stuck(obj: dict[str, Any], kube: FakeKube) -> dict[str, Any]:
        traffic = [
            {"revisionName": "r2", "latestRevision": True, "percent": 20},
            {"revisionName": "r1", "latestRevision": False, "percent": 80},
        ]
        return _ready(obj, kube.url, components={"predictor": {"traffic": traffic}})

    state = FakeKube(stuck, "http://svc", obj=before)
    with stand_in(state) as api, pytest.raises(DeployError) as err:
        promote_canary(MODEL, "ml", api_client=api, poll_s=0.01, timeout_s=5, http=SMOKE_OK)
    assert err.value.reason == "traffic" and err.value.rolled_back
    assert state.obj is not None and state.obj["spec"] == before["spec"]


def test_rollback_raw_canary_removes_it() -> None:
    stable = _isvc("s3://m/v1", deployment_mode="RawDeployment")
    cfg = ServiceConfig(
        name=MODEL,
        namespace="ml",
        storage_uri="s3://m/v2",
        deployment_mode="RawDeployment",
        canary_traffic_percent=10,
    )
    state = FakeKube(
        honest,
        "http://svc",
        obj=build_inference_service(cfg, stable_predictor=stable["spec"]["predictor"]),
    )
    with stand_in(state) as api:
        rollback_canary(MODEL, "ml", api_client=api, poll_s=0.01, timeout_s=5)
    assert state.obj is not None and state.obj["spec"] == stable["spec"]


def test_nothing_to_promote_is_an_error() -> None:
    state = FakeKube(honest, "http://svc", obj=_isvc())
    with stand_in(state) as api, pytest.raises(ConfigError, match="no canary"):
        promote_canary(MODEL, "ml", api_client=api)
