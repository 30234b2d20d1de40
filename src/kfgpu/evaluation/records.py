"""The evaluation record (``evaluation.json``) and the gate verdict (``verdict.json``),
typed and checked once where they are read.

``evaluate_model`` writes the evaluation, ``check_gate`` reads it (and the champion's, from
the registry) and writes the verdict, ``register_model`` reads both, and the model card
renders them. Each reader gets a frozen :class:`EvaluationRecord` or :class:`GateVerdict`
from :func:`read_evaluation` / :func:`read_verdict` (or ``from_dict``), never a ``dict``
walked with ``.get("...")``. ``to_dict()`` gives back the JSON the writer wrote: a file
written by kfgpu, read and written again, is the same byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfgpu.errors import SchemaError

__all__ = [
    "EvaluationRecord",
    "GateReason",
    "GateVerdict",
    "read_evaluation",
    "read_verdict",
]

_EVAL_FIX = "re-run evaluate_model to write it again"
_VERDICT_FIX = "re-run check_gate to write it again"


def _bad(what: str, name: str, value: Any, expected: str, fix: str) -> SchemaError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return SchemaError(f"{what}: {name}={shown} is not {expected}; {fix}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _read_json(path: str | Path, what: str, fix: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise SchemaError(f"{what} {str(path)!r} does not exist; {fix}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise SchemaError(f"{what} {str(path)!r} is not valid JSON ({e}); {fix}") from e


# --------------------------------------------------------------------------- evaluation

#: section -> the JSON type it must have, and its value when absent (a champion's record
#: rebuilt from registry tags holds only ``metrics``).
_EVAL_SECTIONS: dict[str, tuple[type, Any]] = {
    "metrics": (dict, {}),
    "baseline": (dict, {}),
    "confusion_matrix": (list, []),
    "classes": (list, []),
    "curves": (dict, {}),
    "intervals": (dict, {}),
    "threshold": (dict, {}),
    "slices": (dict, {}),
    "fairness": (dict, {}),
    "importance": (list, []),
    "settings": (dict, {}),
    "model": (dict, {}),
}


@dataclass(frozen=True)
class EvaluationRecord:
    """What ``evaluate_model`` measured (see :class:`kfgpu.evaluation.metrics.Evaluation`).

    Attributes:
        task: ``"classification"`` or ``"regression"`` (None in a tags-only champion record).
        headline: the headline metric's name.
        rows: held-out rows scored.
        metrics: metric -> value on the held-out rows.
        baseline: metric -> the constant predictor's value.
        confusion_matrix, classes: classification only (rows: true class, in ``classes`` order).
        curves: ``{"roc": ..., "pr": ...}`` points.
        intervals: metric -> ``[low, high]`` bootstrap interval.
        threshold: the decision rule the hard labels used.
        slices: column -> slice value -> ``{"rows", "metrics"}``.
        fairness: sensitive column, groups and measures.
        importance: ``[{"feature", "importance", "std"}]``.
        settings: how it was computed (bootstrap, confidence, seed, slices ...).
        model: what the bundle said about the model (target, family, lineage, signature ...).
        other: keys this kfgpu does not know, kept for :meth:`to_dict`.
    """

    task: str | None = None
    headline: str | None = None
    rows: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    baseline: Mapping[str, Any] = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    curves: Mapping[str, Any] = field(default_factory=dict)
    intervals: Mapping[str, Any] = field(default_factory=dict)
    threshold: Mapping[str, Any] = field(default_factory=dict)
    slices: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    fairness: Mapping[str, Any] = field(default_factory=dict)
    importance: list[Mapping[str, Any]] = field(default_factory=list)
    settings: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    other: Mapping[str, Any] = field(default_factory=dict)

    # ---- typed views of the model section --------------------------------------------------
    @property
    def target(self) -> str | None:
        """The evaluated model's target column."""
        t = self.model.get("target")
        return None if t is None else str(t)

    @property
    def family(self) -> str | None:
        """The evaluated model's network family."""
        f = self.model.get("family")
        return None if f is None else str(f)

    @property
    def lineage(self) -> Mapping[str, Any]:
        """The bundle's lineage (fingerprints, run ids), ``{}`` when not recorded."""
        return self.model.get("lineage") or {}

    @property
    def features(self) -> list[str]:
        """The raw feature columns the model read."""
        return [str(f) for f in self.model.get("features") or []]

    @property
    def train_distribution(self) -> Mapping[str, Any] | None:
        """Class -> training rows (classification), or None."""
        return self.model.get("train_distribution")

    def metric(self, name: str | None) -> float | None:
        """A held-out metric's value, or None when it was not computed."""
        value = self.metrics.get(name) if name is not None else None
        return None if value is None else float(value)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "evaluation") -> EvaluationRecord:
        """Parse and check an evaluation mapping.

        Args:
            d: the parsed JSON.
            source: what it is (a path, "the champion's evaluation"), for messages.

        Raises:
            SchemaError: a section has the wrong type; the message names it and its value.
        """
        if not isinstance(d, Mapping):
            raise _bad(source, "evaluation", d, "a JSON object", _EVAL_FIX)
        task = d.get("task")
        if task is not None and task not in ("classification", "regression"):
            raise _bad(source, "task", task, "'classification' or 'regression'", _EVAL_FIX)
        headline = d.get("headline")
        if headline is not None and not isinstance(headline, str):
            raise _bad(source, "headline", headline, "a metric name", _EVAL_FIX)
        rows = d.get("rows")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            raise _bad(source, "rows", rows, "a row count", _EVAL_FIX)
        sections: dict[str, Any] = {}
        for key, (kind, empty) in _EVAL_SECTIONS.items():
            value = d.get(key)
            if value is None:
                value = type(empty)()
            if not isinstance(value, kind):
                expected = "a JSON object" if kind is dict else "a JSON list"
                raise _bad(source, key, value, expected, _EVAL_FIX)
            sections[key] = value
        for key in ("metrics", "baseline"):
            for name, value in sections[key].items():
                if value is not None and not _is_number(value):
                    raise _bad(source, f"{key}.{name}", value, "a number or null", _EVAL_FIX)
        for col, values in sections["slices"].items():
            if not isinstance(values, Mapping):
                raise _bad(source, f"slices.{col}", values, "a JSON object", _EVAL_FIX)
            for value, info in values.items():
                if (
                    not isinstance(info, Mapping)
                    or not _is_number(info.get("rows"))
                    or not isinstance(info.get("metrics"), Mapping)
                ):
                    raise _bad(
                        source,
                        f"slices.{col}.{value}",
                        info,
                        "{'rows': n, 'metrics': {...}}",
                        _EVAL_FIX,
                    )
        known = {"task", "headline", "rows", *_EVAL_SECTIONS}
        return cls(
            task=task,
            headline=headline,
            rows=rows,
            other={k: v for k, v in d.items() if k not in known},
            **sections,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON mapping ``evaluate_model`` writes."""
        return {
            **self.other,
            "task": self.task,
            "headline": self.headline,
            "metrics": self.metrics,
            "baseline": self.baseline,
            "rows": self.rows,
            "confusion_matrix": self.confusion_matrix,
            "classes": self.classes,
            "curves": self.curves,
            "intervals": self.intervals,
            "threshold": self.threshold,
            "slices": self.slices,
            "fairness": self.fairness,
            "importance": self.importance,
            "settings": self.settings,
            "model": self.model,
        }


def read_evaluation(path: str | Path) -> EvaluationRecord:
    """Read and check an ``evaluation.json`` written by ``evaluate_model``.

    Raises:
        SchemaError: the file is missing, not JSON, or a section is malformed.
    """
    what = f"evaluation {str(path)!r}"
    return EvaluationRecord.from_dict(_read_json(path, "evaluation", _EVAL_FIX), source=what)


# --------------------------------------------------------------------------- gate verdict


@dataclass(frozen=True)
class GateReason:
    """One check of the gate, passed or failed.

    Attributes:
        check: ``where.metric.check`` (``overall.roc_auc.min``, ``champion.identity`` ...).
        passed: whether it passed.
        value: the measured value (None when not computed or not numeric).
        limit: the limit it was held to (None for notes).
        message: one line saying what was compared.
    """

    check: str
    passed: bool
    message: str
    value: Any = None
    limit: Any = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "verdict") -> GateReason:
        """Parse one reason; SchemaError naming the field when malformed."""
        if not isinstance(d, Mapping):
            raise _bad(source, "reasons[]", d, "a JSON object", _VERDICT_FIX)
        for key, kind, expected in (
            ("check", str, "a check name"),
            ("passed", bool, "true or false"),
            ("message", str, "a message"),
        ):
            if not isinstance(d.get(key), kind):
                raise _bad(source, f"reasons[].{key}", d.get(key), expected, _VERDICT_FIX)
        return cls(
            check=d["check"],
            passed=d["passed"],
            message=d["message"],
            value=d.get("value"),
            limit=d.get("limit"),
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"check", "passed", "value", "limit", "message"}``, JSON-ready."""
        return {
            "check": self.check,
            "passed": self.passed,
            "value": self.value,
            "limit": self.limit,
            "message": self.message,
        }


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision and every reason for it (``verdict.json``).

    Attributes:
        blessed: True when no check failed.
        reasons: every check, in order.
        champion: name and version of the champion compared with (no evaluation), or None.
        spec: the gate spec applied (parsed).
        identity: the challenger's and champion's identities, what differs, whether allowed.
        registered_model_name: the registered model name the champion was looked up under.
    """

    blessed: bool
    reasons: tuple[GateReason, ...] = ()
    champion: Mapping[str, Any] | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)
    identity: Mapping[str, Any] | None = None
    registered_model_name: str | None = None

    @property
    def failures(self) -> list[GateReason]:
        """The failed checks."""
        return [r for r in self.reasons if not r.passed]

    @property
    def champion_version(self) -> str:
        """The compared champion's version, ``""`` when there was none."""
        return str((self.champion or {}).get("version") or "")

    def summary(self) -> str:
        """One line: blessed, or blocked with the first failures."""
        if self.blessed:
            return f"blessed: all {len(self.reasons)} checks passed"
        first = "; ".join(r.message for r in self.failures[:3])
        return f"blocked: {len(self.failures)} of {len(self.reasons)} checks failed ({first})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON mapping ``check_gate`` writes."""
        return {
            "blessed": self.blessed,
            "summary": self.summary(),
            "reasons": [r.to_dict() for r in self.reasons],
            "champion": self.champion,
            "spec": self.spec,
            "identity": self.identity,
            "registered_model_name": self.registered_model_name,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "verdict") -> GateVerdict:
        """Parse and check a verdict mapping (``summary`` is recomputed, not trusted).

        Raises:
            SchemaError: a field is missing or has the wrong type; the message names it.
        """
        if not isinstance(d, Mapping):
            raise _bad(source, "verdict", d, "a JSON object", _VERDICT_FIX)
        blessed = d.get("blessed")
        if not isinstance(blessed, bool):
            raise _bad(source, "blessed", blessed, "true or false", _VERDICT_FIX)
        reasons = d.get("reasons", [])
        if not isinstance(reasons, list):
            raise _bad(source, "reasons", reasons, "a JSON list", _VERDICT_FIX)
        for key in ("champion", "identity"):
            if d.get(key) is not None and not isinstance(d.get(key), Mapping):
                raise _bad(source, key, d.get(key), "a JSON object or null", _VERDICT_FIX)
        spec = d.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise _bad(source, "spec", spec, "a JSON object", _VERDICT_FIX)
        name = d.get("registered_model_name")
        if name is not None and not isinstance(name, str):
            raise _bad(source, "registered_model_name", name, "a model name", _VERDICT_FIX)
        return cls(
            blessed=blessed,
            reasons=tuple(GateReason.from_dict(r, source=source) for r in reasons),
            champion=d.get("champion"),
            spec=spec,
            identity=d.get("identity"),
            registered_model_name=name,
        )


def read_verdict(path: str | Path) -> GateVerdict:
    """Read and check a ``verdict.json`` written by ``check_gate``.

    Raises:
        SchemaError: the file is missing, not JSON, or a field is malformed.
    """
    what = f"verdict {str(path)!r}"
    return GateVerdict.from_dict(_read_json(path, "gate verdict", _VERDICT_FIX), source=what)
