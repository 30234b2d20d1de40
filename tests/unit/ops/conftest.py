"""Fixtures for the Kubeflow operations tests: the KFP stand-in and a small compiled pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.ops.kfp_standin import KfpState, serve


@pytest.fixture(autouse=True)
def _isolated_kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.Client reads and may write ~/.config/kfp/context.json; keep tests off the real one."""
    from kfp.client import client

    monkeypatch.setattr(client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in (
        "KFGPU_KFP_HOST",
        "KFGPU_KFP_TOKEN",
        "KFGPU_KFP_TOKEN_PATH",
        "KFGPU_KFP_NAMESPACE",
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_SA_TOKEN_PATH",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def kfp_server() -> Iterator[tuple[str, KfpState]]:
    with serve() as (url, state):
        yield url, state


@pytest.fixture
def kfp(kfp_server: tuple[str, KfpState]) -> Any:
    from kfgpu.ops.client import Connection, connect

    return connect(Connection(host=kfp_server[0]))


@pytest.fixture(scope="session")
def small_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled two-parameter pipeline (fast to compile, same shape as kfgpu's)."""
    from kfp import compiler

    from tests.unit.ops._pipelines import small

    path = tmp_path_factory.mktemp("pkg") / "small.yaml"
    compiler.Compiler().compile(small, str(path))
    return path
