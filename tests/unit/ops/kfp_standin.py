"""A local stand-in for the Kubeflow Pipelines v2beta1 REST API, for the real ``kfp.Client``.

A threaded ``http.server`` on 127.0.0.1 implementing only the endpoints kfgpu's upload,
submit, schedule and doctor call, with objects kept in memory:

* ``GET  /apis/v2beta1/healthz``
* ``POST /apis/v2beta1/pipelines`` (JSON ``V2beta1Pipeline``), ``GET /apis/v2beta1/pipelines``
  (``filter``, ``page_size``, ``namespace``), ``POST /apis/v2beta1/pipelines/upload``
  (multipart ``uploadfile``), ``POST /apis/v2beta1/pipelines/upload_version`` (multipart;
  ``name``, ``pipelineid``), ``GET /apis/v2beta1/pipelines/{id}/versions`` (``filter``,
  ``sort_by``, ``page_size``)
* ``POST/GET /apis/v2beta1/experiments``
* ``POST /apis/v2beta1/runs``, ``GET /apis/v2beta1/runs/{id}`` (states follow a script)
* ``POST/GET /apis/v2beta1/recurringruns``, ``DELETE /apis/v2beta1/recurringruns/{id}``

Every JSON body is checked against the shape of the ``kfp_server_api`` model the API takes
(unknown fields anywhere, wrong JSON types, unknown enum values: 400, as grpc-gateway answers),
plus the rules the real server enforces on what kfgpu sends: required fields, existing
references, a trigger and exactly one pipeline source, max_concurrency within 1-10. Requests
are recorded (method, path, query, body, headers) for the tests to assert on.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

API = "/apis/v2beta1"
#: int64 fields, which proto JSON accepts as numbers or strings.
INT64 = {"max_concurrency", "interval_second"}


class BadRequest(Exception):
    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


def check_shape(data: Any, type_name: str, path: str = "body") -> None:
    """Raise :class:`BadRequest` unless ``data`` fits the kfp_server_api model ``type_name``."""
    import kfp_server_api.models as models

    if data is None:
        return
    if type_name == "object":
        return
    if type_name == "str":
        if isinstance(data, str) or (
            path.rsplit(".", 1)[-1] in INT64
            and isinstance(data, int)
            and not isinstance(data, bool)
        ):
            return
        raise BadRequest(f"{path}: expected a string, got {json.dumps(data)}")
    if type_name == "int":
        if isinstance(data, int) and not isinstance(data, bool):
            return
        raise BadRequest(f"{path}: expected an integer, got {json.dumps(data)}")
    if type_name == "bool":
        if isinstance(data, bool):
            return
        raise BadRequest(f"{path}: expected a boolean, got {json.dumps(data)}")
    if type_name == "datetime":
        if isinstance(data, str):
            return
        raise BadRequest(f"{path}: expected an RFC 3339 time, got {json.dumps(data)}")
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(data, list):
            raise BadRequest(f"{path}: expected a list")
        for i, item in enumerate(data):
            check_shape(item, m[1], f"{path}[{i}]")
        return
    if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(data, dict):
            raise BadRequest(f"{path}: expected an object")
        for k, v in data.items():
            check_shape(v, m[1], f"{path}.{k}")
        return
    cls = getattr(models, type_name)
    if not cls.openapi_types:  # an enum
        allowed = getattr(cls, "allowable_values", [])
        if data not in allowed:
            raise BadRequest(f"{path}: {data!r} is not one of {allowed}")
        return
    if not isinstance(data, dict):
        raise BadRequest(f"{path}: expected an object ({type_name})")
    by_json = {v: k for k, v in cls.attribute_map.items()}
    unknown = set(data) - set(by_json)
    if unknown:
        raise BadRequest(f"{path}: unknown field(s) {sorted(unknown)} for {type_name}")
    for key, value in data.items():
        check_shape(value, cls.openapi_types[by_json[key]], f"{path}.{key}")


def _require(body: dict[str, Any], path: str, *keys: str) -> None:
    for k in keys:
        if body.get(k) in (None, "", {}):
            raise BadRequest(f"{path}.{k} is required")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class KfpState:
    """Everything the stand-in holds; tests read and script it."""

    multi_user: bool = False
    run_states: list[str] = field(
        default_factory=lambda: ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    )
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    run_gets: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _clock: dt.datetime = field(
        default_factory=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    )

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}"

    def now(self) -> str:
        self._clock += dt.timedelta(seconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def writes(self) -> list[Request]:
        """Every request that changes something (not GET)."""
        return [r for r in self.requests if r.method != "GET"]

    def calls(self, method: str, path: str) -> list[Request]:
        """Requests of ``method`` to exactly ``/apis/v2beta1<path>``."""
        return [r for r in self.requests if r.method == method and r.path == API + path]


def _matches(item: dict[str, Any], filter_text: str | None) -> bool:
    if not filter_text:
        return True
    spec = json.loads(filter_text)
    for p in spec.get("predicates", []):
        op = p.get("operation", p.get("op"))
        if op not in ("EQUALS", 1):
            raise BadRequest(f"filter operation {op!r} is not supported by the stand-in")
        value = p.get("string_value", p.get("stringValue"))
        if item.get(p["key"]) != value:
            return False
    return True


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> dict[str, Any]:
    sort = (query.get("sort_by") or [""])[0]
    if sort:
        field_name, _, order = sort.partition(" ")
        items = sorted(items, key=lambda i: i.get(field_name) or "", reverse=order == "desc")
    size = int((query.get("page_size") or ["10"])[0]) or 10
    start = int((query.get("page_token") or ["0"])[0] or 0)
    page = items[start : start + size]
    out: dict[str, Any] = {key: page, "total_size": len(items)}
    if start + size < len(items):
        out["next_page_token"] = str(start + size)
    return out


def _multipart(headers: Any, raw: bytes) -> tuple[str, bytes]:
    content_type = headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadRequest(f"upload needs multipart/form-data, got {content_type!r}")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return str(part.get_filename() or ""), part.get_payload(decode=True)
    raise BadRequest("multipart body has no 'uploadfile' part")


def _pipeline_spec(content: bytes) -> dict[str, Any]:
    docs = list(yaml.safe_load_all(content))
    if not docs or not isinstance(docs[0], dict) or "pipelineInfo" not in docs[0]:
        raise BadRequest("uploadfile is not a compiled pipeline")
    return docs[0]


class Handler(BaseHTTPRequestHandler):
    state: KfpState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        is_json = self.headers.get("Content-Type", "").startswith("application/json")
        try:
            if raw and is_json:
                try:
                    body = json.loads(raw)
                except ValueError as e:
                    raise BadRequest(f"body is not JSON: {e}") from e
            with self.state.lock:
                self.state.requests.append(
                    Request(
                        self.command,
                        url.path,
                        query,
                        body if is_json else raw,
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )
                code, answer = self._route(url.path, query, body, raw)
        except BadRequest as e:
            code, answer = e.code, {"code": 3 if e.code == 400 else 5, "message": str(e)}
        self._send(code, answer)

    do_GET = do_POST = do_DELETE = _handle

    def _route(
        self, path: str, query: dict[str, list[str]], body: Any, raw: bytes
    ) -> tuple[int, Any]:
        s = self.state
        method = self.command
        ns = (query.get("namespace") or [""])[0]
        if path == f"{API}/healthz" and method == "GET":
            return 200, {"multi_user": s.multi_user, "pipeline_store": "database"}
        # ---- pipelines
        if path == f"{API}/pipelines" and method == "POST":
            check_shape(body, "V2beta1Pipeline", "pipeline")
            _require(body, "pipeline", "display_name")
            if any(p["display_name"] == body["display_name"] for p in s.pipelines.values()):
                raise BadRequest(f"pipeline {body['display_name']!r} already exists", 409)
            pid = s.new_id("pipeline")
            s.pipelines[pid] = {**body, "pipeline_id": pid, "created_at": s.now()}
            return 200, s.pipelines[pid]
        if path == f"{API}/pipelines" and method == "GET":
            items = [
                p
                for p in s.pipelines.values()
                if _matches(p, (query.get("filter") or [None])[0])
                and (not ns or p.get("namespace", "") in ("", ns))
            ]
            return 200, _page(items, query, "pipelines")
        if path == f"{API}/pipelines/upload" and method == "POST":
            filename, content = _multipart(self.headers, raw)
            name = (query.get("name") or query.get("display_name") or [filename])[0]
            spec = _pipeline_spec(content)
            pid, vid = s.new_id("pipeline"), s.new_id("version")
            s.pipelines[pid] = {"pipeline_id": pid, "display_name": name, "created_at": s.now()}
            s.versions[vid] = {
                "pipeline_id": pid,
                "pipeline_version_id": vid,
                "display_name": name,
                "pipeline_spec": spec,
                "created_at": s.now(),
            }
            return 200, s.pipelines[pid]
        if path == f"{API}/pipelines/upload_version" and method == "POST":
            _filename, content = _multipart(self.headers, raw)
            name = (query.get("name") or [""])[0]
            pid = (query.get("pipelineid") or [""])[0]
            if not name or pid not in s.pipelines:
                raise BadRequest(f"upload_version needs name and an existing pipelineid ({pid!r})")
            if any(
                v["pipeline_id"] == pid and v["display_name"] == name for v in s.versions.values()
            ):
                raise BadRequest(f"version {name!r} already exists", 409)
            vid = s.new_id("version")
            s.versions[vid] = {
                "pipeline_id": pid,
                "pipeline_version_id": vid,
                "display_name": name,
                "description": (query.get("description") or [""])[0],
                "pipeline_spec": _pipeline_spec(content),
                "created_at": s.now(),
            }
            return 200, s.versions[vid]
        if m := re.fullmatch(rf"{API}/pipelines/([^/]+)/versions", path):
            if m[1] not in s.pipelines:
                raise BadRequest(f"pipeline {m[1]} not found", 404)
            items = [
                v
                for v in s.versions.values()
                if v["pipeline_id"] == m[1] and _matches(v, (query.get("filter") or [None])[0])
            ]
            return 200, _page(items, query, "pipeline_versions")
        # ---- experiments
        if path == f"{API}/experiments" and method == "POST":
            check_shape(body, "V2beta1Experiment", "experiment")
            _require(body, "experiment", "display_name")
            if s.multi_user and not body.get("namespace"):
                raise BadRequest("experiment.namespace is required in multi-user mode")
            eid = s.new_id("experiment")
            s.experiments[eid] = {**body, "experiment_id": eid, "created_at": s.now()}
            return 200, s.experiments[eid]
        if path == f"{API}/experiments" and method == "GET":
            items = [
                e
                for e in s.experiments.values()
                if _matches(e, (query.get("filter") or [None])[0])
                and (not ns or e.get("namespace", "") == ns)
            ]
            return 200, _page(items, query, "experiments")
        # ---- runs
        if path == f"{API}/runs" and method == "POST":
            check_shape(body, "V2beta1Run", "run")
            _require(body, "run", "display_name", "experiment_id")
            self._check_source(body, "run", need_version=True)
            rid = s.new_id("run")
            s.runs[rid] = {**body, "run_id": rid, "state": "PENDING", "created_at": s.now()}
            return 200, s.runs[rid]
        if m := re.fullmatch(rf"{API}/runs/([^/:]+)", path):
            if m[1] not in s.runs:
                raise BadRequest(f"run {m[1]} not found", 404)
            n = s.run_gets.get(m[1], 0)
            s.run_gets[m[1]] = n + 1
            state = s.run_states[min(n, len(s.run_states) - 1)]
            run = {**s.runs[m[1]], "state": state}
            if state == "FAILED":
                run["error"] = {"code": 2, "message": "train-model: exit code 1"}
            return 200, run
        # ---- recurring runs
        if path == f"{API}/recurringruns" and method == "POST":
            check_shape(body, "V2beta1RecurringRun", "recurring_run")
            _require(body, "recurring_run", "display_name", "trigger", "experiment_id")
            self._check_source(body, "recurring_run", need_version=False)
            trigger = body["trigger"]
            if bool(trigger.get("cron_schedule")) == bool(trigger.get("periodic_schedule")):
                raise BadRequest("recurring_run.trigger needs exactly one schedule")
            cron = (trigger.get("cron_schedule") or {}).get("cron")
            if cron and len(cron.split()) not in (5, 6):
                raise BadRequest(f"invalid cron {cron!r}")
            mc = int(body.get("max_concurrency") or 0)
            if not 1 <= mc <= 10:
                raise BadRequest("max concurrency of a recurring run must be within 1 and 10")
            if body.get("mode") not in ("ENABLE", "DISABLE"):
                raise BadRequest("recurring_run.mode must be ENABLE or DISABLE")
            rid = s.new_id("recurring")
            stored = {**body, "recurring_run_id": rid, "created_at": s.now()}
            stored["max_concurrency"] = str(mc)  # int64: the server answers a string
            s.recurring_runs[rid] = stored
            return 200, stored
        if path == f"{API}/recurringruns" and method == "GET":
            exp = (query.get("experiment_id") or [""])[0]
            items = [
                r
                for r in s.recurring_runs.values()
                if (not exp or r.get("experiment_id") == exp)
                and (not ns or r.get("namespace", "") == ns)
            ]
            return 200, _page(items, query, "recurringRuns")
        if m := re.fullmatch(rf"{API}/recurringruns/([^/:]+)", path):
            if m[1] not in s.recurring_runs:
                raise BadRequest(f"recurring run {m[1]} not found", 404)
            if method == "DELETE":
                del s.recurring_runs[m[1]]
                return 200, {}
            return 200, s.recurring_runs[m[1]]
        raise BadRequest(f"{method} {path} is not implemented by the stand-in", 404)

    def _check_source(self, body: dict[str, Any], where: str, *, need_version: bool) -> None:
        s = self.state
        if body["experiment_id"] not in s.experiments:
            raise BadRequest(f"{where}.experiment_id {body['experiment_id']!r} not found", 404)
        ref, spec = body.get("pipeline_version_reference"), body.get("pipeline_spec")
        if bool(ref) == bool(spec):
            raise BadRequest(
                f"{where} needs exactly one of pipeline_spec and pipeline_version_reference"
            )
        if ref:
            if ref.get("pipeline_id") not in s.pipelines:
                raise BadRequest(f"{where}: pipeline {ref.get('pipeline_id')!r} not found", 404)
            vid = ref.get("pipeline_version_id")
            if need_version and not vid:
                raise BadRequest(
                    f"{where}.pipeline_version_reference.pipeline_version_id is required"
                )
            if vid and s.versions.get(vid, {}).get("pipeline_id") != ref["pipeline_id"]:
                raise BadRequest(f"{where}: version {vid!r} not found", 404)


@contextmanager
def serve(state: KfpState | None = None) -> Iterator[tuple[str, KfpState]]:
    """Serve a stand-in on a free 127.0.0.1 port; yield ``(base URL, state)``."""
    state = state or KfpState()
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
