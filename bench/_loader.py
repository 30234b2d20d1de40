"""The streaming loader against the in-memory one, through the real trainer.

:func:`loader_figures` trains the same model on the same table twice with
:func:`~kfgpu.training.trainer.train_tabular` (one process, CPU): once from the table in
memory (``InMemoryBatches``), once streamed from Parquet shards of bounded row groups
(``StreamingBatches``, ``stream_threshold_mb=0``), each twice in the order in-memory,
streamed, streamed, in-memory, and averages the runs' reports:

* ``stream_over_memory_throughput``: the streamed run's training-loop throughput
  (samples/s over the time from each epoch's start to its last batch's end) over the
  in-memory run's. Goal (issue 19): >= 0.9.
* ``stream_data_stall_fraction``: the streamed run's share of the training loop spent
  waiting for the next batch (from a batch's end to the next batch's start). Goal: < 0.05.
* ``memory_data_stall_fraction``: the same for the in-memory run (the floor).

Called by the ``data_scale`` benchmark; ``python -m bench._loader`` runs it alone.
Settings (environment): ``KFGPU_BENCH_LOADER_ROWS`` (default 200,000),
``KFGPU_BENCH_LOADER_EPOCHS`` (default 2).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

TARGET = "is_fraud"


def _run(train: Any, val: Any, fitted: Any, epochs: int) -> dict[str, float]:
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    config = TrainConfig(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        early_stopping_patience=0,
        stream_threshold_mb=0,
    )
    outcome = train_tabular(
        train,
        val,
        transform=fitted,
        target=TARGET,
        task="classification",
        config=config,
        bundle_path=None,
        transformed=True,
    )
    report: dict[str, float] = outcome.description["training"]["report"]
    return report


def loader_figures(rows: int | None = None, epochs: int | None = None) -> dict[str, float]:
    """Streamed over in-memory training throughput, and both runs' data-stall fractions."""
    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec, split_frame
    from kfgpu.features.step import transformed_frame
    from kfgpu.training.streaming import open_training_split

    rows = rows or int(os.environ.get("KFGPU_BENCH_LOADER_ROWS", "200000"))
    epochs = epochs or int(os.environ.get("KFGPU_BENCH_LOADER_EPOCHS", "2"))
    train, val, _ = split_frame(fraud(rows, seed=0), TARGET, task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, TARGET))
    encoded = transformed_frame(fitted, train, TARGET)
    encoded_val = transformed_frame(fitted, val, TARGET)
    with tempfile.TemporaryDirectory(prefix="kfgpu-bench-loader-") as tmp:
        root = Path(tmp) / "train"
        root.mkdir()
        per_file = 131_072
        for i, start in enumerate(range(0, len(encoded), per_file)):
            encoded.iloc[start : start + per_file].to_parquet(
                root / f"part-{i:04d}.parquet", index=False, row_group_size=32_768
            )
        streamed = open_training_split(
            str(root),
            transform=fitted,
            target=TARGET,
            task="classification",
            transformed=True,
            threshold_mb=0,
        )
        # ABBA order: a load that drifts during the runs weighs on both loaders alike.
        memory, stream = [], []
        for source in ("memory", "stream", "stream", "memory"):
            if source == "memory":
                memory.append(_run(encoded, encoded_val, fitted, epochs))
            else:
                stream.append(_run(streamed, encoded_val, fitted, epochs))

    def mean(runs: list[dict[str, float]], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    return {
        "stream_over_memory_throughput": mean(stream, "throughput_samples_per_s")
        / mean(memory, "throughput_samples_per_s"),
        "stream_data_stall_fraction": mean(stream, "data_stall_fraction"),
        "memory_data_stall_fraction": mean(memory, "data_stall_fraction"),
        "train_rows": float(len(encoded)),
    }


if __name__ == "__main__":
    for key, value in loader_figures().items():
        print(f"{key}: {value:.4g}")
