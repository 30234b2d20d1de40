"""Recurring runs as code: make the cluster's recurring runs match a YAML file.

The file::

    experiment: kfgpu-schedules          # default experiment for every schedule (optional)
    schedules:
      - name: nightly-retrain             # unique; the recurring run's display name
        pipeline: training                # a pipeline kfgpu knows, or a compiled .yaml
        version: pinned                   # pinned | latest | <an uploaded version's name>
        cron: "0 2 * * *"                 # 5 or 6 fields (seconds first), or @daily ...
        timezone: Asia/Tokyo              # IANA, required
        parameters: {max_epochs: 30}      # typed against the pipeline's parameters
        max_concurrency: 1                # 1-10 (KFP's bounds); default 1
        catchup: false                    # backfill missed intervals; default false
        enabled: true                     # default true
        experiment: retraining            # default: the file's experiment
        description: ""                   # shown in the KFP UI
        service_account: ""               # the run pods' service account; default KFP's

Versions: ``pinned`` is the version compiled from this checkout (content-named, uploaded when
missing: new code means a new version and the recurring run is replaced to use it);
``latest`` refers to the pipeline only, so each triggered run uses the newest version at
trigger time (the KFP UI's "always use the latest version"); any other value names an
uploaded version that must exist.

KFP cannot update a recurring run in place (kubeflow/pipelines#3789, #6001), so a changed
schedule is replaced: deleted, then created. Recurring runs kfgpu manages carry a marker at
the start of their description; only those are ever replaced or deleted (pruned when no
longer in the file, unless ``prune=False``). A recurring run with a schedule's name that kfgpu
does not manage is an error, never silently taken over. Applying the same file twice changes
nothing; everything is checked before the first change is made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kfgpu.errors import ConfigError, OpsError
from kfgpu.ops.client import api_call
from kfgpu.ops.cron import check_timezone, to_kfp_cron
from kfgpu.ops.submit import coerce_parameters
from kfgpu.ops.upload import (
    CompiledPipeline,
    find_pipeline,
    find_version,
    latest_version,
    upload,
)

__all__ = [
    "MARKER",
    "Action",
    "Plan",
    "Schedule",
    "ScheduleFile",
    "apply",
    "check_offline",
    "list_managed",
    "load",
    "plan",
]

#: Starts the description of every recurring run kfgpu manages.
MARKER = "[kfgpu-managed]"

_SCHEDULE_KEYS = {
    "name",
    "pipeline",
    "version",
    "cron",
    "timezone",
    "parameters",
    "max_concurrency",
    "catchup",
    "enabled",
    "experiment",
    "description",
    "service_account",
}
_REQUIRED = ("name", "pipeline", "cron", "timezone")
_FILE_KEYS = {"schedules", "experiment"}
DEFAULT_EXPERIMENT = "kfgpu-schedules"


@dataclass(frozen=True)
class Schedule:
    """One recurring run as the file declares it (validated)."""

    name: str
    pipeline: str
    cron: str
    timezone: str
    version: str = "pinned"
    parameters: dict[str, Any] = field(default_factory=dict)
    max_concurrency: int = 1
    catchup: bool = False
    enabled: bool = True
    experiment: str = DEFAULT_EXPERIMENT
    description: str = ""
    service_account: str = ""


@dataclass(frozen=True)
class ScheduleFile:
    """A validated schedule file."""

    path: str
    schedules: list[Schedule]


def _fail(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _typed(where: str, key: str, value: Any, kind: type, example: str) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(where, f"{key} must be an integer, got {value!r} (e.g. {key}: {example})")
    if kind is bool and not isinstance(value, bool):
        raise _fail(where, f"{key} must be true or false, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise _fail(where, f"{key} must be a string, got {value!r} (e.g. {key}: {example})")
    return value


def load(path: str | Path) -> ScheduleFile:
    """Read and validate a schedule file; errors name the schedule and the field.

    Raises:
        ConfigError: the file is missing, not YAML, or a schedule is invalid.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"schedule file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    return parse(data, where=str(p))


