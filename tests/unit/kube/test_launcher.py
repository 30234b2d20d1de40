"""The launcher against a local stand-in Kubernetes API server, driven by the real client.

The stand-in is a threaded ``http.server`` on 127.0.0.1 that implements only the endpoints
``kfgpu.kube.launcher.launch`` calls: create / get / delete of a namespaced custom object, the
pod list with a label selector, and a pod's log. Each GET of the job returns the next status of
a scripted progression (the last one repeats). It answers a create with 201, as a real API
server does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kfgpu.errors import TrainingError
from kfgpu.kube.jobs import LaunchConfig, render
from kfgpu.kube.launcher import LaunchResult, _first_failure, _rank, launch, pod_selector
from tests.kube_api import kube_api

CUSTOM = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")


def cond(
    type_: str, reason: str = "", at: str = "2026-01-01T00:00:00Z", message: str = ""
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


RUNNING = [cond("Created", "JobCreated"), cond("Running", "JobRunning", "2026-01-01T00:00:01Z")]


class FakeKube:
    """Scripted state of the stand-in API server, shared with its request handler."""

    def __init__(
        self,
        statuses: list[list[dict[str, Any]]],
        pods: list[dict[str, Any]] | None = None,
        logs: dict[str, str] | None = None,
    ) -> None:
        self.statuses = statuses
        self.pods = pods or []
        self.logs = logs or {}
        self.job: dict[str, Any] | None = None
        self.gets = 0
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def next_status(self) -> dict[str, Any]:
        with self.lock:
            conditions = self.statuses[min(self.gets, len(self.statuses) - 1)]
            self.gets += 1
        return {"conditions": conditions}

    def methods(self, method: str) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] == method]


def _make_handler(state: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            state.requests.append((self.command, self.path, code))

        def _not_found(self) -> None:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                },
            )

        def do_POST(self) -> None:
            m = CUSTOM.match(urlsplit(self.path).path)
            if not m or m["name"]:
                return self._not_found()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.job is not None:
                return self._send(
                    409,
                    {"kind": "Status", "status": "Failure", "reason": "AlreadyExists", "code": 409},
                )
            body["metadata"]["uid"] = "1234"
            state.job = body
            self._send(201, body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if m := CUSTOM.match(url.path):
                if state.job is None or m["name"] != state.job["metadata"]["name"]:
                    return self._not_found()
                return self._send(200, {**state.job, "status": state.next_status()})
            if m := PODS.match(url.path):
                wanted = dict(
                    kv.split("=", 1) for kv in query.get("labelSelector", [""])[0].split(",") if kv
                )
                items = [p for p in state.pods if wanted.items() <= p["metadata"]["labels"].items()]
                return self._send(
                    200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
                )
            if m := LOG.match(url.path):
                if m["pod"] not in state.logs:
                    return self._not_found()
                lines = state.logs[m["pod"]].splitlines()
                tail = int(query.get("tailLines", [str(len(lines))])[0])
                return self._send(200, "\n".join(lines[-tail:]) + "\n", "text/plain")
            return self._not_found()

        def do_DELETE(self) -> None:
            m = CUSTOM.match(urlsplit(self.path).path)
            if not m or state.job is None:
                return self._not_found()
            state.job = None
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


@contextmanager
def stand_in(state: FakeKube) -> Iterator[Any]:
    """Serve ``state`` on 127.0.0.1 and yield a real ``kubernetes.client.ApiClient`` for it."""
    with kube_api(_make_handler(state)) as api:
        yield api


def _pod(
    name: str, labels: dict[str, str], container: str, exit_code: int, reason: str, finished: str
) -> dict[str, Any]:
    terminated = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": "2026-01-01T00:00:01Z",
        "finishedAt": finished,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
        "status": {
            "phase": "Failed" if exit_code else "Succeeded",
            "containerStatuses": [
                {
                    "name": container,
                    "image": "img",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        },
    }


def _job(kind: str = "PyTorchJob", **kw: Any) -> dict[str, Any]:
    cfg = LaunchConfig(
        name="demo",
        namespace="ml",
        num_nodes=2,
        gpus_per_node=8,
        command=["horovodrun", "python", "t.py"],
        **kw,
    )
    return render(cfg, kind)  # type: ignore[arg-type]


# --- the three paths ----------------------------------------------------------------------


def test_create_running_succeeded_streams_conditions_in_order() -> None:
    statuses = [[], RUNNING, [*RUNNING, cond("Succeeded", "JobSucceeded", "2026-01-01T00:01:00Z")]]
    state = FakeKube(statuses)
    seen: list[str] = []
    with stand_in(state) as api:
        result = launch(
            _job(),
            kind="PyTorchJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=seen.append,
        )
    assert isinstance(result, LaunchResult)
    assert result.status == "Succeeded"
    assert result.failed_rank is None
    assert [c["type"] for c in result.conditions] == ["Created", "Running", "Succeeded"]
    assert [line.split("] ")[1].split("=")[0] for line in seen] == [
        "Created",
        "Running",
        "Succeeded",
    ]
    assert seen[0].startswith("[PyTorchJob ml/demo] Created=True (JobCreated)")
    # A real API server answers a create with 201 Created; the client accepted it.
    assert state.methods("POST") == [
        ("POST", "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs", 201)
    ]
    assert state.methods("DELETE") == []
    assert result.seconds >= 0


def test_failed_job_reports_the_rank_that_failed_first() -> None:
    selector = {"training.kubeflow.org/job-name": "demo"}
    pods = [
        _pod(
            "demo-master-0",
            {
                **selector,
                "training.kubeflow.org/replica-type": "master",
                "training.kubeflow.org/replica-index": "0",
            },
            "pytorch",
            1,
            "Error",
            "2026-01-01T00:00:09Z",
        ),
        _pod(
            "demo-worker-0",
            {
                **selector,
                "training.kubeflow.org/replica-type": "worker",
                "training.kubeflow.org/replica-index": "0",
            },
            "pytorch",
            137,
            "OOMKilled",
            "2026-01-01T00:00:05Z",
        ),
        _pod(
            "other-master-0",
            {"training.kubeflow.org/job-name": "other"},
            "pytorch",
            2,
            "Error",
            "2026-01-01T00:00:01Z",
        ),
    ]
    logs = {
        "demo-worker-0": "\n".join(f"step {i}" for i in range(200))
        + "\nRuntimeError: CUDA out of memory",
        "demo-master-0": "NCCL watchdog: peer exited",
    }
    statuses = [
        RUNNING,
        [*RUNNING, cond("Failed", "JobFailed", "2026-01-01T00:00:10Z", "Worker replica 0 failed")],
    ]
    state = FakeKube(statuses, pods, logs)
    seen: list[str] = []
    with stand_in(state) as api:
        result = launch(
            _job(),
            kind="PyTorchJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=seen.append,
        )
    assert result.status == "Failed"
    failed = result.failed_rank
    assert failed is not None
    assert failed["rank"] == 1
    assert failed["role"] == "worker"
    assert failed["pod"] == "demo-worker-0"
    assert failed["container"] == "pytorch"
    assert failed["exit_code"] == 137
    assert failed["reason"] == "OOMKilled"
    assert failed["finished_at"].startswith("2026-01-01T00:00:05")
    assert failed["log_tail"][-1] == "RuntimeError: CUDA out of memory"
    assert len(failed["log_tail"]) == 50
    assert "first failure: rank 1 (worker) pod demo-worker-0 exit 137 (OOMKilled)" in seen[-1]
    pod_lists = [r for r in state.methods("GET") if "/pods?" in r[1]]
    assert pod_lists and "labelSelector=training.kubeflow.org%2Fjob-name%3Ddemo" in pod_lists[0][1]
    with pytest.raises(
        TrainingError, match=r"rank 1 \(worker, pod demo-worker-0\) exited 137 \(OOMKilled\)"
    ):
        result.raise_for_status("PyTorchJob ml/demo")


def test_timeout_deletes_the_job_and_raises() -> None:
    state = FakeKube([RUNNING])
    with stand_in(state) as api, pytest.raises(TrainingError) as err:
        launch(
            _job(),
            kind="PyTorchJob",
            timeout_s=0.3,
            poll_s=0.05,
            api_client=api,
            on_condition=lambda _: None,
        )
    message = str(err.value)
    assert "PyTorchJob ml/demo" in message
    assert "timeout_s=0.3" in message
    assert "Running=True (JobRunning)" in message
    assert state.methods("DELETE") == [
        (
            "DELETE",
            "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs/demo?propagationPolicy=Background",
            200,
        )
    ]
    assert state.job is None


def test_keyboard_interrupt_deletes_the_job() -> None:
    state = FakeKube([RUNNING])

    def interrupt(line: str) -> None:
        if "Running" in line:
            raise KeyboardInterrupt

    with stand_in(state) as api, pytest.raises(KeyboardInterrupt):
        launch(
            _job(),
            kind="PyTorchJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=interrupt,
        )
    assert len(state.methods("DELETE")) == 1


def test_sigterm_deletes_the_job_and_raises() -> None:
    import os
    import signal

    state = FakeKube([RUNNING])
    before = signal.getsignal(signal.SIGTERM)

    def terminate(line: str) -> None:
        if "Running" in line:
            os.kill(os.getpid(), signal.SIGTERM)

    with stand_in(state) as api, pytest.raises(TrainingError, match="cancelled by SIGTERM"):
        launch(
            _job(),
            kind="PyTorchJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=terminate,
        )
    assert len(state.methods("DELETE")) == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_trainjob_complete_is_success_and_mpijob_uses_its_plural() -> None:
    state = FakeKube(
        [
            [cond("Created")],
            [cond("Created"), cond("Complete", "JobsCompleted", "2026-01-01T00:02:00Z")],
        ]
    )
    with stand_in(state) as api:
        result = launch(
            _job("TrainJob"),
            kind="TrainJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=lambda _: None,
        )
    assert result.status == "Succeeded"
    assert (
        state.methods("POST")[0][1] == "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs"
    )

    state = FakeKube([[cond("Succeeded")]])
    with stand_in(state) as api:
        launch(
            _job("MPIJob"),
            kind="MPIJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=lambda _: None,
        )
    assert state.methods("POST")[0][1] == "/apis/kubeflow.org/v2beta1/namespaces/ml/mpijobs"


def test_create_conflict_is_a_training_error() -> None:
    state = FakeKube([RUNNING])
    state.job = {"metadata": {"name": "demo"}}
    with stand_in(state) as api, pytest.raises(TrainingError, match=r"409.*pick another name"):
        launch(
            _job(),
            kind="PyTorchJob",
            timeout_s=30,
            poll_s=0.01,
            api_client=api,
            on_condition=lambda _: None,
        )


def test_kind_must_match_the_job() -> None:
    from kfgpu.errors import ConfigError

    with pytest.raises(ConfigError, match="does not match kind='MPIJob'"):
        launch(_job(), kind="MPIJob", timeout_s=1, api_client=object())


# --- ranks from pod labels ----------------------------------------------------------------


def test_rank_from_labels_per_kind() -> None:
    assert _rank(
        "TrainJob",
        {
            "batch.kubernetes.io/job-completion-index": "3",
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
        },
    ) == (3, "node")
    assert _rank(
        "MPIJob",
        {"training.kubeflow.org/job-role": "worker", "training.kubeflow.org/replica-index": "2"},
    ) == (2, "worker")
    assert _rank("MPIJob", {"training.kubeflow.org/job-role": "launcher"}) == (None, "launcher")
    assert _rank("PyTorchJob", {"training.kubeflow.org/replica-type": "master"}) == (0, "master")
    assert pod_selector("TrainJob", "demo") == "jobset.sigs.k8s.io/jobset-name=demo"
    assert pod_selector("MPIJob", "demo") == "training.kubeflow.org/job-name=demo"


def test_first_failure_ignores_zero_exits_and_takes_restarted_containers() -> None:
    from kubernetes import client

    api = client.ApiClient()
    ok = _pod(
        "p0",
        {"training.kubeflow.org/replica-index": "0"},
        "mpi-worker",
        0,
        "Completed",
        "2026-01-01T00:00:01Z",
    )
    bad = _pod(
        "p1",
        {"training.kubeflow.org/replica-index": "1"},
        "mpi-worker",
        0,
        "Completed",
        "2026-01-01T00:00:02Z",
    )
    bad["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 3, "reason": "Error", "finishedAt": "2026-01-01T00:00:01Z"}
    }
    pods = [api._ApiClient__deserialize(p, "V1Pod") for p in (ok, bad)]  # type: ignore[attr-defined]
    failed = _first_failure("MPIJob", pods)
    assert failed is not None and (failed["pod"], failed["rank"], failed["exit_code"]) == (
        "p1",
        1,
        3,
    )
    assert _first_failure("MPIJob", pods[:1]) is None
