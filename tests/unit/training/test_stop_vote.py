"""StopVote: every rank learns of a stop request at the same step, over a real gloo group.

Two processes in a subprocess (spawned workers re-import the caller's main module).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kfgpu.serving.process import free_port
from kfgpu.training.lightning import StopVote

SCRIPT = """
import json, sys
import torch.distributed as dist
import torch.multiprocessing as mp

from kfgpu.training.lightning import StopVote


def worker(rank, port, out):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    vote = StopVote()
    vote.setup(2)
    # Rank 1 alone asks to stop from poll 3 on.
    polls = [vote.poll(rank == 1 and i >= 3) for i in range(6)]
    blocking = StopVote()
    blocking.setup(2)
    quiet = blocking.settle(False)
    loud = blocking.settle(rank == 0)
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"polls": polls, "quiet": quiet, "loud": loud}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
"""


def test_two_ranks_agree_one_poll_after_the_request(tmp_path: Path) -> None:
    script = tmp_path / "vote.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(script), str(free_port()), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in (0, 1)]
    for result in results:
        # Requested by rank 1 at poll 3; both ranks see it at poll 4, none before.
        assert result["polls"] == [False, False, False, False, True, True]
        assert result["quiet"] is False and result["loud"] is True


@pytest.mark.parametrize("local", [False, True])
def test_one_process_answers_its_own_flag_at_once(local: bool) -> None:
    vote = StopVote()
    vote.setup(1)
    assert vote.poll(local) is local
    assert vote.settle(local) is local