def parse(data: Any, *, where: str = "schedule file") -> ScheduleFile:
    """Validate an already-loaded schedule file (see :func:`load`)."""
    if not isinstance(data, dict) or not isinstance(data.get("schedules"), list):
        raise ConfigError(f"{where}: must be a mapping with a 'schedules:' list")
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}"
        )
    default_experiment = data.get("experiment", DEFAULT_EXPERIMENT)
    _typed(where, "experiment", default_experiment, str, "retraining")
    out: list[Schedule] = []
    seen: set[str] = set()
    for i, item in enumerate(data["schedules"]):
        label = f"{where}: schedules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{label} must be a mapping")
        if isinstance(item.get("name"), str) and item["name"].strip():
            label = f"{where}: schedule {item['name']!r}"
        unknown = set(item) - _SCHEDULE_KEYS
        if unknown:
            raise ConfigError(
                f"{label}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_SCHEDULE_KEYS)}"
            )
        for key in _REQUIRED:
            if key not in item or item[key] in (None, ""):
                hint = " (an IANA zone such as UTC or Europe/Berlin)" if key == "timezone" else ""
                raise ConfigError(f"{label}: {key} is required{hint}")
        for key, example in (
            ("name", "nightly-retrain"),
            ("pipeline", "training"),
            ("cron", "'0 2 * * *'"),
            ("timezone", "UTC"),
            ("version", "pinned"),
            ("experiment", "retraining"),
            ("description", "''"),
            ("service_account", "''"),
        ):
            if key in item:
                _typed(label, key, item[key], str, example)
        name = item["name"].strip()
        if name in seen:
            raise ConfigError(f"{label}: name {name!r} is used by two schedules")
        seen.add(name)
        max_concurrency = _typed(label, "max_concurrency", item.get("max_concurrency", 1), int, "1")
        if not 1 <= max_concurrency <= 10:
            raise ConfigError(
                f"{label}: max_concurrency {max_concurrency} is outside 1-10 (KFP's bounds)"
            )
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ConfigError(f"{label}: parameters must be a mapping of name: value")
        check_timezone(item["timezone"], where=label)
        to_kfp_cron(item["cron"], "UTC", where=f"{label}: cron")  # syntax only; zones at plan
        version = item.get("version", "pinned").strip()
        if not version:
            raise ConfigError(f"{label}: version must be pinned, latest or a version name")
        out.append(
            Schedule(
                name=name,
                pipeline=item["pipeline"],
                cron=item["cron"],
                timezone=item["timezone"],
                version=version,
                parameters=dict(parameters),
                max_concurrency=max_concurrency,
                catchup=_typed(label, "catchup", item.get("catchup", False), bool, "false"),
                enabled=_typed(label, "enabled", item.get("enabled", True), bool, "true"),
                experiment=str(item.get("experiment", default_experiment)),
                description=item.get("description", ""),
                service_account=item.get("service_account", ""),
            )
        )
    return ScheduleFile(path=where, schedules=out)


# ------------------------------------------------------------------ desired vs actual


@dataclass(frozen=True)
class _Desired:
    schedule: Schedule
    fields: dict[str, Any]
    notes: list[str]
    version_label: str
    package: CompiledPipeline | None
    needs_upload: bool
    needs_experiment: bool


@dataclass
class Action:
    """One change (or non-change) of the plan."""

    kind: Literal["create", "replace", "delete", "unchanged"]
    name: str
    recurring_run_id: str = ""
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    desired: _Desired | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        mark = {"create": "+", "replace": "~", "delete": "-", "unchanged": "="}[self.kind]
        head = f"{mark} {self.kind:<9} {self.name}"
        if self.desired is not None:
            f = self.desired.fields
            head += (
                f"  [{self.desired.schedule.pipeline}@{self.desired.version_label}, "
                f"cron {f['cron']!r} in the scheduler's zone, "
                f"{self.desired.schedule.cron!r} {self.desired.schedule.timezone}]"
            )
        elif self.recurring_run_id:
            head += f"  (id {self.recurring_run_id})"
        out = [head]
        for key, (old, new) in self.changes.items():
            out.append(f"      {key}: {_show(old)} -> {_show(new)}")
        out += [f"      note: {n}" for n in self.notes]
        return out


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)


