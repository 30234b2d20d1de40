"""Rendering of TrainJob / PyTorchJob / MPIJob, checked against the SDK models and the
operators' CRDs (../shared/crds, see tests/crds.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kfgpu.errors import ConfigError, KfgpuError
from kfgpu.kube.jobs import (
    LaunchConfig,
    render,
    render_mpijob,
    render_pytorchjob,
    render_trainjob,
)
from tests import crds

KINDS = ["MPIJob", "PyTorchJob", "TrainJob"]
SHAPES = [(1, 1), (1, 8), (4, 8)]


def _cfg(num_nodes: int = 2, gpus: int = 8, **kw: Any) -> LaunchConfig:
    base: dict[str, Any] = {
        "name": "kfgpu-train",
        "namespace": "ml",
        "image": "ghcr.io/kfgpu/kfgpu-train:0.1.0",
        "command": [
            "horovodrun",
            "-np",
            str(max(1, num_nodes * gpus)),
            "python",
            "-m",
            "kfgpu.training",
        ],
        "args": ["--epochs", "3"],
        "num_nodes": num_nodes,
        "gpus_per_node": gpus,
        "gpu_type": "NVIDIA-H100-80GB-HBM3",
        "cpu": "16",
        "memory": "128Gi",
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"pool": "gpu"},
        "service_account": "trainer",
        "nccl_socket_ifname": "eth0",
        "nccl_ib_disable": True,
        "env": {"KFGPU_SEED": "7"},
        "labels": {"app": "kfgpu"},
        "active_deadline_seconds": 7200,
    }
    base.update(kw)
    return LaunchConfig(**base)


def _prune(value: Any) -> Any:
    """Drop None values and empty containers (the models omit them)."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _pod_templates(kind: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    if kind == "PyTorchJob":
        return [r["template"] for r in job["spec"]["pytorchReplicaSpecs"].values()]
    if kind == "MPIJob":
        return [r["template"] for r in job["spec"]["mpiReplicaSpecs"].values()]
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    return [rj["template"]["spec"]["template"] for rj in patch["replicatedJobs"]]


# --- validation helpers -------------------------------------------------------------------


def _sdk_round_trip(kind: str, job: dict[str, Any]) -> dict[str, Any]:
    """Deserialise into the official SDK model and serialise back."""
    data = json.loads(json.dumps(job))
    if kind == "TrainJob":
        from kubeflow_trainer_api.models.trainer_v1alpha1_train_job import TrainerV1alpha1TrainJob

        model = TrainerV1alpha1TrainJob.from_dict(data)
        assert model is not None
        return model.to_dict()
    from kubeflow.training.api_client import ApiClient

    client = ApiClient()
    if kind == "PyTorchJob":
        obj = client._ApiClient__deserialize(data, "KubeflowOrgV1PyTorchJob")  # type: ignore[attr-defined]
        return client.sanitize_for_serialization(obj)
    # No SDK ships MPIJob v2beta1 models (kubeflow-training has only v1); check every pod
    # template with the Kubernetes client's V1PodTemplateSpec model instead.
    templates = [
        client._ApiClient__deserialize(t, "V1PodTemplateSpec") for t in _pod_templates(kind, data)
    ]  # type: ignore[attr-defined]
    out = copy.deepcopy(data)
    for replica, tmpl in zip(out["spec"]["mpiReplicaSpecs"].values(), templates, strict=True):
        replica["template"] = client.sanitize_for_serialization(tmpl)
    return out


def _crd_errors(kind: str, job: dict[str, Any]) -> list[str]:
    """Schema errors and pruned fields against the real CRD (tests/crds.py)."""
    crd = crds.crd_for(job)
    assert crd.kind == kind
    return crds.errors(job)


# --- rendering against models and schemas -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("nodes", "gpus"), SHAPES, ids=[f"{n}x{g}" for n, g in SHAPES])
def test_rendered_job_round_trips_through_the_sdk_model(kind: str, nodes: int, gpus: int) -> None:
    job = render(_cfg(nodes, gpus), kind)  # type: ignore[arg-type]
    assert _prune(_sdk_round_trip(kind, job)) == _prune(job)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("nodes", "gpus"), SHAPES, ids=[f"{n}x{g}" for n, g in SHAPES])
def test_rendered_job_matches_the_crd_schema(kind: str, nodes: int, gpus: int) -> None:
    job = render(_cfg(nodes, gpus), kind)  # type: ignore[arg-type]
    assert _crd_errors(kind, job) == []


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_cpu_job_is_valid_too(kind: str) -> None:
    cfg = LaunchConfig(
        name="tiny", gpus_per_node=0, shm_size=None, command=["mpirun", "python", "t.py"]
    )
    job = render(cfg, kind)  # type: ignore[arg-type]
    assert _crd_errors(kind, job) == []
    assert _prune(_sdk_round_trip(kind, job)) == _prune(job)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_check_catches_a_misspelt_field(kind: str) -> None:
    job = render(_cfg(), kind)  # type: ignore[arg-type]
    _pod_templates(kind, job)[0]["spec"]["toleration"] = []
    assert _crd_errors(kind, job), "a misspelt pod field must fail the schema"


