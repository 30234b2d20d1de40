"""The LightningModule, DataModule and callbacks of tabular training."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint
from pytorch_lightning.strategies import ParallelStrategy
from torch import nn
from torch.nn import functional as F

from kfgpu.errors import ConfigError
from kfgpu.training.data import EpochBatches, make_batches
from kfgpu.training.lightning_internals import (
    CachedStepKwargs,
    PlainStepAttributes,
    QuietProfiler,
    StateKeyOnce,
    check_launcher,
    launched_pids,
)
from kfgpu.training.optim import Schedule, make_optimizer, make_schedule, optimizer_steps
from kfgpu.training.report import REPORT_KEYS, StepClock, local_step_seconds
from kfgpu.training.streaming import ShardedSplit

__all__ = [
    "BestCheckpoint",
    "CachedStepKwargs",
    "Preempted",
    "QuietProfiler",
    "RunCheckpoint",
    "RunMonitor",
    "StopEarly",
    "StopVote",
    "TabularDataModule",
    "TabularTask",
]


class TabularTask(PlainStepAttributes, pl.LightningModule):
    """Wraps a family network with its loss, optimiser and validation metrics.

    The task runs its own optimiser steps (Lightning's manual optimisation): each training
    step is forward, ``manual_backward`` and, on the last batch of each accumulation group,
    ``opt.step()``, the same calls a hand-written loop makes. Lightning's automatic
    optimisation wraps every step in a closure, a zero-grad hook round and a clipping hook
    round; on CPU that cost 3% of a 7.6 ms step in bench/training.py's setting. Everything
    the Trainer did for automatic optimisation is done here, to the same rules:

    * ``accumulate_grad_batches``: the loss is divided by the group size, gradients are
      zeroed on a group's first batch, the step is taken on its last batch or the epoch's
      last batch; under DDP the batches that only accumulate skip the allreduce
      (``no_sync``, entered before the forward, in ``on_train_batch_start``).
    * ``gradient_clip_val``: the gradient norm is clipped in ``on_before_optimizer_step``,
      after a 16-mixed loss scale has been taken off the gradients.
    * Learning-rate schedules: step schedules after each optimiser step; epoch and plateau
      schedules at the epoch's end, after its validation and before the epoch-end
      checkpoint, so a resumed run continues with the learning rate it would have had.

    Precision, DDP, FSDP and checkpointing stay Lightning's: ``manual_backward`` scales the
    loss, ``opt.step()`` unscales, steps and counts the global step.
    """

    network: nn.Module

    #: Set on every step, never registered: Lightning's hook name and the running loss sum
    #: (see :class:`~kfgpu.training.lightning_internals.PlainStepAttributes`).
    plain_attributes = PlainStepAttributes.plain_attributes | {"_loss_sum", "_loss_rows"}

    def __init__(
        self,
        network: nn.Module,
        *,
        task: str,
        learning_rate: float,
        weight_decay: float,
        max_epochs: int,
        lr_schedule: str = "cosine",
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float = 0.0,
        class_weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        # Not persistent: it follows the module to its device and is rebuilt from the
        # config, so checkpoints stay the same with and without it.
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.network = network
        self.task = task
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self._schedule: Schedule | None = None
        self._no_sync = contextlib.ExitStack()
        self._loss_sum = torch.zeros(())
        self._loss_rows = 0
        self._val_sums = torch.zeros(3)

    def setup(self, stage: str) -> None:
        # Several CPU processes on one machine each default to every core's worth of
        # intra-op threads: oversubscribed, they run slower together than one alone.
        trainer = self.trainer
        if trainer.world_size > 1 and self.device.type == "cpu":
            local = max(1, int(getattr(trainer, "num_devices", 1)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return self.network(numeric, codes)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            weight: torch.Tensor | None = self.class_weight  # type: ignore[assignment]
            return F.cross_entropy(out.float(), y, weight=weight)
        return F.mse_loss(out.float().squeeze(1), y)

    def batch_loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The training loss of one batch (forward only)."""
        numeric, codes, y = batch
        return self._loss(self(numeric, codes), y)

    def _steps_on(self, batch_idx: int) -> bool:
        """Whether the optimiser steps after this batch: a group's or the epoch's last.

        The epoch's last batch by count or, for a loader without a length, as Lightning's
        prefetching fetcher finds it (its own rule for closing an accumulation group).
        """
        if (batch_idx + 1) % self.accumulate_grad_batches == 0:
            return True
        trainer = self.trainer
        return batch_idx + 1 >= trainer.num_training_batches or bool(
            trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.accumulate_grad_batches > 1 and not self._steps_on(batch_idx):
            strategy = self.trainer.strategy
            if isinstance(strategy, ParallelStrategy):
                # DDP decides at the forward whether the backward allreduces.
                self._no_sync.enter_context(strategy.block_backward_sync())

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._no_sync.close()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        opt: Any = self.optimizers()
        group = self.accumulate_grad_batches
        if batch_idx % group == 0:
            opt.zero_grad()
        self.manual_backward(loss / group if group > 1 else loss)
        if self._steps_on(batch_idx):
            opt.step()
            if self._schedule is not None:
                self._schedule.after_step()
        # Summed here and logged once per epoch: Lightning's per-step logging machinery
        # costs more than a small model's step (the raw-loop benchmark in bench/ shows it).
        rows = len(batch[-1])
        self._loss_sum.add_(loss.detach(), alpha=rows)  # one in-place op a step
        self._loss_rows += rows
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # After a 16-mixed loss scale has been taken off the gradients.
        if self.gradient_clip_val <= 0:
            return
        from torch.distributed.fsdp import FullyShardedDataParallel

        root = self.trainer.strategy.model
        if isinstance(root, FullyShardedDataParallel):
            # Each rank holds a shard: the root module computes the norm over all of them
            # (Lightning's own clipping refuses FSDP).
            root.clip_grad_norm_(self.gradient_clip_val)
        else:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def on_validation_epoch_start(self) -> None:
        # Loss sum, correct predictions and rows, summed on the device and logged once at
        # the epoch's end: two self.log calls a batch cost more than the batch's forward.
        self._val_sums = torch.zeros(3, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        numeric, codes, y = batch
        out = self(numeric, codes)
        loss = self._loss(out, y).detach()
        if self.task == "classification":
            correct = (out.argmax(dim=1) == y).sum().float()
        else:
            correct = loss.new_zeros(())
        rows = loss.new_tensor(float(len(y)))
        self._val_sums.add_(torch.stack((loss.float() * rows, correct, rows)))

    def on_validation_epoch_end(self) -> None:
        # Summed over every rank: the figures are the exact means over all validation rows.
        sums = self._val_sums
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums.clone(), reduce_op="sum")
        loss_sum, correct, rows = sums.unbind()
        if rows <= 0:
            return
        self.log("val_loss", loss_sum / rows, sync_dist=True)
        if self.task == "classification":
            self.log("val_accuracy", correct / rows, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_rows = 0

    def on_train_epoch_end(self) -> None:
        # After this epoch's validation; before the epoch-end checkpoint (callbacks follow).
        if self._schedule is not None:
            val_loss = self.trainer.callback_metrics.get("val_loss")
            self._schedule.after_epoch(float(val_loss) if val_loss is not None else None)
        if self._loss_rows:
            self.log("train_loss", self._loss_sum / self._loss_rows, sync_dist=True)
        # Reported as metrics so they reach the launching process under every strategy.
        self.log("epochs_run", float(self.current_epoch + 1), sync_dist=True)
        self.log("steps_run", float(self.global_step), sync_dist=True)

    def configure_optimizers(self) -> Any:
        # A fused AdamW unscales 16-mixed gradients inside its own step, too late for
        # clipping them; Lightning refuses to clip it, so clipping runs take the plain one.
        clip_scaled = self.gradient_clip_val > 0 and self.trainer.precision == "16-mixed"
        opt = make_optimizer(
            self.parameters(),
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            fused=False if clip_scaled else None,
        )
        # Only one-cycle needs the run's length: asking sets up the data loaders early.
        total_steps = 0
        if self.lr_schedule == "onecycle":
            self.trainer.estimated_stepping_batches  # noqa: B018 (sets up the loaders)
            batches = self.trainer.num_training_batches
            if not math.isfinite(batches):
                raise ConfigError(
                    "lr_schedule='onecycle' needs the run's length in steps, but the training "
                    "loader has no length; use lr_schedule='cosine', or give the "
                    "DataModule's train loader a __len__"
                )
            total_steps = optimizer_steps(
                int(batches), self.accumulate_grad_batches, self.max_epochs
            )
        self._schedule = make_schedule(
            opt, self.lr_schedule, max_epochs=self.max_epochs, total_steps=total_steps
        )
        if self._schedule is None:
            return opt
        # Stepped by this task (manual optimisation); given to Lightning to checkpoint.
        interval = "step" if self._schedule.interval == "step" else "epoch"
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": self._schedule.scheduler, "interval": interval},
        }


class BestCheckpoint(StateKeyOnce, ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, for the best epoch's weights."""


class StopEarly(StateKeyOnce, EarlyStopping):
    """Lightning's ``EarlyStopping``."""


class TabularDataModule(pl.LightningDataModule):
    """Holds the encoded splits as tensors and shards them per rank; a split given as a
    :class:`~kfgpu.training.streaming.ShardedSplit` is streamed per rank instead."""

    def __init__(
        self,
        train: tuple[torch.Tensor, ...] | ShardedSplit,
        val: tuple[torch.Tensor, ...] | ShardedSplit,
        *,
        batch_size: int,
        seed: int,
        pin_memory: bool,
        sample_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.sample_weights = sample_weights
        self.train = train
        self.val = val
        self.batch_size = batch_size
        self.seed = seed
        self.pin_memory = pin_memory

    def _batches(
        self,
        tensors: tuple[torch.Tensor, ...] | ShardedSplit,
        shuffle: bool,
        weights: torch.Tensor | None = None,
    ) -> EpochBatches:
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        return make_batches(
            tensors,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world,
            pin_memory=self.pin_memory,
            weights=weights,
            device=trainer.strategy.root_device if trainer is not None else None,
        )

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # The batch is a flat tuple of tensors: move each directly (non-blocking from
        # pinned memory on GPU) instead of Lightning's generic walk over any collection,
        # which costs more per step than a small model's forward on CPU.
        if all(t.device == device for t in batch):
            return batch
        return tuple(t.to(device, non_blocking=True) for t in batch)

    def train_dataloader(self) -> EpochBatches:
        return self._batches(self.train, shuffle=True, weights=self.sample_weights)

    def val_dataloader(self) -> EpochBatches:
        return self._batches(self.val, shuffle=False)


class RunMonitor(pl.Callback):
    """kfgpu's own bookkeeping of a fit, as one callback.

    * Data order: sets the epoch of in-memory batches from the trainer's epoch at each
      epoch start. The order follows the trainer's epoch (seed + epoch), not the loader's
      own count of iterations, so a run resumed from a checkpoint sees the same batches.
    * Progress: one line per epoch on rank 0, after the epoch's validation, that reads well
      in a KFP log.
    * The run report (:mod:`kfgpu.training.report`): samples/s, step time, the data-stall
      fraction and, under DDP with 2+ workers, the scaling efficiency. The training loop's
      time runs from each epoch's start to its last batch's end (validation excluded).
      Logged as metrics so they reach MLflow and, through ``callback_metrics``, the
      launching process under every strategy; the scaling efficiency is measured once
      training ends and put in ``callback_metrics`` only.

    One callback, not three: Lightning calls every callback on every hook of every step.
    """

    KEYS = REPORT_KEYS

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self.clock = StepClock()
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed mid-epoch starts without on_train_epoch_start.
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, EpochBatches):
            loader.set_epoch(trainer.current_epoch)
        self._t0 = time.perf_counter()
        self.clock.epoch_start()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.clock.batch_start()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.clock.batch_end(len(batch[-1]))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.clock.epoch_end()
        for key, value in self.clock.figures(trainer.world_size).items():
            # Averaged over the ranks (each measures its own loop; all have the same steps).
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=True)
        # After the epoch's validation: train and validation figures are both fresh.
        if not trainer.is_global_zero:
            return
        metrics = " ".join(
            f"{k}={float(v):.4f}"
            for k, v in sorted(trainer.callback_metrics.items())
            if k not in ("epochs_run", "steps_run", *self.KEYS)
        )
        seconds = time.perf_counter() - self._t0
        print(
            f"epoch {trainer.current_epoch + 1}/{self.max_epochs} {metrics} ({seconds:.1f}s)",
            flush=True,
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from pytorch_lightning.strategies import DDPStrategy

        if trainer.world_size < 2 or not isinstance(trainer.strategy, DDPStrategy):
            return  # one worker; or FSDP, whose forward is itself a collective
        if self.clock.steps == 0:
            return
        batch_loss = getattr(pl_module, "batch_loss", None)
        if batch_loss is None and not pl_module.automatic_optimization:
            return  # a user's manual training_step steps its optimiser: not timed alone
        local = torch.zeros((), device=pl_module.device)
        try:
            loader: Any = trainer.train_dataloader
            batch = trainer.strategy.batch_to_device(next(iter(loader)))

            def loss() -> torch.Tensor:
                with trainer.precision_plugin.forward_context():
                    if batch_loss is not None:
                        return batch_loss(batch)
                    out: Any = pl_module.training_step(batch, 0)
                return out["loss"] if isinstance(out, dict) else out

            cuda = pl_module.device.type == "cuda"
            local += local_step_seconds(
                loss,
                list(pl_module.parameters()),
                synchronize=torch.cuda.synchronize if cuda else lambda: None,
            )
        except Exception as e:  # a report figure must not fail a finished run
            print(f"scaling efficiency not measured: {e}", flush=True)
            local.fill_(float("nan"))
        # Every rank takes part in the mean (a NaN on any rank makes it NaN: not reported).
        mean_local = float(trainer.strategy.reduce(local, reduce_op="mean"))
        if mean_local == mean_local and self.clock.compute_s_per_step > 0:
            trainer.callback_metrics["scaling_efficiency"] = torch.tensor(
                mean_local / self.clock.compute_s_per_step
            )


class Preempted(Exception):
    """Training stopped on SIGTERM at ``global_step``, after saving ``last.ckpt`` at
    ``path`` (None: the run has no checkpoint directory and saved nothing)."""

    def __init__(self, global_step: int, path: str | None) -> None:
        if path:
            what = f"checkpoint saved at step {global_step} ({path})"
        else:
            what = f"stopped at step {global_step}, nothing saved (no checkpoint directory)"
        super().__init__(f"preempted: {what}")
        self.global_step = global_step
        self.path = path


class StopVote:
    """All ranks agree on a stop request at the same step, without a GPU synchronisation.

    Every step each rank adds its own flag to an asynchronous all-reduce (MAX) on a CPU
    (gloo) group and reads the previous step's result, which has had a whole step to arrive:
    all ranks see the same answer at the same step, one step after the request. Lightning's
    own per-step agreement (2.6) broadcasts a flag on the training device and reads it back
    with ``.item()``: on GPUs a host synchronisation every step, which stops the CPU from
    queueing the next step's kernels ahead (Lightning-AI/pytorch-lightning#21487).
    :meth:`settle` is the blocking form, for epoch ends.
    """

    def __init__(self) -> None:
        self._group: Any = None
        self._active = False
        self._pending: Any = None
        self._vote = torch.zeros(1, dtype=torch.int32)

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles callbacks into its workers; groups and requests stay behind.
        return {**self.__dict__, "_group": None, "_active": False, "_pending": None}

    def setup(self, world_size: int) -> None:
        """Call on every rank at the same point (it may create a process group)."""
        import torch.distributed as dist

        self._active = world_size > 1 and dist.is_available() and dist.is_initialized()
        if self._active and dist.get_backend() != "gloo":
            self._group = dist.new_group(backend="gloo")

    def _collect(self) -> bool:
        if self._pending is None:
            return False
        self._pending.wait()
        self._pending = None
        return bool(self._vote.item())

    def poll(self, local: bool) -> bool:
        """The agreed answer of the previous poll; this rank's ``local`` flag is sent on."""
        if not self._active:
            return local
        import torch.distributed as dist

        agreed = self._collect()
        self._vote = torch.tensor([int(local)], dtype=torch.int32)
        self._pending = dist.all_reduce(
            self._vote, op=dist.ReduceOp.MAX, group=self._group, async_op=True
        )
        return agreed

    def settle(self, local: bool) -> bool:
        """Every rank's request so far, waited for."""
        if not self._active:
            return local
        import torch.distributed as dist

        agreed = self._collect()
        vote = torch.tensor([int(local)], dtype=torch.int32)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=self._group)
        return agreed or bool(vote.item())


class RunCheckpoint(Checkpoint):
    """Full-state ``last.ckpt`` at epoch ends and every ``every_n_steps`` steps; stop on SIGTERM.

    The file is written beside itself and renamed over ``last.ckpt``, so it is always a whole
    checkpoint. The epoch-end save runs at ``on_train_epoch_end``, after the epoch's
    validation and after the best-weights ``ModelCheckpoint`` and ``EarlyStopping`` have
    updated their state there (monitoring callbacks run last, checkpoint callbacks last of
    all, in list order: list this one after the ``ModelCheckpoint``), so that state resumes.
    With ``dirpath`` None nothing is saved, and SIGTERM still stops the run cleanly.

    SIGTERM (a pod's preemption notice) only sets a flag. At a step boundary the run saves
    ``last.ckpt`` and raises :class:`Preempted`; when the signal lands in an epoch's last
    steps or its validation, the boundary is the epoch end, after validation, so a resumed
    run never restarts half-way through an epoch's validation. Under several processes the
    ranks agree through a :class:`StopVote` (one step after the signal, without a GPU
    synchronisation), so all stop on the same step. Lightning's own SIGTERM handling (2.6)
    saves nothing: it raises ``SIGTERMException`` at the next batch end, or mid-validation,
    so this handler replaces it during ``fit``.
    """

    def __init__(self, dirpath: str | os.PathLike[str] | None, every_n_steps: int = 0) -> None:
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.every_n_steps = every_n_steps
        self.signalled = False
        self.saved_step = -1
        self.vote = StopVote()
        self._trainer: pl.Trainer | None = None

    @property
    def last_path(self) -> Path | None:
        """``last.ckpt`` in the directory; None without one."""
        return self.dirpath / "last.ckpt" if self.dirpath is not None else None

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles callbacks into its workers; the trainer does not travel.
        state = self.__dict__.copy()
        state["_trainer"] = None
        return state

    def handle_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """The SIGTERM handler: note the request and pass it on to training processes."""
        self.signalled = True
        what = "saving a checkpoint" if self.dirpath is not None else "stopping"
        print(f"SIGTERM received: {what} at the next step boundary", flush=True)
        pids = {p.pid for p in multiprocessing.active_children() if p.pid is not None}
        launcher = self._trainer.strategy.launcher if self._trainer is not None else None
        pids |= launched_pids(launcher)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def state_dict(self) -> dict[str, Any]:
        # Lightning's checkpoint leaves out the random state that dropout draws from; without
        # it a resumed run drops other units than the uninterrupted one. (Rank 0's state: under
        # several processes every rank resumes with it.)
        state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch_rng" in state_dict:
            torch.set_rng_state(state_dict["torch_rng"])
        if "cuda_rng" in state_dict and torch.cuda.is_available():
            states = state_dict["cuda_rng"]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_launcher(trainer.strategy.launcher)
        self._trainer = trainer
        self.vote.setup(trainer.world_size)
        # Lightning registers its own SIGTERM handler when fit starts; this one replaces it
        # until fit ends, when Lightning restores the handler that was there before fit.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle_sigterm)
        if trainer.received_sigterm:
            # Landed on Lightning's handler while fit was setting up: ours takes it over.
            self.signalled = True

    def save(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` whole (beside itself, then renamed); nothing without a directory."""
        if self.dirpath is None:
            return
        partial = self.dirpath / f".last.ckpt.partial-{os.getpid()}"
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.dirpath / "last.ckpt")
        trainer.strategy.barrier("RunCheckpoint.save")
        self.saved_step = trainer.global_step

    def _preempted(self, trainer: pl.Trainer) -> Preempted:
        path = self.last_path if self.saved_step == trainer.global_step else None
        return Preempted(trainer.global_step, str(path) if path is not None else None)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch-end save follows this epoch's validation and bookkeeping
        stop = self.vote.poll(self.signalled)
        if stop or (self.every_n_steps and trainer.global_step % self.every_n_steps == 0):
            self.save(trainer)
        if stop:
            raise self._preempted(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)
        if self.vote.settle(self.signalled):
            raise self._preempted(trainer)
