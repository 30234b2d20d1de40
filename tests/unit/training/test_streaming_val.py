"""The validation split streamed like the training split (issue 19).

Above ``stream_threshold_mb`` the validation split stays on storage: each rank validates
its share per epoch, and the best weights are scored on it in one streamed pass (exact
sums; ROC AUC and the decision threshold on every row up to a bound, else a seeded sample).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from kfgpu.errors import TrainingError
from kfgpu.training.streaming import ShardedSplit, open_splits
from tests.parquet_parts import save_ab_transform, write_parts


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    city = rng.choice(["a", "b", "c", None], n)
    score = np.log(amount) - 3 + (city == "a") + rng.normal(0, 0.7, n)
    return pd.DataFrame(
        {
            "amount": amount,
            "age": rng.integers(18, 90, n).astype(float),
            "city": city,
            "label": np.where(score > 0.6, "yes", "no"),
            "y": score,
        }
    )


def _write(df: pd.DataFrame, root: Path, files: int = 3, group: int = 40) -> str:
    return write_parts(df, root, files, group)


@pytest.fixture
def splits(tmp_path: Path) -> tuple[object, str, str]:
    from kfgpu.features import infer_feature_spec
    from kfgpu.features.transform import fit_transform

    train = _frame(600, 0)
    spec = infer_feature_spec(train.drop(columns=["y"]), "label")
    fitted = fit_transform(train.drop(columns=["y"]), spec)
    return fitted, _write(train, tmp_path / "train"), _write(_frame(301, 1), tmp_path / "val")


def _train(fitted, train, val, **settings):
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.trainer import train_tabular

    config = TrainConfig(
        accelerator="cpu",
        max_epochs=3,
        batch_size=64,
        hidden_sizes=(8,),
        early_stopping_patience=0,
        **settings,
    )
    return train_tabular(
        train,
        val,
        transform=fitted,
        target="label",
        task="classification",
        config=config,
        bundle_path=None,
        transformed=False,
    )


def test_streamed_validation_scores_as_the_in_memory_one(splits) -> None:
    fitted, train_uri, val_uri = splits
    kw = {"transform": fitted, "target": "label", "task": "classification", "transformed": False}
    train_df, val_df = open_splits(train_uri, val_uri, threshold_mb=1.0, **kw)
    assert isinstance(train_df, pd.DataFrame) and isinstance(val_df, pd.DataFrame)
    _, val_streamed = open_splits(train_uri, val_uri, threshold_mb=0, **kw)
    assert isinstance(val_streamed, ShardedSplit) and len(val_streamed) == 301
    assert val_streamed.shards.files and len(val_streamed.shards.row_groups()) > 3

    # The same training rows in memory: only how validation is read differs.
    in_memory = _train(fitted, train_df, val_df)
    streamed = _train(fitted, train_df, val_streamed)
    a, b = in_memory.description, streamed.description
    assert in_memory.best_epoch == streamed.best_epoch
    assert set(a["metrics"]) == set(b["metrics"]) == {"val_loss", "val_accuracy", "val_roc_auc"}
    for key, value in a["metrics"].items():
        assert b["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert a["decision"].keys() == b["decision"].keys()
    assert b["decision"]["threshold"] == pytest.approx(a["decision"]["threshold"], abs=1e-6)
    assert b["training"]["val_rows"] == 301
    scoring = b["training"]["validation_scoring"]
    assert scoring == {**a["training"]["validation_scoring"]}
    assert scoring["rows"] == scoring["kept_rows"] == 301 and not scoring["sampled"]

    # Both splits streamed (train_model's path at stream_threshold_mb=0) trains and scores.
    train_s, val_s = open_splits(train_uri, val_uri, threshold_mb=0, **kw)
    both = _train(fitted, train_s, val_s, stream_threshold_mb=0)
    assert both.description["training"]["validation_scoring"]["rows"] == 301
    assert set(both.metrics) == set(a["metrics"])


def test_scoring_above_the_bound_samples_the_headline_and_keeps_sums_exact(splits) -> None:
    from sklearn.metrics import r2_score, roc_auc_score

    from kfgpu.training.bundling import validation_outputs
    from kfgpu.training.families import build_network, family_config
    from kfgpu.training.prepare import encode_labels, split_tensors

    fitted, train_uri, val_uri = splits
    val_df = pd.concat([pd.read_parquet(p) for p in sorted(Path(val_uri).glob("*.parquet"))])
    for task, target in (("classification", "label"), ("regression", "y")):
        kw = {"transform": fitted, "target": target, "task": task, "transformed": False}
        _, val = open_splits(train_uri, val_uri, threshold_mb=0, **kw)
        assert isinstance(val, ShardedSplit)
        _, encode = encode_labels(pd.read_parquet(train_uri)[target], [], task=task)
        tensors = split_tensors(val_df, fitted, target, encode, transformed=False)  # type: ignore[arg-type]
        torch.manual_seed(0)
        outputs = 2 if task == "classification" else 1
        net = build_network(
            "tabular_mlp",
            family_config(
                "tabular_mlp",
                dense_names=tuple(fitted.dense_names),  # type: ignore[attr-defined]
                cardinalities=tuple(fitted.cardinalities),  # type: ignore[attr-defined]
                hidden_sizes=(8,),
                dropout=0.0,
                n_outputs=outputs,
            ),
        )
        whole = validation_outputs(net, tensors, task=task)
        full = validation_outputs(net, val, task=task)
        part = validation_outputs(net, val, task=task, sample_rows=100, seed=3)
        assert torch.allclose(full.out, whole.out) and torch.equal(full.y, whole.y)
        assert full.rows == part.rows == 301 and not full.sampled
        assert part.loss_sum == pytest.approx(full.loss_sum, rel=1e-12)
        assert part.correct == full.correct and part.y_sum == pytest.approx(full.y_sum)
        assert len(part.y) == 100 and part.sampled
        assert "sampled 100 of 301 rows" in part.scoring()["note"]
        # The kept rows are rows of the split, in order: each matches its full-pass output.
        index = {tuple(r): i for i, r in enumerate(full.out.tolist())}
        rows = [index[tuple(r)] for r in part.out.tolist()]
        assert rows == sorted(rows) and len(set(rows)) == 100
        assert torch.equal(part.y, full.y[rows])
        if task == "classification":
            proba = torch.softmax(full.out, 1)[:, 1].numpy()
            expected = roc_auc_score(full.y.numpy() == 1, proba)
            assert full.correct == int((full.out.argmax(1) == full.y).sum())
        else:
            pred = full.out[:, 0].double().numpy()
            expected = r2_score(full.y.double().numpy(), pred)
            # R² from exact fp64 sums over every row, sampled or not.
            sst = part.y_squares - part.y_sum**2 / part.rows
            assert 1 - part.loss_sum / sst == pytest.approx(expected, rel=1e-6)
        assert np.isfinite(expected)


def test_open_splits_checks_the_streamed_validation_split(splits, tmp_path: Path) -> None:
    fitted, train_uri, _ = splits
    kw = {"transform": fitted, "task": "classification", "transformed": False}
    odd = _frame(120, 5)
    odd.loc[::7, "label"] = "maybe"
    odd_uri = _write(odd, tmp_path / "odd")
    with pytest.raises(TrainingError, match=r"\['maybe'\] appear outside the training split"):
        open_splits(train_uri, odd_uri, target="label", threshold_mb=0, **kw)
    no_target = _write(odd.drop(columns=["label"]), tmp_path / "nolabel")
    with pytest.raises(TrainingError, match=r"validation split .* no target column 'label'"):
        open_splits(train_uri, no_target, target="label", threshold_mb=0, **kw)


# ---- 2-process DDP (gloo): each rank its share, val_loss over all rows ---------------------

VAL_ROWS = 23  # ranks hold 11 and 12 rows: a mean of per-rank means is not the mean

SCRIPT = """
import json, sys
import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from kfgpu.data import read_parquet
from kfgpu.features.transform import FittedTransform
from kfgpu.training.config import TrainConfig
from kfgpu.training.streaming import open_splits
from kfgpu.training.trainer import train_tabular


