"""Shared helpers for every test tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_kfgpu(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real ``kfgpu`` CLI in a fresh interpreter, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kfgpu.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def fraud_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained fraud bundle with its reference profile (as the pipeline writes it)."""
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular
    from kfgpu.validation.profile import build_profile

    train, val, _ = split_frame(fraud(6000, seed=1), "is_fraud", task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    # As engineer_features writes it: the raw inputs and the label.
    profile = build_profile(train, categorical=[*fitted.categorical, "is_fraud"], seed=0)
    root = tmp_path_factory.mktemp("bundle") / "bundle"
    train_tabular(
        train,
        val,
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(accelerator="cpu", max_epochs=2, hidden_sizes=(32,)),
        bundle_path=root,
        extras={"reference": lambda d: profile.save(d)},
    )
    return root


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver on 127.0.0.1: its URL, and the JSON bodies posted to it."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()
