"""The micro-batcher: concurrent calls share one forward, errors stay with their request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from kfgpu.errors import ConfigError
from kfgpu.serving.batcher import MicroBatcher


def _run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_concurrent_calls_are_batched_and_results_split_back() -> None:
    calls: list[list[int]] = []

    def fn(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.02)  # a forward that takes a while: requests queue up meanwhile
        return [i * 10 for i in items]

    async def main() -> list[int]:
        b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch_size=64, max_wait_ms=5)
        return list(await asyncio.gather(*(b.submit(i) for i in range(40))))

    assert _run(main()) == [i * 10 for i in range(40)]
    assert len(calls) < 40 and max(len(c) for c in calls) > 1
    assert sorted(i for c in calls for i in c) == list(range(40))


def test_batches_never_exceed_max_rows() -> None:
    sizes: list[int] = []

    def fn(items: Sequence[int]) -> list[int]:
        sizes.append(sum(items))
        return list(items)

    async def main() -> None:
        b: MicroBatcher[int, int] = MicroBatcher(
            fn, max_batch_size=10, max_wait_ms=1, size=lambda n: n
        )
        await asyncio.gather(*(b.submit(3) for _ in range(20)), b.submit(25))

    _run(main())
    assert max(sizes) == 25  # an oversized request runs alone
    assert all(s <= 10 for s in sizes if s != 25)


def test_one_bad_request_does_not_fail_the_others() -> None:
    def fn(items: Sequence[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item -1")
        time.sleep(0.005)
        return [i + 1 for i in items]

    async def main() -> list[object]:
        b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch_size=32, max_wait_ms=5)
        return list(
            await asyncio.gather(*(b.submit(i) for i in [1, 2, -1, 3, 4]), return_exceptions=True)
        )

    out = _run(main())
    assert out[:2] == [2, 3] and out[3:] == [4, 5]
    assert isinstance(out[2], ValueError) and "bad item -1" in str(out[2])


def test_a_lone_request_does_not_wait_and_waits_are_bounded() -> None:
    def fn(items: Sequence[int]) -> list[int]:
        return list(items)

    async def main() -> tuple[float, float]:
        b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch_size=64, max_wait_ms=200)
        t0 = time.perf_counter()
        await b.submit(1)  # alone: run at once, no 200 ms wait
        alone = time.perf_counter() - t0
        await asyncio.gather(b.submit(1), b.submit(2))  # now the batcher expects company
        t0 = time.perf_counter()
        await asyncio.gather(b.submit(3), b.submit(4))
        waited = time.perf_counter() - t0
        return alone, waited

    alone, waited = _run(main())  # type: ignore[misc]
    assert alone < 0.15
    assert waited < 1.0  # bounded by max_wait_ms, not by a full batch


def test_batching_off_runs_each_request_alone() -> None:
    calls: list[int] = []

    def fn(items: Sequence[int]) -> list[int]:
        calls.append(len(items))
        return list(items)

    async def main() -> None:
        b: MicroBatcher[int, int] = MicroBatcher(fn, max_batch_size=1)
        await asyncio.gather(*(b.submit(i) for i in range(10)))

    _run(main())
    assert calls == [1] * 10


@pytest.mark.parametrize(
    "kw", [{"max_batch_size": 0}, {"max_wait_ms": -1.0}, {"max_batch_size": True}]
)
def test_bad_settings(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MicroBatcher(lambda items: list(items), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch", [64, 1], ids=["batched", "unbatched"])
def test_cheap_calls_run_on_the_loop_and_slow_ones_in_the_thread(batch: int) -> None:
    import threading

    threads: list[tuple[str, int]] = []

    def cheap(items: Sequence[int]) -> list[int]:
        threads.append(("cheap", threading.get_ident()))
        return list(items)

    def slow(items: Sequence[int]) -> list[int]:
        threads.append(("slow", threading.get_ident()))
        time.sleep(0.01)
        return list(items)

    async def main() -> int:
        fast: MicroBatcher[int, int] = MicroBatcher(
            cheap, max_batch_size=batch, inline_below_ms=1.0
        )
        heavy: MicroBatcher[int, int] = MicroBatcher(
            slow, max_batch_size=batch, inline_below_ms=1.0
        )
        for i in range(5):
            assert await fast.submit(i) == i
            assert await heavy.submit(i) == i
        return threading.get_ident()

    loop_thread = _run(main())
    cheap_threads = [t for kind, t in threads if kind == "cheap"]
    slow_threads = [t for kind, t in threads if kind == "slow"]
    assert cheap_threads[0] != loop_thread  # the first call, not yet measured, goes out
    assert cheap_threads[1:] == [loop_thread] * 4
    assert loop_thread not in slow_threads


def test_one_stalled_call_does_not_send_cheap_calls_to_the_thread() -> None:
    """A cheap call descheduled once (a busy machine) keeps the next ones on the loop: the
    decision looks at the fastest recent call. (An average lifted over the bar by one stall
    used to send every following call through the thread.)"""
    import threading

    threads: list[int] = []

    def sometimes_stalls(items: Sequence[int]) -> list[int]:
        threads.append(threading.get_ident())
        if items[0] == 3:
            time.sleep(0.05)
        return list(items)

    async def main() -> int:
        b: MicroBatcher[int, int] = MicroBatcher(
            sometimes_stalls, max_batch_size=64, inline_below_ms=1.0
        )
        for i in range(10):
            assert await b.submit(i) == i
        return threading.get_ident()

    loop_thread = _run(main())
    assert threads[0] != loop_thread  # not yet measured
    assert threads[1:] == [loop_thread] * 9  # the stall (3) and every call after it
