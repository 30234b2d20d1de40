"""``python -m kfgpu.tuning.worker SPEC_JSON``: one tuning worker process.

Started by :func:`kfgpu.tuning.study.run_study` (several per pod) with a JSON spec:
``storage``, ``space``, ``config``, ``factory`` (the objective factory,
``package.module:function``), ``kwargs``, ``worker_index``, ``max_resource`` and
``report_path`` (where the worker writes the trial numbers it ran).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from kfgpu._redact import install
    from kfgpu.errors import KfgpuError
    from kfgpu.tuning.study import worker_main

    install()  # its spec holds the storage URL, password included
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kfgpu.tuning.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    try:
        report = worker_main(spec)
    except KfgpuError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 1
    if spec.get("report_path"):
        Path(spec["report_path"]).write_text(json.dumps(asdict(report)))
    print(
        f"worker {report.worker} ran trials {report.trials} (stopped: {report.stopped})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