@dataclass
class Plan:
    """The diff between the file and the cluster, in the order it is applied."""

    actions: list[Action]
    applied: bool = False

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.kind != "unchanged"]

    def lines(self) -> list[str]:
        out = [line for a in self.actions for line in a.lines()]
        counts = {
            k: sum(a.kind == k for a in self.actions) for k in ("create", "replace", "delete")
        }
        unchanged = sum(a.kind == "unchanged" for a in self.actions)
        verb = "applied" if self.applied else "plan"
        out.append(
            f"{verb}: {counts['create']} to create, {counts['replace']} to replace, "
            f"{counts['delete']} to delete, {unchanged} unchanged"
        )
        return out


def _description(s: Schedule) -> str:
    text = f"{MARKER} {s.cron!r} {s.timezone}"
    return f"{text}: {s.description}" if s.description else text


def _actual_fields(run: Any) -> dict[str, Any]:
    ref = run.pipeline_version_reference
    cron = run.trigger.cron_schedule.cron if run.trigger and run.trigger.cron_schedule else None
    params = (run.runtime_config.parameters if run.runtime_config else None) or {}
    return {
        "experiment_id": run.experiment_id or "",
        "pipeline_id": (ref.pipeline_id if ref else "") or "",
        "pipeline_version_id": (ref.pipeline_version_id if ref else "") or "",
        "cron": cron,
        "max_concurrency": int(run.max_concurrency or 0),
        "no_catchup": bool(run.no_catchup),
        "enabled": str(run.mode) == "ENABLE",
        "parameters": dict(params),
        "service_account": run.service_account or "",
        "description": run.description or "",
    }


def list_managed(client: Any, namespace: str = "") -> list[Any]:
    """Every recurring run whose description carries kfgpu's marker (all pages)."""
    out: list[Any] = []
    token = ""
    while True:
        response = api_call(
            "list recurring runs",
            client.list_recurring_runs,
            page_token=token,
            page_size=100,
            namespace=namespace or None,
        )
        out += [
            r for r in (response.recurring_runs or []) if (r.description or "").startswith(MARKER)
        ]
        token = response.next_page_token or ""
        if not token:
            return out


def _list_all(client: Any, namespace: str) -> list[Any]:
    out: list[Any] = []
    token = ""
    while True:
        response = api_call(
            "list recurring runs",
            client.list_recurring_runs,
            page_token=token,
            page_size=100,
            namespace=namespace or None,
        )
        out += list(response.recurring_runs or [])
        token = response.next_page_token or ""
        if not token:
            return out


def _find_experiment(client: Any, name: str, namespace: str) -> str | None:
    filt = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": name}]}
    )
    response = api_call(
        f"list experiments named {name!r}",
        client.list_experiments,
        filter=filt,
        namespace=namespace or None,
        page_size=2,
    )
    found = [e for e in (response.experiments or []) if e.display_name == name]
    return found[0].experiment_id if found else None


def _check(
    s: Schedule, package: CompiledPipeline, scheduler_timezone: str
) -> tuple[Any, dict[str, Any]]:
    """What needs no cluster: the cron in the scheduler's zone and the typed parameters."""
    where = f"schedule {s.name!r}"
    kfp_cron = to_kfp_cron(
        s.cron, s.timezone, scheduler_timezone=scheduler_timezone, where=f"{where}: cron"
    )
    arguments = coerce_parameters(
        package, {k: v for k, v in s.parameters.items()}, where=f"{where}: parameters"
    )
    return kfp_cron, arguments


def _packages(file: ScheduleFile, stack: ExitStack) -> dict[str, CompiledPipeline]:
    """Each schedule's pipeline, compiled (kfgpu's names) or read (a .yaml), alive in ``stack``.

    The name -> pipeline lookup is :func:`kfgpu.compile.compiled`'s: only this command-side
    module of ``kfgpu.ops`` reaches it, so the library's use of ``ops`` (the retraining
    trigger) never reaches ``kfgpu.pipelines``.
    """
    from kfgpu.compile import compiled

    return {
        p: stack.enter_context(compiled(p)) for p in sorted({s.pipeline for s in file.schedules})
    }


