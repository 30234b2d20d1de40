"""upload and submit drive the real kfp.Client against the KFP v2beta1 stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kfgpu._version import __version__
from kfgpu.cli import main
from kfgpu.compile import compiled
from kfgpu.errors import ConfigError, OpsError
from kfgpu.ops import submit as ksubmit
from kfgpu.ops.upload import upload
from tests.unit.ops.kfp_standin import KfpState


def test_upload_creates_pipeline_then_content_named_version(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path
) -> None:
    _, state = kfp_server
    with compiled(str(small_package)) as package:
        first = upload(kfp, package)
    assert first.created_pipeline and first.created_version
    assert first.version_name == f"{__version__}-{package.sha256[:12]}"
    (create,) = state.calls("POST", "/pipelines")
    assert create.body == {
        "display_name": "kfgpu-small",
        "description": "A small pipeline for the ops tests.",
    }
    (version,) = state.calls("POST", "/pipelines/upload_version")
    assert version.query["name"] == [first.version_name]
    assert version.query["pipelineid"] == [first.pipeline_id]
    assert version.headers["content-type"].startswith("multipart/form-data")
    stored = state.versions[first.version_id]["pipeline_spec"]
    assert stored["pipelineInfo"]["name"] == "kfgpu-small"
    # No first version named after the pipeline: every version is content-named.
    assert [v["display_name"] for v in state.versions.values()] == [first.version_name]


def test_upload_twice_creates_nothing(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path
) -> None:
    _, state = kfp_server
    with compiled(str(small_package)) as package:
        upload(kfp, package)
        writes = len(state.writes())
        again = upload(kfp, package)
    assert not again.created_pipeline and not again.created_version
    assert len(state.writes()) == writes, "a second upload must not create anything"
    assert "nothing to do" in again.summary()


def test_new_content_is_a_new_version_of_the_same_pipeline(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path
) -> None:
    _, state = kfp_server
    changed = tmp_path / "changed.yaml"
    changed.write_text(small_package.read_text().replace("python:3.11", "python:3.12"))
    with compiled(str(small_package)) as a:
        first = upload(kfp, a)
    with compiled(str(changed)) as b:
        second = upload(kfp, b)
    assert second.pipeline_id == first.pipeline_id
    assert second.created_version and second.version_name != first.version_name
    assert len(state.calls("POST", "/pipelines")) == 1
    assert len(state.versions) == 2


def test_upload_of_a_registered_pipeline_by_name_through_the_cli(
    kfp_server: tuple[str, KfpState], capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = kfp_server
    assert main(["upload", "tuning", "--host", url]) == 0
    assert main(["upload", "tuning", "--host", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("created pipeline and version 'kfgpu-tuning'")
    assert "already uploaded" in out[1]
    assert len(state.versions) == 1


def test_parameters_are_typed_by_the_pipeline(small_package: Path) -> None:
    with compiled(str(small_package)) as package:
        typed = ksubmit.coerce_parameters(
            package, {"epochs": "5", "rate": "0.5", "name": "n", "flag": "true"}
        )
        assert typed == {"epochs": 5, "rate": 0.5, "name": "n", "flag": True}
        with pytest.raises(ConfigError, match=r"no parameter 'epoch'.*known: epochs, flag, name"):
            ksubmit.coerce_parameters(package, {"epoch": "5"})
        with pytest.raises(ConfigError, match=r"epochs='five' must be integer, e.g. epochs=3"):
            ksubmit.coerce_parameters(package, {"epochs": "five"})
        with pytest.raises(ConfigError, match=r"flag='maybe' must be boolean"):
            ksubmit.coerce_parameters(package, {"flag": "maybe"})


def test_submit_runs_the_uploaded_version_and_waits_for_success(
    kfp_server: tuple[str, KfpState], small_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = kfp_server
    code = main(
        [
            "submit",
            str(small_package),
            "--host",
            url,
            "--param",
            "epochs=7",
            "--param",
            "rate=0.25",
            "--experiment",
            "ops-tests",
            "--run-name",
            "r1",
            "--wait",
            "--poll",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (exp,) = state.calls("POST", "/experiments")
    # kfp.Client sends its context namespace, empty on a single-user deployment.
    assert exp.body == {"display_name": "ops-tests", "namespace": ""}
    (run,) = state.calls("POST", "/runs")
    version_id = next(iter(state.versions))
    assert run.body == {
        "display_name": "r1",
        "experiment_id": next(iter(state.experiments)),
        "pipeline_version_reference": {
            "pipeline_id": next(iter(state.pipelines)),
            "pipeline_version_id": version_id,
        },
        "runtime_config": {"parameters": {"epochs": 7, "rate": 0.25}},
    }
    states = [
        line.split()[-1]
        for line in out.splitlines()
        if line.strip().endswith(("PENDING", "RUNNING", "SUCCEEDED"))
    ]
    assert states == ["PENDING", "RUNNING", "SUCCEEDED"], out


def test_submit_wait_exits_nonzero_on_failure(
    kfp_server: tuple[str, KfpState], small_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = kfp_server
    state.run_states = ["RUNNING", "FAILED"]
    code = main(["submit", str(small_package), "--host", url, "--wait", "--poll", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED: train-model: exit code 1" in captured.out
    assert "ended FAILED" in captured.err


def test_submit_from_package_sends_the_spec_inline(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path
) -> None:
    _, state = kfp_server
    with compiled(str(small_package)) as package:
        ksubmit.submit(kfp, package, {"epochs": 1}, from_package=True, run_name="inline")
    (run,) = state.calls("POST", "/runs")
    assert run.body["pipeline_spec"]["pipelineInfo"]["name"] == "kfgpu-small"
    assert "pipeline_version_reference" not in run.body
    assert state.versions == {}


def test_bad_parameters_fail_before_anything_is_sent(
    kfp_server: tuple[str, KfpState], small_package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = kfp_server
    assert main(["submit", str(small_package), "--host", url, "--param", "epochs=x"]) == 1
    assert "epochs='x' must be integer" in capsys.readouterr().err
    assert state.requests == []


def test_submit_pipeline_starts_the_newest_uploaded_version_with_typed_params(
    kfp: Any, kfp_server: tuple[str, KfpState], small_package: Path, tmp_path: Path
) -> None:
    url, state = kfp_server
    # Nothing uploaded: the trigger compiles nothing, so it says what to do instead.
    with pytest.raises(OpsError, match=r"no uploaded pipeline .*kfgpu upload small"):
        ksubmit.submit_pipeline("small", host=url)
    changed = tmp_path / "changed.yaml"
    changed.write_text(small_package.read_text().replace("python:3.11", "python:3.12"))
    with compiled(str(small_package)) as old, compiled(str(changed)) as new:
        upload(kfp, old)
        newest = upload(kfp, new)
    # kfgpu's short name means the kfgpu- pipeline; string values are typed by the spec.
    run_id = ksubmit.submit_pipeline("small", host=url, params={"epochs": "4", "flag": True})
    (run,) = state.calls("POST", "/runs")
    assert run_id in state.runs
    assert run.body["runtime_config"]["parameters"] == {"epochs": 4, "flag": True}
    assert run.body["pipeline_version_reference"] == {
        "pipeline_id": newest.pipeline_id,
        "pipeline_version_id": newest.version_id,
    }
    # By ID too; and a parameter the uploaded version lacks is refused before any run.
    ksubmit.submit_pipeline(newest.pipeline_id, host=url)
    assert len(state.calls("POST", "/runs")) == 2
    with pytest.raises(ConfigError, match=r"params: pipeline 'kfgpu-small' has no parameter"):
        ksubmit.submit_pipeline("kfgpu-small", host=url, params={"epoch": 1})
    assert len(state.calls("POST", "/runs")) == 2
