"""The multi-node training entry point: what every pod of a TrainJob or PyTorchJob runs.

``python -m kfgpu.training.distributed --train URI --val URI --transform URI --target T
--task classification --bundle-uri URI [--profile URI] [--config JSON]``

Each process reads the validation split and the fitted transform from their (object
storage) URIs, and the training split too below ``stream_threshold_mb`` (above it each
process streams only its share of the row groups, :mod:`kfgpu.training.streaming`), trains with Lightning DDP across ``--num-nodes`` x ``--devices`` processes
(Lightning reads the rank layout the operator or ``torchrun`` put in the environment), and
global rank 0 uploads the bundle to ``--bundle-uri``. The launcher component then
downloads and verifies it, so a KFP output artifact is always a complete bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from kfgpu.errors import ConfigError, KfgpuError

__all__ = ["copy_tree", "fetch", "main", "train_distributed"]


def copy_tree(src: str, dst: str) -> None:
    """Copy a directory between any two fsspec locations (local paths included)."""
    import fsspec

    src_fs, src_root = fsspec.core.url_to_fs(src)
    dst_fs, dst_root = fsspec.core.url_to_fs(dst)
    for path in src_fs.find(src_root):
        rel = os.path.relpath(path, src_root)
        target = f"{dst_root.rstrip('/')}/{rel}"
        dst_fs.makedirs(os.path.dirname(target), exist_ok=True)
        with src_fs.open(path, "rb") as fin, dst_fs.open(target, "wb") as fout:
            fout.write(fin.read())


def fetch(uri: str, where: Path) -> str:
    """A local copy of a small file or directory artifact (the transform, the profile)."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    fs, root = fsspec.core.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        return str(root)
    local = where / os.path.basename(root.rstrip("/"))
    if fs.isdir(root):
        copy_tree(uri, str(local))
    else:
        fs.get(root, str(local))
    return str(local)


def train_distributed(
    *,
    train_uri: str,
    val_uri: str,
    transform_uri: str,
    target: str,
    task: str,
    bundle_uri: str,
    config: dict[str, Any],
    profile_uri: str = "",
) -> dict[str, Any]:
    """Train on this process's share; rank 0 uploads the bundle to ``bundle_uri``."""
    import shutil

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.streaming import open_splits
    from kfgpu.training.trainer import train_tabular

    cfg = TrainConfig.from_dict(config)
    with tempfile.TemporaryDirectory(prefix="kfgpu-dist-") as tmp:
        work = Path(tmp)
        transform = FittedTransform.load(fetch(transform_uri, work))
        profile = fetch(profile_uri, work) if profile_uri else ""
        extras = (
            {"reference": lambda d: shutil.copytree(profile, d, dirs_exist_ok=True)}
            if profile
            else {}
        )
        # Above cfg.stream_threshold_mb each process streams only its share of a split.
        train, val = open_splits(
            train_uri,
            val_uri,
            transform=transform,
            target=target,
            task=task,
            transformed=True,
            threshold_mb=cfg.stream_threshold_mb,
        )
        outcome = train_tabular(
            train,
            val,
            transform=transform,
            target=target,
            task=task,
            config=cfg,
            bundle_path=work / "bundle",
            extras=extras,
            transformed=True,
        )
        if outcome.bundle_path is not None:  # global rank 0
            copy_tree(str(outcome.bundle_path), bundle_uri)
    return {
        "bundle_uri": bundle_uri if outcome.bundle_path is not None else None,
        "metrics": outcome.metrics,
        "training": outcome.description.get("training", {}),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: one call per training process."""
    p = argparse.ArgumentParser(prog="python -m kfgpu.training.distributed")
    p.add_argument("--train", required=True, help="transformed training split (Parquet URI)")
    p.add_argument("--val", required=True, help="transformed validation split (Parquet URI)")
    p.add_argument("--transform", required=True, help="fitted transform (JSON URI)")
    p.add_argument("--profile", default="", help="reference profile directory URI")
    p.add_argument("--target", required=True)
    p.add_argument("--task", required=True, choices=["classification", "regression"])
    p.add_argument("--bundle-uri", required=True, help="where rank 0 uploads the bundle")
    p.add_argument("--config", default="{}", help="TrainConfig as JSON")
    args = p.parse_args(argv)
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as e:
        print(f"error: --config is not JSON ({e})", file=sys.stderr)
        return 2
    try:
        if not isinstance(config, dict):
            raise ConfigError(f"--config must be a JSON object, got {args.config!r}")
        result = train_distributed(
            train_uri=args.train,
            val_uri=args.val,
            transform_uri=args.transform,
            profile_uri=args.profile,
            target=args.target,
            task=args.task,
            bundle_uri=args.bundle_uri,
            config=config,
        )
    except KfgpuError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 1
    if result["bundle_uri"]:
        print(json.dumps(result, sort_keys=True, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
