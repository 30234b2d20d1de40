"""The lifecycle's last loop, end to end on this machine: train with the default
pipeline, serve the model with the real KServe server and inference logging on, replay
traffic through the endpoint, and let the monitoring pipeline judge it.

Twenty undrifted replays measure the false-alarm rate; one drifted replay must trigger
retraining (here: the webhook; on a cluster the same step also starts the training run).
"""

# No `from __future__ import annotations`: nothing here defines a KFP pipeline, but the
# monitoring pipeline module is imported by run_local.

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest

from kfgpu.local import LocalRun, run_local
from kfgpu.registry import local_tracking_uri
from kfgpu.serving.process import start_server, stop_server

pytestmark = pytest.mark.slow

REPLAYS = 20
ROWS = 1000
#: Asserted ceiling on false alarms over the undrifted replays (measured: see the note in
#: the README's Monitoring section).
MAX_FALSE_ALARMS = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default pipeline's model (its default data: 100,000 synthetic fraud rows)."""
    work = tmp_path_factory.mktemp("train")
    run: LocalRun = run_local(
        "training",
        {"max_epochs": 5, "mlflow_tracking_uri": local_tracking_uri(work)},
        workdir=work,
    )
    model = run.output_path("model")
    assert model is not None
    return model


def _replay(url: str, model: str, *, seed: int, drift: float) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Send ROWS rows of the synthetic stream through the endpoint, 100 rows a request."""
    from kfgpu.data import fraud

    df = fraud(ROWS, seed=seed, drift=drift).drop(columns=["is_fraud"])
    records = json.loads(df.to_json(orient="records"))
    start = pd.Timestamp.now(tz="UTC")
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, ROWS, 100):
            r = client.post(
                f"/v1/models/{model}:predict",
                json={"instances": records[i : i + 100]},
                headers={"x-request-id": f"{seed}-{i}"},
            )
            assert r.status_code == 200, r.text
    return start, pd.Timestamp.now(tz="UTC")


def _serve_and_replay(
    bundle: Path, logs: Path, tmp: Path, replays: list[tuple[int, float]]
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    server = start_server(bundle, tmp / f"{logs.name}.log", log_uri=str(logs))
    try:
        windows = [_replay(server.url, server.model, seed=s, drift=d) for s, d in replays]
    finally:
        stop_server(server)  # the logger writes what it holds as the server stops
    return windows


def test_quiet_on_undrifted_traffic_and_retrains_on_drift(
    trained: Path, tmp_path: Path, webhook: tuple[str, list[dict]]
) -> None:
    from kfgpu.monitoring.monitor import read_logs
    from kfgpu.monitoring.step import monitor_step

    quiet_logs, drift_logs = tmp_path / "logs-quiet", tmp_path / "logs-drift"
    windows = _serve_and_replay(
        trained, quiet_logs, tmp_path, [(1000 + i, 0.0) for i in range(REPLAYS)]
    )
    _serve_and_replay(trained, drift_logs, tmp_path, [(3000, 0.5)])
    # Every served row was logged (sample rate 1), with the model's version.
    logged = read_logs(str(quiet_logs))
    assert len(logged) == REPLAYS * ROWS and logged["_model_version"].nunique() == 1

    # The false-alarm rate: each undrifted replay judged on its own time window.
    alarms = []
    for k, (start, end) in enumerate(windows):
        result = monitor_step(
            logs_uri=str(quiet_logs),
            model_uri=str(trained),
            verdict_path=str(tmp_path / f"v{k}.json"),
            report_path=str(tmp_path / f"r{k}.html"),
            window_hours=(end - start).total_seconds() / 3600 + 1e-6,
            now=(end + pd.Timedelta(milliseconds=1)).isoformat(),
        )
        verdict = json.loads((tmp_path / f"v{k}.json").read_text())
        assert verdict["rows"] == ROWS, verdict["summary"]
        alarms.append(result.output.retrain)
    rate = sum(alarms) / len(alarms)
    print(f"false alarms: {sum(alarms)} of {len(alarms)} undrifted replays ({rate:.0%})")
    assert sum(alarms) <= MAX_FALSE_ALARMS

    # The monitoring pipeline: quiet on the undrifted logs, retraining on the drifted ones.
    url, received = webhook
    for logs, expect in ((quiet_logs, False), (drift_logs, True)):
        run = run_local(
            "monitoring",
            {
                "logs_uri": str(logs),
                "model_uri": str(trained),
                "window_hours": 0.0,
                "webhook_url": url,
            },
            workdir=tmp_path / f"mon-{logs.name}",
        )
        steps = [e["step"] for e in run.events if e["event"] == "success"]
        assert steps == (["monitor", "trigger_retraining"] if expect else ["monitor"])
        verdict = json.loads(run.output_path("verdict").read_text())
        assert verdict["retrain"] is expect, verdict["summary"]
    (event,) = received
    assert event["event"] == "kfgpu.retrain" and "data_drift" in event["alarms"]