@pytest.mark.parametrize("kind", KINDS)
def test_sdk_round_trip_catches_a_dropped_field(kind: str) -> None:
    job = render(_cfg(), kind)  # type: ignore[arg-type]
    _pod_templates(kind, job)[0]["spec"]["containers"][0]["volumeMount"] = [{"name": "x"}]
    if kind == "TrainJob":
        job["spec"]["trainer"]["numNode"] = 2
    assert _prune(_sdk_round_trip(kind, job)) != _prune(job)


# --- contents -----------------------------------------------------------------------------


def test_pytorchjob_shape() -> None:
    job = render_pytorchjob(_cfg(4, 8))
    assert job["apiVersion"] == "kubeflow.org/v1"
    spec = job["spec"]
    assert spec["nprocPerNode"] == "8"
    assert "elasticPolicy" not in spec
    assert spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    container = spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert spec["runPolicy"] == {
        "cleanPodPolicy": "None",
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 3600,
        "activeDeadlineSeconds": 7200,
    }


def test_single_node_pytorchjob_has_no_worker_and_auto_nproc_without_gpus() -> None:
    job = render_pytorchjob(_cfg(1, 0))
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert job["spec"]["nprocPerNode"] == "auto"


def test_trainjob_shape() -> None:
    job = render_trainjob(_cfg(4, 8))
    spec = job["spec"]
    assert spec["runtimeRef"] == {
        "name": "torch-distributed",
        "kind": "ClusterTrainingRuntime",
        "apiGroup": "trainer.kubeflow.org",
    }
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 4
    assert trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert trainer["command"][0] == "horovodrun"
    assert {"name": "NCCL_DEBUG", "value": "WARN"} in trainer["env"]
    [patch] = spec["runtimePatches"]
    [rjob] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    pod = rjob["template"]["spec"]["template"]["spec"]
    assert pod["containers"] == [
        {"name": "node", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
    ]


def test_mpijob_shape() -> None:
    job = render_mpijob(_cfg(4, 8))
    spec = job["spec"]
    assert job["apiVersion"] == "kubeflow.org/v2beta1"
    assert spec["slotsPerWorker"] == 8
    assert spec["mpiImplementation"] == "OpenMPI"
    launcher = spec["mpiReplicaSpecs"]["Launcher"]
    worker = spec["mpiReplicaSpecs"]["Worker"]
    assert launcher["replicas"] == 1 and worker["replicas"] == 4
    lc = launcher["template"]["spec"]["containers"][0]
    wc = worker["template"]["spec"]["containers"][0]
    assert (lc["name"], wc["name"]) == ("mpi-launcher", "mpi-worker")
    assert lc["command"][0] == "horovodrun" and "command" not in wc
    assert "nvidia.com/gpu" not in lc.get("resources", {}).get("limits", {})
    assert wc["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert render_mpijob(_cfg(2, 0))["spec"]["slotsPerWorker"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_no_gpu_limit_without_gpus(kind: str) -> None:
    job = render(_cfg(2, 0), kind)  # type: ignore[arg-type]
    resources = [job["spec"].get("trainer", {}).get("resourcesPerNode", {})]
    for tmpl in _pod_templates(kind, job):
        resources += [c.get("resources", {}) for c in tmpl["spec"]["containers"]]
    for res in resources:
        assert "nvidia.com/gpu" not in res.get("limits", {})
        assert res.get("limits", {}).get("cpu") in (None, "16")
    for tmpl in _pod_templates(kind, job):
        assert "nvidia.com/gpu.product" not in tmpl["spec"].get("nodeSelector", {})


@pytest.mark.parametrize("kind", KINDS)
def test_shm_tolerations_selector_and_service_account_on_every_gpu_pod(kind: str) -> None:
    cfg = _cfg(2, 8)
    for tmpl in _pod_templates(kind, render(cfg, kind)):  # type: ignore[arg-type]
        spec = tmpl["spec"]
        assert spec["tolerations"] == cfg.tolerations
        assert spec["serviceAccountName"] == "trainer"
        assert spec["nodeSelector"]["pool"] == "gpu"
        mounts = spec["containers"][0].get("volumeMounts", [])
        if kind == "MPIJob" and spec["containers"][0]["name"] == "mpi-launcher":
            assert "nvidia.com/gpu.product" not in spec["nodeSelector"]
            continue
        assert spec["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in spec[
            "volumes"
        ]
        assert {"name": "dshm", "mountPath": "/dev/shm"} in mounts


@pytest.mark.parametrize("kind", KINDS)
def test_no_shm_volume_when_disabled(kind: str) -> None:
    job = render(_cfg(2, 8, shm_size=None), kind)  # type: ignore[arg-type]
    assert "dshm" not in json.dumps(job)


@pytest.mark.parametrize("kind", KINDS)
def test_storage_secret_reaches_every_training_container(kind: str) -> None:
    from kfgpu.kube.storage import GCS_FILE_ENV, MOUNT_PATH, S3_KEYS

    job = render(_cfg(2, 8, storage_secret="kfgpu-storage"), kind)  # type: ignore[arg-type]
    assert _crd_errors(kind, job) == []
    assert _prune(_sdk_round_trip(kind, job)) == _prune(job)
    envs = [t["spec"]["containers"][0].get("env", []) for t in _pod_templates(kind, job)]
    if kind == "TrainJob":
        envs = [job["spec"]["trainer"]["env"]]
    for env in envs:
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        assert refs == {k: {"name": "kfgpu-storage", "key": k, "optional": True} for k in S3_KEYS}
        assert any(e["name"] == GCS_FILE_ENV for e in env)
    for tmpl in _pod_templates(kind, job):
        spec = tmpl["spec"]
        volume = {
            "name": "kfgpu-storage",
            "secret": {"secretName": "kfgpu-storage", "optional": True},
        }
        assert volume in spec["volumes"]
        mount = {"name": "kfgpu-storage", "mountPath": MOUNT_PATH, "readOnly": True}
        assert mount in spec["containers"][0]["volumeMounts"]
    assert "kfgpu-storage" not in json.dumps(render(_cfg(2, 8), kind))  # type: ignore[arg-type]


def test_env_defaults_and_overrides() -> None:
    plain = LaunchConfig(name="x")
    assert plain.effective_env() == {"NCCL_DEBUG": "WARN"}
    cfg = LaunchConfig(
        name="x", nccl_socket_ifname="eth0", nccl_ib_disable=False, env={"NCCL_DEBUG": "INFO"}
    )
    assert cfg.effective_env() == {
        "NCCL_DEBUG": "INFO",
        "NCCL_SOCKET_IFNAME": "eth0",
        "GLOO_SOCKET_IFNAME": "eth0",
        "NCCL_IB_DISABLE": "0",
    }


def test_config_is_frozen_and_copies_inputs() -> None:
    command = ["torchrun"]
    cfg = LaunchConfig(name="x", command=command)
    command.append("oops")
    assert cfg.command == ["torchrun"]
    with pytest.raises(AttributeError):
        cfg.num_nodes = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 41}, "name"),
        ({"namespace": "Bad NS"}, "namespace"),
        ({"num_nodes": 0}, "num_nodes"),
        ({"num_nodes": True}, "num_nodes"),
        ({"gpus_per_node": -1}, "gpus_per_node"),
        ({"cpu": "lots"}, "cpu"),
        ({"memory": "12 GB"}, "memory"),
        ({"shm_size": "big"}, "shm_size"),
        ({"gpu_resource": "gpu"}, "gpu_resource"),
        ({"gpu_type": ""}, "gpu_type"),
        ({"command": "torchrun x"}, "command"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {"1=bad": "x"}}, "env"),
        ({"tolerations": [{"keys": "a"}]}, "tolerations[0]"),
        ({"tolerations": [{"operator": "Maybe"}]}, "tolerations[0].operator"),
        ({"tolerations": [{"effect": "Sometimes"}]}, "tolerations[0].effect"),
        ({"service_account": "Not_OK"}, "service_account"),
        ({"storage_secret": "Not_OK"}, "storage_secret"),
        ({"restart_policy": "Sometimes"}, "restart_policy"),
        ({"backoff_limit": -1}, "backoff_limit"),
        ({"ttl_seconds_after_finished": -5}, "ttl_seconds_after_finished"),
        ({"active_deadline_seconds": 0}, "active_deadline_seconds"),
    ],
)
def test_bad_config_names_the_field(kw: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"name": "ok"} | kw
    with pytest.raises(ConfigError, match=rf"LaunchConfig\.{_re(field)}="):
        LaunchConfig(**args)


def test_mpijob_refuses_a_restart_policy_the_mpi_operator_rejects() -> None:
    cfg = LaunchConfig(
        name="ok", command=["horovodrun", "python", "t.py"], restart_policy="ExitCode"
    )
    with pytest.raises(ConfigError, match=r"LaunchConfig\.restart_policy='ExitCode'.*OnFailure"):
        render_mpijob(cfg)
    assert render_pytorchjob(cfg)["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == (
        "ExitCode"
    )


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_mpijob_needs_a_command() -> None:
    with pytest.raises(ConfigError, match=r"LaunchConfig\.command="):
        render_mpijob(LaunchConfig(name="x"))


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(KfgpuError, match="kind='TFJob'"):
        render(LaunchConfig(name="x"), "TFJob")  # type: ignore[arg-type]


def test_importing_kfgpu_kube_does_not_load_kubernetes() -> None:
    import subprocess
    import sys

    code = "import sys, kfgpu.kube; assert 'kubernetes' not in sys.modules, 'kubernetes loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)
