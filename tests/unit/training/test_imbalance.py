"""Class weights and the balanced sampler: parsing, the draws, and their effect on training
in one process and under DDP (two CPU processes, gloo, in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import ConfigError
from kfgpu.features.split import split_frame
from kfgpu.features.transform import FittedTransform, fit_transform, infer_feature_spec
from kfgpu.training.config import TrainConfig
from kfgpu.training.data import InMemoryBatches
from kfgpu.training.imbalance import class_weight_tensor, parse_class_weight, sample_weights
from kfgpu.training.trainer import train_tabular

pytestmark = pytest.mark.filterwarnings(
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
)


def test_class_weight_forms() -> None:
    assert parse_class_weight("none") == "none" and parse_class_weight("Balanced") == "balanced"
    assert parse_class_weight("fraud=20, ok=1") == {"fraud": 20.0, "ok": 1.0}
    assert parse_class_weight('{"1": 20}') == {"1": 20.0}
    # A dict through from_dict (JSON through KFP) becomes the same text form.
    cfg = TrainConfig.from_dict({"class_weight": {"1": 5}})
    assert parse_class_weight(cfg.class_weight) == {"1": 5.0}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("heavy", "is not label=weight"),
        ("1=0", "use a positive number"),
        ("1=abc", "use a positive number"),
        ('{"1": 2', "is not valid JSON"),
        ("[1, 2]", "is not label=weight"),
    ],
)
def test_bad_class_weight_names_the_field(value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        TrainConfig(class_weight=value)
    assert "class_weight=" in str(err.value)


def test_sampler_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="sampler='oversample' is invalid"):
        TrainConfig(sampler="oversample")
    with pytest.raises(ConfigError, match="needs kfgpu's own datamodule"):
        TrainConfig(sampler="balanced", datamodule="my.module:Data")


def test_balanced_weights_are_rows_over_classes_times_class_rows() -> None:
    y = torch.tensor([0] * 90 + [1] * 10)
    w = class_weight_tensor("balanced", [0, 1], y)
    assert w is not None
    np.testing.assert_allclose(w.numpy(), [100 / (2 * 90), 100 / (2 * 10)], rtol=1e-6)
    m = class_weight_tensor("1=7", [0, 1], y)
    assert m is not None and m.tolist() == [1.0, 7.0]
    assert class_weight_tensor("none", [0, 1], y) is None
    with pytest.raises(ConfigError, match=r"class\(es\) \['fraud'\]"):
        class_weight_tensor("fraud=3", [0, 1], y)


def test_balanced_sampler_draws_every_class_equally_and_shards_one_draw() -> None:
    n = 20_000
    y = torch.zeros(n, dtype=torch.long)
    y[: n // 50] = 1  # 2% positives
    x = torch.arange(n, dtype=torch.float32)[:, None]
    w = sample_weights("balanced", y, 2)
    assert w is not None

    def epoch(rank: int, world: int, e: int = 0) -> torch.Tensor:
        b = InMemoryBatches((x, y), batch_size=500, shuffle=True, seed=3, rank=rank,
                            world_size=world, weights=w)  # fmt: skip
        b.set_epoch(e)
        return torch.cat([bx[:, 0] for bx, _ in b]).long()

    whole = epoch(0, 1)
    assert len(whole) == n
    share = float(y[whole].float().mean())
    assert 0.47 < share < 0.53  # balanced, against 0.02 for a plain shuffle
    assert torch.equal(whole, epoch(0, 1))  # seeded by seed + epoch: a resume sees the same
    assert not torch.equal(whole, epoch(0, 1, e=1))
    # Two ranks take disjoint shards of the same draw (by position), together all of it.
    r0, r1 = epoch(0, 2), epoch(1, 2)
    assert torch.equal(torch.sort(torch.cat([r0, r1])).values, torch.sort(whole).values)
    assert sample_weights("shuffle", y, 2) is None


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame, FittedTransform]:
    train, val, _ = split_frame(fraud(6_000, seed=4), LABEL_COLUMN, task="classification")
    return train, val, fit_transform(train, infer_feature_spec(train, LABEL_COLUMN))


def _val_loss(
    splits: tuple[pd.DataFrame, pd.DataFrame, FittedTransform], **settings: object
) -> float:
    """The plain (unweighted) validation cross-entropy of a short run with ``settings``."""
    train, val, ft = splits
    cfg = {"accelerator": "cpu", "max_epochs": 2, "hidden_sizes": (32,), "seed": 0, **settings}
    outcome = train_tabular(
        train,
        val,
        transform=ft,
        target=LABEL_COLUMN,
        task="classification",
        config=TrainConfig(**cfg),  # type: ignore[arg-type]
        bundle_path=None,
    )
    hp = outcome.description["hyperparameters"]
    assert hp["class_weight"] == settings.get("class_weight", "none")
    assert hp["sampler"] == settings.get("sampler", "shuffle")
    return float(outcome.metrics["val_loss"])


def test_class_weight_and_sampler_reach_training(
    splits: tuple[pd.DataFrame, pd.DataFrame, FittedTransform],
) -> None:
    # Weighting the rare class (or drawing it as often as the other) pushes the model's
    # probabilities up, so its plain cross-entropy on the real 2%-positive rows worsens.
    plain = _val_loss(splits)
    assert _val_loss(splits, class_weight="balanced") > plain * 1.5
    assert _val_loss(splits, sampler="balanced") > plain * 1.5


def test_imbalance_settings_refuse_regression(
    splits: tuple[pd.DataFrame, pd.DataFrame, FittedTransform],
) -> None:
    train, val, _ = splits
    train = train.assign(y=train["amount"]).drop(columns=[LABEL_COLUMN])
    val = val.assign(y=val["amount"]).drop(columns=[LABEL_COLUMN])
    ft = fit_transform(train, infer_feature_spec(train, "y"))
    for settings in ({"class_weight": "balanced"}, {"sampler": "balanced"}):
        with pytest.raises(ConfigError, match="applies to classification"):
            train_tabular(
                train,
                val,
                transform=ft,
                target="y",
                task="regression",
                config=TrainConfig(accelerator="cpu", max_epochs=1, **settings),  # type: ignore[arg-type]
                bundle_path=None,
            )


DDP_SCRIPT = """
import json, sys
from kfgpu.bundle import load_bundle
from kfgpu.data import fraud
from kfgpu.features import fit_transform, infer_feature_spec
from kfgpu.features.split import split_frame
from kfgpu.training.config import TrainConfig
from kfgpu.training.trainer import train_tabular

