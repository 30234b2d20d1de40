"""Authentication and connection settings reach the real kfp.Client (seen by the stand-in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfgpu.cli import main
from kfgpu.errors import ConfigError, KfpApiError
from kfgpu.ops.client import Connection, api_call, connect
from kfgpu.ops.schedule import list_managed
from tests.unit.ops.kfp_standin import KfpState


def test_existing_token_is_sent_as_bearer(kfp_server: tuple[str, KfpState]) -> None:
    url, state = kfp_server
    client = connect(Connection(host=url, token="s3cret"))
    list_managed(client)
    assert {r.headers.get("authorization") for r in state.requests} == {"Bearer s3cret"}


def test_service_account_token_file_is_read_per_request(
    kfp_server: tuple[str, KfpState], tmp_path: Path
) -> None:
    url, state = kfp_server
    token = tmp_path / "token"
    token.write_text("first")
    client = connect(Connection(host=url, token_path=str(token)))
    list_managed(client)
    token.write_text("rotated")  # the kubelet refreshes projected tokens in place
    list_managed(client)
    seen = [r.headers.get("authorization") for r in state.requests]
    assert seen[0] == "Bearer first" and seen[-1] == "Bearer rotated"


def test_environment_supplies_defaults_and_flags_win(
    kfp_server: tuple[str, KfpState], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = kfp_server
    monkeypatch.setenv("KFGPU_KFP_HOST", url)
    monkeypatch.setenv("KFGPU_KFP_TOKEN", "from-env")
    monkeypatch.setenv("KFGPU_KFP_NAMESPACE", "team-a")
    assert Connection.from_env(token="from-flag").token == "from-flag"
    assert main(["schedule", "list"]) == 0
    (listing,) = [r for r in state.requests if r.path.endswith("/recurringruns")]
    assert listing.headers["authorization"] == "Bearer from-env"
    assert listing.query["namespace"] == ["team-a"]


def test_kfps_own_endpoint_variable_is_honoured_after_kfgpus(
    kfp_server: tuple[str, KfpState], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, state = kfp_server
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", url)
    token = tmp_path / "token"
    token.write_text("projected")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    assert main(["schedule", "list"]) == 0  # no --host, no KFGPU_KFP_HOST
    (listing,) = [r for r in state.requests if r.path.endswith("/recurringruns")]
    assert listing.headers["authorization"] == "Bearer projected"
    monkeypatch.setenv("KFGPU_KFP_HOST", "http://kfgpu.example")
    assert Connection.from_env().host == "http://kfgpu.example"
    assert Connection.from_env(host=url).host == url


def test_retraining_trigger_finds_the_endpoint_in_the_environment(
    kfp_server: tuple[str, KfpState],
    small_package: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """trigger_retraining with kfp_host='' starts the uploaded pipeline on
    KF_PIPELINES_ENDPOINT."""
    import json

    from kfgpu.monitoring.step import trigger_retraining_step

    url, state = kfp_server
    assert main(["upload", str(small_package), "--host", url]) == 0
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", url)
    verdict = tmp_path / "verdict.json"
    verdict.write_text(json.dumps({"summary": "drifted", "retrain": True}))
    result = trigger_retraining_step(
        verdict_path=str(verdict), run_path=str(tmp_path / "run.json"), pipeline="kfgpu-small"
    )
    assert result.output.run and state.calls("POST", "/runs")


def test_multi_user_namespace_reaches_experiments(
    kfp_server: tuple[str, KfpState], small_package: Path
) -> None:
    url, state = kfp_server
    state.multi_user = True
    assert main(["submit", str(small_package), "--host", url, "--namespace", "team-a"]) == 0
    (exp,) = state.calls("POST", "/experiments")
    assert exp.body["namespace"] == "team-a"


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        (Connection(), "no KFP endpoint: pass --host URL or set KFGPU_KFP_HOST or KF_PIPELINES"),
        (Connection(host="kfp.example.com"), "must start with http:// or https://"),
        (Connection(host="http://x", token="t", token_path="/p"), "keep one"),
        (Connection(host="http://x", token_path="/nonexistent/token"), "does not exist"),
    ],
)
def test_unusable_settings_fail_with_the_fix(conn: Connection, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        connect(conn)


def test_api_errors_are_one_line_with_status(kfp_server: tuple[str, KfpState]) -> None:
    url, _ = kfp_server
    client = connect(Connection(host=url))
    with pytest.raises(
        KfpApiError, match=r"refused to get run: HTTP 404 .*run nope not found"
    ) as e:
        api_call("get run", client.get_run, run_id="nope")
    assert e.value.status == 404


def test_unreachable_host_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "list", "--host", "http://127.0.0.1:9"]) == 1
    assert "cannot reach the KFP API" in capsys.readouterr().err
