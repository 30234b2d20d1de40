"""GPU training speed: bf16-mixed against fp32 on one CUDA device, achieved TFLOP/s and
samples/s, for a wide MLP where the GPU (not Python) is the cost.

Skips cleanly without CUDA: it prints ``gpu_training.cuda_available: 0`` and nothing else.
FLOPs are counted as 6 x parameters per sample (forward 2, backward 4) for the linear
layers, the usual estimate for dense networks.

Settings (environment): ``KFGPU_BENCH_GPU_WIDTH`` (default 4096), ``KFGPU_BENCH_GPU_STEPS``
(default 200), ``KFGPU_BENCH_GPU_BATCH`` (default 8192).
"""

from __future__ import annotations

import os
import time

from bench._harness import benchmark, progress


def _run(precision: str, width: int, steps: int, batch: int) -> float:
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    dev = torch.device("cuda")
    net = nn.Sequential(
        nn.Linear(256, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 2),
    ).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 256, device=dev)
    y = torch.randint(0, 2, (batch,), device=dev)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):  # warm-up: kernels chosen, memory allocated
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


@benchmark("gpu_training")
def run() -> dict[str, float]:
    """bf16-mixed vs fp32 on one GPU: samples/s, TFLOP/s, speed-up (skips without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        progress("gpu_training: no CUDA device; skipped")
        return {"cuda_available": 0}
    width = int(os.environ.get("KFGPU_BENCH_GPU_WIDTH", "4096"))
    steps = int(os.environ.get("KFGPU_BENCH_GPU_STEPS", "200"))
    batch = int(os.environ.get("KFGPU_BENCH_GPU_BATCH", "8192"))
    params = 256 * width + 2 * width * width + width * 2
    flops = 6.0 * params * batch * steps
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    out: dict[str, float] = {"cuda_available": 1, "width": width, "batch": batch}
    for precision in ("32-true", "bf16-mixed"):
        progress(f"gpu_training: {precision}")
        seconds = _run(precision, width, steps, batch)
        key = "fp32" if precision == "32-true" else "bf16"
        out[f"{key}_samples_per_s"] = batch * steps / seconds
        out[f"{key}_tflops"] = flops / seconds / 1e12
    out["bf16_over_fp32"] = out["bf16_samples_per_s"] / out["fp32_samples_per_s"]
    return out
