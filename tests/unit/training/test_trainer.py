"""Tests for kfgpu.training.trainer: train_tabular end to end on CPU, and its refusals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from kfgpu.bundle import WEIGHTS_FILE, load_bundle
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import ConfigError, TrainingError
from kfgpu.features.split import split_frame
from kfgpu.features.transform import FeatureSpec, FittedTransform, fit_transform, infer_feature_spec
from kfgpu.training.config import TrainConfig
from kfgpu.training.families import build_network
from kfgpu.training.trainer import TrainOutcome, encode_labels, resolve_accelerator, train_tabular

# pytorch-lightning's CombinedLoader calls torch's deprecated ``LeafSpec()`` on every fit.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
)

SMALL = {"max_epochs": 3, "hidden_sizes": (32,), "accelerator": "cpu", "batch_size": 256}


def _train(
    train: pd.DataFrame,
    val: pd.DataFrame,
    ft: FittedTransform,
    target: str,
    task: str,
    bundle: Path | None,
    *,
    callbacks: Sequence[pl.Callback] = (),
    **config: object,
) -> TrainOutcome:
    return train_tabular(
        train,
        val,
        transform=ft,
        target=target,
        task=task,
        config=TrainConfig(**{**SMALL, **config}),  # type: ignore[arg-type]
        bundle_path=bundle,
        mlflow_uri="",
        callbacks=callbacks,
    )


@pytest.fixture(scope="module")
def fraud_splits() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform]:
    train, val, test = split_frame(fraud(3_000, seed=2), LABEL_COLUMN, task="classification")
    return train, val, test, fit_transform(train, infer_feature_spec(train, LABEL_COLUMN))


@pytest.fixture(scope="module")
def classifier(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainOutcome:
    train, val, _, ft = fraud_splits
    bundle = tmp_path_factory.mktemp("clf") / "bundle"
    return _train(train, val, ft, LABEL_COLUMN, "classification", bundle)


def test_classification_writes_a_bundle(classifier: TrainOutcome) -> None:
    assert classifier.bundle_path is not None and classifier.bundle_path.is_dir()
    assert 1 <= classifier.epochs_run <= 3
    assert 1 <= classifier.best_epoch <= classifier.epochs_run
    assert np.isfinite(classifier.metrics["val_loss"])
    desc = classifier.description
    assert desc["task"] == "classification" and desc["target"] == LABEL_COLUMN
    assert desc["labels"]["classes"] == [0, 1]
    assert desc["labels"]["positive_class"] == 1
    assert desc["training"]["accelerator"] == "cpu"
    assert desc["hyperparameters"]["hidden_sizes"] == [32]
    assert desc["lineage"]["mlflow_tracking_uri"] is None


def test_loaded_bundle_matches_training_path(
    classifier: TrainOutcome,
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
) -> None:
    _, _, test, ft = fraud_splits
    assert classifier.bundle_path is not None
    bundle = load_bundle(classifier.bundle_path)
    assert bundle.classes == [0, 1] and bundle.task == "classification"
    features = test.drop(columns=[LABEL_COLUMN])
    proba = bundle.predict_raw(features)
    assert proba.shape == (len(test), 2)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)

    # What training ran: the NumPy transform, then the network with the saved weights.
    model = classifier.description["model"]
    network = build_network(model["family"], model["config"])
    network.load_state_dict(load_file(str(classifier.bundle_path / WEIGHTS_FILE)))
    network.eval()
    x, c = ft.transform(features)
    with torch.no_grad():
        expected = torch.softmax(network(torch.from_numpy(x), torch.from_numpy(c)), dim=1)
    np.testing.assert_allclose(proba, expected.numpy(), rtol=1e-5, atol=1e-6)

    pred = bundle.predict(features)
    assert list(pred.columns) == ["prediction", "proba_0", "proba_1"]
    assert pred.index.equals(features.index)
    # The label is the stored decision rule's: positive at or above the threshold that was
    # chosen on the validation rows (f1 by default), not the 0.5 of argmax.
    decision = classifier.description["decision"]
    assert decision["policy"] == "f1" and decision["chosen_on"] == "validation"
    expected_label = np.where(proba[:, 1].astype(np.float64) >= decision["threshold"], 1, 0)
    np.testing.assert_array_equal(pred["prediction"].to_numpy(), expected_label)


def test_regression_learns_a_linear_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3_000
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(5.0, 3.0, size=n),
            "g": rng.choice(["x", "y", "z"], size=n),
        }
    )
    effect = df["g"].map({"x": -2.0, "y": 0.0, "z": 2.0}).to_numpy()
    df["target"] = 100.0 + 4.0 * df["a"] - 1.5 * df["b"] + effect + rng.normal(0, 0.5, n)
    train, val, test = df.iloc[:2000], df.iloc[2000:2500], df.iloc[2500:]
    ft = fit_transform(train, FeatureSpec.from_dict({"numeric": ["a", "b"], "categorical": ["g"]}))
    out = _train(
        train, val, ft, "target", "regression", tmp_path / "reg", max_epochs=15, learning_rate=1e-2
    )
    assert out.description["target_scaling"]["mean"] == pytest.approx(train["target"].mean())
    assert out.bundle_path is not None
    bundle = load_bundle(out.bundle_path)
    pred = bundle.predict_raw(test.drop(columns=["target"]))
    assert pred.shape == (len(test),)
    y = test["target"].to_numpy()
    r2 = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 > 0.5, r2
    assert list(bundle.predict(test).columns) == ["prediction"]


def test_bf16_mixed_trains_on_cpu(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path: Path,
) -> None:
    train, val, test, ft = fraud_splits
    out = _train(
        train,
        val,
        ft,
        LABEL_COLUMN,
        "classification",
        tmp_path / "bf16",
        precision="bf16-mixed",
        max_epochs=2,
    )
    assert np.isfinite(out.metrics["val_loss"])
    assert out.bundle_path is not None
    proba = load_bundle(out.bundle_path).predict_raw(test.drop(columns=[LABEL_COLUMN]))
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


class LinearOutputDtypes(pl.Callback):
    """Records the dtype of the network's first Linear layer's output in training steps."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        linear = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Linear))

        def hook(module: torch.nn.Module, args: object, output: torch.Tensor) -> None:
            if pl_module.training:
                self.dtypes.append(output.dtype)

        self._handle = linear.register_forward_hook(hook)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)]
)
def test_precision_reaches_the_training_step(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    precision: str,
    dtype: torch.dtype,
) -> None:
    """bf16-mixed on CPU really trains under autocast: Linear layers compute in bfloat16."""
    train, val, _, ft = fraud_splits
    probe = LinearOutputDtypes()
    out = _train(
        train,
        val,
        ft,
        LABEL_COLUMN,
        "classification",
        None,
        callbacks=[probe],
        max_epochs=1,
        precision=precision,
    )
    assert len(probe.dtypes) == out.description["training"]["global_step"]  # one per step
    assert set(probe.dtypes) == {dtype}
    assert np.isfinite(out.metrics["val_loss"])


