"""The LightningModule, DataModule and callbacks of tabular training."""

from __future__ import annotations

import contextlib
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
from pytorch_lightning.callbacks import Checkpoint
from torch import nn
from torch.nn import functional as F

from kfgpu.training.data import InMemoryBatches
from kfgpu.training.optim import make_optimizer, make_schedule
from kfgpu.training.report import REPORT_KEYS, StepClock, local_step_seconds

__all__ = [
    "CachedStepKwargs",
    "DataOrder",
    "EpochPrinter",
    "Preempted",
    "RunCheckpoint",
    "TabularDataModule",
    "TabularTask",
    "Throughput",
]


#: Attributes set on the module on every step that are never parameters, buffers or
#: submodules: Lightning records the running hook's name around each of ~40 hook calls
#: per step, and the task keeps its running loss sum.
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_loss_sum", "_loss_rows"})


class TabularTask(pl.LightningModule):
    """Wraps a family network with its loss, optimiser and validation metrics."""

    network: nn.Module

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module.__setattr__ checks every value against parameters, buffers and
        # submodules; for the per-step bookkeeping above that costs ~0.25 ms a step on CPU
        # (40% of Lightning's whole per-step overhead, measured in bench/training.py's
        # setting), and those names are never registered, so the plain setattr is the
        # same operation.
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __init__(
        self,
        network: nn.Module,
        *,
        task: str,
        learning_rate: float,
        weight_decay: float,
        max_epochs: int,
        lr_schedule: str = "cosine",
    ) -> None:
        super().__init__()
        self.network = network
        self.task = task
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self._loss_sum = torch.zeros(())
        self._loss_rows = 0
        self._val_sums: list[torch.Tensor] = []

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
            return F.cross_entropy(out.float(), y)
        return F.mse_loss(out.float().squeeze(1), y)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        numeric, codes, y = batch
        loss = self._loss(self(numeric, codes), y)
        # Summed here and logged once per epoch: Lightning's per-step logging machinery
        # costs more than a small model's step (the raw-loop benchmark in bench/ shows it).
        self._loss_sum.add_(loss.detach(), alpha=len(y))  # one in-place op a step
        self._loss_rows += len(y)
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

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_rows = 0

    def on_train_epoch_end(self) -> None:
        if self._loss_rows:
            self.log("train_loss", self._loss_sum / self._loss_rows, sync_dist=True)
        # Reported as metrics so they reach the launching process under every strategy.
        self.log("epochs_run", float(self.current_epoch + 1), sync_dist=True)
        self.log("steps_run", float(self.global_step), sync_dist=True)

    def configure_optimizers(self) -> Any:
        opt = make_optimizer(
            self.parameters(), learning_rate=self.learning_rate, weight_decay=self.weight_decay
        )
        # Only one-cycle needs the run's length: asking sets up the data loaders early.
        total_steps = (
            int(self.trainer.estimated_stepping_batches) if self.lr_schedule == "onecycle" else 0
        )
        schedule = make_schedule(
            opt, self.lr_schedule, max_epochs=self.max_epochs, total_steps=total_steps
        )
        if schedule is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": schedule.lightning()}


class CachedStepKwargs:
    """Lightning 2.x inspects ``training_step``'s signature on every step (does it take
    ``batch_idx``?), about 25 us a step of ``inspect`` work on CPU; the answer does not change
    during a fit, so it is looked up once per ``training_step`` function. Installed on one
    trainer's epoch loop (:func:`cache_step_signature`), not on Lightning's class; a class,
    not a closure, so a ``ddp_spawn`` trainer still pickles."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer
        self.takes_batch_idx: dict[Any, bool] = {}

    def __call__(self, kwargs: Any, batch: Any, batch_idx: int) -> Any:
        from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature

        kwargs["batch"] = batch
        fx = self.trainer.lightning_module.training_step
        key = getattr(fx, "__func__", fx)
        takes = self.takes_batch_idx.get(key)
        if takes is None:
            takes = self.takes_batch_idx[key] = is_param_in_hook_signature(
                fx, "batch_idx", min_args=2
            )
        if takes:
            kwargs["batch_idx"] = batch_idx
        return kwargs


def cache_step_signature(trainer: pl.Trainer) -> None:
    """Install :class:`CachedStepKwargs` on ``trainer`` where this Lightning has the hook."""
    loop = trainer.fit_loop.epoch_loop
    if callable(getattr(type(loop), "_build_kwargs", None)):
        loop._build_kwargs = CachedStepKwargs(trainer)  # type: ignore[method-assign]


class DataOrder(pl.Callback):
    """Sets the epoch of in-memory batches from the trainer's epoch at each epoch start.

    The data order follows the trainer's epoch (seed + epoch), not the loader's own count
    of iterations: a run resumed from a checkpoint sees the same batches.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, InMemoryBatches):
            loader.set_epoch(trainer.current_epoch)


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

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # The batch is a flat tuple of tensors: move each directly (non-blocking from
        # pinned memory on GPU) instead of Lightning's generic walk over any collection,
        # which costs more per step than a small model's forward on CPU.
        if all(t.device == device for t in batch):
            return batch
        return tuple(t.to(device, non_blocking=True) for t in batch)

    def train_dataloader(self) -> InMemoryBatches:
        return self._batches(self.train, shuffle=True)

    def val_dataloader(self) -> InMemoryBatches:
        return self._batches(self.val, shuffle=False)


