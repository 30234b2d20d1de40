"""Fixtures of the serving tests: a small real bundle and a real KServe server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MODEL = "fraud"


def make_bundle(root: Path, *, hidden: tuple[int, ...] = (8,), rows: int = 500) -> Path:
    """A bundle with random weights on kfgpu's synthetic fraud data (about 1 s)."""
    import torch

    from kfgpu.bundle import write_bundle
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.training.families import build_network, tabular_mlp_config

    torch.manual_seed(0)
    df = fraud(rows, seed=1)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    model: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_server(bundle: Path, log: Path, **kw: Any) -> Server:
    """``kfgpu.serving.server.serve`` in a child process; returns once it is ready."""
    import httpx

    port = free_port()
    args = {"port": port, "model_name": MODEL, **kw}
    code = f"from kfgpu.serving.server import serve; serve({str(bundle)!r}, **{args!r})"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as fh:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                return Server(url=url, model=MODEL, proc=proc, log=log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready in 90 s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("serving") / "bundle")


@pytest.fixture(scope="session")
def server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = start_server(bundle_path, log, max_request_bytes=256 * 1024, max_rows=1000)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="session")
def records() -> list[dict[str, Any]]:
    """Twenty raw rows as JSON records (missing values as None)."""
    import pandas as pd

    from kfgpu.data import fraud

    df = fraud(20, seed=7).drop(columns=["is_fraud"])
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in df.astype(object).to_dict(orient="records")
    ]
