"""Tests for kfgpu.training.config: TrainConfig validation and parsing."""

from __future__ import annotations

import pytest

from kfgpu.errors import ConfigError
from kfgpu.training.config import TrainConfig, parse_int_list


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("precision", "16"),
        ("precision", "fp8"),
        ("accelerator", "tpu"),
        ("strategy", "deepspeed"),
        ("max_epochs", 0),
        ("batch_size", 0),
        ("batch_size", -32),
        ("learning_rate", 0.0),
        ("learning_rate", float("inf")),
        ("learning_rate", float("nan")),
        ("weight_decay", -1e-4),
        ("weight_decay", float("nan")),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("dropout", float("nan")),
        ("devices", -2),
        ("early_stopping_patience", -1),
        ("gradient_clip_val", -0.5),
        ("gradient_clip_val", float("nan")),
        ("hidden_sizes", ()),
        ("hidden_sizes", (64, 0)),
        ("checkpoint_every_n_steps", -1),
        ("checkpoint_every_n_steps", 2.5),
        ("checkpoint_every_n_steps", True),
        ("checkpoint_every_n_steps", 10),  # without a checkpoint_dir
        ("checkpoint_dir", None),
        ("checkpoint_dir", "s3://bucket/run/ckpt"),
        ("accumulate_grad_batches", 0),
        ("accumulate_grad_batches", 1.5),
        ("accumulate_grad_batches", True),
        ("lr_schedule", "exponential"),
        ("datamodule", "my_data.Module"),
    ],
)
def test_invalid_setting_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}=") as info:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("precision", "bf16-mixed"),
        ("precision", "16-mixed"),
        ("accelerator", "cpu"),
        ("strategy", "ddp"),
        ("strategy", "fsdp"),
        ("accumulate_grad_batches", 4),
        ("lr_schedule", "onecycle"),
        ("lr_schedule", "plateau"),
        ("lr_schedule", "constant"),
        ("datamodule", "my_pkg.data:Balanced"),
        ("devices", -1),
        ("devices", 0),  # no GPU: one CPU process (the training pipeline's gpus=0)
        ("dropout", 0.0),
        ("early_stopping_patience", 0),
        ("gradient_clip_val", 0.0),
        ("hidden_sizes", (1,)),
        ("checkpoint_dir", "/mnt/run/ckpt"),
        ("checkpoint_every_n_steps", 0),
    ],
)
def test_valid_edge_values_are_accepted(field: str, value: object) -> None:
    assert getattr(TrainConfig(**{field: value}), field) == value  # type: ignore[arg-type]


def test_from_dict_parses_hidden_sizes_string() -> None:
    cfg = TrainConfig.from_dict({"hidden_sizes": "128, 64", "max_epochs": 3})
    assert cfg.hidden_sizes == (128, 64)
    assert cfg.max_epochs == 3
    assert TrainConfig.from_dict({"hidden_sizes": [32]}).hidden_sizes == (32,)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="epochs_max"):
        TrainConfig.from_dict({"epochs_max": 3, "batch_size": 64})


def test_from_dict_bad_hidden_sizes_names_field() -> None:
    with pytest.raises(ConfigError, match="hidden_sizes"):
        TrainConfig.from_dict({"hidden_sizes": "128,wide"})
    with pytest.raises(ConfigError, match="hidden_sizes"):
        TrainConfig.from_dict({"hidden_sizes": " , "})


def test_to_dict_round_trip() -> None:
    cfg = TrainConfig(hidden_sizes=(16, 8), precision="bf16-mixed", seed=5, dropout=0.2)
    d = cfg.to_dict()
    assert d["hidden_sizes"] == [16, 8]
    assert TrainConfig.from_dict(d) == cfg


def test_parse_int_list() -> None:
    assert parse_int_list("256,128", field="h") == (256, 128)
    assert parse_int_list((4, 2), field="h") == (4, 2)
    with pytest.raises(ConfigError, match=r"^widths="):
        parse_int_list("a,b", field="widths")


def test_checkpoint_settings() -> None:
    cfg = TrainConfig.from_dict({"checkpoint_dir": "/x", "checkpoint_every_n_steps": 50.0})
    assert cfg.checkpoint_every_n_steps == 50 and isinstance(cfg.checkpoint_every_n_steps, int)
    assert TrainConfig().checkpoint_dir == "" and TrainConfig().checkpoint_every_n_steps == 0
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="set checkpoint_dir"):
        TrainConfig(checkpoint_every_n_steps=5)
