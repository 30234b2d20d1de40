"""``python -m bench [NAME ...] [--list]``: run benchmarks, print ``name: value`` lines.

Only figures go to stdout. While benchmarks run, file descriptor 1 points at stderr, so
that output from libraries, C extensions and child processes cannot mix with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from bench._harness import discover, format_value, progress, registry


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[TextIO]:
    """Point fd 1 (and sys.stdout) at stderr; yield a stream on the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    real = os.fdopen(saved, "w", buffering=1)
    os.dup2(2, 1)
    old = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = old
        sys.stderr.flush()
        os.dup2(saved, 1)
        real.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (all)")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    args = parser.parse_args(argv)

    discover()
    known = registry()
    if args.list:
        for bench in known.values():
            print(f"{bench.name}: {bench.doc}" if bench.doc else bench.name)
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
    chosen = [known[n] for n in (args.names or known)]

    failed = 0
    with _stdout_to_stderr() as out:
        for bench in chosen:
            progress(f"{bench.name}: start")
            t0 = time.perf_counter()
            try:
                figures = bench.fn()
            except Exception as e:
                failed += 1
                progress(f"{bench.name}: FAILED: {type(e).__name__}: {e}")
                continue
            progress(f"{bench.name}: done in {time.perf_counter() - t0:.1f}s")
            for key, value in figures.items():
                out.write(f"{bench.name}.{key}: {format_value(value)}\n")
            out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
