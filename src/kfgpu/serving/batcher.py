"""An adaptive asyncio micro-batcher: concurrent requests share one forward pass.

Requests queue up; one worker task takes as many as fit in ``max_batch_size`` rows, runs
``fn`` on them in a single worker thread (so the event loop keeps reading requests while
the model computes) and hands each request its own slice of the result.

Adaptive: a request that arrives alone is run at once (no added latency at concurrency
1). Only when the previous batch held more than one request (there is concurrent load)
does the worker linger up to ``max_wait_ms`` for more requests to fill the batch. Under
load the batches also grow by themselves: requests arriving during one forward form the
next batch.

A failure of the batched call never fails the others: the batch is retried one request
at a time and each request gets its own result or its own error.

Cheap calls run inline: when the recent calls took less than ``inline_below_ms`` (the
fastest of the last :data:`INLINE_WINDOW` calls) and the batch is no larger than
``max_batch_size``, ``fn`` runs on the event loop itself. Handing a call to a worker thread
and back costs more than a small model's forward pass; a slow call always goes to the
thread, so the loop keeps reading requests while it computes. The fastest recent call, not
an average: on a busy machine a cheap call is sometimes descheduled mid-way, and an average
that such a stall lifted over the bar would send every following call through the thread
(where waiting for the interpreter lock makes it slower still).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from kfgpu.errors import ConfigError

__all__ = ["INLINE_WINDOW", "MicroBatcher"]

#: How many recent calls the inline decision looks at (it takes the fastest).
INLINE_WINDOW = 8

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Batch concurrent :meth:`submit` calls into calls of ``fn``.

    Args:
        fn: items -> one result per item, in order; runs in a worker thread.
        max_batch_size: most rows per call (a single larger request runs alone);
            1 turns batching off (each request is one call).
        max_wait_ms: how long a batch may wait to fill under concurrent load.
        size: rows of an item (default 1).
        on_batch: called after each call with ``(items, rows, seconds)``.
        executor: where ``fn`` runs; default one dedicated thread.
        inline_below_ms: run a call on the event loop while calls average less than this;
            0: always in the executor.
    """

    def __init__(
        self,
        fn: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        size: Callable[[T], int] | None = None,
        on_batch: Callable[[int, int, float], None] | None = None,
        executor: Executor | None = None,
        inline_below_ms: float = 0.0,
    ) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise ConfigError(f"max_batch_size={max_batch_size!r} is invalid; use an integer >= 1")
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size={max_batch_size!r} is invalid; use an integer >= 1")
        if not max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms={max_wait_ms!r} is invalid; use a number >= 0")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._size = size or (lambda _item: 1)
        self._on_batch = on_batch
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="kfgpu-forward")
        self._queue: collections.deque[tuple[T, int, asyncio.Future[R]]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._last_items = 1
        if not inline_below_ms >= 0:
            raise ConfigError(f"inline_below_ms={inline_below_ms!r} is invalid; use a number >= 0")
        self.inline_below_s = inline_below_ms / 1000.0
        # Seconds of the recent calls; empty (the first call: allocation, warm-up) goes to
        # the thread.
        self._recent: collections.deque[float] = collections.deque(maxlen=INLINE_WINDOW)

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    def healthy(self) -> bool:
        """False when the worker task died (it never should)."""
        return self._worker is None or not self._worker.done()

    async def submit(self, item: T) -> R:
        """Run ``item`` (batched with concurrent ones); its result, or its own error."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            t0 = time.perf_counter()
            out = await self._call(loop, [item], self._size(item))
            self._report(1, self._size(item), time.perf_counter() - t0)
            return out[0]
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name="kfgpu-batcher")
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, self._size(item), fut))
        self._wake.set()
        return await fut

    def _report(self, items: int, rows: int, seconds: float) -> None:
        if self._on_batch is not None:
            self._on_batch(items, rows, seconds)

    def _timed(self, items: list[T]) -> Sequence[R]:
        """``fn(items)``, recording its own duration (not the hop to a thread and back)."""
        t0 = time.perf_counter()
        out = self.fn(items)
        self._recent.append(time.perf_counter() - t0)
        return out

    async def _call(
        self, loop: asyncio.AbstractEventLoop, items: list[T], rows: int
    ) -> Sequence[R]:
        """``fn(items)``: inline when calls are cheap (see the module), else in the executor."""
        if not self.inline_below_s:
            return await loop.run_in_executor(self._executor, self.fn, items)
        recent = self._recent
        if recent and min(recent) < self.inline_below_s and rows <= self.max_batch_size:
            return self._timed(items)
        return await loop.run_in_executor(self._executor, self._timed, items)

    def _take(self, batch: list[tuple[T, int, asyncio.Future[R]]], rows: int) -> int:
        while self._queue:
            _item, n, fut = self._queue[0]
            if fut.cancelled():
                self._queue.popleft()
                continue
            if batch and rows + n > self.max_batch_size:
                break
            batch.append(self._queue.popleft())
            rows += n
        return rows

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                wake.clear()
                await wake.wait()
                continue
            batch: list[tuple[T, int, asyncio.Future[R]]] = []
            rows = self._take(batch, 0)
            if self._last_items > 1 and self.max_wait_s > 0 and rows < self.max_batch_size:
                deadline = loop.time() + self.max_wait_s
                while rows < self.max_batch_size and not (
                    self._queue and rows + self._queue[0][1] > self.max_batch_size
                ):
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    wake.clear()
                    try:
                        await asyncio.wait_for(wake.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
                    rows = self._take(batch, rows)
            if not batch:
                continue
            self._last_items = len(batch)
            await self._execute(loop, batch, rows)

    async def _execute(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[T, int, asyncio.Future[R]]],
        rows: int,
    ) -> None:
        items = [b[0] for b in batch]
        t0 = time.perf_counter()
        try:
            results = await self._call(loop, items, rows)
            if len(results) != len(items):
                raise RuntimeError(
                    f"batched function returned {len(results)} results for {len(items)} items"
                )
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0][2], error=e)
                return
            # One bad request must not fail the others: run each alone.
            for item, _n, fut in batch:
                try:
                    one = await self._call(loop, [item], _n)
                    _settle(fut, result=one[0])
                except Exception as e1:
                    _settle(fut, error=e1)
            return
        self._report(len(items), rows, time.perf_counter() - t0)
        for (_item, _n, fut), result in zip(batch, results, strict=True):
            _settle(fut, result=result)


def _settle(
    fut: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
