"""Training throughput: kfgpu's train_model path against a hand-written PyTorch loop, the
data-stall fraction, and 2-process DDP over 1 process.

Same data (the synthetic fraud table, transformed once), same network, batch size,
optimizer and epochs in both runs, in this process; both include one validation pass per
epoch. Samples/s counts training rows only. The data-stall fraction is the share of the
Lightning run's training-loop time spent between a batch's end and the next batch's start
(fetching the batch), measured by a callback. The DDP figure runs ``ddp_spawn`` with 2
processes against 1, each in a fresh child process, with the same global batch.

Settings (environment): ``KFGPU_BENCH_TRAIN_ROWS`` (default 200,000),
``KFGPU_BENCH_TRAIN_EPOCHS`` (default 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench._harness import benchmark, progress

HIDDEN = (256, 256)
BATCH = 1024


def _data(rows: int) -> tuple[Any, Any, Any, Any]:
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.features.split import split_frame

    df = fraud(rows, seed=0)
    train, val, _ = split_frame(df, "is_fraud", task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    return train, val, fitted, df


def _raw_loop(train: Any, val: Any, fitted: Any, epochs: int) -> float:
    """A hand-written loop: same model, batches sliced from in-memory tensors, AdamW."""
    import torch
    from torch.nn import functional as F

    from kfgpu.training.families import build_network, tabular_mlp_config

    torch.manual_seed(0)
    x, c = (torch.from_numpy(a) for a in fitted.transform(train))
    y = torch.from_numpy(train["is_fraud"].to_numpy().astype("int64"))
    vx, vc = (torch.from_numpy(a) for a in fitted.transform(val))
    vy = torch.from_numpy(val["is_fraud"].to_numpy().astype("int64"))
    net = build_network(
        "tabular_mlp",
        tabular_mlp_config(
            n_numeric=fitted.n_dense,
            cardinalities=fitted.cardinalities,
            hidden_sizes=HIDDEN,
            dropout=0.1,
            n_outputs=2,
        ),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(y), BATCH):
            idx = perm[start : start + BATCH]
            loss = F.cross_entropy(net(x[idx], c[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.inference_mode():
            for start in range(0, len(vy), BATCH):
                sl = slice(start, start + BATCH)
                F.cross_entropy(net(vx[sl], vc[sl]), vy[sl])
    return time.perf_counter() - t0


def _kfgpu_run(train: Any, val: Any, fitted: Any, epochs: int) -> tuple[float, float]:
    """train_tabular's fit seconds and the data-stall fraction of its training loop."""
    import tempfile

    import pytorch_lightning as pl

    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    class Stall(pl.Callback):
        def __init__(self) -> None:
            self.wait = 0.0
            self.total = 0.0
            self._end: float | None = None
            self._epoch_start = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self._epoch_start = time.perf_counter()
            self._end = self._epoch_start

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, i: int) -> None:
            if self._end is not None:
                self.wait += time.perf_counter() - self._end

        def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
            self._end = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.total += time.perf_counter() - self._epoch_start
            self._end = None

    stall = Stall()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train_tabular(
            train,
            val,
            transform=fitted,
            target="is_fraud",
            task="classification",
            config=TrainConfig(
                accelerator="cpu",
                max_epochs=epochs,
                hidden_sizes=HIDDEN,
                batch_size=BATCH,
                early_stopping_patience=0,
            ),
            bundle_path=f"{tmp}/bundle",
            callbacks=[stall],
        )
    return outcome.seconds, stall.wait / max(stall.total, 1e-9)


_DDP = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[3])
from bench.training import _data
from kfgpu.training.config import TrainConfig
from kfgpu.training.trainer import train_tabular
if __name__ == "__main__":
    devices, rows, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
    train, val, fitted, _ = _data(rows)
    with tempfile.TemporaryDirectory() as tmp:
        out = train_tabular(train, val, transform=fitted, target="is_fraud",
            task="classification",
            config=TrainConfig(accelerator="cpu", devices=devices,
                strategy="ddp_spawn" if devices > 1 else "auto", max_epochs=epochs,
                batch_size=1024 // devices, early_stopping_patience=0),
            bundle_path=tmp + "/b")
    print(json.dumps({"seconds": out.seconds}))
"""


def _ddp_seconds(devices: int, rows: int, epochs: int) -> float:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", _DDP, str(devices), str(rows), root, str(epochs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


@benchmark("training")
def run() -> dict[str, float]:
    """train_model vs a raw PyTorch loop; data-stall fraction; 2-process DDP over 1."""
    rows = int(os.environ.get("KFGPU_BENCH_TRAIN_ROWS", "200000"))
    epochs = int(os.environ.get("KFGPU_BENCH_TRAIN_EPOCHS", "3"))
    train, val, fitted, _ = _data(rows)
    n = len(train) * epochs
    progress("training: raw PyTorch loop")
    raw = _raw_loop(train, val, fitted, epochs)
    progress("training: kfgpu train_tabular (Lightning)")
    ours, stall = _kfgpu_run(train, val, fitted, epochs)
    progress("training: DDP 1 process, then 2 processes")
    one = _ddp_seconds(1, rows, epochs)
    two = _ddp_seconds(2, rows, epochs)
    return {
        "rows_trained": n,
        "raw_loop_samples_per_s": n / raw,
        "kfgpu_samples_per_s": n / ours,
        "kfgpu_over_raw_loop": raw / ours,
        "goal_kfgpu_over_raw_loop": 0.95,
        "data_stall_fraction": stall,
        "goal_data_stall_fraction": 0.05,
        "ddp_2_over_1_process": one / two,
    }
