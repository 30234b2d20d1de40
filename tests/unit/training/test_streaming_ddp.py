"""Streamed training under real 2-process DDP (gloo): every row once per epoch, also
across a SIGKILL and a resume (issue 19, acceptance 1).

The real trainer (:func:`~kfgpu.training.trainer.train_tabular`, Lightning ``ddp`` on two
CPU processes) streams a many-shard Parquet split (``stream_threshold_mb=0``). The split is
engineer_features-style (transformed columns), and its first feature column holds
``row_id / 1024`` in float32, which is exact, so a callback recovers each batch's row ids
from inside the training loop and appends them, per rank, to a file.

Run in a subprocess: Lightning's ``ddp`` launcher re-executes ``sys.argv``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.parquet_parts import save_ab_transform

pytestmark = pytest.mark.slow

ROWS = 2399  # odd: ranks hold 1199 and 1200 rows
BATCH = 64  # 19 batches per rank and epoch
KILL_AT = 31  # optimiser steps: mid-epoch 1, two steps after the step-30 checkpoint

SCRIPT = """
import json, os, signal, sys
import pytorch_lightning as pl
from kfgpu.data import read_parquet
from kfgpu.features.transform import FittedTransform
from kfgpu.training.config import TrainConfig
from kfgpu.training.streaming import open_training_split
from kfgpu.training.trainer import train_tabular


class Record(pl.Callback):
    def __init__(self, path, kill_at):
        self.path, self.kill_at = path, kill_at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        rows = (batch[0][:, 0] * 1024).round().long().tolist()
        line = {"epoch": trainer.current_epoch, "step": trainer.global_step, "rows": rows}
        with open(f"{self.path}-rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(line) + "\\n")
        if self.kill_at and trainer.global_step >= self.kill_at and trainer.global_rank == 0:
            os.killpg(os.getpgid(0), signal.SIGKILL)  # the whole job, both ranks, at once


if __name__ == "__main__":
    root, tag, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    transform = FittedTransform.load(f"{root}/transform.json")
    val = read_parquet(f"{root}/val.parquet")
    config = TrainConfig(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, batch_size=BATCH_SIZE,
        early_stopping_patience=0, stream_threshold_mb=0, hidden_sizes=(8,),
        checkpoint_dir=f"{root}/ckpt", checkpoint_every_n_steps=5,
    )
    train = open_training_split(
        f"{root}/train", transform=transform, target="label", task="classification",
        transformed=True, threshold_mb=config.stream_threshold_mb,
    )
    outcome = train_tabular(
        train, val, transform=transform, target="label", task="classification",
        config=config, bundle_path=None, transformed=True,
        callbacks=[Record(f"{root}/{tag}", kill_at)],
    )
    print(json.dumps(outcome.description["training"], default=str))
""".replace("BATCH_SIZE", str(BATCH))


def _data(root: Path) -> None:
    rng = np.random.default_rng(0)
    save_ab_transform(root, rng)

    def frame(ids: np.ndarray) -> pd.DataFrame:
        b = rng.normal(size=len(ids)).astype(np.float32)
        return pd.DataFrame(
            {
                "a": (ids / 1024).astype(np.float32),
                "b": b,
                "label": (b > 0).astype(np.int64),
                "row_id": ids,
            }
        )

    (root / "train").mkdir()
    ids = np.arange(ROWS)
    # 13 shards of uneven sizes, each of several row groups.
    for i, part in enumerate(np.array_split(ids, 13)):
        table = pa.Table.from_pandas(frame(part), preserve_index=False)
        pq.write_table(table, root / "train" / f"part-{i:02d}.parquet", row_group_size=70)
    frame(np.arange(ROWS, ROWS + 300)).to_parquet(root / "val.parquet", index=False)


def _records(root: Path, tag: str) -> dict[int, list[dict]]:
    """Per rank, the batches recorded (a line cut by SIGKILL is left out)."""
    out: dict[int, list[dict]] = {}
    for rank in (0, 1):
        lines = []
        path = root / f"{tag}-rank{rank}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
        out[rank] = lines
    return out


def _run(root: Path, tag: str, kill_at: int) -> subprocess.CompletedProcess[str]:
    script = root / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), str(root), tag, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        start_new_session=True,  # its own process group: the SIGKILL takes no one else
    )


def _once(rows: list[int]) -> None:
    counts = Counter(rows)
    assert not [r for r, c in counts.items() if c > 1], "a row served twice in an epoch"
    assert sorted(counts) == list(range(ROWS)), "a training row not served in an epoch"


def test_every_row_once_per_epoch_across_ranks_and_a_sigkill(tmp_path: Path) -> None:
    _data(tmp_path)
    first = _run(tmp_path, "first", KILL_AT)
    assert first.returncode == -9, first.stderr[-3000:]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    second = _run(tmp_path, "second", 0)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout
    training = json.loads(second.stdout.strip().splitlines()[-1])
    assert training["world_size"] == 2 and training["epochs_run"] == 2

    # The step of the checkpoint the second run resumed from (the last one before the kill).
    found = re.search(r"resumed from .*global step (\d+)", second.stdout)
    assert found, second.stdout[-2000:]
    saved_step = int(found.group(1))
    assert 19 < saved_step < KILL_AT
    first_rec, second_rec = _records(tmp_path, "first"), _records(tmp_path, "second")

    # Epoch 0: uninterrupted, in the first run.
    per_rank = {r: [b for b in first_rec[r] if b["epoch"] == 0] for r in (0, 1)}
    assert len(per_rank[0]) == len(per_rank[1]) == -(-(ROWS // 2 + 1) // BATCH)
    _once([i for r in (0, 1) for b in per_rank[r] for i in b["rows"]])
    # The ranks' shares are disjoint and as large as they can be equal.
    shares = [{i for b in per_rank[r] for i in b["rows"]} for r in (0, 1)]
    assert sorted(len(s) for s in shares) == [ROWS // 2, ROWS // 2 + 1]

    # Epoch 1: the batches up to the checkpoint, then the resumed run's rest of it.
    batches: dict[int, list[list[int]]] = defaultdict(list)
    # Killed after the checkpoint: both ranks reached it and at least one went past it (the
    # rank that did not kill may die before recording the step it was on).
    last = [max(b["step"] for b in first_rec[r]) for r in (0, 1)]
    assert min(last) >= saved_step and max(last) > saved_step, (last, saved_step)
    for r in (0, 1):
        batches[r] += [
            b["rows"] for b in first_rec[r] if b["epoch"] == 1 and b["step"] <= saved_step
        ]
        batches[r] += [b["rows"] for b in second_rec[r] if b["epoch"] == 1]
    assert 0 < saved_step - 19 < len(batches[0]) == len(batches[1]) == 19
    _once([i for r in (0, 1) for rows in batches[r] for i in rows])

    assert {b["epoch"] for r in (0, 1) for b in second_rec[r]} == {1}
    # The resumed epoch's order is not epoch 0's.
    assert batches[0][0] != per_rank[0][0]["rows"]
