"""Every custom resource kfgpu renders, against the operators' real CRDs (``../shared/crds``).

InferenceServices (each deployment mode, CPU and GPU, with and without a canary, both
runtimes, what ``kfgpu deploy --dry-run`` prints and a promoted canary), the ServingRuntime
and ClusterServingRuntime, TrainJobs, PyTorchJobs and MPIJobs (1x1, 1x8, 4x8 and CPU), and
the custom resources under ``manifests/``: 0 schema errors and 0 fields the API server
would prune. See ``tests/crds.py`` for how; where ``../shared/crds`` is absent the
hand-written envelopes in ``tests/data/crds`` stand in.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kfgpu.kube.jobs import LaunchConfig, render
from kfgpu.serving.isvc import ServiceConfig, build_inference_service, build_serving_runtime
from tests import crds

ROOT = Path(__file__).resolve().parents[1]
MODES = ("Serverless", "RawDeployment", "Standard")
SHAPES = ((1, 1), (1, 8), (4, 8))
JOB_KINDS = ("TrainJob", "PyTorchJob", "MPIJob")


def _service(mode: str, canary: bool, gpus: int, runtime: str = "kfgpu") -> ServiceConfig:
    return ServiceConfig(
        name="fraud",
        namespace="ml",
        storage_uri="s3://models/fraud/v2",
        runtime=runtime,  # type: ignore[arg-type]
        deployment_mode=mode,  # type: ignore[arg-type]
        gpus=gpus,
        gpu_type="NVIDIA-L4" if gpus else "",
        canary_traffic_percent=20 if canary else None,
        scale_target=8,
        service_account="kfgpu-serving",
        precision="16" if gpus else "auto",
    )


def _stable(mode: str, gpus: int) -> dict[str, Any]:
    """The running predictor a RawDeployment canary splits traffic with: a real one."""
    cfg = ServiceConfig(
        name="fraud",
        namespace="ml",
        storage_uri="s3://models/fraud/v1",
        deployment_mode=mode,  # type: ignore[arg-type]
        gpus=gpus,
    )
    predictor: dict[str, Any] = build_inference_service(cfg)["spec"]["predictor"]
    return predictor


def _services() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for mode in MODES:
        for canary in (False, True):
            for gpus in (0, 1):
                for runtime in ("kfgpu", "triton"):
                    obj = build_inference_service(
                        _service(mode, canary, gpus, runtime), stable_predictor=_stable(mode, gpus)
                    )
                    tag = f"{mode}-{'canary' if canary else 'full'}-{gpus}gpu-{runtime}"
                    out.append((tag, obj))
    return out


def _promoted(obj: dict[str, Any]) -> dict[str, Any]:
    """A RawDeployment canary after ``kfgpu canary promote`` (kfgpu.serving.deploy): the
    canary's predictor becomes spec.predictor and the canary list goes."""
    out = copy.deepcopy(obj)
    out["spec"] = {"predictor": out["spec"]["canary"][0]["predictor"]}
    return out


def _jobs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for kind in JOB_KINDS:
        for nodes, gpus in SHAPES:
            cfg = LaunchConfig(
                name="kfgpu-train",
                namespace="ml",
                command=["horovodrun", "-np", str(nodes * gpus), "python", "-m", "kfgpu"],
                num_nodes=nodes,
                gpus_per_node=gpus,
                gpu_type="NVIDIA-H100-80GB-HBM3",
                tolerations=[
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
                node_selector={"pool": "gpu"},
                service_account="trainer",
                nccl_socket_ifname="eth0",
                env={"KFGPU_SEED": "7"},
                labels={"app": "kfgpu"},
                active_deadline_seconds=7200,
                storage_secret="kfgpu-storage",
            )
            out.append((f"{kind}-{nodes}x{gpus}", render(cfg, kind)))  # type: ignore[arg-type]
        cpu = LaunchConfig(name="tiny", gpus_per_node=0, shm_size=None, command=["mpirun", "t"])
        out.append((f"{kind}-cpu", render(cpu, kind)))  # type: ignore[arg-type]
    return out


def _manifest_resources() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion", "").split("/")[0].endswith(
                ("kserve.io", "kubeflow.org")
            ):
                out.append((f"{path.relative_to(ROOT)}:{doc['metadata']['name']}", doc))
    return out


def _everything() -> list[tuple[str, dict[str, Any]]]:
    services = _services()
    promoted = [
        (f"{tag}-promoted", _promoted(obj)) for tag, obj in services if "canary" in obj["spec"]
    ]
    runtimes = [
        ("ServingRuntime", build_serving_runtime()),
        ("ClusterServingRuntime", build_serving_runtime(cluster=True)),
    ]
    return services + promoted + runtimes + _jobs() + _manifest_resources()


EVERYTHING = _everything()


