"""``python -m kfgpu.cli``: the ``kfgpu`` command."""

from __future__ import annotations

import sys

from kfgpu.cli import main

if __name__ == "__main__":
    sys.exit(main())
