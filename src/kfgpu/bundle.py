"""The model bundle: the one artifact that leaves training.

A bundle is a directory::

    model.safetensors   network weights (no pickle)
    transform.json      the fitted feature transform (plain JSON)
    bundle.json         description: task, target, model family and config, hyperparameters,
                        input signature, label mapping, decision rule (the threshold chosen
                        on validation rows, see kfgpu.decision), metrics, lineage
    reference/          the training data's reference profile (drift checks need only new data)
    CHECKSUMS.sha256    sha256 of every other file, written last

``bundle.json`` never holds a credential: a URI in it (the lineage's MLflow tracking URI,
a data URI) is written with its password or token replaced by ``***`` (:mod:`kfgpu._redact`).
It is written into a temporary sibling directory and renamed into place only when complete,
so a crash never leaves a directory that looks like a bundle. :func:`load_bundle` refuses a
bundle whose checksum file is missing or disagrees with a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu._redact import redact_obj
from kfgpu.description import BUNDLE_FORMAT, BundleDescription
from kfgpu.errors import BundleError, ChecksumError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from kfgpu.features.transform import FittedTransform
    from kfgpu.validation.profile import ReferenceProfile

__all__ = [
    "BUNDLE_FORMAT",
    "CHECKSUMS_FILE",
    "DESCRIPTION_FILE",
    "REFERENCE_DIR",
    "TRANSFORM_FILE",
    "WEIGHTS_FILE",
    "Bundle",
    "BundleDescription",
    "load_bundle",
    "load_reference",
    "read_description",
    "verify_bundle",
    "write_bundle",
]

WEIGHTS_FILE = "model.safetensors"
TRANSFORM_FILE = "transform.json"
DESCRIPTION_FILE = "bundle.json"
CHECKSUMS_FILE = "CHECKSUMS.sha256"
REFERENCE_DIR = "reference"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_bundle(
    out_dir: str | os.PathLike[str],
    *,
    state_dict: dict[str, torch.Tensor],
    transform: FittedTransform,
    description: dict[str, Any],
    extras: Mapping[str, Callable[[Path], object]] | None = None,
) -> Path:
    """Write a complete bundle at ``out_dir`` atomically.

    ``out_dir`` may not exist yet or be an empty directory (KFP pre-creates some output
    paths); anything else is refused rather than overwritten.

    Args:
        extras: subdirectory name -> a function that fills that (new) subdirectory, e.g.
            ``{"reference": profile.save}``. Its files are checksummed like the rest.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(
            f"refusing to write a bundle over non-empty {str(out)!r}; pick a new path"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        transform.save(tmp / TRANSFORM_FILE)
        desc = redact_obj({"format": BUNDLE_FORMAT, **description})
        (tmp / DESCRIPTION_FILE).write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
        for name, fill in sorted((extras or {}).items()):
            sub = tmp / name
            sub.mkdir()
            fill(sub)
        lines = [
            f"{_sha256(file)}  {file.relative_to(tmp).as_posix()}\n"
            for file in sorted(p for p in tmp.rglob("*") if p.is_file())
        ]
        (tmp / CHECKSUMS_FILE).write_text("".join(lines))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def verify_bundle(path: str | os.PathLike[str]) -> dict[str, str]:
    """Check every file against ``CHECKSUMS.sha256``; return the recorded digests.

    Raises:
        BundleError: the directory or its checksum file is missing, or a listed file is gone.
        ChecksumError: a file's content differs from what was recorded.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"model bundle {str(root)!r} does not exist or is not a directory")
    sums = root / CHECKSUMS_FILE
    if not sums.is_file():
        raise BundleError(
            f"{str(root)!r} has no {CHECKSUMS_FILE}: it is not a complete kfgpu bundle "
            "(was training interrupted?); retrain or point at a finished bundle"
        )
    recorded: dict[str, str] = {}
    for n, line in enumerate(sums.read_text().splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise BundleError(f"{CHECKSUMS_FILE} line {n} is malformed: {line!r}")
        if name.startswith("/") or ".." in Path(name).parts:
            raise BundleError(
                f"{CHECKSUMS_FILE} line {n} names a path outside the bundle: {name!r}"
            )
        recorded[name] = digest
    for required in (WEIGHTS_FILE, TRANSFORM_FILE, DESCRIPTION_FILE):
        if required not in recorded:
            raise BundleError(f"{CHECKSUMS_FILE} in {str(root)!r} does not list {required}")
    for name, digest in recorded.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"bundle file {name!r} listed in {CHECKSUMS_FILE} is missing")
        actual = _sha256(file)
        if actual != digest:
            raise ChecksumError(
                f"bundle file {name!r} has sha256 {actual[:12]}…, expected {digest[:12]}…: "
                "the bundle was modified or corrupted; fetch it again"
            )
    return recorded


def read_description(path: str | os.PathLike[str]) -> BundleDescription:
    """The bundle's ``bundle.json``, parsed and checked (checksums not verified: use
    :func:`load_bundle` to serve).

    Raises:
        BundleError: no ``bundle.json``, not JSON, another format, or a malformed field
            (the message names it).
    """
    file = Path(path) / DESCRIPTION_FILE
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError as e:
        raise BundleError(f"{str(path)!r} has no {DESCRIPTION_FILE}; not a kfgpu bundle") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(
            f"{DESCRIPTION_FILE} in {str(path)!r} is not valid JSON ({e}); the bundle is "
            "damaged: fetch or rebuild it"
        ) from e
    return BundleDescription.from_dict(data, where=f" in {str(path)!r}")


@dataclass(frozen=True)
class Bundle:
    """A verified, loaded bundle, ready to predict on raw frames."""

    path: Path
    description: BundleDescription
    transform: FittedTransform
    module: torch.nn.Module

    @property
    def task(self) -> str:
        return self.description.task

    @property
    def classes(self) -> list[Any]:
        return self.description.classes

    @property
    def decision(self) -> dict[str, Any]:
        """The stored decision rule (:mod:`kfgpu.decision`); ``{}``: argmax."""
        return dict(self.description.decision or {})

    def label_indices(self, proba: np.ndarray) -> np.ndarray:
        """Class indices of probabilities ``proba`` under the stored decision rule."""
        from kfgpu.decision import label_indices

        return label_indices(proba, self.description.decision, self.classes)

    def predict_raw(self, df: pd.DataFrame, *, batch_size: int = 65536) -> np.ndarray:
        """Class probabilities ``(n, k)`` for classification, values ``(n,)`` for regression."""
        import numpy as np
        import torch

        num, codes = self.transform.raw_arrays(df)
        outs: list[np.ndarray] = []
        # Inputs go where load_bundle(device=...) put the module; outputs come back to host.
        device = next(self.module.buffers()).device
        with torch.inference_mode():
            for start in range(0, len(df), batch_size):
                sl = slice(start, start + batch_size)
                out = self.module(
                    torch.from_numpy(num[sl]).to(device), torch.from_numpy(codes[sl]).to(device)
                )
                outs.append(out.float().cpu().numpy())
        if not outs:
            k = len(self.classes)
            return np.zeros((0, k) if self.task == "classification" else (0,), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Predictions as a frame: ``prediction`` plus ``proba_<class>`` for classification."""
        import numpy as np
        import pandas as pd

        raw = self.predict_raw(df)
        if self.task != "classification":
            return pd.DataFrame({"prediction": raw}, index=df.index)
        classes = self.classes
        out = pd.DataFrame({f"proba_{c}": raw[:, i] for i, c in enumerate(classes)}, index=df.index)
        out.insert(0, "prediction", np.asarray(classes, dtype=object)[self.label_indices(raw)])
        return out