def check_offline(file: ScheduleFile, *, scheduler_timezone: str = "UTC") -> list[str]:
    """Every check that needs no cluster; one line per schedule.

    Each schedule's pipeline compiles (or its package reads), its cron converts to the
    scheduler's zone, its parameters type against the pipeline's. What only the server
    knows (the experiment, the uploaded versions, recurring runs of the same name) is left
    to :func:`plan`.

    Raises:
        ConfigError: the first schedule that cannot work, naming the field.
    """
    lines = []
    with ExitStack() as stack:
        packages = _packages(file, stack)
        for s in file.schedules:
            kfp_cron, _ = _check(s, packages[s.pipeline], scheduler_timezone)
            line = (
                f"ok {s.name}  [{s.pipeline}@{s.version}, cron {kfp_cron.cron!r} in the "
                f"scheduler's zone, {s.cron!r} {s.timezone}]"
            )
            lines += [line, *(f"      note: {n}" for n in kfp_cron.notes)]
    return lines


def _desired(
    client: Any,
    s: Schedule,
    packages: dict[str, CompiledPipeline],
    experiments: dict[str, str | None],
    *,
    namespace: str,
    scheduler_timezone: str,
) -> _Desired:
    where = f"schedule {s.name!r}"
    package = packages[s.pipeline]
    kfp_cron, arguments = _check(s, package, scheduler_timezone)
    if s.experiment not in experiments:
        experiments[s.experiment] = _find_experiment(client, s.experiment, namespace)
    experiment_id = experiments[s.experiment]
    pipeline_id = find_pipeline(client, package.name, namespace)
    needs_upload = False
    version_id = ""
    if s.version == "pinned":
        label = f"pinned {package.version_name}"
        found = find_version(client, pipeline_id, package.version_name) if pipeline_id else None
        needs_upload = found is None
        version_id = found or f"<to upload: {package.version_name}>"
    elif s.version == "latest":
        if pipeline_id is None:
            raise OpsError(
                f"{where}: version latest needs pipeline {package.name!r} on the server; run "
                f"`kfgpu upload {s.pipeline}` first or use version: pinned"
            )
        newest = latest_version(client, pipeline_id)
        label = f"latest (now {newest[1]})" if newest else "latest"
    else:
        found = find_version(client, pipeline_id, s.version) if pipeline_id else None
        if found is None:
            raise OpsError(
                f"{where}: version {s.version!r} of pipeline {package.name!r} does not exist on "
                "the server; upload it, or use version: pinned or latest"
            )
        label, version_id = s.version, found
    fields = {
        "experiment_id": experiment_id or f"<to create: {s.experiment}>",
        "pipeline_id": pipeline_id or f"<to create: {package.name}>",
        "pipeline_version_id": version_id,
        "cron": kfp_cron.cron,
        "max_concurrency": s.max_concurrency,
        "no_catchup": not s.catchup,
        "enabled": s.enabled,
        "parameters": arguments,
        "service_account": s.service_account,
        "description": _description(s),
    }
    return _Desired(s, fields, kfp_cron.notes, label, package, needs_upload, experiment_id is None)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or a == b


def plan(
    client: Any,
    file: ScheduleFile,
    *,
    namespace: str = "",
    scheduler_timezone: str = "UTC",
    prune: bool = True,
    stack: ExitStack | None = None,
) -> Plan:
    """Compare the file with the cluster; change nothing.

    ``stack`` keeps the compiled packages alive for :func:`apply`; without one they are
    compiled into a temporary stack that is closed on return.
    """
    own = stack is None
    stack = stack or ExitStack()
    try:
        packages = _packages(file, stack)
        experiments: dict[str, str | None] = {}
        desired = [
            _desired(
                client,
                s,
                packages,
                experiments,
                namespace=namespace,
                scheduler_timezone=scheduler_timezone,
            )
            for s in file.schedules
        ]
        runs = _list_all(client, namespace)
        actions: list[Action] = []
        by_name: dict[str, list[Any]] = {}
        for r in runs:
            by_name.setdefault(r.display_name, []).append(r)
        for d in desired:
            same_name = by_name.get(d.schedule.name, [])
            managed = [r for r in same_name if (r.description or "").startswith(MARKER)]
            foreign = [r for r in same_name if r not in managed]
            if foreign:
                raise OpsError(
                    f"schedule {d.schedule.name!r}: recurring run {foreign[0].recurring_run_id} "
                    f"already has this name and kfgpu does not manage it (its description does "
                    f"not start with {MARKER!r}); rename the schedule, or delete that recurring "
                    "run in the KFP UI"
                )
            keep, extra = (managed[0], managed[1:]) if managed else (None, [])
            for r in extra:
                actions.append(
                    Action("delete", r.display_name, r.recurring_run_id, notes=["duplicate"])
                )
            if keep is None:
                actions.append(Action("create", d.schedule.name, desired=d, notes=d.notes))
                continue
            actual = _actual_fields(keep)
            changes = {
                k: (actual.get(k), v) for k, v in d.fields.items() if not _same(actual.get(k), v)
            }
            kind: Literal["replace", "unchanged"] = "replace" if changes else "unchanged"
            actions.append(
                Action(kind, d.schedule.name, keep.recurring_run_id, changes, d, d.notes)
            )
        if prune:
            wanted = {d.schedule.name for d in desired}
            for r in runs:
                if (r.description or "").startswith(MARKER) and r.display_name not in wanted:
                    actions.append(Action("delete", r.display_name, r.recurring_run_id))
        return Plan(actions)
    finally:
        if own:
            stack.close()


