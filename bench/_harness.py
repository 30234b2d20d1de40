"""The benchmark registry and runner.

A benchmark is a function with no arguments that returns ``{figure: value}``; it
registers with :func:`benchmark`. The runner prefixes every figure with the benchmark's
name (``wall_s`` from ``pipeline_overhead`` prints as ``pipeline_overhead.wall_s``).

Rules every benchmark follows (see README.md):

* every figure it returns is measured inside the one call, in this process run;
* a ratio divides by a baseline measured in that same call, never by a stored number;
* nothing is written to stdout but the figures (progress goes to :func:`progress`).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Benchmark", "benchmark", "discover", "format_value", "progress", "registry"]

BenchFn = Callable[[], dict[str, float]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    fn: BenchFn
    doc: str


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register ``fn`` as the benchmark ``name``; it returns ``{figure: value}``."""

    def wrap(fn: BenchFn) -> BenchFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"benchmark {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = Benchmark(name=name, fn=fn, doc=doc[0] if doc else "")
        return fn

    return wrap


def discover() -> None:
    """Import every public module of this package, so that each registers its benchmarks."""
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")


def registry() -> dict[str, Benchmark]:
    """Every registered benchmark by name, sorted."""
    return dict(sorted(_REGISTRY.items()))


def progress(message: str) -> None:
    """One progress line on stderr (stdout carries only figures)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def format_value(value: float) -> str:
    """A figure as printed: six significant digits, no exponent for ordinary sizes."""
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".6g")
