"""Start a training process and send it a signal once its output says it is ready."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def signal_when(
    argv: Sequence[str],
    out: Path,
    ready: Callable[[str], bool],
    *,
    sig: int = signal.SIGTERM,
    settle_s: float = 0.15,
    timeout_s: float = 240,
) -> tuple[int, str, str]:
    """Run ``argv`` with stdout to ``out`` (stderr beside it, ``.err``); once
    ``ready(stdout so far)`` holds, wait ``settle_s`` (to land inside a step, not on a
    boundary), send ``sig`` and wait for the exit. Returns (exit status, stdout, stderr)."""
    err = out.with_suffix(".err")
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(list(argv), stdout=fo, stderr=fe, text=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not ready(out.read_text()):
                assert proc.poll() is None, f"the run ended early:\n{err.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"not ready within {timeout_s} s"
                time.sleep(0.02)
            time.sleep(settle_s)
            proc.send_signal(sig)
            returncode = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return returncode, out.read_text(), err.read_text()