if __name__ == "__main__":
    train, val, _ = split_frame(fraud(4000, seed=4), "is_fraud", task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    out = {}
    for devices, settings in ((1, {}), (2, {"class_weight": "balanced", "sampler": "balanced"})):
        bundle = sys.argv[1] + f"/b{devices}"
        outcome = train_tabular(
            train, val, transform=fitted, target="is_fraud", task="classification",
            config=TrainConfig(accelerator="cpu", devices=devices,
                               strategy="ddp_spawn" if devices > 1 else "auto",
                               max_epochs=4, learning_rate=0.01, hidden_sizes=(32,),
                               early_stopping_patience=0,
                               **settings),
            bundle_path=bundle,
        )
        proba = load_bundle(bundle).predict_raw(val.drop(columns=["is_fraud"]))
        out[devices] = {"mean_positive": float(proba[:, 1].mean()),
                        "world_size": outcome.description["training"]["world_size"],
                        "hyperparameters": outcome.description["hyperparameters"]}
    print(json.dumps(out))
"""


@pytest.mark.slow
def test_class_weight_and_sampler_under_ddp(tmp_path: Path) -> None:
    script = tmp_path / "ddp_imbalance.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    plain, balanced = got["1"], got["2"]
    assert balanced["world_size"] == 2
    assert balanced["hyperparameters"]["sampler"] == "balanced"
    # 2% positives: a plain model's mean P(positive) stays near that rate; the spawned
    # workers, trained on balanced draws with balanced weights, put it far above.
    assert plain["mean_positive"] < 0.15
    assert balanced["mean_positive"] > 0.4
