"""Schedules as code against the KFP stand-in: create, replace, delete, and nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kfgpu.cli import main
from kfgpu.compile import compiled
from kfgpu.errors import ConfigError, OpsError
from kfgpu.ops import schedule as ksched
from kfgpu.ops.cron import to_kfp_cron
from kfgpu.ops.upload import upload
from tests.unit.ops.kfp_standin import KfpState


def _file(tmp_path: Path, package: Path, **edits: dict[str, Any]) -> Path:
    schedules = [
        {
            "name": "nightly-retrain",
            "pipeline": str(package),
            "version": "pinned",
            "cron": "0 2 * * *",
            "timezone": "Asia/Tokyo",
            "parameters": {"epochs": 30, "rate": 0.01},
            "max_concurrency": 1,
            "catchup": False,
        },
        {
            "name": "hourly-refresh",
            "pipeline": str(package),
            "version": "latest",
            "cron": "0 15 * * * *",
            "timezone": "UTC",
            "max_concurrency": 2,
            "catchup": True,
            "enabled": False,
            "experiment": "refresh",
        },
    ]
    for s in schedules:
        s.update(edits.get(s["name"], {}))
    schedules = [s for s in schedules if not edits.get(s["name"], {}).get("_drop")]
    for s in schedules:
        s.pop("_drop", None)
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"experiment": "nightly", "schedules": schedules}))
    return path


@pytest.fixture
def uploaded(kfp: Any, small_package: Path) -> None:
    """`latest` needs the pipeline on the server already (`kfgpu upload` first)."""
    with compiled(str(small_package)) as package:
        upload(kfp, package)


def test_first_apply_creates_both_with_the_api_shapes(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path, uploaded: None
) -> None:
    _, state = kfp_server
    plan = ksched.apply(kfp, ksched.load(_file(tmp_path, small_package)))
    assert [a.kind for a in plan.actions] == ["create", "create"]
    bodies = {r.body["display_name"]: r.body for r in state.calls("POST", "/recurringruns")}
    pipeline_id = next(iter(state.pipelines))
    version_id = next(iter(state.versions))
    experiments = {e["display_name"]: e["experiment_id"] for e in state.experiments.values()}
    assert bodies["nightly-retrain"] == {
        "display_name": "nightly-retrain",
        "description": "[kfgpu-managed] '0 2 * * *' Asia/Tokyo",
        "experiment_id": experiments["nightly"],
        "pipeline_version_reference": {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
        },
        "runtime_config": {"parameters": {"epochs": 30, "rate": 0.01}},
        # 02:00 in Tokyo is 17:00 UTC the day before, every day: 6 fields, seconds first.
        "trigger": {"cron_schedule": {"cron": "0 0 17 * * *"}},
        "max_concurrency": "1",
        "no_catchup": True,
        "mode": "ENABLE",
    }
    latest = bodies["hourly-refresh"]
    assert latest["pipeline_version_reference"] == {"pipeline_id": pipeline_id}
    assert latest["trigger"] == {"cron_schedule": {"cron": "0 15 * * * *"}}
    assert (latest["max_concurrency"], latest["no_catchup"], latest["mode"]) == (
        "2",
        False,
        "DISABLE",
    )
    assert latest["experiment_id"] == experiments["refresh"]
    notes = [n for a in plan.actions for n in a.notes]
    assert any("5 fields; KFP's scheduler reads 6" in n for n in notes)
    assert any("Asia/Tokyo is +9h" in n for n in notes)


def test_applying_the_same_file_twice_changes_nothing(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path, uploaded: None
) -> None:
    _, state = kfp_server
    path = _file(tmp_path, small_package)
    ksched.apply(kfp, ksched.load(path))
    before, ids = len(state.writes()), set(state.recurring_runs)
    again = ksched.apply(kfp, ksched.load(path))
    assert [a.kind for a in again.actions] == ["unchanged", "unchanged"]
    assert len(state.writes()) == before, [r.path for r in state.writes()[before:]]
    assert set(state.recurring_runs) == ids


def test_editing_one_cron_replaces_exactly_that_recurring_run(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path, uploaded: None
) -> None:
    _, state = kfp_server
    ksched.apply(kfp, ksched.load(_file(tmp_path, small_package)))
    ids = {r["display_name"]: i for i, r in state.recurring_runs.items()}
    before = len(state.requests)
    edited = _file(tmp_path, small_package, **{"nightly-retrain": {"cron": "30 3 * * 1-5"}})
    plan = ksched.apply(kfp, ksched.load(edited))
    kinds = {a.name: a.kind for a in plan.actions}
    assert kinds == {"nightly-retrain": "replace", "hourly-refresh": "unchanged"}
    (replace,) = [a for a in plan.actions if a.kind == "replace"]
    assert replace.changes["cron"] == ("0 0 17 * * *", "0 30 18 * * 0-4")
    writes = [(r.method, r.path) for r in state.requests[before:] if r.method != "GET"]
    assert writes == [
        ("DELETE", f"/apis/v2beta1/recurringruns/{ids['nightly-retrain']}"),
        ("POST", "/apis/v2beta1/recurringruns"),
    ]
    assert ids["hourly-refresh"] in state.recurring_runs
    assert len(state.recurring_runs) == 2


def test_removed_schedule_is_deleted_unless_no_prune(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path, uploaded: None
) -> None:
    _, state = kfp_server
    ksched.apply(kfp, ksched.load(_file(tmp_path, small_package)))
    smaller = ksched.load(_file(tmp_path, small_package, **{"hourly-refresh": {"_drop": True}}))
    kept = ksched.apply(kfp, smaller, prune=False)
    assert [a.kind for a in kept.actions] == ["unchanged"]
    assert len(state.recurring_runs) == 2
    pruned = ksched.apply(kfp, smaller)
    assert [(a.kind, a.name) for a in pruned.actions] == [
        ("unchanged", "nightly-retrain"),
        ("delete", "hourly-refresh"),
    ]
    assert [r["display_name"] for r in state.recurring_runs.values()] == ["nightly-retrain"]


def test_dry_run_prints_the_diff_and_changes_nothing(
    kfp_server: tuple[str, KfpState],
    small_package: Path,
    tmp_path: Path,
    uploaded: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, state = kfp_server
    before = len(state.writes())
    assert (
        main(["schedule", "apply", str(_file(tmp_path, small_package)), "--dry-run", "--host", url])
        == 0
    )
    out = capsys.readouterr().out
    assert "+ create    nightly-retrain" in out
    assert "plan: 2 to create, 0 to replace, 0 to delete, 0 unchanged" in out
    assert "dry run: nothing was changed" in out
    assert len(state.writes()) == before
    assert state.recurring_runs == {}


def test_schedule_list_shows_managed_runs(
    kfp_server: tuple[str, KfpState],
    small_package: Path,
    tmp_path: Path,
    uploaded: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = kfp_server
    assert main(["schedule", "apply", str(_file(tmp_path, small_package)), "--host", url]) == 0
    capsys.readouterr()
    assert main(["schedule", "list", "--host", url]) == 0
    out = capsys.readouterr().out
    assert "nightly-retrain" in out and "0 0 17 * * *" in out and "'0 2 * * *' Asia/Tokyo" in out


def test_a_foreign_recurring_run_with_the_name_is_never_taken_over(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path, uploaded: None
) -> None:
    _, state = kfp_server
    state.recurring_runs["recurring-0999"] = {
        "recurring_run_id": "recurring-0999",
        "display_name": "nightly-retrain",
        "description": "made by hand",
    }
    with pytest.raises(
        OpsError, match="recurring-0999 already has this name and kfgpu does not manage it"
    ):
        ksched.apply(kfp, ksched.load(_file(tmp_path, small_package)))
    assert state.calls("POST", "/recurringruns") == []


def test_a_daylight_saving_zone_is_refused_unless_the_scheduler_runs_in_it(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path, uploaded: None
) -> None:
    path = _file(tmp_path, small_package, **{"nightly-retrain": {"timezone": "Europe/Berlin"}})
    with pytest.raises(
        ConfigError,
        match=r"schedule 'nightly-retrain': cron: Europe/Berlin and the scheduler's zone UTC are \+1h, \+2h apart",
    ):
        ksched.apply(kfp, ksched.load(path))
    _, state = kfp_server
    assert state.calls("POST", "/recurringruns") == []
    # The other schedule is in UTC, which the Berlin scheduler cannot run exactly either.
    both = _file(
        tmp_path,
        small_package,
        **{
            "nightly-retrain": {"timezone": "Europe/Berlin"},
            "hourly-refresh": {"timezone": "Europe/Berlin"},
        },
    )
    ksched.apply(kfp, ksched.load(both), scheduler_timezone="Europe/Berlin")
    bodies = {r.body["display_name"]: r.body for r in state.calls("POST", "/recurringruns")}
    assert bodies["nightly-retrain"]["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"timezone": None}, r"schedule 'nightly-retrain': timezone is required"),
        ({"timezone": "Mars/Olympus"}, r"timezone 'Mars/Olympus' is not an IANA time zone"),
        ({"cronn": "x"}, r"schedule 'nightly-retrain': unknown field\(s\) \['cronn'\]"),
        ({"max_concurrency": 20}, r"max_concurrency 20 is outside 1-10"),
        ({"max_concurrency": "one"}, r"max_concurrency must be an integer, got 'one'"),
        ({"catchup": "no"}, r"catchup must be true or false, got 'no'"),
        ({"name": "hourly-refresh"}, r"name 'hourly-refresh' is used by two schedules"),
    ],
)
def test_bad_files_name_the_schedule_and_field(
    small_package: Path, tmp_path: Path, edit: dict[str, Any], message: str
) -> None:
    path = _file(tmp_path, small_package, **{"nightly-retrain": edit})
    with pytest.raises(ConfigError, match=message):
        ksched.load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"cron": "0 2 * *"}, r"schedule 'nightly-retrain': cron: '0 2 \* \*' has 4 fields"),
        ({"cron": "0 25 * * *"}, r"schedule 'nightly-retrain': cron: hour 25 is outside 0-23"),
        ({"cron": "0 2 L * *"}, r"uses L, W or #"),
        (
            {"parameters": {"epochs": "many"}},
            r"schedule 'nightly-retrain': parameters: parameter epochs='many' must be integer",
        ),
        (
            {"parameters": {"epoch": 1}},
            r"parameters: pipeline 'kfgpu-small' has no parameter 'epoch'",
        ),
        (
            {"version": "0.0.1-nothere"},
            r"version '0.0.1-nothere' of pipeline 'kfgpu-small' does not exist",
        ),
    ],
)
def test_invalid_schedules_fail_before_any_change(
    kfp: Any,
    kfp_server: tuple[str, KfpState],
    small_package: Path,
    tmp_path: Path,
    uploaded: None,
    edit: dict[str, Any],
    message: str,
) -> None:
    _, state = kfp_server
    before = len(state.writes())
    with pytest.raises((ConfigError, OpsError), match=message):
        ksched.apply(kfp, ksched.load(_file(tmp_path, small_package, **{"nightly-retrain": edit})))
    assert len(state.writes()) == before


@pytest.mark.parametrize(
    ("cron", "zone", "expected"),
    [
        ("0 2 * * *", "UTC", "0 0 2 * * *"),
        ("0 0 2 * * *", "UTC", "0 0 2 * * *"),
        ("@daily", "UTC", "0 0 0 * * *"),
        ("30 9 * * 1-5", "Asia/Tokyo", "0 30 0 * * 1-5"),
        ("0 8 * * MON", "Asia/Tokyo", "0 0 23 * * 0"),
        ("0 * * * *", "Asia/Kolkata", "0 30 * * * *"),
        ("*/15 * * * *", "Asia/Kolkata", "0 0,15,30,45 * * * *"),
    ],
)
def test_cron_conversion_is_exact(cron: str, zone: str, expected: str) -> None:
    assert to_kfp_cron(cron, zone).cron == expected


def test_readme_schedule_example_is_valid() -> None:
    import re

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    (block,) = [
        b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "schedules:" in b
    ]
    spec = ksched.parse(yaml.safe_load(block), where="README")
    (s,) = spec.schedules
    assert to_kfp_cron(s.cron, s.timezone).cron == "0 0 17 * * *"
    with compiled(s.pipeline) as package:
        from kfgpu.ops.submit import coerce_parameters

        assert coerce_parameters(package, s.parameters)["max_epochs"] == 30


def test_dry_run_checks_the_file_offline_without_a_cluster(
    tmp_path: Path, small_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, small_package)
    assert main(["schedule", "apply", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ok nightly-retrain" in out and "ok hourly-refresh" in out
    assert "2 schedule(s) valid offline" in out
    assert "not compared with a cluster (no KFP endpoint set" in out
    # Offline still means every check that needs no server: a bad parameter is an error.
    bad = _file(tmp_path, small_package, **{"nightly-retrain": {"parameters": {"epochs": "x"}}})
    assert main(["schedule", "apply", str(bad), "--dry-run"]) == 1
    assert "schedule 'nightly-retrain': parameters: parameter epochs='x'" in capsys.readouterr().err


def test_dry_run_with_an_unreachable_endpoint_stays_offline(
    tmp_path: Path, small_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfgpu.serving.process import free_port

    path = _file(tmp_path, small_package)
    host = f"http://127.0.0.1:{free_port()}"
    assert main(["schedule", "apply", str(path), "--dry-run", "--host", host]) == 0
    out = capsys.readouterr().out
    assert (
        "2 schedule(s) valid offline" in out and "not compared with a cluster (cannot reach" in out
    )
    # Without --dry-run the cluster is needed.
    assert main(["schedule", "apply", str(path), "--host", host]) == 1


def test_dry_run_diffs_when_the_cluster_answers(
    kfp_server: tuple[str, KfpState],
    tmp_path: Path,
    small_package: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, state = kfp_server
    path = _file(tmp_path, small_package, **{"hourly-refresh": {"_drop": True}})
    assert main(["schedule", "apply", str(path), "--dry-run", "--host", url]) == 0
    out = capsys.readouterr().out
    assert "1 schedule(s) valid offline" in out and "+ create    nightly-retrain" in out
    assert not state.calls("POST", "/recurringruns")
