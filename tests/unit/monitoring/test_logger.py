"""The inference logger: what it writes, sampling, dropping instead of blocking, failures
kept off the request path, and the KServe payload-logger sink that feeds it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kfgpu.errors import ConfigError
from kfgpu.monitoring.logger import META_COLUMNS, InferenceLogger
from kfgpu.monitoring.monitor import read_logs


def _request(n: int, start: int = 0) -> tuple[dict, np.ndarray]:
    columns = {"amount": [float(start + i) for i in range(n)], "country": ["DE"] * n}
    probs = np.tile(np.array([[0.9, 0.1]], dtype=np.float32), (n, 1))
    return columns, probs


def _log(log: InferenceLogger, n: int, request_id: str) -> bool:
    cols, out = _request(n)
    return log.log(cols, n, out, request_id=request_id)


def test_rows_are_written_with_outputs_and_metadata(tmp_path: Path) -> None:
    log = InferenceLogger(
        str(tmp_path / "logs"),
        model="fraud",
        model_version="3",
        labels=["0", "1"],
        batch_rows=10,
        flush_seconds=60,
    )
    for k in range(5):
        cols, out = _request(4, start=4 * k)
        assert log.log(cols, 4, out, request_id=f"req-{k}")
        if k == 2:
            # 12 rows waiting >= batch_rows: the writer wakes without waiting flush_seconds.
            deadline = time.monotonic() + 10
            while log.stats.files == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert log.stats.files == 1
    log.close()
    df = read_logs(str(tmp_path / "logs"))
    assert len(df) == 20 and log.stats.rows_logged == 20 and log.stats.files == 2
    assert sorted(df["amount"]) == [float(i) for i in range(20)]
    assert set(df["prediction"]) == {"0"} and np.allclose(df["proba_1"], 0.1)
    assert set(META_COLUMNS) <= set(df.columns)
    assert set(df["_model_version"]) == {"3"}
    assert df.groupby("_request_id").size().to_dict() == {f"req-{k}": 4 for k in range(5)}
    assert str(df["_ts"].dt.tz) == "UTC"
    # Day partitions, and no temporary file left behind.
    files = list((tmp_path / "logs").rglob("*"))
    assert any(p.name.startswith("date=") for p in files)
    assert not [p for p in files if p.name.startswith(".")]


def test_sampling_keeps_whole_requests(tmp_path: Path) -> None:
    log = InferenceLogger(str(tmp_path), model="m", labels=["0", "1"], sample_rate=0.25, seed=3)
    kept = 0
    for k in range(400):
        kept += _log(log, 3, str(k))
    log.close()
    df = read_logs(str(tmp_path))
    assert 60 <= kept <= 140  # 400 x 0.25, seeded
    assert len(df) == 3 * kept and (df.groupby("_request_id").size() == 3).all()


def test_a_full_queue_drops_rows_instead_of_blocking(tmp_path: Path) -> None:
    log = InferenceLogger(
        str(tmp_path),
        model="m",
        labels=["0", "1"],
        max_queue_rows=10,
        flush_seconds=60,
        batch_rows=1000,
    )
    t0 = time.perf_counter()
    results = [_log(log, 4, str(k)) for k in range(5)]
    assert time.perf_counter() - t0 < 0.5
    assert results == [True, True, False, False, False]
    assert log.stats.rows_dropped == 12
    log.close()
    assert log.stats.rows_logged == 8


def test_a_write_failure_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = InferenceLogger(str(blocker / "logs"), model="m", labels=["0", "1"], flush_seconds=60)
    assert _log(log, 2, "a")
    log.close()  # the write fails in the background; nothing is raised here
    assert log.stats.errors == 1 and log.stats.rows_dropped == 2 and log.stats.rows_logged == 0
    assert "NotADirectoryError" in log.stats.last_error or "FileExistsError" in log.stats.last_error


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"sample_rate": 0.0}, r"^sample_rate=0.0 is invalid"),
        ({"sample_rate": 1.5}, r"^sample_rate=1.5 is invalid"),
        ({"batch_rows": 0}, "use positive values"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        InferenceLogger(str(tmp_path), model="m", **kw)


def test_logging_from_many_threads_loses_nothing(tmp_path: Path) -> None:
    log = InferenceLogger(str(tmp_path), model="m", labels=["0", "1"], batch_rows=50)

    def worker(w: int) -> None:
        for k in range(50):
            _log(log, 2, f"{w}-{k}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    df = read_logs(str(tmp_path))
    assert len(df) == 4 * 50 * 2 and df["_request_id"].nunique() == 200


# ---------------------------------------------------------------- the payload-logger sink


class _Client:
    """The sink's app behind a real uvicorn server on 127.0.0.1, and an HTTP client for it."""

    def __init__(self, app: object) -> None:
        import socket

        import httpx
        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def post(self, path: str, **kw: object) -> object:
        return self.http.post(path, **kw)

    def get(self, path: str) -> object:
        return self.http.get(path)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def sink_client(tmp_path: Path):
    from kfgpu.monitoring.sink import PayloadSink, create_app

    log = InferenceLogger(str(tmp_path / "logs"), model="m", labels=["0", "1"], flush_seconds=60)
    sink = PayloadSink(log, input_names=["amount", "country"], labels=["0", "1"])
    client = _Client(create_app(sink))
    yield log, client
    client.close()
    log.close()


