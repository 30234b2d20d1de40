"""The decision rule: how a model's class probabilities become a label.

A binary model's label is "positive when its probability is at least the threshold". The
threshold is chosen once, at training time, on the VALIDATION rows, by a policy the user
sets, and stored in the bundle (``bundle.json`` ``decision``). Every consumer applies the
stored rule through :func:`label_indices`: the KServe predictor (V1 and V2), ``kfgpu
predict`` and batch inference, the MLflow pyfunc wrapper, the evaluation and the model
card. The held-out (test) rows never choose it, so the card's figures are an honest
estimate of what serving does.

Policies (``threshold_policy``):

* ``argmax``: the most probable class (0.5 for a binary model);
* ``f1``: the threshold with the best F1 on the validation rows;
* ``precision_at_recall:R``: the best precision among thresholds with recall >= R;
* ``recall_at_precision:P``: the best recall among thresholds with precision >= P (when
  no threshold reaches P, the one of highest precision, and the record says so);
* ``cost:fn=10,fp=1`` (also ``tp=``, ``tn=``; missing ones cost 0): the least total cost;
* a number in [0, 1]: that threshold.

Multiclass models use argmax whatever the policy (the record notes it).
A stored threshold lies halfway between two neighbouring validation scores, so a row's
label does not hinge on the last bit of a float computed on another device or batch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["POLICIES", "Policy", "choose_decision", "label_indices", "parse_policy"]

POLICIES = ("argmax", "f1", "precision_at_recall", "recall_at_precision", "cost")

_HELP = (
    "use 'argmax', 'f1', 'precision_at_recall:0.9', 'recall_at_precision:0.9', "
    "'cost:fn=10,fp=1' or a number in [0, 1]"
)


@dataclass(frozen=True)
class Policy:
    """A parsed ``threshold_policy``."""

    kind: str
    #: The recall/precision floor (``*_at_*``) or the fixed threshold (``fixed``).
    target: float | None = None
    #: ``cost``: the cost of a tp, fp, fn and tn (missing ones 0).
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        if self.kind == "fixed":
            return f"{self.target:g}"
        if self.kind in ("precision_at_recall", "recall_at_precision"):
            return f"{self.kind}:{self.target:g}"
        if self.kind == "cost":
            return "cost:" + ",".join(f"{k}={v:g}" for k, v in sorted(self.costs.items()))
        return self.kind


def parse_policy(text: str, *, field: str = "threshold_policy") -> Policy:
    """``"cost:fn=10,fp=1"`` -> ``Policy("cost", costs={"fn": 10, "fp": 1})``.

    Raises:
        ConfigError: the text is not one of the policies (the message lists them).
    """
    raw = str(text).strip()
    p = raw.lower()
    if p in ("argmax", "f1"):
        return Policy(p)
    name, _sep, arg = p.partition(":")
    name = name.strip()
    if name in ("precision_at_recall", "recall_at_precision"):
        try:
            target = float(arg.strip().lstrip("="))
        except ValueError:
            raise ConfigError(
                f"{field}={raw!r} needs a floor in (0, 1], e.g. '{name}:0.9'"
            ) from None
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"{field}={raw!r}: the floor must lie in (0, 1], e.g. '{name}:0.9'")
        return Policy(name, target=target)
    if name == "cost":
        costs: dict[str, float] = {}
        for part in filter(None, (s.strip() for s in arg.split(","))):
            m = re.fullmatch(r"(tp|fp|fn|tn)\s*=\s*([0-9.eE+\-]+)", part)
            try:
                value = float(m.group(2)) if m else float("nan")
            except ValueError:
                value = float("nan")
            if m is None or not value >= 0.0 or value == float("inf"):
                raise ConfigError(
                    f"{field}={raw!r}: {part!r} is not a cost; write 'cost:fn=10,fp=1' "
                    "(non-negative costs of fn, fp and optionally tp, tn)"
                )
            costs[m.group(1)] = value
        if not costs or costs.get("fn", 0.0) + costs.get("fp", 0.0) <= 0:
            raise ConfigError(
                f"{field}={raw!r} gives no cost to errors; write e.g. 'cost:fn=10,fp=1' "
                "(a missed positive costs 10, a false alarm 1)"
            )
        return Policy("cost", costs=costs)
    try:
        value = float(p)
    except ValueError:
        raise ConfigError(f"{field}={raw!r} is not understood; {_HELP}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{field}={raw!r} must lie in [0, 1]; {_HELP}")
    return Policy("fixed", target=value)


def _counts(y_pos: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per candidate threshold (every distinct score, highest first, then "all positive"
    is the last): the threshold halfway below it, and tp, fp, fn, tn there. Row 0 is
    "never positive"."""
    import numpy as np

    order = np.argsort(-score, kind="stable")
    s, y = score[order], y_pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each distinct score
    tp = np.r_[0.0, np.cumsum(y)[last].astype(np.float64)]
    fp = np.r_[0.0, (last + 1).astype(np.float64)] - tp
    p = float(y.sum())
    fn, tn = p - tp, (len(s) - p) - fp
    distinct = s[last]
    lower = np.r_[distinct[1:], min(0.0, float(distinct[-1]))]
    thresholds = (distinct + lower) / 2.0
    top = float(distinct[0])
    never = (top + 1.0) / 2.0 if top < 1.0 else float(np.nextafter(top, np.inf))
    return np.r_[never, thresholds], tp, fp, fn, tn


