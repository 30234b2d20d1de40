"""``kfgpu serve``, ``predict``, ``deploy`` and ``canary``: the model behind an endpoint."""

from __future__ import annotations

from typing import Any

import click

from kfgpu.cli.common import local_uri

__all__ = ["canary", "deploy_cmd", "predict_cmd", "serve_cmd"]


@click.command("serve")
@click.argument("source", metavar="BUNDLE_OR_MODEL_URI")
@click.option("--port", default=8080, show_default=True, type=int, envvar="KFGPU_PORT")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="KFGPU_HOST",
    help="Address to bind; 0.0.0.0 in a container.",
)
@click.option("--model-name", default="", help="Name in the URLs; default the bundle's name.")
@click.option(
    "--max-batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="KFGPU_MAX_BATCH_SIZE",
    help="Rows per forward pass; 1 turns micro-batching off.",
)
@click.option(
    "--max-wait-ms",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    envvar="KFGPU_MAX_WAIT_MS",
    help="How long a batch may wait to fill under concurrent load.",
)
@click.option("--max-rows", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-request-bytes",
    default=8 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    envvar="KFGPU_DEVICE",
    help="auto, cpu, cuda or cuda:N.",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    envvar="KFGPU_PRECISION",
    type=click.Choice(["auto", "32", "16"]),
    help="auto: float16 autocast on CUDA.",
)
@click.option("--tracking-uri", default="", help="MLflow registry for models:/ URIs.")
@click.option(
    "--log-uri",
    default="",
    envvar="KFGPU_LOG_URI",
    help="Write sampled requests and predictions there as Parquet (for monitoring).",
)
@click.option(
    "--log-sample-rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True, max=1),
    envvar="KFGPU_LOG_SAMPLE_RATE",
)
@click.option(
    "--auth-token-file",
    default="",
    envvar="KFGPU_AUTH_TOKEN_FILE",
    help="File holding the bearer token that inference, metadata and repository routes "
    "need (else $KFGPU_AUTH_TOKEN; neither: no auth). Health and /metrics stay open.",
)
@click.option(
    "--enable-repository",
    is_flag=True,
    envvar="KFGPU_ENABLE_REPOSITORY",
    help="Serve KServe's model repository routes (load/unload); off by default.",
)
@click.option(
    "--allow-module",
    "allow_modules",
    multiple=True,
    metavar="PREFIX",
    help="Let a bundle's model.family import a class from modules under PREFIX (repeatable).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="KFGPU_WORKERS",
    help="Server processes (KServe's multi-process server), for CPU serving.",
)
@click.option(
    "--header-timeout",
    "header_timeout_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's headers may take to arrive (then 408 and close).",
)
@click.option(
    "--body-timeout",
    "body_timeout_s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's body may take after its headers (then 408 and close).",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most open connections per worker; the next gets 503 and is closed.",
)
def serve_cmd(
    source: str,
    port: int,
    host: str,
    model_name: str,
    max_batch_size: int,
    max_wait_ms: float,
    max_rows: int,
    max_request_bytes: int,
    device: str,
    precision: str,
    tracking_uri: str,
    log_uri: str,
    log_sample_rate: float,
    auth_token_file: str,
    enable_repository: bool,
    allow_modules: tuple[str, ...],
    workers: int,
    header_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
) -> None:
    """Serve a bundle (path, or models:/NAME@ALIAS) with the KServe model server.

    The URL is printed at start; a bundle path is served under its directory's name
    (--model-name to choose).
    """
    from kfgpu.serving.server import serve

    serve(
        source if source.startswith("models:/") else local_uri(source),
        port=port,
        host=host,
        model_name=model_name,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_rows=max_rows,
        max_request_bytes=max_request_bytes,
        device=device,
        precision=precision,
        tracking_uri=tracking_uri,
        log_uri=log_uri,
        log_sample_rate=log_sample_rate,
        auth_token_file=auth_token_file,
        enable_repository=enable_repository,
        allow_modules=allow_modules,
        workers=workers,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_connections=max_connections,
    )


@click.command("predict")
@click.argument("bundle")
@click.argument("data")
@click.argument("output")
@click.option("--chunk-rows", default=65_536, show_default=True, type=click.IntRange(min=1))
@click.option("--keep", "keep", multiple=True, help="Input column to copy to the output.")
def predict_cmd(
    bundle: str, data: str, output: str, chunk_rows: int, keep: tuple[str, ...]
) -> None:
    """Batch-predict DATA (any table `run --data` reads) with BUNDLE into OUTPUT (a
    directory of Parquet shards), in chunks."""
    from kfgpu.serving.batch import batch_predict_step

    result = batch_predict_step(
        bundle_path=local_uri(bundle),
        data_uri=local_uri(data),
        output_path=output,
        chunk_rows=chunk_rows,
        keep_columns=list(keep),
    )
    click.echo(result.summary)


