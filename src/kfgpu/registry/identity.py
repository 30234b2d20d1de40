"""What makes two registered versions the same model: task, target and input signature.

A registered model name stands for one model: its versions are challengers and champions
of each other, so they predict the same target for the same task from the same inputs.
:func:`default_model_name` derives that name from the data source and the target
(``kfgpu://fraud?rows=100000`` and ``is_fraud`` -> ``fraud-is_fraud``), so two data sets
never share a name by accident. :class:`ModelIdentity` is what the gate and
:func:`~kfgpu.registry.models.promote` compare before a version may replace a champion:
a different task, target or input signature is another model, refused unless the caller
says ``allow_signature_change``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    from kfgpu.description import BundleDescription
    from kfgpu.evaluation.records import EvaluationRecord

__all__ = [
    "SIGNATURE_FIX",
    "ModelIdentity",
    "check_model_name",
    "default_model_name",
    "resolve_model_name",
]

#: File suffixes left out of a name derived from a path.
_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".snappy")
_FORMATS = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".feather")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Longest name derived (MLflow allows longer; a readable name does not need it).
MAX_NAME = 100
#: The fix named by every refusal across signatures.
SIGNATURE_FIX = (
    "register it under another name (registered_model_name), or pass "
    "allow_signature_change=true to replace the champion on purpose"
)


def _clean(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-._")


#: File names that say nothing about the data: the folder above names it instead.
_GENERIC = frozenset(
    {"all", "data", "dataset", "df", "export", "file", "input", "inputs", "latest", "part",
     "raw", "snapshot", "table", "train", "training"}
)  # fmt: skip
#: A trailing date, time, number or version: the next snapshot of the same data.
_SNAPSHOT = re.compile(r"[-_. ]+(v?\d[\dTZ:_.-]*)$", re.IGNORECASE)


def _strip_format(name: str) -> str:
    for _ in range(3):
        lower = name.lower()
        cut = next((s for s in (*_SUFFIXES, *_FORMATS) if lower.endswith(s)), "")
        if not cut or len(cut) == len(name):
            break
        name = name[: -len(cut)]
    return name


def _source_stem(data_uri: str) -> str:
    """A short readable word for the data source: the dataset name or the file stem.

    Stable across snapshots of the same data: partition folders (``date=2026-12-01``),
    globs, and trailing dates or numbers (``fraud_2026-12-01.parquet``) are left out, and
    a generic file name (``data.csv``, ``part-0000.parquet``) gives way to its folder's.
    """
    uri = data_uri.strip()
    parts = urlsplit(uri) if "://" in uri else None
    if parts is not None and parts.scheme == "kfgpu":
        # kfgpu://fraud?rows=...: the bundled dataset's name (its options are not identity).
        return parts.netloc or parts.path.strip("/")
    # Only the path: never the host, user, password or query (a signed URL's token).
    path = parts.path if parts is not None else uri
    segments = [
        s
        for s in re.split(r"[/\\]", path)
        if s and s not in {".", ".."} and "=" not in s and "*" not in s
    ]
    while segments:
        stem = _SNAPSHOT.sub("", _strip_format(segments.pop()))
        if stem and (stem.lower() not in _GENERIC or not segments):
            return stem
    return parts.netloc if parts is not None else ""


def default_model_name(data_uri: str, target: str) -> str:
    """``<data source>-<target>``, made safe for MLflow (letters, digits, ``_.-``).

    >>> default_model_name("kfgpu://fraud?rows=100000&seed=0", "is_fraud")
    'fraud-is_fraud'
    >>> default_model_name("s3://user:secret@bucket/sales/churn.parquet?sig=x", "churned")
    'churn-churned'
    """
    source = _clean(_source_stem(data_uri)) or "data"
    label = _clean(target) or "target"
    name = f"{source[: MAX_NAME // 2]}-{label}"
    return name[:MAX_NAME].strip("-._")


def check_model_name(name: str, *, field: str = "registered_model_name") -> str:
    """``name`` stripped, or a ConfigError naming what MLflow would refuse in it."""
    value = name.strip()
    bad = sorted({c for c in value if c in "/:@"})
    if bad:
        raise ConfigError(
            f"{field}={name!r} contains {''.join(bad)!r}, which MLflow model names and "
            f"models:/NAME@ALIAS URIs cannot hold; use letters, digits, '_', '.' and '-', "
            f"e.g. {_clean(value) or 'my-model'!r}"
        )
    return value


def resolve_model_name(name: str, *, data_uri: str, target: str) -> str:
    """The registered model name to use: ``name`` when given, else the derived default."""
    if name.strip():
        return check_model_name(name)
    if not target.strip():
        raise ConfigError(
            "registered_model_name is empty and there is no target to derive it from; "
            "name the model (registered_model_name=...) or give the target"
        )
    return default_model_name(data_uri, target)


def _inputs(signature: Any) -> tuple[tuple[str, str], ...] | None:
    """(name, kind) of each raw input, sorted; None when the signature is not recorded."""
    if not isinstance(signature, list) or not signature:
        return None
    out = []
    for entry in signature:
        if isinstance(entry, Mapping) and "name" in entry:
            out.append((str(entry["name"]), str(entry.get("kind", "?"))))
        elif isinstance(entry, list | tuple) and len(entry) == 2:
            out.append((str(entry[0]), str(entry[1])))
    return tuple(sorted(out)) or None


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True)
class ModelIdentity:
    """Task, target and input signature: what a champion and its challenger must share.

    ``inputs`` is each raw input column with its kind (numeric, categorical, datetime),
    sorted by name; None where it was not recorded (a version registered by an older
    kfgpu). Only what was recorded on both sides is compared.
    """

    task: str | None
    target: str | None
    inputs: tuple[tuple[str, str], ...] | None = None

    @property
    def signature_digest(self) -> str | None:
        """sha256 of the inputs (names and kinds), or None without them."""
        if self.inputs is None:
            return None
        text = json.dumps([list(i) for i in self.inputs], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_description(cls, desc: BundleDescription) -> ModelIdentity:
        """From a bundle's ``bundle.json``."""
        return cls(
            task=desc.task,
            target=desc.target,
            inputs=_inputs(desc.inputs),
        )

    @classmethod
    def from_evaluation(cls, evaluation: EvaluationRecord) -> ModelIdentity:
        """From an evaluation record (its ``model`` section, as evaluate_model writes it)."""
        return cls(
            task=evaluation.model.get("task") or evaluation.task,
            target=evaluation.target,
            inputs=_inputs(evaluation.model.get("signature")),
        )

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ModelIdentity:
        """From a registered version's tags (see :meth:`to_tags`)."""
        inputs = None
        raw = tags.get("kfgpu.inputs")
        if raw:
            try:
                inputs = _inputs(json.loads(raw))
            except json.JSONDecodeError:
                inputs = None

        def known(key: str) -> str | None:
            value = tags.get(key)
            return value if value not in (None, "", "None") else None

        return cls(task=known("kfgpu.task"), target=known("kfgpu.target"), inputs=inputs)

    def to_tags(self) -> dict[str, str]:
        """Version tags: ``kfgpu.task``, ``kfgpu.target``, ``kfgpu.inputs``, ``kfgpu.signature``."""
        tags = {"kfgpu.task": str(self.task), "kfgpu.target": str(self.target)}
        if self.inputs is not None:
            tags["kfgpu.inputs"] = json.dumps([list(i) for i in self.inputs], separators=(",", ":"))
            tags["kfgpu.signature"] = str(self.signature_digest)
        return tags

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "target": self.target,
            "inputs": [list(i) for i in self.inputs] if self.inputs is not None else None,
            "signature": self.signature_digest,
        }

    def merged(self, fallback: ModelIdentity) -> ModelIdentity:
        """This identity with what it lacks taken from ``fallback``."""
        return ModelIdentity(
            task=self.task or fallback.task,
            target=self.target or fallback.target,
            inputs=self.inputs if self.inputs is not None else fallback.inputs,
        )

    def differences(self, champion: ModelIdentity) -> list[str]:
        """What differs from ``champion``, one phrase each; empty when nothing recorded does."""
        out: list[str] = []
        if self.task and champion.task and self.task != champion.task:
            out.append(f"task {self.task} vs the champion's {champion.task}")
        if self.target and champion.target and self.target != champion.target:
            out.append(f"target {self.target!r} vs the champion's {champion.target!r}")
        if self.inputs is not None and champion.inputs is not None:
            mine, theirs = dict(self.inputs), dict(champion.inputs)
            added = sorted(set(mine) - set(theirs))
            missing = sorted(set(theirs) - set(mine))
            kinds = sorted(
                f"{c} {theirs[c]}->{mine[c]}"
                for c in set(mine) & set(theirs)
                if mine[c] != theirs[c]
            )
            parts = []
            if added:
                parts.append(f"new column(s) {_listed(added)}")
            if missing:
                parts.append(f"missing column(s) {_listed(missing)}")
            if kinds:
                parts.append(f"changed kind {_listed(kinds)}")
            if parts:
                out.append("input signature differs: " + "; ".join(parts))
        return out

    def same_task_and_target(self, champion: ModelIdentity) -> bool:
        """No recorded difference in task or target (the metrics mean the same)."""
        return not any(d.startswith(("task ", "target ")) for d in self.differences(champion))