def load_bundle(path: str | os.PathLike[str], *, device: str = "cpu") -> Bundle:
    """Verify checksums, then rebuild the served module (transform + network + head)."""
    from safetensors.torch import load_file

    from kfgpu.features.transform import FittedTransform
    from kfgpu.training.served import ServedModel

    root = Path(path)
    verify_bundle(root)
    desc = read_description(root)
    transform = FittedTransform.load(root / TRANSFORM_FILE)
    module = ServedModel.from_description(desc, transform)
    state = load_file(str(root / WEIGHTS_FILE), device=device)
    try:
        module.network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(
            f"weights in {str(root)!r} do not fit the recorded architecture: {e}"
        ) from e
    module.to(device).eval()
    return Bundle(path=root, description=desc, transform=transform, module=module)


def load_reference(uri: str) -> ReferenceProfile:
    """A reference profile from a model bundle, a saved profile, or raw data.

    Args:
        uri: a kfgpu model bundle directory (its ``reference/`` profile, checksums verified),
            a profile directory (``profile.json`` + ``sample.parquet``) or its
            ``profile.json``, or any data URI ``read_table`` accepts (profiled in chunks).
    """
    from kfgpu.validation.profile import ReferenceProfile, profile_source

    path = Path(uri)
    if "://" not in uri and path.is_dir() and (path / DESCRIPTION_FILE).is_file():
        verify_bundle(path)
        if not (path / REFERENCE_DIR / "profile.json").is_file():
            raise BundleError(
                f"model bundle {uri!r} holds no reference profile (written before kfgpu 0.1.1?); "
                "retrain, or pass the training data as the reference instead"
            )
        return ReferenceProfile.load(path / REFERENCE_DIR)
    if "://" not in uri and path.is_dir() and (path / "profile.json").is_file():
        return ReferenceProfile.load(path)
    if "://" not in uri and path.name == "profile.json" and path.is_file():
        return ReferenceProfile.load(path.parent)
    return profile_source(uri)
