"""The small CNN family on a real image dataset that ships in scikit-learn (digits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kfgpu.bundle import load_bundle
from kfgpu.data import read_table
from kfgpu.errors import ConfigError
from kfgpu.features import fit_transform, infer_feature_spec, split_frame
from kfgpu.training.config import TrainConfig
from kfgpu.training.families import build_network, small_cnn_config
from kfgpu.training.trainer import train_tabular


def test_digits_builtin_is_8x8_images() -> None:
    df = read_table("kfgpu://digits")
    assert df.shape == (1797, 65)
    assert sorted(df["digit"].unique().tolist()) == list(range(10))
    assert df["pixel_63"].between(0, 16).all()


def test_pixels_are_placed_by_name_and_dropped_ones_stay_empty() -> None:
    cfg = small_cnn_config(
        dense_names=("pixel_1", "pixel_9", "age", "pixel_63"),
        cardinalities=(),
        hidden_sizes=(8,),
        dropout=0.0,
        n_outputs=2,
    )
    assert cfg["image_shape"] == [1, 8, 8]
    assert cfg["pixel_index"] == [1, 9, -1, 63]
    net = build_network("small_cnn", cfg)
    seen: dict[str, torch.Tensor] = {}
    net.features.register_forward_hook(lambda m, inp, out: seen.update(image=inp[0]))
    numeric = torch.tensor([[1.0, 2.0, 5.0, 3.0]])
    net(numeric, torch.zeros((1, 0), dtype=torch.long))
    image = seen["image"][0, 0]
    assert image[0, 1] == 1.0 and image[1, 1] == 2.0 and image[7, 7] == 3.0
    assert float(image.abs().sum()) == 6.0  # "age" is not a pixel; pixel 0 stays 0


def test_small_cnn_needs_pixel_features() -> None:
    with pytest.raises(ConfigError, match="pixel features"):
        small_cnn_config(
            dense_names=("amount", "age"),
            cardinalities=(),
            hidden_sizes=(8,),
            dropout=0.0,
            n_outputs=2,
        )
    with pytest.raises(ConfigError, match="model_family"):
        TrainConfig(model_family="resnet152")


def test_small_cnn_learns_digits(tmp_path: Path) -> None:
    df = read_table("kfgpu://digits")
    train, val, test = split_frame(df, "digit", task="classification", seed=0)
    fitted = fit_transform(train, infer_feature_spec(train, "digit"))
    outcome = train_tabular(
        train,
        val,
        transform=fitted,
        target="digit",
        task="classification",
        config=TrainConfig(
            model_family="small_cnn",
            accelerator="cpu",
            max_epochs=20,
            hidden_sizes=(64,),
            learning_rate=3e-3,
        ),
        bundle_path=tmp_path / "bundle",
    )
    assert outcome.description["model"]["family"] == "small_cnn"
    bundle = load_bundle(tmp_path / "bundle")
    pred = bundle.predict(test.drop(columns=["digit"]))["prediction"].to_numpy()
    accuracy = float(np.mean(pred == test["digit"].to_numpy()))
    # Ten balanced classes: a constant predictor scores about 0.1.
    assert accuracy > 0.9