def _create(client: Any, d: _Desired, namespace: str) -> str:
    import kfp_server_api

    from kfgpu.ops.submit import ensure_experiment

    s, f = d.schedule, d.fields
    experiment_id = f["experiment_id"]
    if d.needs_experiment:
        experiment_id = ensure_experiment(client, s.experiment, namespace)
    pipeline_id, version_id = f["pipeline_id"], f["pipeline_version_id"]
    if d.needs_upload or pipeline_id.startswith("<"):
        assert d.package is not None
        uploaded = upload(client, d.package, namespace=namespace)
        pipeline_id = uploaded.pipeline_id
        if s.version == "pinned":
            version_id = uploaded.version_id
    body = kfp_server_api.V2beta1RecurringRun(
        display_name=s.name,
        description=f["description"],
        experiment_id=experiment_id,
        pipeline_version_reference=kfp_server_api.V2beta1PipelineVersionReference(
            pipeline_id=pipeline_id, pipeline_version_id=version_id or None
        ),
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(parameters=f["parameters"]),
        trigger=kfp_server_api.V2beta1Trigger(
            cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=f["cron"])
        ),
        max_concurrency=str(f["max_concurrency"]),
        no_catchup=f["no_catchup"],
        mode="ENABLE" if s.enabled else "DISABLE",
        service_account=s.service_account or None,
        namespace=namespace or None,
    )
    made = api_call(
        f"create recurring run {s.name!r}",
        client.recurring_runs.recurring_run_service_create_recurring_run,
        recurring_run=body,
    )
    return str(made.recurring_run_id)


def apply(
    client: Any,
    file: ScheduleFile,
    *,
    namespace: str = "",
    scheduler_timezone: str = "UTC",
    prune: bool = True,
    dry_run: bool = False,
    on_line: Callable[[str], None] = lambda _line: None,
) -> Plan:
    """Make the cluster's kfgpu-managed recurring runs match ``file``; return the plan.

    Deletes first (pruned and duplicate runs, then the old run of each replaced schedule),
    then creates; with ``dry_run`` only plans. Every check (crons, zones, parameters, versions,
    name clashes) runs before the first change.
    """
    with ExitStack() as stack:
        result = plan(
            client,
            file,
            namespace=namespace,
            scheduler_timezone=scheduler_timezone,
            prune=prune,
            stack=stack,
        )
        if dry_run or not result.changes:
            return result
        for a in _ordered(result.actions):
            if a.kind in ("delete", "replace"):
                api_call(
                    f"delete recurring run {a.name!r} ({a.recurring_run_id})",
                    client.delete_recurring_run,
                    recurring_run_id=a.recurring_run_id,
                )
            if a.kind in ("create", "replace"):
                assert a.desired is not None
                new_id = _create(client, a.desired, namespace)
                a.recurring_run_id = new_id
            if a.kind != "unchanged":
                on_line(f"{a.kind}d {a.name}" if a.kind != "replace" else f"replaced {a.name}")
        result.applied = True
        return result


def _ordered(actions: list[Action]) -> Iterator[Action]:
    yield from (a for a in actions if a.kind == "delete")
    yield from (a for a in actions if a.kind in ("replace", "create"))
