"""CUDA paths: mixed-precision training on a GPU and serving a bundle on it.

Skipped, with the reason, where no CUDA device is visible (CI has none). Run on a GPU
machine with ``pytest tests/gpu``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _frames():
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.features.split import split_frame

    df = fraud(20_000, seed=3)
    train, val, test = split_frame(df, "is_fraud", task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    return train, val, test, fitted


def _fit(tmp_path: Path, **settings):
    """Train on the GPU with ``settings``; the outcome and the raw test rows."""
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    train, val, test, fitted = _frames()
    outcome = train_tabular(
        train,
        val,
        transform=fitted,
        target="is_fraud",
        task="classification",
        config=TrainConfig(accelerator="gpu", devices=1, **settings),
        bundle_path=tmp_path / "bundle",
    )
    return outcome, test.drop(columns=["is_fraud"])


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed", "32-true"])
def test_trains_on_gpu_and_serves_on_gpu(tmp_path: Path, precision: str) -> None:
    from kfgpu.bundle import load_bundle

    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    outcome, raw = _fit(tmp_path, precision=precision, max_epochs=3)
    assert outcome.description["training"]["accelerator"] == "gpu"
    cpu = load_bundle(tmp_path / "bundle", device="cpu")
    gpu = load_bundle(tmp_path / "bundle", device="cuda")
    p_cpu, p_gpu = cpu.predict_raw(raw), gpu.predict_raw(raw)
    # Weights are stored in fp32 whatever the training precision: CPU and GPU agree closely.
    np.testing.assert_allclose(p_cpu, p_gpu, atol=1e-4)


def test_sixteen_bit_is_refused_on_cpu_but_runs_on_gpu() -> None:
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import resolve_accelerator

    assert resolve_accelerator(TrainConfig(precision="16-mixed")) == "gpu"


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fsdp_trains_a_bundle_that_loads_on_cpu(tmp_path: Path, precision: str) -> None:
    from kfgpu.bundle import load_bundle

    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    outcome, raw = _fit(
        tmp_path, strategy="fsdp", precision=precision, max_epochs=2, accumulate_grad_batches=2
    )
    assert outcome.description["hyperparameters"]["strategy"] == "fsdp"
    # The best-weights checkpoint is one full state dict: the bundle holds every weight.
    proba = load_bundle(tmp_path / "bundle", device="cpu").predict_raw(raw)
    assert np.isfinite(proba).all() and proba.shape == (len(raw), 2)


@pytest.mark.parametrize(
    ("strategy", "precision"), [("auto", "16-mixed"), ("fsdp", "32-true"), ("fsdp", "16-mixed")]
)
def test_gradient_clipping_on_gpu(tmp_path: Path, strategy: str, precision: str) -> None:
    """Clipping after the 16-mixed unscale (the plain AdamW: the fused one cannot be clipped),
    and FSDP's sharded norm through the root module."""
    outcome, _ = _fit(
        tmp_path, strategy=strategy, precision=precision, max_epochs=2, gradient_clip_val=0.5
    )
    assert outcome.description["hyperparameters"]["gradient_clip_val"] == 0.5
    assert np.isfinite(outcome.metrics["val_loss"])


def test_devices_zero_leaves_a_visible_gpu_alone() -> None:
    """The training pipeline's gpus=0 reaches the trainer as devices=0: a pod that merely
    sees a GPU (an image with NVIDIA_VISIBLE_DEVICES=all on a GPU node) trains on the CPU."""
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import resolve_accelerator

    assert resolve_accelerator(TrainConfig(accelerator="auto", devices=0)) == "cpu"
    assert resolve_accelerator(TrainConfig(accelerator="auto", devices=1)) == "gpu"