def test_checkpoint_dir_resumes_and_keeps_its_best(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process: a second run on a finished checkpoint_dir resumes and trains no more."""
    train, val, _, ft = fraud_splits
    ckpt = tmp_path / "ckpt"
    first = _train(
        train, val, ft, LABEL_COLUMN, "classification", tmp_path / "b1", checkpoint_dir=str(ckpt)
    )
    # The run's identity sits beside its checkpoints (see test_resume_identity.py).
    assert {p.name for p in ckpt.iterdir()} == {"last.ckpt", "best.ckpt", "run-identity.json"}
    assert "resumed from" not in capsys.readouterr().out
    again = _train(
        train, val, ft, LABEL_COLUMN, "classification", tmp_path / "b2", checkpoint_dir=str(ckpt)
    )
    assert f"resumed from {ckpt / 'last.ckpt'}: epoch 2 (0-based)" in capsys.readouterr().out
    assert (
        again.description["training"]["global_step"] == first.description["training"]["global_step"]
    )
    assert again.description["training"]["resumed_from"] == str(ckpt / "last.ckpt")
    assert again.best_epoch == first.best_epoch
    assert again.metrics["val_loss"] == first.metrics["val_loss"]


def test_no_bundle_path_writes_nothing(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, val, _, ft = fraud_splits
    monkeypatch.chdir(tmp_path)
    out = train_tabular(
        train,
        val,
        transform=ft,
        target=LABEL_COLUMN,
        task="classification",
        config=TrainConfig(**{**SMALL, "max_epochs": 1}),  # type: ignore[arg-type]
        bundle_path=None,
        mlflow_uri="",
    )
    assert out.bundle_path is None
    assert list(tmp_path.iterdir()) == []


def test_resolve_accelerator_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_accelerator(TrainConfig(accelerator="gpu"))
    with pytest.raises(ConfigError, match="16-mixed"):
        resolve_accelerator(TrainConfig(accelerator="cpu", precision="16-mixed"))
    with pytest.raises(ConfigError, match="16-mixed"):
        resolve_accelerator(TrainConfig(accelerator="auto", precision="16-mixed"))
    assert resolve_accelerator(TrainConfig(accelerator="auto")) == "cpu"
    assert resolve_accelerator(TrainConfig(accelerator="cpu", precision="bf16-mixed")) == "cpu"


def test_train_tabular_refuses_before_training(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, val, _, ft = fraud_splits
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="accelerator='gpu'"):
        _train(train, val, ft, LABEL_COLUMN, "classification", tmp_path / "b", accelerator="gpu")
    with pytest.raises(ConfigError, match="task="):
        _train(train, val, ft, LABEL_COLUMN, "ranking", tmp_path / "b")
    one_class = train[train[LABEL_COLUMN] == 0]
    with pytest.raises(TrainingError, match="single class"):
        _train(one_class, val, ft, LABEL_COLUMN, "classification", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_encode_labels() -> None:
    labels, encode = encode_labels(
        pd.Series(["b", "a", "b", "b"]), [pd.Series(["a"])], task="classification"
    )
    assert labels["classes"] == ["a", "b"]
    assert labels["positive_class"] == "a"  # the minority class
    assert encode(pd.Series(["b", "a"])).tolist() == [1, 0]
    with pytest.raises(TrainingError, match="'c'"):
        encode_labels(pd.Series(["a", "b"]), [pd.Series(["c"])], task="classification")
    reg, encode_reg = encode_labels(pd.Series([1.0, 3.0]), [], task="regression")
    assert reg == {"target_mean": 2.0, "target_scale": 1.0}
    assert encode_reg(pd.Series([2.0, 4.0])).tolist() == [0.0, 2.0]


def test_run_report_has_throughput_step_time_and_stall(classifier: TrainOutcome) -> None:
    report = classifier.description["training"]["report"]
    assert set(report) == {"throughput_samples_per_s", "step_time_ms", "data_stall_fraction"}
    train_rows = classifier.description["training"]["train_rows"]
    # Measured figures: their size depends on the machine's load (bench/ measures them), so
    # only that they were measured.
    assert 0 < report["throughput_samples_per_s"] < float("inf")
    assert 0 < report["step_time_ms"] < float("inf")
    assert 0.0 <= report["data_stall_fraction"] < 1.0
    assert train_rows > 0


def test_gradient_accumulation_steps_once_per_group_of_batches(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path: Path,
) -> None:
    train, val, _, ft = fraud_splits
    common = {"max_epochs": 2, "early_stopping_patience": 0, "lr_schedule": "onecycle"}
    one = _train(train, val, ft, LABEL_COLUMN, "classification", tmp_path / "a", **common)
    three = _train(
        train,
        val,
        ft,
        LABEL_COLUMN,
        "classification",
        tmp_path / "b",
        accumulate_grad_batches=3,
        **common,
    )
    batches_per_epoch = one.description["training"]["global_step"] // 2
    assert three.description["training"]["global_step"] == 2 * -(-batches_per_epoch // 3)
    assert three.description["hyperparameters"]["accumulate_grad_batches"] == 3
    assert np.isfinite(three.metrics["val_loss"])


class StepRecorder(pl.Callback):
    """Gradient norms after each optimiser step and the learning rate at each epoch start."""

    def __init__(self) -> None:
        self.grad_norms: list[float] = []
        self.epoch_lrs: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        # The step has run; the gradients it used stay until the next group's first batch.
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.grad_norms.append(
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
        )


def _recorded(
    splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform], **config: object
) -> tuple[StepRecorder, TrainOutcome]:
    train, val, _, ft = splits
    recorder = StepRecorder()
    out = _train(
        train,
        val,
        ft,
        LABEL_COLUMN,
        "classification",
        None,
        callbacks=[recorder],
        **{"early_stopping_patience": 0, **config},
    )
    return recorder, out


def test_gradient_clipping_bounds_every_step_norm(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
) -> None:
    free, _ = _recorded(fraud_splits, max_epochs=1)
    clip = 0.5 * float(np.median(free.grad_norms))  # half the unclipped steps' norm
    clipped, out = _recorded(fraud_splits, max_epochs=1, gradient_clip_val=clip)
    assert max(free.grad_norms) > clip  # the bound below is not met by itself
    assert len(clipped.grad_norms) == out.description["training"]["global_step"]
    assert max(clipped.grad_norms) <= clip * (1 + 1e-5)


def test_cosine_schedule_steps_once_per_epoch(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
) -> None:
    import math

    lr, epochs = 0.004, 4
    recorder, _ = _recorded(fraud_splits, max_epochs=epochs, learning_rate=lr, lr_schedule="cosine")
    expected = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert recorder.epoch_lrs == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_other_schedules_train(
    fraud_splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FittedTransform],
    tmp_path: Path,
    schedule: str,
) -> None:
    train, val, _, ft = fraud_splits
    out = _train(
        train, val, ft, LABEL_COLUMN, "classification", tmp_path / "b", lr_schedule=schedule
    )
    assert out.description["hyperparameters"]["lr_schedule"] == schedule
    assert np.isfinite(out.metrics["val_loss"])


def test_fsdp_on_cpu_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"strategy='fsdp' needs CUDA GPUs.*'ddp'"):
        resolve_accelerator(TrainConfig(strategy="fsdp", accelerator="cpu"))
