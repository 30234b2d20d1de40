"""``kfgpu serve`` from the command line: it prints the URL it serves (the bundle served
under its directory's name), and the token from ``--auth-token-file`` guards the routes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kfgpu.serving.process import free_port
from tests.unit.serving.conftest import make_bundle


def test_kfgpu_serve_prints_its_url_and_requires_the_token(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "fraud")
    token = tmp_path / "token"
    token.write_text("e2e-token\n")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kfgpu.cli",
                "serve",
                str(bundle),
                "--port",
                str(port),
                "--auth-token-file",
                str(token),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not url:
            assert proc.poll() is None, log.read_text()[-3000:]
            m = re.search(
                r"serving 'fraud' \(version \w+\) at (http://[\d.]+:\d+):", log.read_text()
            )
            url = m.group(1) if m else ""
            time.sleep(0.2)
        assert url == f"http://127.0.0.1:{port}", log.read_text()[-3000:]
        while httpx.get(f"{url}/v2/health/ready", timeout=5).status_code != 200:
            time.sleep(0.2)
        row = {
            "amount": 42.0,
            "hour": 3,
            "account_age_days": 120,
            "n_tx_24h": 2,
            "distance_km": 5.1,
            "velocity_score": 0.4,
            "merchant_risk": 0.2,
            "merchant_category": "grocery",
            "country": "US",
            "channel": "web",
            "device_type": "mobile",
        }
        predict = f"{url}/v1/models/fraud:predict"
        assert httpx.post(predict, json={"instances": [row]}, timeout=10).status_code == 401
        r = httpx.post(
            predict,
            json={"instances": [row]},
            headers={"Authorization": "Bearer e2e-token"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["predictions"][0]["probabilities"]) == {"0", "1"}
        assert "auth bearer token" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
