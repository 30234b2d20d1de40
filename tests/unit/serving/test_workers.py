"""``--workers N``: KServe's multi-process server, each worker with kfgpu's guard and its
own copy of the model, all answering the same predictions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from kfgpu.errors import ConfigError
from kfgpu.serving.server import serve
from tests.unit.serving.conftest import TOKEN, start_server, stop_server


def test_two_workers_serve_the_same_model_behind_the_same_guard(
    bundle_path: Path, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    from kfgpu.bundle import load_bundle

    token = tmp_path / "token"
    token.write_text(TOKEN)
    srv = start_server(
        bundle_path,
        tmp_path / "server.log",
        workers=2,
        auth_token_file=str(token),
        ready_timeout_s=180,
    )
    url = f"{srv.url}/v1/models/{srv.model}:predict"
    want = load_bundle(bundle_path).predict(pd.DataFrame(records[:3]))
    try:
        for _ in range(30):  # fresh connections, spread over the workers by the kernel
            r = httpx.post(
                url,
                json={"instances": records[:3]},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            got = [
                [p["probabilities"]["0"], p["probabilities"]["1"]] for p in r.json()["predictions"]
            ]
            np.testing.assert_allclose(got, want[["proba_0", "proba_1"]].to_numpy(), atol=1e-5)
            assert httpx.post(url, json={"instances": records[:1]}, timeout=30).status_code == 401
    finally:
        stop_server(srv)
    log = srv.log.read_text()
    pids = set(re.findall(r"^\S+ \S+ (\d+) kfgpu.serving WARNING 401", log, re.M))
    assert len(pids) == 2, log[-3000:]
    assert "died" not in log


def test_workers_refuse_settings_that_need_one_process(bundle_path: Path) -> None:
    with pytest.raises(ConfigError, match="inference logging runs in one process"):
        serve(str(bundle_path), workers=2, log_uri="/tmp/x")
    with pytest.raises(ConfigError, match="workers=0"):
        serve(str(bundle_path), workers=0)