class Throughput(pl.Callback):
    """Per-run training report (:mod:`kfgpu.training.report`): samples/s, step time, the
    data-stall fraction and, under DDP with 2+ workers, the scaling efficiency.

    The training loop's time is measured from each epoch's start to its last batch's end
    (validation excluded). Logged as metrics so they reach MLflow and, through
    ``callback_metrics``, the launching process under every strategy; the scaling
    efficiency is measured once training ends and put in ``callback_metrics`` only.
    """

    KEYS = REPORT_KEYS

    def __init__(self) -> None:
        self.clock = StepClock()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
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
            pl_module.log(key, value, on_step=False, on_epoch=True, rank_zero_only=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from pytorch_lightning.strategies import DDPStrategy

        if trainer.world_size < 2 or not isinstance(trainer.strategy, DDPStrategy):
            return  # one worker; or FSDP, whose forward is itself a collective
        if not pl_module.automatic_optimization or self.clock.steps == 0:
            return
        local = torch.zeros((), device=pl_module.device)
        try:
            loader: Any = trainer.train_dataloader
            batch = trainer.strategy.batch_to_device(next(iter(loader)))

            def loss() -> torch.Tensor:
                with trainer.precision_plugin.forward_context():
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


class EpochPrinter(pl.Callback):
    """One line per epoch on rank 0: progress that reads well in a KFP log."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed mid-epoch starts without on_train_epoch_start.
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, so train and validation figures are both fresh.
        if not trainer.is_global_zero:
            return
        metrics = " ".join(
            f"{k}={float(v):.4f}"
            for k, v in sorted(trainer.callback_metrics.items())
            if k not in ("epochs_run", "steps_run", *Throughput.KEYS)
        )
        seconds = time.perf_counter() - self._t0
        print(
            f"epoch {trainer.current_epoch + 1}/{self.max_epochs} {metrics} ({seconds:.1f}s)",
            flush=True,
        )


class Preempted(Exception):
    """Training stopped on SIGTERM after saving ``last.ckpt`` at ``global_step``."""

    def __init__(self, global_step: int, path: str) -> None:
        super().__init__(f"preempted: checkpoint saved at step {global_step} ({path})")
        self.global_step = global_step
        self.path = path


class RunCheckpoint(Checkpoint):
    """Full-state ``last.ckpt`` at epoch ends and every ``every_n_steps`` steps; stop on SIGTERM.

    The file is written beside itself and renamed over ``last.ckpt``, so it is always a whole
    checkpoint. The epoch-end save runs at ``on_train_epoch_end``, after the epoch's
    validation and after the best-weights ``ModelCheckpoint`` and ``EarlyStopping`` have
    updated their state there (monitoring callbacks run last, checkpoint callbacks last of
    all, in list order: list this one after the ``ModelCheckpoint``), so that state resumes.

    SIGTERM (a pod's preemption notice) only sets a flag. At the next step boundary the run
    saves ``last.ckpt`` and raises :class:`Preempted`; when the signal lands in an epoch's
    last step or its validation, the boundary is the epoch end, after validation, so a
    resumed run never restarts half-way through an epoch's validation. Under several
    processes rank 0's flag is shared every step, so all ranks stop on the same step.
    Lightning's own SIGTERM handling (2.6) saves nothing: it raises ``SIGTERMException`` at
    the next batch end, or mid-validation, so this handler replaces it during ``fit``.
    """

    def __init__(self, dirpath: str | os.PathLike[str], every_n_steps: int = 0) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.signalled = False
        self.saved_step = -1
        self._trainer: pl.Trainer | None = None

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles callbacks into its workers; the trainer does not travel.
        state = self.__dict__.copy()
        state["_trainer"] = None
        return state

    def handle_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """The SIGTERM handler: note the request and pass it on to training processes."""
        self.signalled = True
        print("SIGTERM received: saving a checkpoint at the next step boundary", flush=True)
        pids = {p.pid for p in multiprocessing.active_children() if p.pid is not None}
        launcher = self._trainer.strategy.launcher if self._trainer is not None else None
        pids |= {p.pid for p in getattr(launcher, "procs", []) if getattr(p, "pid", None)}
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
        self._trainer = trainer
        # Lightning registers its own SIGTERM handler when fit starts; this one replaces it
        # until fit ends, when Lightning restores the handler that was there before fit.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle_sigterm)

    def _stop_requested(self, trainer: pl.Trainer) -> bool:
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(self.signalled, all=False))
        return self.signalled

    def save(self, trainer: pl.Trainer) -> None:
        partial = self.dirpath / f".last.ckpt.partial-{os.getpid()}"
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.last_path)
        trainer.strategy.barrier("RunCheckpoint.save")
        self.saved_step = trainer.global_step

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
        stop = self._stop_requested(trainer)
        if stop or (self.every_n_steps and trainer.global_step % self.every_n_steps == 0):
            self.save(trainer)
        if stop:
            raise Preempted(trainer.global_step, str(self.last_path))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer)
        if self._stop_requested(trainer):
            raise Preempted(trainer.global_step, str(self.last_path))
