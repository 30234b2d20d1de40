"""Fixtures of the serving tests: a small real bundle and a real KServe server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfgpu.serving.process import Server, free_port, stop_server
from kfgpu.serving.process import start_server as _start

__all__ = [
    "MODEL",
    "TOKEN",
    "Server",
    "free_port",
    "make_bundle",
    "start_server",
    "stop_server",
]

MODEL = "fraud"
#: The bearer token of the ``guarded`` server.
TOKEN = "kfgpu-test-token-5f1d"


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


def start_server(bundle: Path, log: Path, **kw: Any) -> Server:
    """The real server in a child process, serving ``bundle`` as ``MODEL``."""
    return _start(bundle, log, model_name=MODEL, **kw)


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
def guarded(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server as a shared network would meet it: a bearer token, the repository API on
    (so that its routes can be attacked), short read deadlines (1.5 s) and a connection cap."""
    tmp = tmp_path_factory.mktemp("guarded")
    token = tmp / "token"
    token.write_text(TOKEN + "\n")
    srv = start_server(
        bundle_path,
        tmp / "server.log",
        max_request_bytes=256 * 1024,
        max_rows=1000,
        auth_token_file=str(token),
        enable_repository=True,
        header_timeout_s=1.5,
        body_timeout_s=1.5,
        max_connections=400,
    )
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
