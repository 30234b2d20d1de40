"""Loading a bundle to serve it, as if its author were hostile.

A bundle arrives from storage that other people write to (an S3 prefix, a PVC, the MLflow
registry). :func:`load_served_bundle` loads it with three extra rules over
:func:`kfgpu.bundle.load_bundle`:

* **Model families from an allow-list.** ``model.family`` in ``bundle.json`` is either a
  family kfgpu registers (``tabular_mlp``, ``small_cnn``, and any added with
  :func:`kfgpu.training.families.register_family`) or a ``package.module:Class`` import
  path whose module starts with a prefix the operator allowed (``--allow-module PREFIX``).
  Anything else is refused *before* it is imported: importing a module runs its code.
* **Regular files inside the bundle only.** Every entry under the bundle directory is a
  regular file or a directory; a symbolic link is followed only when it stays inside the
  bundle (a link that escapes it, a FIFO or a device is refused).
* **One line per failure.** Every load error is one :class:`~kfgpu.errors.BundleError`
  line naming the file and the fix, never a traceback of safetensors or JSON internals.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kfgpu.errors import BundleError, KfgpuError

if TYPE_CHECKING:
    from kfgpu.bundle import Bundle

__all__ = ["check_bundle_files", "check_family", "load_served_bundle"]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def check_bundle_files(path: str | os.PathLike[str]) -> Path:
    """The bundle's resolved root, once every entry under it is a regular file or a
    directory inside it.

    Raises:
        BundleError: a link escapes the bundle, or an entry is neither a file nor a directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(
            f"model bundle {str(root)!r} does not exist or is not a directory; pass a bundle "
            "directory"
        )
    real = root.resolve()
    for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
        for name in [*dirnames, *filenames]:
            entry = Path(dirpath) / name
            rel = entry.relative_to(real).as_posix()
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = entry.resolve()
                if not target.is_relative_to(real):
                    raise BundleError(
                        f"bundle file {rel!r} is a link to {str(target)!r}, outside the bundle; "
                        "copy the file into the bundle instead of linking it"
                    )
                mode = target.stat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise BundleError(
                    f"bundle entry {rel!r} is not a regular file or directory; a bundle holds "
                    "only files (rewrite it with kfgpu.bundle.write_bundle)"
                )
    return real


def check_family(family: object, allow_modules: Sequence[str] = ()) -> str:
    """``family`` if serving may build it: a registered kfgpu family, or an import path in
    a module under one of ``allow_modules``. Nothing is imported here.

    Raises:
        BundleError: any other value (named, with the flag that would allow it).
    """
    from kfgpu.training.families import FAMILIES, is_import_path, registered_families

    if not isinstance(family, str) or not family:
        raise BundleError(
            f"bundle.json model.family is {family!r}; expected a kfgpu family name "
            f"({', '.join(FAMILIES)}) or package.module:Class"
        )
    if not is_import_path(family):
        known = registered_families()
        if family not in known:
            raise BundleError(
                f"bundle.json model.family {family!r} is not a kfgpu model family; known: "
                f"{sorted(known)}"
            )
        return family
    module = family.partition(":")[0]
    for prefix in allow_modules:
        prefix = prefix.rstrip(".")
        if prefix and (module == prefix or module.startswith(prefix + ".")):
            return family
    top = module.split(".")[0]
    raise BundleError(
        f"bundle.json model.family {family!r} names module {module!r}, which this server "
        f"does not import: serving imports only kfgpu's own families and modules the "
        f"operator allows; if you trust it, start the server with --allow-module {top}"
    )


def _check_weights(path: Path) -> None:
    """The weights file is a safetensors file (its header parses), before torch reads it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except Exception as e:
        raise BundleError(
            f"{path.name} in {str(path.parent)!r} is not a readable safetensors file "
            f"({_one_line(e)}); the bundle is damaged or holds another format (a pickle?): "
            "fetch or rebuild it"
        ) from e


def load_served_bundle(
    path: str | os.PathLike[str], *, device: str = "cpu", allow_modules: Sequence[str] = ()
) -> Bundle:
    """Verify and load the bundle at ``path`` for serving (see the module docstring).

    Raises:
        BundleError: one line naming what is wrong (a file, a field, the family).
    """
    from kfgpu.bundle import DESCRIPTION_FILE, WEIGHTS_FILE, load_bundle, verify_bundle

    root = check_bundle_files(path)
    try:
        verify_bundle(root)
        raw = (root / DESCRIPTION_FILE).read_bytes()
    except KfgpuError:
        raise
    except OSError as e:
        raise BundleError(f"cannot read bundle {str(root)!r}: {_one_line(e)}") from e
    try:
        desc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(
            f"{DESCRIPTION_FILE} in {str(root)!r} is not valid JSON ({_one_line(e)}); the "
            "bundle is damaged: fetch or rebuild it"
        ) from e
    model = desc.get("model") if isinstance(desc, dict) else None
    if not isinstance(model, dict):
        raise BundleError(
            f"{DESCRIPTION_FILE} in {str(root)!r} has no model section; the bundle is "
            "damaged: fetch or rebuild it"
        )
    check_family(model.get("family"), allow_modules)
    _check_weights(root / WEIGHTS_FILE)
    try:
        return load_bundle(root, device=device)
    except BundleError as e:
        if "\n" in str(e):
            raise type(e)(_one_line(e)) from e
        raise
    except KfgpuError as e:
        raise BundleError(f"cannot load bundle {str(root)!r}: {_one_line(e)}") from e
    except Exception as e:
        raise BundleError(
            f"cannot load bundle {str(root)!r}: {type(e).__name__}: {_one_line(e)}; the "
            "bundle is damaged or was not written by kfgpu: fetch or rebuild it"
        ) from e