@click.command("deploy")
@click.argument("bundle")
@click.option("--name", required=True, help="The InferenceService name.")
@click.option("--namespace", "-n", default="kubeflow", show_default=True)
@click.option("--storage-uri", default="", help="Where KServe fetches the bundle (s3://...).")
@click.option(
    "--runtime", default="kfgpu", show_default=True, type=click.Choice(["kfgpu", "triton"])
)
@click.option(
    "--mode",
    "deployment_mode",
    default="Serverless",
    show_default=True,
    type=click.Choice(["Serverless", "RawDeployment", "Standard"]),
)
@click.option("--gpus", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--gpu-type", default="", help="GPU product for the node selector.")
@click.option("--min-replicas", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--max-replicas", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--scale-metric", default="", help="concurrency/rps (Serverless), cpu/memory (Raw).")
@click.option("--scale-target", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--canary", "canary", default=None, type=click.IntRange(0, 100), help="Canary %.")
@click.option("--kserve-version", default="0.21", show_default=True)
@click.option(
    "--service-account",
    default="",
    help="The predictor's service account; it carries the storage Secret (manifests/serving).",
)
@click.option(
    "--auth-token-secret",
    default="",
    help="Secret (key 'token') whose bearer token the predictor requires; the smoke request "
    "sends $KFGPU_AUTH_TOKEN.",
)
@click.option("--cluster-local", is_flag=True, help="No route from outside the cluster.")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float)
@click.option("--dry-run", is_flag=True, help="Print the InferenceService YAML; apply nothing.")
def deploy_cmd(
    bundle: str,
    name: str,
    namespace: str,
    storage_uri: str,
    runtime: str,
    deployment_mode: str,
    gpus: int,
    gpu_type: str,
    min_replicas: int,
    max_replicas: int,
    scale_metric: str,
    scale_target: int,
    canary: int | None,
    kserve_version: str,
    service_account: str,
    auth_token_secret: str,
    cluster_local: bool,
    timeout_s: float,
    dry_run: bool,
) -> None:
    """Deploy BUNDLE as a KServe InferenceService: wait, verify traffic, smoke, or roll back."""
    settings: dict[str, Any] = dict(
        name=name,
        namespace=namespace,
        runtime=runtime,
        deployment_mode=deployment_mode,
        gpus=gpus,
        gpu_type=gpu_type,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_metric=scale_metric,
        scale_target=scale_target,
        canary_traffic_percent=canary,
        kserve_version=kserve_version,
        service_account=service_account,
        auth_token_secret=auth_token_secret,
        cluster_local=cluster_local,
    )
    uri = storage_uri or local_uri(bundle)
    if dry_run:
        import yaml

        from kfgpu.serving.isvc import ServiceConfig, build_inference_service

        stable = {"name": "stable", "model": {"storageUri": "<running>"}}
        obj = build_inference_service(
            ServiceConfig(storage_uri=uri, **settings), stable_predictor=stable
        )
        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)
        return
    from kfgpu.serving.step import deploy_model_step

    result = deploy_model_step(
        bundle_path=local_uri(bundle), storage_uri=uri, timeout_s=timeout_s, **settings
    )
    click.echo(result.summary)


@click.group()
def canary() -> None:
    """End an InferenceService canary: promote it, or roll it back (verified)."""


@canary.command("promote")
@click.argument("name")
@click.option("--namespace", "-n", default="kubeflow", show_default=True)
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float)
def canary_promote(name: str, namespace: str, timeout_s: float) -> None:
    """Give NAME's canary all traffic."""
    from kfgpu.serving.step import canary_step

    click.echo(
        canary_step(action="promote", name=name, namespace=namespace, timeout_s=timeout_s).summary
    )


@canary.command("rollback")
@click.argument("name")
@click.option("--namespace", "-n", default="kubeflow", show_default=True)
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float)
def canary_rollback(name: str, namespace: str, timeout_s: float) -> None:
    """Take all traffic off NAME's canary."""
    from kfgpu.serving.step import canary_step

    click.echo(
        canary_step(action="rollback", name=name, namespace=namespace, timeout_s=timeout_s).summary
    )