class Record(pl.Callback):
    def __init__(self, root):
        self.root = root

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dl_idx=0):
        rows = (batch[0][:, 0] * 1024).round().long().tolist()
        with open(f"{self.root}/val-rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps({"epoch": trainer.current_epoch, "rows": rows}) + "\\n")

    def on_train_epoch_end(self, trainer, module):
        if trainer.global_rank != 0:
            return
        # Every validation row's loss with the weights just validated (in memory here).
        val = read_parquet(f"{self.root}/val")
        x = torch.tensor(val[["a", "b"]].to_numpy(dtype="float32"))
        module.eval()  # as validation ran: no dropout
        with torch.no_grad():
            out = module(x, torch.zeros((len(val), 0), dtype=torch.long)).float()
        module.train()
        loss = F.cross_entropy(out, torch.tensor(val["label"].to_numpy()), reduction="none")
        line = {
            "epoch": trainer.current_epoch,
            "logged": float(trainer.callback_metrics["val_loss"]),
            "row_loss": dict(zip(val["row_id"].tolist(), loss.tolist())),
        }
        with open(f"{self.root}/losses.jsonl", "a") as f:
            f.write(json.dumps(line) + "\\n")


if __name__ == "__main__":
    root = sys.argv[1]
    transform = FittedTransform.load(f"{root}/transform.json")
    config = TrainConfig(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, batch_size=8,
        early_stopping_patience=0, stream_threshold_mb=0, hidden_sizes=(8,),
        learning_rate=0.05,
    )
    train, val = open_splits(
        f"{root}/train", f"{root}/val", transform=transform, target="label",
        task="classification", transformed=True, threshold_mb=config.stream_threshold_mb,
    )
    assert type(val).__name__ == "ShardedSplit"
    outcome = train_tabular(
        train, val, transform=transform, target="label", task="classification",
        config=config, bundle_path=None, transformed=True, callbacks=[Record(root)],
    )
    print(json.dumps(outcome.description["training"], default=str))
"""


def _ddp_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    save_ab_transform(root, rng)

    def frame(ids: np.ndarray) -> pd.DataFrame:
        b = rng.normal(size=len(ids)).astype(np.float32)
        label = (b > 0).astype(np.int64)
        if ids[0] < VAL_ROWS:  # the validation rows: the second rank's share mislabelled,
            label = np.where(ids < VAL_ROWS // 2, b > 0, b <= 0).astype(np.int64)  # a worse loss
        a = (ids / 1024).astype(np.float32)  # exact: the row id, recovered from the batch
        return pd.DataFrame({"a": a, "b": b, "label": label, "row_id": ids})

    for name, ids, files in (("val", np.arange(VAL_ROWS), 3), ("train", np.arange(400) + 1000, 3)):
        (root / name).mkdir()
        for i, part in enumerate(np.array_split(ids, files)):
            table = pa.Table.from_pandas(frame(part), preserve_index=False)
            pq.write_table(table, root / name / f"part-{i}.parquet", row_group_size=5)


def test_ddp_val_loss_is_the_mean_over_every_validation_row(tmp_path: Path) -> None:
    _ddp_data(tmp_path)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = json.loads(proc.stdout.strip().splitlines()[-1])
    assert training["world_size"] == 2 and training["val_rows"] == VAL_ROWS

    losses = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in losses] == [0, 1]
    for epoch in losses:
        shares = []
        for rank in (0, 1):
            lines = (tmp_path / f"val-rank{rank}.jsonl").read_text().splitlines()
            batches = [json.loads(x) for x in lines]
            shares.append([i for b in batches if b["epoch"] == epoch["epoch"] for i in b["rows"]])
        # Each rank its share: no row twice, none left out, 11 and 12 rows.
        assert sorted(shares[0] + shares[1]) == list(range(VAL_ROWS))
        assert sorted(map(len, shares)) == [VAL_ROWS // 2, VAL_ROWS // 2 + 1]
        row_loss = {int(k): v for k, v in epoch["row_loss"].items()}
        mean_all = sum(row_loss.values()) / VAL_ROWS
        mean_of_means = float(np.mean([np.mean([row_loss[i] for i in s]) for s in shares]))
        assert epoch["logged"] == pytest.approx(mean_all, rel=1e-5)
        # The check can fail: a mean of the ranks' means is measurably another figure.
        assert abs(mean_of_means - mean_all) > 1e-3 * mean_all
