"""Resume only the same run: an identity file beside the checkpoints.

A checkpoint directory is reused by retries of one run (a preempted pod, a KFP retry) and,
by mistake or by habit, by later runs with other data or settings. Loading another run's
``last.ckpt`` ships that run's weights under this run's transform and lineage. So the
directory holds ``run-identity.json``: a digest of the exact tensors trained on (training
and validation splits, labels included) and of the training configuration (every
:class:`~kfgpu.training.config.TrainConfig` setting except where checkpoints go, plus task,
target, network and label mapping). A run resumes ``last.ckpt`` only when the file matches
it; any other checkpoint (another identity, or none recorded) is moved, never loaded and
never deleted, into ``set-aside/<time>-<digest>/`` in the same directory, with a one-line
notice naming what differs. A finished run marks its identity file finished, so a later
run with the same data and configuration knows the checkpoint is that finished run
(its weights are what this run would train) and a run with anything else sets it aside.

Only one process moves and writes (global rank 0, from the environment a launcher sets);
the other ranks of a DDP run read the same files and come to the same decision: the writer
moves the checkpoints before it rewrites the identity file, so a rank that reads the new
identity finds no checkpoint to resume, as the writer decided.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import ShardedSplit

__all__ = [
    "CHECKPOINT_FILES",
    "IDENTITY_FILE",
    "SET_ASIDE_DIR",
    "ResumePlan",
    "is_writer",
    "mark_finished",
    "plan_resume",
    "run_identity",
]

IDENTITY_FILE = "run-identity.json"
#: What a run leaves in its checkpoint directory (``best.ckpt``: the best epoch's weights).
CHECKPOINT_FILES = ("last.ckpt", "best.ckpt")
SET_ASIDE_DIR = "set-aside"
#: Settings that say where and how often to checkpoint, not what is trained.
_NOT_IDENTITY = ("checkpoint_dir", "checkpoint_every_n_steps")


def is_writer() -> bool:
    """Global rank 0 by the launcher's environment (a lone process has none of these)."""
    return all(
        os.environ.get(key, "0") == "0" for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
    )


