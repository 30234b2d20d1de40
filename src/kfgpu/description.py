"""The bundle description (``bundle.json``) as a typed, frozen record.

Training writes the description as JSON (:func:`kfgpu.training.trainer.bundle_description`,
then :func:`kfgpu.bundle.write_bundle`); every reader (serving, evaluation, monitoring,
the registry, the CLI) gets a :class:`BundleDescription` parsed and checked once, at load
(:func:`kfgpu.bundle.read_description`, :func:`kfgpu.bundle.load_bundle`), instead of a
``dict`` read through ``.get("...")`` chains.

:meth:`BundleDescription.to_dict` gives back exactly the mapping that was parsed (keys
this kfgpu does not know are kept in :attr:`BundleDescription.other`), so a description
read and written again is byte for byte the file it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from kfgpu.errors import BundleError

__all__ = [
    "BUNDLE_FORMAT",
    "TASKS",
    "BundleDescription",
    "Task",
]

BUNDLE_FORMAT = "kfgpu-bundle/1"

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = get_args(Task)

#: Top-level keys the record holds as fields; any other key goes to ``other``.
_KNOWN = (
    "format",
    "task",
    "target",
    "model",
    "signature",
    "kfgpu_version",
    "created_at",
    "hyperparameters",
    "metrics",
    "training",
    "lineage",
    "labels",
    "decision",
    "target_scaling",
)
_FIX = "the bundle is damaged or not a kfgpu bundle: fetch it again or retrain"


def _bad(where: str, field_name: str, value: Any, expected: str) -> BundleError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return BundleError(f"bundle.json{where}: {field_name}={shown} is not {expected}; {_FIX}")


def _mapping(
    d: Mapping[str, Any], key: str, where: str, *, required: bool
) -> Mapping[str, Any] | None:
    if key not in d:
        if required:
            raise BundleError(f"bundle.json{where} has no {key!r}; {_FIX}")
        return None
    value = d[key]
    if not isinstance(value, Mapping):
        raise _bad(where, key, value, "a JSON object")
    return value


@dataclass(frozen=True)
class BundleDescription:
    """What ``bundle.json`` says about a model.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        target: the label column.
        model_family: the network family (a registered name or a user's import path).
        model_config: the family's configuration (rebuilds the network).
        inputs: the input signature, one ``{"name", "kind", ...}`` per raw column.
        signature: the whole ``signature`` section (inputs and outputs), as written.
        kfgpu_version, created_at: who wrote it, and when (UTC, ISO 8601).
        hyperparameters: the training configuration (``TrainConfig.to_dict()``).
        metrics: validation metrics at the best epoch.
        training: what training measured (rows, steps, world size, report ...).
        lineage: data fingerprints, run ids, tracking URI (redacted), code version.
        labels: classification only: ``classes``, ``positive_class``, ``train_distribution``.
        decision: the decision rule chosen on validation rows (:mod:`kfgpu.decision`), or None.
        target_scaling: regression only: ``{"mean", "scale"}`` of the target.
        format: the bundle format string.
        other: keys this kfgpu does not know, kept so that :meth:`to_dict` loses nothing.
    """

    task: Task
    target: str
    model_family: str
    model_config: Mapping[str, Any]
    signature: Mapping[str, Any] | None = None
    kfgpu_version: str | None = None
    created_at: str | None = None
    hyperparameters: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    training: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] | None = None
    labels: Mapping[str, Any] | None = None
    decision: Mapping[str, Any] | None = None
    target_scaling: Mapping[str, Any] | None = None
    format: str = BUNDLE_FORMAT
    other: Mapping[str, Any] = field(default_factory=dict)
    #: The ``model`` section as written (family and config, plus anything else it held).
    model: Mapping[str, Any] = field(default_factory=dict)

    # ---- typed views of the nested sections ----------------------------------------------
    @property
    def inputs(self) -> list[Mapping[str, Any]]:
        """The input signature: one mapping per raw input column, in input order."""
        return list((self.signature or {}).get("inputs") or [])

    @property
    def input_names(self) -> list[str]:
        """Names of the raw input columns, in input order."""
        return [str(i["name"]) for i in self.inputs]

    @property
    def classes(self) -> list[Any]:
        """The class labels (classification), in output order; ``[]`` for regression."""
        return list((self.labels or {}).get("classes") or [])

    @property
    def positive_class(self) -> Any:
        """The positive class of a binary classifier, or None."""
        return (self.labels or {}).get("positive_class")

    @property
    def train_distribution(self) -> Mapping[str, Any] | None:
        """Class -> share of the training rows (classification), or None."""
        return (self.labels or {}).get("train_distribution")

    @property
    def target_mean(self) -> float:
        """The regression target's training mean (0.0 for classification)."""
        return float((self.target_scaling or {}).get("mean", 0.0))

    @property
    def target_scale(self) -> float:
        """The regression target's training scale (1.0 for classification)."""
        return float((self.target_scaling or {}).get("scale", 1.0))

    @property
    def train_rows(self) -> int | None:
        """Rows the model trained on, or None when not recorded."""
        rows = (self.training or {}).get("train_rows")
        return None if rows is None else int(rows)

    def lineage_value(self, key: str) -> Any:
        """One lineage entry (``mlflow_run_id``, ``data_fingerprint`` ...), or None."""
        return (self.lineage or {}).get(key)

    # ---- parsing and writing ----------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "") -> BundleDescription:
        """Parse and check a ``bundle.json`` mapping.

        Args:
            d: the parsed JSON.
            where: where it came from (``" in 'path'"``), for messages.

        Raises:
            BundleError: a field is missing or has the wrong type; the message names the
                field and its value.
        """
        if not isinstance(d, Mapping):
            raise _bad(where, "bundle.json", d, "a JSON object")
        fmt = d.get("format")
        if fmt != BUNDLE_FORMAT:
            raise BundleError(
                f"bundle.json{where} has format={fmt!r}; this kfgpu reads {BUNDLE_FORMAT!r}: "
                "retrain with this kfgpu version or use the kfgpu that wrote it"
            )
        task = d.get("task")
        if task not in TASKS:
            raise _bad(where, "task", task, f"one of {', '.join(TASKS)}")
        target = d.get("target")
        if not isinstance(target, str) or not target:
            raise _bad(where, "target", target, "a column name")
        model = _mapping(d, "model", where, required=True)
        assert model is not None
        family = model.get("family")
        if not isinstance(family, str) or not family:
            raise _bad(where, "model.family", family, "a model family name")
        config = model.get("config", {})
        if not isinstance(config, Mapping):
            raise _bad(where, "model.config", config, "a JSON object")
        signature = _mapping(d, "signature", where, required=False)
        inputs = (signature or {}).get("inputs", [])
        if not isinstance(inputs, list) or not all(
            isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in inputs
        ):
            raise _bad(where, "signature.inputs", inputs, "a list of {'name': ...} objects")
        labels = _mapping(d, "labels", where, required=False)
        if labels is not None and not isinstance(labels.get("classes", []), list):
            raise _bad(where, "labels.classes", labels.get("classes"), "a list of class labels")
        if task == "classification" and not (labels or {}).get("classes"):
            raise BundleError(
                f"bundle.json{where} describes a classifier with no labels.classes; {_FIX}"
            )
        scaling = _mapping(d, "target_scaling", where, required=task == "regression")
        for key in ("mean", "scale"):
            value = (scaling or {}).get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _bad(where, f"target_scaling.{key}", value, "a number")
        for key in ("kfgpu_version", "created_at"):
            value = d.get(key)
            if value is not None and not isinstance(value, str):
                raise _bad(where, key, value, "a string")
        return cls(
            task=task,
            target=target,
            model_family=family,
            model_config=config,
            signature=signature,
            kfgpu_version=d.get("kfgpu_version"),
            created_at=d.get("created_at"),
            hyperparameters=_mapping(d, "hyperparameters", where, required=False),
            metrics=_mapping(d, "metrics", where, required=False),
            training=_mapping(d, "training", where, required=False),
            lineage=_mapping(d, "lineage", where, required=False),
            labels=labels,
            decision=_mapping(d, "decision", where, required=False),
            target_scaling=scaling,
            format=fmt,
            other={k: v for k, v in d.items() if k not in _KNOWN},
            model=model,
        )

    def to_dict(self) -> dict[str, Any]:
        """The mapping :meth:`from_dict` parsed: a section absent there is absent here."""
        out: dict[str, Any] = dict(self.other)
        out["format"] = self.format
        out["task"] = self.task
        out["target"] = self.target
        out["model"] = dict(self.model) or {
            "family": self.model_family,
            "config": dict(self.model_config),
        }
        optional = {
            "signature": self.signature,
            "kfgpu_version": self.kfgpu_version,
            "created_at": self.created_at,
            "hyperparameters": self.hyperparameters,
            "metrics": self.metrics,
            "training": self.training,
            "lineage": self.lineage,
            "labels": self.labels,
            "decision": self.decision,
            "target_scaling": self.target_scaling,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out
