"""Serving throughput and latency: the real KServe server on 127.0.0.1, against the plain
KServe custom Model a user would write, batching on and off.

Two bundles with random weights on the synthetic fraud data's transform: ``small`` (MLP
64-64) and ``heavy`` (MLP 2048 x 4, whose batch-1 forward takes milliseconds). For each,
in this process: the raw forward rate at batch 1 (``forward1_per_s``) and the in-process
predict time of a one-row request (decode, transform's arrays, forward: ``predict1_ms``).

The anchor (issue 17): on the small bundle, the plain KServe custom Model of
``bench/_plain_kserve.py`` (pandas frame -> the bundle's transform -> the same module, on
KServe's ``ModelServer``) and ``kfgpu serve`` (batched) run one after the other in child
processes and get the same load: one-row V1 requests from ``wrk`` (when on PATH; else an
aiohttp generator in this process) at concurrency 1 and 32 for ``KFGPU_BENCH_SERVING_S``
seconds each (default 5), alternating, ``KFGPU_BENCH_ANCHOR_ROUNDS`` rounds (default 3,
medians). Figures: ``anchor.<plain|kfgpu>.c<N>.{rps,p50_ms,p99_ms,errors}``,
``anchor.ratio_c1`` and ``anchor.ratio_c32`` (kfgpu requests/s over plain) and
``anchor.kfgpu.c1.p50_ms``. Goals (printed, not asserted): ratio_c1 >= 2.0, ratio_c32 >=
4.0, p50 at c=1 <= 0.8 ms. Each server run also reports ``cpu_us_per_req``: the server
process's user + system CPU time over the run divided by the requests answered, a figure
a busy machine moves far less than latency.

Then ``kfgpu serve`` once with micro-batching (``--max-batch-size 64 --max-wait-ms 2``)
and once without (1) on each bundle, at concurrency 1, 8 and 32:
``<bundle>.<batched|unbatched>.c<N>.{rps,p50_ms,p99_ms,errors}``,
``<bundle>.batching_gain_c32`` (batched / unbatched at 32) and ``<bundle>.overhead_p50_ms``
(p50 at concurrency 1, batched, minus ``predict1_ms``). Then a soak:
``KFGPU_BENCH_SOAK_S`` seconds (default 60) at concurrency 32 on the small bundle,
batched: ``soak.errors``, ``soak.rps`` and the server's RSS after warm-up and at the end.

The load generator shares the machine's cores with the server: on a 2-core box it takes
a large share of them (wrk far less than aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._harness import benchmark, progress

CONCURRENCY = (1, 8, 32)
BUNDLES = {"small": (64, 64), "heavy": (2048, 2048, 2048, 2048)}


def _bundle(root: Path, hidden: tuple[int, ...]) -> Path:
    import torch

    from kfgpu.bundle import write_bundle
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.training.families import build_network, tabular_mlp_config

    torch.manual_seed(0)
    df = fraud(2000, seed=1)
    fitted = fit_transform(df, infer_feature_spec(df, "is_fraud"))
    cfg = tabular_mlp_config(
        n_numeric=fitted.n_dense,
        cardinalities=fitted.cardinalities,
        hidden_sizes=hidden,
        dropout=0.0,
        n_outputs=2,
    )
    return write_bundle(
        root,
        state_dict=build_network("tabular_mlp", cfg).state_dict(),
        transform=fitted,
        description={
            "task": "classification",
            "target": "is_fraud",
            "model": {"family": "tabular_mlp", "config": cfg},
            "labels": {"classes": [0, 1]},
        },
    )


def _body() -> dict[str, Any]:
    import pandas as pd

    from kfgpu.data import fraud

    row = fraud(50, seed=5).drop(columns=["is_fraud"]).dropna().iloc[0]
    return {
        "instances": [
            {
                k: (None if pd.isna(v) else getattr(v, "item", lambda v=v: v)())
                for k, v in row.items()
            }
        ]
    }


def _in_process(path: Path, body: dict[str, Any]) -> dict[str, float]:
    """Batch-1 forward rate and the one-row predict time, in this process."""
    import torch

    from kfgpu.serving.predictor import BundleModel

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = BundleModel("m", path, device="cpu")
    model.load()
    assert model.schema is not None
    frame = model.schema.frame([model.schema.parse_v1(body)])
    num, codes = model.bundle.transform.raw_arrays(frame)
    x, c = torch.from_numpy(num), torch.from_numpy(codes)
    module = model.bundle.module

    def timed(fn: Any, seconds: float = 2.0) -> float:
        for _ in range(20):
            fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        return (time.perf_counter() - t0) / n

    with torch.inference_mode():
        forward_s = timed(lambda: module(x, c))

    def predict() -> None:
        assert model.schema is not None
        rows = model.schema.parse_v1(body)
        model.forward_arrays(*model.bundle.transform.column_arrays(rows.columns, rows.n))

    predict_s = timed(predict)
    return {"forward1_per_s": 1.0 / forward_s, "predict1_ms": predict_s * 1000}


async def _load(
    url: str, body: dict[str, Any], concurrency: int, seconds: float
) -> dict[str, float]:
    import aiohttp

    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=data, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
            except aiohttp.ClientError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / wall,
        "p50_ms": 1000 * statistics.median(latencies) if n else float("nan"),
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))] if n else float("nan"),
        "errors": float(errors),
        "requests": float(n),
    }


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("KFGPU_WRK %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _wrk(url: str, body: dict[str, Any], concurrency: int, seconds: float) -> dict[str, float]:
    """``wrk`` with one thread and ``concurrency`` connections: requests/s, p50, p99.

    A response slower than 30 s counts as an error (wrk's default, 2 s, would count a
    slow answer of a loaded machine as one).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_SCRIPT % json.dumps(body))
        script = fh.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("KFGPU_WRK"))
    n, duration_us, p50_us, p99_us, errors = (int(v) for v in line.split()[1:])
    return {
        "rps": (n - errors) / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
        "errors": float(errors),
        "requests": float(n - errors),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def _measure(
    url: str, body: dict[str, Any], concurrency: int, seconds: float, pid: int = 0
) -> dict[str, float]:
    """wrk when installed, else the aiohttp generator.

    With ``pid`` (the server's process) also ``cpu_us_per_req``: the server's user +
    system CPU time over the run divided by the requests answered. A busy machine
    stretches latency far more than it changes the CPU a request costs.
    """
    cpu0 = _cpu_s(pid) if pid else 0.0
    if shutil.which("wrk"):
        res = _wrk(url, body, concurrency, seconds)
    else:
        res = asyncio.run(_load(url, body, concurrency, seconds))
    if pid:
        cpu = _cpu_s(pid) - cpu0
        res["cpu_us_per_req"] = 1e6 * cpu / max(1.0, res.pop("requests"))
    else:
        res.pop("requests")
    return res


def _start_plain(bundle: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The plain KServe custom Model of ``bench/_plain_kserve.py`` in a child process."""
    import httpx

    from kfgpu.serving.process import free_port

    port = free_port()
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._plain_kserve", str(bundle), str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"plain server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/models/plain/ready", timeout=1).status_code == 200:
                return proc, f"{url}/v1/models/plain:predict"
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"plain server not ready:\n{log.read_text()[-3000:]}")


def _anchor(path: Path, root: Path, body: dict[str, Any], seconds: float) -> dict[str, float]:
    """kfgpu serve against the plain KServe custom Model, same load, same run.

    Both servers run at once (the idle one costs nothing) and are measured alternately,
    ``KFGPU_BENCH_ANCHOR_ROUNDS`` rounds (default 3); each figure is the median of its
    rounds, so a slow moment of a shared machine does not land on one side only.
    """
    from kfgpu.serving.process import start_server, stop_server

    rounds = int(os.environ.get("KFGPU_BENCH_ANCHOR_ROUNDS", "3"))
    runs: dict[str, list[dict[str, float]]] = {}
    progress("serving: anchor: plain KServe custom Model and kfgpu serve")
    proc, plain_url = _start_plain(path, root / "plain.log")
    try:
        srv = start_server(path, root / "anchor-kfgpu.log", max_batch_size=64, max_wait_ms=2.0)
        kfgpu_url = f"{srv.url}/v1/models/{srv.model}:predict"
        try:
            for url in (plain_url, kfgpu_url):
                _measure(url, body, 8, 1.0)  # warm-up
            for r in range(rounds):
                for c in (1, 32):
                    for side, url, pid in (
                        ("plain", plain_url, proc.pid),
                        ("kfgpu", kfgpu_url, srv.proc.pid),
                    ):
                        res = _measure(url, body, c, seconds, pid)
                        runs.setdefault(f"{side}.c{c}", []).append(res)
                        progress(f"serving: anchor round {r + 1} {side} c={c}: {res}")
        finally:
            stop_server(srv)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    figures: dict[str, float] = {}
    for key, results in runs.items():
        for k in results[0]:
            figures[f"anchor.{key}.{k}"] = statistics.median(x[k] for x in results)
    for c in (1, 32):
        figures[f"anchor.ratio_c{c}"] = (
            figures[f"anchor.kfgpu.c{c}.rps"] / figures[f"anchor.plain.c{c}.rps"]
        )
    figures["anchor.rounds"] = float(rounds)
    return figures


def _rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


@benchmark("serving")
def serving() -> dict[str, float]:
    """KServe server on 127.0.0.1: req/s, p50/p99 at c=1/8/32, batching on vs off; soak."""
    from kfgpu.serving.process import start_server, stop_server

    seconds = float(os.environ.get("KFGPU_BENCH_SERVING_S", "5"))
    soak_s = float(os.environ.get("KFGPU_BENCH_SOAK_S", "60"))
    figures: dict[str, float] = {}
    body = _body()
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-serving-") as tmp:
        root = Path(tmp)
        paths = {name: _bundle(root / name, hidden) for name, hidden in BUNDLES.items()}
        figures.update(_anchor(paths["small"], root, body, seconds))
        if os.environ.get("KFGPU_BENCH_SERVING_ANCHOR_ONLY"):
            return figures
        for name, path in paths.items():
            progress(f"serving: {name}: in-process forward")
            for k, v in _in_process(path, body).items():
                figures[f"{name}.{k}"] = v
            for mode, batch in (("batched", 64), ("unbatched", 1)):
                progress(f"serving: {name}: server {mode}")
                srv = start_server(
                    path, root / f"{name}-{mode}.log", max_batch_size=batch, max_wait_ms=2.0
                )
                url = f"{srv.url}/v1/models/{srv.model}:predict"
                try:
                    _measure(url, body, 8, 1.0)  # warm-up
                    for c in CONCURRENCY:
                        res = _measure(url, body, c, seconds, srv.proc.pid)
                        for k, v in res.items():
                            figures[f"{name}.{mode}.c{c}.{k}"] = v
                        progress(f"serving: {name} {mode} c={c}: {res}")
                finally:
                    stop_server(srv)
            figures[f"{name}.batching_gain_c32"] = (
                figures[f"{name}.batched.c32.rps"] / figures[f"{name}.unbatched.c32.rps"]
            )
            figures[f"{name}.overhead_p50_ms"] = (
                figures[f"{name}.batched.c1.p50_ms"] - figures[f"{name}.predict1_ms"]
            )
        if soak_s > 0:
            progress(f"serving: soak {soak_s:g}s at c=32 (small, batched)")
            srv = start_server(
                paths["small"], root / "soak.log", max_batch_size=64, max_wait_ms=2.0
            )
            url = f"{srv.url}/v1/models/{srv.model}:predict"
            try:
                _measure(url, body, 32, min(5.0, soak_s))  # warm-up
                figures["soak.rss_start_mb"] = _rss_mb(srv.proc.pid)
                res = _measure(url, body, 32, soak_s)
                figures["soak.rss_end_mb"] = _rss_mb(srv.proc.pid)
                figures["soak.seconds"] = soak_s
                figures["soak.rps"] = res["rps"]
                figures["soak.errors"] = res["errors"]
                figures["soak.p99_ms"] = res["p99_ms"]
                figures["soak.server_alive"] = float(srv.alive())
            finally:
                stop_server(srv)
    return figures


@benchmark("inference_logging")
def inference_logging() -> dict[str, float]:
    """The predictor's throughput with inference logging on over off, in the same run.

    The small bundle (where the request path is the whole cost, so logging's share shows
    most), batched, one-row V1 requests at concurrency 8 for ``KFGPU_BENCH_SERVING_S``
    seconds (default 5) per round. Servers with logging off and on alternate for
    ``KFGPU_BENCH_LOG_ROUNDS`` rounds (default 3) and the medians are compared, so a
    slow moment of the machine does not land on one side only. Logging on: every request
    logged (sample rate 1) to Parquet in a temporary directory. Goal: ratio >= 0.95.
    """
    from kfgpu.monitoring.monitor import read_logs
    from kfgpu.serving.process import start_server, stop_server

    seconds = float(os.environ.get("KFGPU_BENCH_SERVING_S", "5"))
    rounds = int(os.environ.get("KFGPU_BENCH_LOG_ROUNDS", "3"))
    body = _body()
    rps: dict[str, list[float]] = {"off": [], "on": []}
    logged = 0
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-logging-") as tmp:
        root = Path(tmp)
        path = _bundle(root / "small", BUNDLES["small"])
        for r in range(rounds):
            for mode in ("off", "on"):
                logs = root / f"logs-{r}"
                extra = {"log_uri": str(logs)} if mode == "on" else {}
                srv = start_server(
                    path, root / f"{mode}-{r}.log", max_batch_size=64, max_wait_ms=2.0, **extra
                )
                url = f"{srv.url}/v1/models/{srv.model}:predict"
                try:
                    asyncio.run(_load(url, body, 8, 1.0))  # warm-up
                    res = asyncio.run(_load(url, body, 8, seconds))
                finally:
                    stop_server(srv)
                if res["errors"]:
                    raise RuntimeError(f"{res['errors']:g} errors with logging {mode}")
                rps[mode].append(res["rps"])
                progress(f"inference_logging: round {r + 1} logging {mode}: {res['rps']:.0f} req/s")
                if mode == "on":
                    logged += len(read_logs(str(logs)))
    off, on = statistics.median(rps["off"]), statistics.median(rps["on"])
    return {
        "rps_logging_off": off,
        "rps_logging_on": on,
        "on_over_off": on / off,
        "rows_logged": float(logged),
        "rounds": float(rounds),
    }
