"""launch_training_step end to end against the local API stand-in: the job it creates,
its bundle hand-over, and its failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfgpu.errors import BundleError, TrainingError
from kfgpu.kube.step import launch_training_step
from tests.unit.kube.test_launcher import RUNNING, FakeKube, _pod, cond, stand_in

SUCCEEDED = [*RUNNING, cond("Succeeded", "JobSucceeded", "2026-01-01T00:01:00Z")]


def _bundle(root: Path) -> Path:
    from kfgpu.bundle import write_bundle
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.training.families import build_network, tabular_mlp_config

    df = fraud(500, seed=1)
    fitted = fit_transform(df, infer_feature_spec(df, "is_fraud"))
    cfg = tabular_mlp_config(
        n_numeric=fitted.n_dense,
        cardinalities=fitted.cardinalities,
        hidden_sizes=(4,),
        dropout=0.0,
        n_outputs=2,
    )
    return write_bundle(
        root,
        state_dict=build_network("tabular_mlp", cfg).state_dict(),
        transform=fitted,
        description={"task": "classification", "model": {"family": "tabular_mlp", "config": cfg}},
    )


def _run(api: object, tmp_path: Path, **kw: object):
    args = dict(
        train_uri="s3://b/train",
        val_uri="s3://b/val",
        transform_uri="s3://b/t.json",
        profile_uri="s3://b/profile",
        target="is_fraud",
        task="classification",
        bundle_path=str(tmp_path / "out" / "model"),
        staging_uri=(tmp_path / "staging").as_uri(),
        config={"max_epochs": 3, "precision": "bf16-mixed"},
        kind="PyTorchJob",
        name="demo",
        namespace="ml",
        num_nodes=4,
        gpus_per_node=8,
        timeout_s=30,
        poll_s=0.01,
        api_client=api,
    )
    args.update(kw)
    return launch_training_step(**args)  # type: ignore[arg-type]


def test_success_hands_on_the_verified_bundle(tmp_path: Path) -> None:
    _bundle(tmp_path / "staging")
    state = FakeKube([[], RUNNING, SUCCEEDED])
    with stand_in(state) as api:
        result = _run(api, tmp_path, outcome_path=str(tmp_path / "job.json"))
    assert (tmp_path / "out" / "model" / "CHECKSUMS.sha256").is_file()
    assert json.loads((tmp_path / "job.json").read_text())["failed_rank"] is None
    assert result.metrics["nodes"] == 4
    job = state.job
    assert job is not None and job["kind"] == "PyTorchJob"
    container = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:3] == ["python", "-m", "kfgpu.training.distributed"]
    config = json.loads(command[command.index("--config") + 1])
    assert config["num_nodes"] == 4 and config["devices"] == 8 and config["strategy"] == "ddp"
    assert command[command.index("--bundle-uri") + 1] == (tmp_path / "staging").as_uri()
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (8, "8")


def test_success_without_a_bundle_is_an_error(tmp_path: Path) -> None:
    with (
        stand_in(FakeKube([[], SUCCEEDED])) as api,
        pytest.raises(BundleError, match="left no bundle"),
    ):
        _run(api, tmp_path)
    assert not (tmp_path / "out" / "model").exists()


def test_failure_names_the_rank_that_failed_first(tmp_path: Path) -> None:
    labels = {"training.kubeflow.org/job-name": "demo"}
    pods = [
        _pod(
            "demo-worker-0",
            {
                **labels,
                "training.kubeflow.org/replica-type": "worker",
                "training.kubeflow.org/replica-index": "0",
            },
            "pytorch",
            137,
            "OOMKilled",
            "2026-01-01T00:00:30Z",
        ),
        _pod(
            "demo-master-0",
            {
                **labels,
                "training.kubeflow.org/replica-type": "master",
                "training.kubeflow.org/replica-index": "0",
            },
            "pytorch",
            1,
            "Error",
            "2026-01-01T00:00:40Z",
        ),
    ]
    failed = [*RUNNING, cond("Failed", "JobFailed", "2026-01-01T00:01:00Z")]
    state = FakeKube([[], failed], pods=pods, logs={"demo-worker-0": "CUDA out of memory\n"})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = tmp_path / "job.json"
    with stand_in(state) as api, pytest.raises(TrainingError, match=r"rank 1 .* exited 137"):
        _run(api, tmp_path, outcome_path=str(outcome), mlflow_tracking_uri=uri)
    # Recorded before the step failed: as the component's output, and as MLflow tags.
    recorded = json.loads(outcome.read_text())
    assert recorded["status"] == "Failed"
    assert recorded["failed_rank"]["pod"] == "demo-worker-0"
    assert recorded["failed_rank"]["exit_code"] == 137
    assert "CUDA out of memory" in "\n".join(recorded["failed_rank"]["log_tail"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("kfgpu").experiment_id])
    assert run.info.status == "FAILED"
    tags = run.data.tags
    assert tags["kfgpu.job.failed_rank"] == "1"
    assert tags["kfgpu.job.failed_pod"] == "demo-worker-0"
    assert tags["kfgpu.job.exit_code"] == "137"
    assert tags["kfgpu.job.failure_reason"] == "OOMKilled"
    assert not (tmp_path / "out" / "model").exists()


def test_a_bad_config_is_refused_before_any_job(tmp_path: Path) -> None:
    state = FakeKube([[]])
    with stand_in(state) as api, pytest.raises(Exception, match="precision"):
        _run(api, tmp_path, config={"precision": "fp8"})
    assert state.job is None