def _rates(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    import numpy as np

    def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    precision = div(tp, tp + fp)
    recall = div(tp, tp + fn)
    f1 = div(2 * tp, 2 * tp + fp + fn)
    return precision, recall, f1


def choose_decision(
    policy: Policy | str,
    y_true: Sequence[Any] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[Any],
    *,
    positive_class: Any = None,
) -> dict[str, Any]:
    """The decision record for ``bundle.json``, chosen on these (validation) rows.

    ``y_true`` holds class indices into ``classes`` (or the labels themselves),
    ``proba`` the model's ``(n, k)`` probabilities. The record holds ``policy``,
    ``threshold`` and ``positive_class`` (binary), ``chosen_on``/``rows``, and the
    precision, recall and F1 the threshold gets on these rows.
    """
    import numpy as np

    pol = parse_policy(policy) if isinstance(policy, str) else policy
    k = len(classes)
    record: dict[str, Any] = {"policy": pol.text, "chosen_on": "validation", "rows": len(proba)}
    if k != 2:
        if pol.kind != "argmax":
            record["note"] = f"policy {pol.text!r} applies to binary tasks; multiclass uses argmax"
        record["rule"] = "argmax"
        return record
    index = {str(c): i for i, c in enumerate(classes)}
    if positive_class is None or str(positive_class) not in index:
        pos = 1
    else:
        pos = index[str(positive_class)]
    y_arr = np.asarray(y_true)
    if y_arr.dtype.kind not in "iu":
        y_arr = np.asarray([index[str(v)] for v in y_arr.tolist()], dtype=np.int64)
    y_pos = y_arr == pos
    score = np.asarray(proba, dtype=np.float64)[:, pos]
    record.update(rule="threshold", positive_class=classes[pos])
    if pol.kind == "argmax" or len(score) == 0:
        t = 0.5
    elif pol.kind == "fixed":
        assert pol.target is not None
        t = pol.target
    else:
        thresholds, tp, fp, fn, tn = _counts(y_pos, score)
        precision, recall, f1 = _rates(tp, fp, fn)
        if pol.kind == "f1":
            i = int(np.argmax(f1))
        elif pol.kind == "precision_at_recall":
            assert pol.target is not None
            ok = recall >= pol.target - 1e-12
            # Best precision among those meeting the floor; ties: the higher recall.
            i = int(np.lexsort((recall, np.where(ok, precision, -1.0)))[-1])
        elif pol.kind == "recall_at_precision":
            assert pol.target is not None
            ok = (precision >= pol.target - 1e-12) & (tp > 0)
            if ok.any():
                i = int(np.lexsort((precision, np.where(ok, recall, -1.0)))[-1])
            else:
                i = int(np.lexsort((recall, precision))[-1])
                record["note"] = (
                    f"no threshold reaches precision {pol.target:g} on the validation rows; "
                    f"using the most precise one ({precision[i]:.4f})"
                )
        else:  # cost
            c = pol.costs
            total = (
                tp * c.get("tp", 0.0)
                + fp * c.get("fp", 0.0)
                + fn * c.get("fn", 0.0)
                + tn * c.get("tn", 0.0)
            )
            i = int(np.argmin(total))
            record["validation_cost"] = float(total[i])
        t = float(thresholds[i])
    record["threshold"] = float(t)
    pred = score >= t
    tp_, fp_ = float((pred & y_pos).sum()), float((pred & ~y_pos).sum())
    fn_ = float((~pred & y_pos).sum())
    prec, rec, f1_ = (float(a[0]) for a in _rates(*(np.array([v]) for v in (tp_, fp_, fn_))))
    # Accuracy at the stored threshold: the figure live accuracy is compared with
    # (monitoring's concept drift); the trainer's val_accuracy is argmax's.
    accuracy = float((pred == y_pos).mean()) if len(score) else 0.0
    record["validation"] = {"precision": prec, "recall": rec, "f1": f1_, "accuracy": accuracy}
    return record


def label_indices(
    proba: np.ndarray, decision: Mapping[str, Any] | None, classes: Sequence[Any]
) -> np.ndarray:
    """The class index of each row of ``proba`` under a stored ``decision`` record.

    No record (a bundle written before decisions were stored), a multiclass model or an
    ``argmax`` rule: the most probable class.
    """
    import numpy as np

    # float32 -> float64 is exact: the same probabilities give the same labels whatever
    # dtype a consumer holds them in.
    p = np.asarray(proba, dtype=np.float64)
    if (
        not decision
        or decision.get("rule") != "threshold"
        or len(classes) != 2
        or decision.get("threshold") is None
    ):
        return np.asarray(p.argmax(axis=1))
    index = {str(c): i for i, c in enumerate(classes)}
    pos = index.get(str(decision.get("positive_class")), 1)
    return np.where(p[:, pos] >= float(decision["threshold"]), pos, 1 - pos)
