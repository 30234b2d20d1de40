"""Acceptance: passwords in ``mlflow_tracking_uri`` and ``tune_storage`` appear nowhere.

The training pipeline runs through the real ``kfgpu run`` against a real ``mlflow server``
(its URI carries ``alice:<password>``; the server does not enforce basic auth, so the run
works only if kfgpu connects with the URI as given) and tunes on a real PostgreSQL study
whose URL carries a role's password. Then every byte of the workdir (runs, executor
outputs, bundle, evaluation, logs, the local events), the command's stdout and stderr, and
the MLflow server's store (its SQLite database, artifacts and log) is searched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_kfgpu
from tests.services import Postgres, mlflow_server, postgres_cluster

pytestmark = pytest.mark.slow

MLFLOW_PASSWORD = "S3CRETPASS3"
PG_PASSWORD = "PgS3cretPass7"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as pg:
        yield pg


def _files_containing(root: Path, secrets: tuple[str, ...]) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return hits


def test_no_password_leaves_the_process(tmp_path: Path, postgres: Postgres) -> None:
    postgres.execute(f"CREATE ROLE optuna LOGIN PASSWORD '{PG_PASSWORD}'")
    database = postgres.new_database(owner="optuna").rsplit("/", 1)[1]
    storage = f"postgresql://optuna:{PG_PASSWORD}@127.0.0.1:{postgres.port}/{database}"
    store = tmp_path / "mlflow"
    store.mkdir()
    work = tmp_path / "work"
    space = {"learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "log": True}}
    with mlflow_server(store) as url:
        tracking = url.replace("http://", f"http://alice:{MLFLOW_PASSWORD}@")
        proc = run_kfgpu(
            "run",
            "--workdir",
            str(work),
            "--data",
            "kfgpu://breast_cancer",
            "--target",
            "label",
            "--param",
            "max_epochs=3",
            "--param",
            "batch_size=32",
            "--param",
            "learning_rate=0.01",
            "--param",
            "hidden_sizes=16",
            "--param",
            f"search_space={json.dumps(space)}",
            "--param",
            "tune_trials=2",
            "--param",
            'tune_base_config={"max_epochs": 1, "batch_size": 64}',
            "--param",
            f"tune_storage={storage}",
            "--param",
            f"mlflow_tracking_uri={tracking}",
            "--param",
            "registered_model_name=redacted",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=url)
        versions = client.search_model_versions("name='redacted'")
    secrets = (MLFLOW_PASSWORD, PG_PASSWORD)
    # The run really used both services through those URIs: the model is registered on the
    # server and the study's trials are in the optuna role's database.
    assert len(versions) == 1, proc.stdout
    import psycopg

    with psycopg.connect(storage.replace("postgresql:", "postgres:")) as conn:
        (trials,) = conn.execute("SELECT count(*) FROM trials").fetchone() or (0,)
    assert trials == 2
    assert not [s for s in secrets if s in proc.stdout + proc.stderr], proc.stdout + proc.stderr
    leaks = _files_containing(work, secrets) + _files_containing(store, secrets)
    assert not leaks, "\n".join(leaks)
    # Redacted, not dropped: the bundle still records where it was tracked.
    (bundle,) = work.rglob("train-model/model/bundle.json")
    lineage = json.loads(bundle.read_text())["lineage"]
    assert lineage["mlflow_tracking_uri"] == url.replace("http://", "http://alice:***@")
    assert "alice:***@" in proc.stdout
    # The log held both URIs (kfp.local prints each task's arguments), masked.
    log = next((work / "logs").glob("*.log")).read_text()
    assert f"optuna:***@127.0.0.1:{postgres.port}" in log
    assert "alice:***@127.0.0.1" in log