def _digest_tensors(tensors: Sequence[torch.Tensor]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for t in tensors:
        array = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{array.dtype.str}{array.shape};".encode())
        h.update(array.view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_identity(
    *,
    config: TrainConfig,
    task: str,
    target: str,
    network_config: Mapping[str, Any],
    labels: Mapping[str, Any],
    train: Sequence[torch.Tensor] | ShardedSplit,
    val: Sequence[torch.Tensor] | ShardedSplit,
) -> dict[str, Any]:
    """What makes a checkpoint this run's: the data trained on and the configuration.

    A streamed split (training or validation) is identified by its shards' fingerprint
    (file names, sizes and row counts, or the manifest's content hashes) and labels, not
    its bytes.
    """
    settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    configuration = {
        **settings,
        "task": task,
        "target": target,
        "network": dict(network_config),
        "labels": {k: v for k, v in labels.items() if k != "train_distribution"},
    }
    from kfgpu.training.streaming import ShardedSplit

    if isinstance(train, ShardedSplit) or isinstance(val, ShardedSplit):
        parts = [
            split.fingerprint() if isinstance(split, ShardedSplit) else _digest_tensors(split)
            for split in (train, val)
        ]
        digest = _digest(parts)
    else:
        digest = _digest_tensors([*train, *val])
    data = {
        "digest": digest,
        "train_rows": len(train) if isinstance(train, ShardedSplit) else len(train[-1]),
        "val_rows": len(val) if isinstance(val, ShardedSplit) else len(val[-1]),
    }
    config_digest = _digest(configuration)
    return {
        "digest": _digest({"data": data["digest"], "config": config_digest}),
        "data": data,
        "config_digest": config_digest,
        "config": json.loads(json.dumps(configuration, default=str)),
    }


@dataclass(frozen=True)
class ResumePlan:
    """What a run does with its checkpoint directory."""

    resume_from: Path | None
    set_aside: Path | None = None
    #: Why the checkpoint there was set aside, or that a resumed checkpoint was a finished run.
    reason: str | None = None
    #: One line for the log; empty when there is nothing to say.
    notice: str = ""

    def lineage(self, *, step: int | None = None) -> dict[str, Any]:
        """The bundle's ``lineage.resume``: whether and from where the run resumed."""
        return {
            "resumed": self.resume_from is not None,
            "from": str(self.resume_from) if self.resume_from is not None else None,
            "at_step": step if self.resume_from is not None else None,
            "set_aside": str(self.set_aside) if self.set_aside is not None else None,
            "reason": self.reason,
        }


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _write(path: Path, payload: Mapping[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, path)


def _fmt(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _why(stored: Mapping[str, Any] | None, identity: Mapping[str, Any]) -> str:
    """What differs between the stored identity and this run's, as a phrase."""
    if stored is None:
        return "it records no run identity (written by an older kfgpu or another program)"
    parts = []
    old, new = stored.get("data") or {}, identity["data"]
    if old.get("digest") != new["digest"]:
        parts.append(
            f"other data: {old.get('train_rows', '?')} training rows, digest "
            f"{str(old.get('digest'))[:12]}, vs {new['train_rows']}, {new['digest'][:12]}"
        )
    if stored.get("config_digest") != identity["config_digest"]:
        before, after = stored.get("config") or {}, identity["config"]
        changed = [
            f"{k} {_fmt(before.get(k))} -> {_fmt(after.get(k))}"
            for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)
        ]
        shown = ", ".join(changed[:4]) + (
            f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        )
        parts.append(f"other configuration: {shown or 'digest differs'}")
    return "; ".join(parts) or "its identity differs"


def plan_resume(dirpath: str | os.PathLike[str], identity: dict[str, Any]) -> ResumePlan:
    """Decide whether ``dirpath`` holds this run's checkpoint; set aside any other one.

    The writer (see :func:`is_writer`) moves another run's files into
    ``set-aside/<time>-<digest>/`` and records this run's identity; every process returns
    the same plan.
    """
    root = Path(dirpath)
    root.mkdir(parents=True, exist_ok=True)
    writer = is_writer()
    id_path = root / IDENTITY_FILE
    stored = _read(id_path)
    present = [name for name in CHECKPOINT_FILES if (root / name).is_file()]
    record = {**identity, "finished": False, "started_at": time.time()}
    if stored is not None and stored.get("digest") == identity["digest"]:
        if (root / "last.ckpt").is_file():
            reason = None
            if stored.get("finished"):
                reason = "the checkpoint is a finished run with the same data and configuration" + (
                    f" (it wrote {stored['bundle']})" if stored.get("bundle") else ""
                )
            return ResumePlan(root / "last.ckpt", reason=reason, notice=reason or "")
        # This run's own start, stopped before its first whole last.ckpt: start over.
        if writer:
            with contextlib.suppress(FileNotFoundError):
                (root / "best.ckpt").unlink()
        return ResumePlan(None)
    if not present:
        if writer:
            _write(id_path, record)
        return ResumePlan(None)
    reason = _why(stored, identity)
    old = str((stored or {}).get("digest") or "unknown")[:12]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = root / SET_ASIDE_DIR / f"{stamp}-{old}"
    if writer:
        aside.mkdir(parents=True, exist_ok=True)
        # Checkpoints first, the identity file last: see the module docs.
        for name in (*present, IDENTITY_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.replace(root / name, aside / name)
        _write(id_path, record)
    notice = (
        f"not resuming the checkpoint in {root}: another run's ({reason}); moved it to "
        f"{aside} and training from scratch"
    )
    return ResumePlan(None, set_aside=aside, reason=reason, notice=notice)


def mark_finished(dirpath: str | os.PathLike[str], *, bundle: str | None) -> None:
    """Record in the identity file that its run finished (and the bundle it wrote)."""
    id_path = Path(dirpath) / IDENTITY_FILE
    stored = _read(id_path)
    if stored is None or not is_writer():
        return
    _write(id_path, {**stored, "finished": True, "finished_at": time.time(), "bundle": bundle})