@pytest.mark.parametrize(("tag", "obj"), EVERYTHING, ids=[t for t, _ in EVERYTHING])
def test_rendered_object_is_accepted_as_is(tag: str, obj: dict[str, Any]) -> None:
    assert crds.schema_errors(obj) == [], tag
    assert crds.pruned_fields(obj) == [], tag


def test_every_kind_and_case_is_covered() -> None:
    kinds = {obj["kind"] for _, obj in EVERYTHING}
    assert set(crds.KINDS) | {"ClusterServingRuntime"} <= kinds
    services = [obj for _, obj in EVERYTHING if obj["kind"] == "InferenceService"]
    raw_canaries = [obj for obj in services if obj["spec"].get("canary")]
    gpu = [obj for obj in services if "nvidia.com/gpu" in str(obj["spec"])]
    assert raw_canaries and gpu and len(services) >= 2 * len(MODES) * 2 * 2


def test_totals_zero_schema_errors_zero_pruned_fields() -> None:
    """The acceptance figure, over everything at once (printed with -s)."""
    schema = sum(len(crds.schema_errors(obj)) for _, obj in EVERYTHING)
    pruned = sum(len(crds.pruned_fields(obj)) for _, obj in EVERYTHING)
    print(
        f"{len(EVERYTHING)} objects against {crds.crd_dir()}: "
        f"{schema} schema errors, {pruned} pruned fields"
    )
    assert (schema, pruned) == (0, 0)


def test_upstream_crds_are_used_when_present() -> None:
    assert crds.crd_dir() == (crds.SHARED_CRDS if crds.SHARED_CRDS.is_dir() else crds.ENVELOPE_CRDS)
    for kind in crds.KINDS:
        assert any(k == kind for _, k in crds.crds()), f"no CRD for {kind} in {crds.crd_dir()}"


def test_envelopes_accept_the_same_objects() -> None:
    """The fallback for a checkout without ../shared/crds passes the same objects (the
    envelopes hold the kinds in crds.KINDS; ClusterServingRuntime only upstream)."""
    envelopes = crds.crds(crds.ENVELOPE_CRDS)
    assert set(crds.KINDS) == {kind for _, kind in envelopes}
    for tag, obj in EVERYTHING:
        if (obj["apiVersion"], obj["kind"]) in envelopes:
            assert crds.errors(obj, crds.ENVELOPE_CRDS) == [], tag


# --- the checks themselves fail where they should ------------------------------------------


def test_a_canary_model_without_its_container_name_is_rejected() -> None:
    """What the hand-written schema passed and KServe's real CRD refuses (the old output)."""
    obj = build_inference_service(
        _service("RawDeployment", True, 1), stable_predictor=_stable("RawDeployment", 1)
    )
    assert obj["spec"]["canary"][0]["predictor"]["model"]["name"] == "kserve-container"
    del obj["spec"]["canary"][0]["predictor"]["model"]["name"]
    for directory in {crds.crd_dir(), crds.ENVELOPE_CRDS}:
        errors = crds.schema_errors(obj, directory)
        assert any("'name' is a required property" in e for e in errors), directory


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("InferenceService", ("spec", "predictor")),
        ("InferenceService", ("spec", "predictor", "model")),
        ("TrainJob", ("spec", "trainer")),
        ("PyTorchJob", ("spec", "runPolicy")),
        ("MPIJob", ("spec",)),
    ],
)
def test_a_misspelt_field_is_caught(kind: str, where: tuple[str, ...]) -> None:
    obj = next(copy.deepcopy(o) for _, o in EVERYTHING if o["kind"] == kind)
    node = obj
    for key in where:
        node = node[key]
    node["minReplica"] = 1
    path = ".".join((*where, "minReplica"))
    if crds.using_upstream():
        # Open schemas: jsonschema passes it, the API server would drop it.
        assert path in crds.pruned_fields(obj)
    assert crds.errors(obj), f"{kind}: a misspelt {path} went through"


def test_preserved_and_embedded_fields_are_not_reported() -> None:
    """metadata at the root and in pod templates is the API machinery's, not pruned."""
    (_, job) = next((t, o) for t, o in EVERYTHING if o["kind"] == "PyTorchJob")
    job = copy.deepcopy(job)
    job["metadata"]["annotations"] = {"a": "b"}
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"] = {"labels": {"x": "y"}}
    assert crds.pruned_fields(job) == []


# --- kfgpu deploy --dry-run -----------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["--mode", "RawDeployment", "--canary", "10"]])
@pytest.mark.parametrize("gpus", [0, 1])
def test_deploy_dry_run_output_is_accepted(args: list[str], gpus: int, tmp_path: Path) -> None:
    from kfgpu.cli import cli

    argv = ["deploy", str(tmp_path), "--name", "fraud", "--storage-uri", "s3://m/v2"]
    result = CliRunner().invoke(cli, [*argv, "--gpus", str(gpus), "--dry-run", *args])
    assert result.exit_code == 0, result.output
    obj = yaml.safe_load(result.output)
    assert obj["kind"] == "InferenceService"
    assert crds.errors(obj) == []
