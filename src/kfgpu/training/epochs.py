"""Where a loader stands in its epochs: the resume protocol both batch loaders share.

:class:`~kfgpu.training.data.InMemoryBatches` and
:class:`~kfgpu.training.streaming.StreamingBatches` order an epoch by ``seed + epoch`` only,
so ``{epoch, served}`` is all a checkpoint needs to continue mid-epoch.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["EpochPosition"]


class EpochPosition:
    """``set_epoch`` / ``state_dict`` / ``load_state_dict`` for a loader with ``len()`` batches
    per epoch. A subclass calls :meth:`init_position` in its constructor and
    :meth:`begin_epoch` at the start of each iteration."""

    epoch: int

    def __len__(self) -> int:
        raise NotImplementedError

    def init_position(self) -> None:
        """Start at epoch 0, nothing served, nothing to resume."""
        self.epoch = 0
        self._iter_epoch = 0
        self._served = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order on the next iteration (the trainer's current epoch)."""
        self.epoch = int(epoch)
        if self._resume is None:
            # Not iterated yet: a checkpoint now records the start of that epoch.
            self._iter_epoch, self._served = self.epoch, 0

    def state_dict(self) -> dict[str, int]:
        """Where the current iteration stands: its epoch and the batches served so far."""
        return {"epoch": self._iter_epoch, "served": self._served}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resume: the next iteration continues ``state``'s epoch after its served batches."""
        epoch, served = int(state["epoch"]), int(state["served"])
        if served >= len(self):
            # That epoch was wholly served: the next iteration is the next epoch, from its start.
            self.epoch, self._resume = epoch + 1, None
        else:
            self.epoch, self._resume = epoch, (epoch, served)

    def begin_epoch(self) -> tuple[int, int]:
        """Start iterating: the epoch to serve and the batches of it to skip (a resume)."""
        epoch = self.epoch
        skip = 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        self._iter_epoch, self._served = epoch, skip
        self.epoch = epoch + 1
        return epoch, skip
