"""The LightningModule, DataModule and callbacks of tabular training."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from kfgpu.training.data import InMemoryBatches

__all__ = ["EpochPrinter", "TabularDataModule", "TabularTask"]


class TabularTask(pl.LightningModule):
    """Wraps a family network with its loss, optimiser and validation metrics."""

    network: nn.Module

    def __init__(
        self,
        network: nn.Module,
        *,
        task: str,
        learning_rate: float,
        weight_decay: float,
        max_epochs: int,
    ) -> None:
        super().__init__()
        self.network = network
        self.task = task
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self._val_sums: list[torch.Tensor] = []

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return self.network(numeric, codes)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(out.float(), y)
        return F.mse_loss(out.float().squeeze(1), y)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        numeric, codes, y = batch
        loss = self._loss(self(numeric, codes), y)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y)
        )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        numeric, codes, y = batch
        out = self(numeric, codes)
        loss = self._loss(out, y)
        self.log("val_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
        if self.task == "classification":
            acc = (out.argmax(dim=1) == y).float().mean()
            self.log(
                "val_accuracy",
                acc,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=len(y),
            )

    def on_train_epoch_end(self) -> None:
        # Reported as a metric so it reaches the launching process under every strategy.
        self.log("epochs_run", float(self.current_epoch + 1), sync_dist=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class TabularDataModule(pl.LightningDataModule):
    """Holds the encoded splits as tensors and shards them per rank."""

    def __init__(
        self,
        train: tuple[torch.Tensor, ...],
        val: tuple[torch.Tensor, ...],
        *,
        batch_size: int,
        seed: int,
        pin_memory: bool,
    ) -> None:
        super().__init__()
        self.train = train
        self.val = val
        self.batch_size = batch_size
        self.seed = seed
        self.pin_memory = pin_memory

    def _batches(self, tensors: tuple[torch.Tensor, ...], shuffle: bool) -> InMemoryBatches:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        return InMemoryBatches(
            tensors,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> InMemoryBatches:
        return self._batches(self.train, shuffle=True)

    def val_dataloader(self) -> InMemoryBatches:
        return self._batches(self.val, shuffle=False)


class EpochPrinter(pl.Callback):
    """One line per epoch on rank 0: progress that reads well in a KFP log."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, so train and validation figures are both fresh.
        if not trainer.is_global_zero:
            return
        metrics = " ".join(
            f"{k}={float(v):.4f}"
            for k, v in sorted(trainer.callback_metrics.items())
            if k != "epochs_run"
        )
        seconds = time.perf_counter() - self._t0
        print(
            f"epoch {trainer.current_epoch + 1}/{self.max_epochs} {metrics} ({seconds:.1f}s)",
            flush=True,
        )
