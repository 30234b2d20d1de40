"""Small pipelines for the ops tests (no `from __future__ import annotations`: KFP reads the
real annotation objects)."""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def echo(epochs: int, rate: float, name: str, flag: bool) -> str:
    return f"{name}{epochs}{rate}{flag}"


@dsl.pipeline(name="kfgpu-small", description="A small pipeline for the ops tests.")
def small(epochs: int = 3, rate: float = 0.1, name: str = "x", flag: bool = False) -> None:
    echo(epochs=epochs, rate=rate, name=name, flag=flag)


@dsl.component(base_image="python:3.11")
def train(data: str) -> str:
    return data


def gpu_pipeline(config_mapping: dict):
    """A pipeline whose training task gets ``PlatformConfig.from_mapping(config_mapping)``,
    with the GPU count and node selector as pipeline parameters."""
    from kfgpu.ops.platform import PlatformConfig, apply_gpu_settings

    config = PlatformConfig.from_mapping(config_mapping)

    @dsl.pipeline(name="kfgpu-gpu")
    def gpu(gpus: int = 2, gpu_nodes: dict = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}):  # noqa: B006
        task = train(data="x")
        apply_gpu_settings(task, config, gpus=gpus, node_selector_param=gpu_nodes)
        literal = train(data="y").set_display_name("literal")
        apply_gpu_settings(literal, config)

    return gpu


def cached_pipeline(wire_fingerprint: bool):
    from kfgpu.components import fingerprint_data, validate_data
    from kfgpu.ops.platform import apply_cache_policy

    @dsl.pipeline(name="kfgpu-cache")
    def cache(data_uri: str = "s3://bucket/data.parquet"):
        fp = fingerprint_data(data_uri=data_uri)
        if wire_fingerprint:
            validated = validate_data(data_uri=data_uri, target="y", data_fingerprint=fp.output)
        else:
            validated = validate_data(data_uri=data_uri, target="y")
        apply_cache_policy(fp, validated)

    return cache