def _v1_response(n: int) -> dict:
    return {
        "predictions": [{"label": "0", "probabilities": {"0": 0.8, "1": 0.2}} for _ in range(n)]
    }


def test_sink_pairs_request_and_response_events(sink_client, tmp_path: Path) -> None:
    from kfgpu.monitoring.sink import REQUEST_TYPE, RESPONSE_TYPE

    log, client = sink_client
    records = {"instances": [{"amount": 1.0, "country": "DE"}, {"amount": 2.0, "country": "FR"}]}
    lists = {"instances": [[3.0, "DE"]]}
    v2 = {
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [1], "data": [4.0]},
            {"name": "country", "datatype": "BYTES", "shape": [1], "data": ["IT"]},
        ]
    }
    v2_out = {
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.3, 0.7]}
        ]
    }
    events = [
        ("a", REQUEST_TYPE, records),
        ("b", RESPONSE_TYPE, _v1_response(1)),
        ("a", RESPONSE_TYPE, _v1_response(2)),
        ("b", REQUEST_TYPE, lists),
        ("c", REQUEST_TYPE, v2),
        ("c", RESPONSE_TYPE, v2_out),
    ]
    paired = []
    for ce_id, ce_type, body in events:
        r = client.post(
            "/",
            content=json.dumps(body),
            headers={"ce-id": ce_id, "ce-type": ce_type, "content-type": "application/json"},
        )
        assert r.status_code == 202, r.text
        paired.append(r.json()["paired"])
    assert paired == [False, False, True, True, False, True]
    assert client.get("/healthz").json()["pairs"] == 3
    log.close()
    df = read_logs(str(tmp_path / "logs")).sort_values("amount")
    assert df["amount"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert df["country"].tolist() == ["DE", "FR", "DE", "IT"]
    np.testing.assert_allclose(df["proba_1"], [0.2, 0.2, 0.2, 0.7], rtol=1e-6)
    assert df["_request_id"].tolist() == ["a", "a", "b", "c"]


@pytest.mark.parametrize(
    ("headers", "body", "needle"),
    [
        ({"ce-id": "x", "ce-type": "com.example.other"}, "{}", "not a KServe inference event"),
        ({"ce-type": "org.kubeflow.serving.inference.request"}, "{}", "no ce-id"),
        ({"ce-id": "x", "ce-type": "org.kubeflow.serving.inference.request"}, "{nope", "not JSON"),
        (
            {"ce-id": "x", "ce-type": "org.kubeflow.serving.inference.request"},
            "[1]",
            "not a JSON object",
        ),
    ],
)
def test_sink_answers_bad_events_with_400(
    sink_client, headers: dict, body: str, needle: str
) -> None:
    _, client = sink_client
    r = client.post("/", content=body, headers=headers)
    assert r.status_code == 400 and needle in r.json()["error"]
    # ... and keeps answering.
    assert client.get("/healthz").status_code == 200


def test_sink_rejects_a_pair_that_does_not_decode(sink_client) -> None:
    _, client = sink_client
    h = {"ce-id": "z", "content-type": "application/json"}
    client.post(
        "/",
        content=json.dumps({"instances": [[1.0]]}),
        headers={**h, "ce-type": "org.kubeflow.serving.inference.request"},
    )
    r = client.post(
        "/",
        content=json.dumps(_v1_response(1)),
        headers={**h, "ce-type": "org.kubeflow.serving.inference.response"},
    )
    assert r.status_code == 400 and r.json()["field"] == "instances"


def test_read_logs_skips_day_partitions_outside_the_window(tmp_path: Path) -> None:
    import pandas as pd

    def part(day: str, ts: str) -> None:
        folder = tmp_path / f"date={day}"
        folder.mkdir()
        pd.DataFrame({"x": [1.0], "_ts": [pd.Timestamp(ts, tz="UTC")]}).to_parquet(
            folder / "part-a.parquet"
        )

    part("2026-01-02", "2026-01-01T23:59:59")  # written just after midnight
    part("2026-01-03", "2026-01-03T12:00:00")
    # An old partition that would fail to read: it must not be opened for a later window.
    (tmp_path / "date=2025-12-01").mkdir()
    (tmp_path / "date=2025-12-01" / "part-x.parquet").write_text("not parquet")
    since = pd.Timestamp("2026-01-01T12:00:00", tz="UTC")
    df = read_logs(str(tmp_path), since=since)
    assert df["_ts"].dt.day.tolist() == [1, 3]
    until = pd.Timestamp("2026-01-02T00:00:00", tz="UTC")
    assert read_logs(str(tmp_path), since=since, until=until)["_ts"].dt.day.tolist() == [1]
    import pyarrow as pa

    with pytest.raises(pa.ArrowInvalid):  # without a window every file is read
        read_logs(str(tmp_path))
