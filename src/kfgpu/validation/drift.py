"""Data drift from two profiles: calibrated per-column tests and one dataset verdict.

:func:`detect_drift` compares a reference :class:`~kfgpu.validation.profile.ReferenceProfile`
(computed once, at training time) with a profile of the current data. Every statistic is
computed from the sketches and counts, never from raw rows, so a check over millions of
rows costs one streaming pass over the current data.

A column **drifts** when its difference from the reference is both

* **significant at the two row counts**: a two-sample test gives a p-value (numeric
  columns: Kolmogorov-Smirnov, the largest CDF gap over the sketches' bin edges with
  ``n * m / (n + m)`` effective samples; categorical columns: Pearson's chi-square test of
  homogeneity on the 2 x k table of counts, rare categories pooled), and the p-values of
  all the columns (and of the model's output, when there is one) are adjusted together
  for multiple testing (``correction``: ``holm``, the default, bounds the chance of any
  false flag by ``alpha`` whatever the dependence between columns; ``bh``,
  Benjamini-Hochberg, bounds the expected share of false flags); significant when the
  adjusted p-value is below ``alpha`` (default 0.05); and
* **larger than a practical effect size** (``numeric_method`` / ``categorical_method``
  choose the measure, the thresholds its minimum): ``wasserstein`` (default: the
  Wasserstein-1 distance over the reference standard deviation, >= 0.1), ``ks`` (the KS
  statistic D, >= 0.1), ``psi`` (population stability index over reference deciles,
  >= 0.2); ``jensenshannon`` (default: Jensen-Shannon distance, base 2, >= 0.1),
  ``chisquare`` (Cramer's V of the 2 x k table, >= 0.1).

So millions of rows do not flag a trivial shift (the effect is too small) and hundreds of
rows do not flag noise (it is not significant).

The **dataset verdict** (:func:`decide`, the one rule every caller uses) is

* ``insufficient data`` when either side has fewer than ``min_rows`` rows;
* with a model (feature ``importance`` and/or its output distributions): drift when the
  drifted columns carry at least ``importance_share`` of the model's feature importance
  (rule ``important_features``) or when the model's output distribution drifted (rule
  ``prediction_drift``, the same two-part test on the output); columns the model does not
  use are reported but cannot trigger it;
* without a model: drift when at least ``drift_share`` of the columns drifted (rule
  ``share_of_columns``; at least one).

Every column needs a significant test to drift, so on data from the reference
distribution the verdict alarms with probability at most ``alpha`` under ``holm``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
from kfgpu.validation.profile import ColumnKind, ColumnProfile, ReferenceProfile
from kfgpu.validation.sketch import CategoricalCounts, NumericSketch

__all__ = [
    "CATEGORICAL_METHODS",
    "CORRECTIONS",
    "DEFAULT_THRESHOLDS",
    "NUMERIC_METHODS",
    "PREDICTION_COLUMN",
    "RULES",
    "CategoricalMethod",
    "ColumnDrift",
    "ColumnDriftConfig",
    "Correction",
    "DriftConfig",
    "DriftMethod",
    "DriftResult",
    "DriftStatus",
    "NumericMethod",
    "adjust_p_values",
    "categorical_drift",
    "chisquare_from_counts",
    "compare_column",
    "cramers_v_from_counts",
    "decide",
    "detect_drift",
    "frame_drift",
    "jensenshannon_from_counts",
    "ks_from_sketches",
    "numeric_drift",
    "psi_from_sketches",
    "wasserstein_from_sketches",
]

NumericMethod = Literal["wasserstein", "ks", "psi"]
CategoricalMethod = Literal["jensenshannon", "chisquare"]
DriftMethod = Literal["wasserstein", "ks", "psi", "jensenshannon", "chisquare"]
Correction = Literal["holm", "bh"]
DriftStatus = Literal["drift", "no_drift", "insufficient_data"]

NUMERIC_METHODS: tuple[str, ...] = get_args(NumericMethod)
CATEGORICAL_METHODS: tuple[str, ...] = get_args(CategoricalMethod)
CORRECTIONS: tuple[str, ...] = get_args(Correction)
RULES = ("important_features", "prediction_drift", "share_of_columns")
"""The rules that can make a data set drift, as named in :attr:`DriftResult.rules`."""

PREDICTION_COLUMN = "prediction"
"""The name under which the model's output is tested."""

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "wasserstein": 0.1,
    "ks": 0.1,
    "psi": 0.2,
    "jensenshannon": 0.1,
    "chisquare": 0.1,
}
"""Default practical effect size per method (the minimum that counts as drift)."""

_BOUNDED = ("ks", "jensenshannon", "chisquare")  # effects in [0, 1]

PSI_BUCKETS = 10
PSI_EPSILON = 1e-4
CHISQUARE_MIN_EXPECTED = 5.0
_KS_EXACT_MAX_N = 10_000
_MIN_STD = 1e-3  # Evidently's guard for a constant reference column.
_TOP = 5


def _check_threshold(method: str, threshold: Any, where: str) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{where}={threshold!r} is not a number; pass an effect size for method {method!r} "
            f"such as {DEFAULT_THRESHOLDS[method]}"
        ) from e
    if isinstance(threshold, bool) or not math.isfinite(t):
        raise ConfigError(
            f"{where}={threshold!r} is not a finite number; pass an effect size for method "
            f"{method!r} such as {DEFAULT_THRESHOLDS[method]}"
        )
    if method in _BOUNDED:
        ok, why = 0.0 < t <= 1.0, "an effect size in (0, 1]"
    else:
        ok, why = t > 0.0, "a positive effect size"
    if not ok:
        raise ConfigError(
            f"{where}={threshold!r} is out of range for method {method!r}; pass {why} such "
            f"as {DEFAULT_THRESHOLDS[method]}"
        )
    return t


def _check_method(method: Any, allowed: tuple[str, ...], where: str) -> str:
    if method not in allowed:
        raise ConfigError(
            f"{where}={method!r} is not a drift method; pass one of {list(allowed)!r}"
        )
    return str(method)


def _check_share(value: Any, where: str, example: str, *, zero_ok: bool = False) -> float:
    lo_ok = (lambda v: v >= 0.0) if zero_ok else (lambda v: v > 0.0)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (lo_ok(float(value)) and float(value) <= 1.0)
    ):
        interval = "[0, 1]" if zero_ok else "(0, 1]"
        raise ConfigError(f"{where}={value!r} is outside {interval}; pass {example}")
    return float(value)


@dataclass(frozen=True)
class ColumnDriftConfig:
    """A per-column override.

    Attributes:
        method: the effect-size measure for this column (``None``: the default for its
            kind).
        threshold: the minimum effect size (``None``: the method's default, or the kind's
            threshold from :class:`DriftConfig` when ``method`` is ``None`` too).
    """

    method: DriftMethod | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.method is not None:
            _check_method(self.method, (*NUMERIC_METHODS, *CATEGORICAL_METHODS), "method")
            if self.threshold is not None:
                _check_threshold(self.method, self.threshold, "threshold")
        elif self.threshold is not None:
            t = self.threshold
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
                raise ConfigError(
                    f"threshold={t!r} is not a positive number; pass an effect size such as 0.1"
                )

    def to_dict(self) -> dict[str, Any]:
        """``{"method": ..., "threshold": ...}`` without the unset fields."""
        out: dict[str, Any] = {}
        if self.method is not None:
            out["method"] = self.method
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


_CONFIG_KEYS = (
    "alpha",
    "categorical_method",
    "categorical_threshold",
    "columns",
    "correction",
    "drift_share",
    "ignore",
    "importance_share",
    "min_rows",
    "numeric_method",
    "numeric_threshold",
)
_COLUMN_KEYS = ("method", "threshold")


def reject_unknown_keys(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    """ConfigError naming every key of ``data`` outside ``known``."""
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown!r}; the keys are {list(known)!r}")


@dataclass(frozen=True)
class DriftConfig:
    """How :func:`detect_drift` tests each column and decides dataset drift.

    Attributes:
        numeric_method: effect-size measure for numeric columns.
        categorical_method: effect-size measure for categorical columns.
        numeric_threshold: minimum effect for numeric columns (``None``: the method's
            default from :data:`DEFAULT_THRESHOLDS`).
        categorical_threshold: minimum effect for categorical columns (``None``: default).
        columns: per-column overrides by column name.
        alpha: the significance level after multiple-testing correction, in ``(0, 0.5]``;
            with ``holm``, the false-alarm rate the verdict keeps on same-distribution data.
        correction: ``holm`` (family-wise error) or ``bh`` (Benjamini-Hochberg).
        min_rows: fewer rows on either side give ``insufficient_data``.
        drift_share: without a model, the data set drifts when at least this share of the
            tested columns drift (and at least one does), in ``(0, 1]``.
        importance_share: with a model, the data set drifts when the drifted columns carry
            at least this share of the feature importance, in ``(0, 1]``.
        ignore: columns not tested.
    """

    numeric_method: NumericMethod = "wasserstein"
    categorical_method: CategoricalMethod = "jensenshannon"
    numeric_threshold: float | None = None
    categorical_threshold: float | None = None
    columns: Mapping[str, ColumnDriftConfig] = field(default_factory=dict)
    alpha: float = 0.05
    correction: Correction = "holm"
    min_rows: int = 100
    drift_share: float = 0.05
    importance_share: float = 0.1
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_method(self.numeric_method, NUMERIC_METHODS, "numeric_method")
        _check_method(self.categorical_method, CATEGORICAL_METHODS, "categorical_method")
        if self.numeric_threshold is not None:
            _check_threshold(self.numeric_method, self.numeric_threshold, "numeric_threshold")
        if self.categorical_threshold is not None:
            _check_threshold(
                self.categorical_method, self.categorical_threshold, "categorical_threshold"
            )
        _check_share(
            self.drift_share,
            "drift_share",
            "the share of drifted columns that means dataset drift, such as 0.05",
        )
        _check_share(
            self.importance_share,
            "importance_share",
            "the share of feature importance whose drift means dataset drift, such as 0.1",
        )
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 < float(a) <= 0.5:
            raise ConfigError(
                f"alpha={a!r} is outside (0, 0.5]; pass the false-alarm rate to keep, such as 0.05"
            )
        if self.correction not in CORRECTIONS:
            raise ConfigError(
                f"correction={self.correction!r} is not a multiple-testing correction; pass "
                f"one of {list(CORRECTIONS)!r}"
            )
        m = self.min_rows
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(
                f"min_rows={m!r} is not a positive integer; pass the fewest rows a verdict "
                f"needs, such as 100"
            )
        if not isinstance(self.columns, Mapping):
            raise ConfigError(
                f"columns={self.columns!r} is not a mapping; pass {{column: ColumnDriftConfig}}"
            )
        for name, cc in self.columns.items():
            if not isinstance(cc, ColumnDriftConfig):
                raise ConfigError(
                    f"columns[{name!r}]={cc!r} is not a ColumnDriftConfig; pass "
                    f"ColumnDriftConfig(method=..., threshold=...)"
                )
        if isinstance(self.ignore, str):
            object.__setattr__(self, "ignore", (self.ignore,))
        else:
            object.__setattr__(self, "ignore", tuple(str(c) for c in self.ignore))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DriftConfig:
        """Build a config from JSON-like data.

        Example: ``{"alpha": 0.01, "columns": {"amount": {"method": "ks",
        "threshold": 0.05}}}``.

        Raises:
            ConfigError: an unknown key, or a value out of range (the message names it).
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"drift config {data!r} is not a mapping; pass a JSON object with keys "
                f"{list(_CONFIG_KEYS)!r}"
            )
        reject_unknown_keys(data, _CONFIG_KEYS, "drift config")
        kw: dict[str, Any] = {k: data[k] for k in _CONFIG_KEYS if k in data and k != "columns"}
        if "ignore" in kw:
            ig = kw["ignore"]
            if isinstance(ig, str) or not isinstance(ig, (list, tuple)):
                raise ConfigError(f"ignore={ig!r} is not a list of column names; pass a list")
            kw["ignore"] = tuple(str(c) for c in ig)
        cols = data.get("columns") or {}
        if not isinstance(cols, Mapping):
            raise ConfigError(
                f"columns={cols!r} is not a mapping; pass {{column: {{method, threshold}}}}"
            )
        parsed: dict[str, ColumnDriftConfig] = {}
        for name, spec in cols.items():
            if not isinstance(spec, Mapping):
                raise ConfigError(
                    f"columns.{name}={spec!r} is not a mapping; pass "
                    f"{{'method': ..., 'threshold': ...}}"
                )
            reject_unknown_keys(spec, _COLUMN_KEYS, f"columns.{name}")
            try:
                parsed[str(name)] = ColumnDriftConfig(spec.get("method"), spec.get("threshold"))
            except ConfigError as e:
                raise ConfigError(f"columns.{name}.{e}") from e
        return cls(columns=parsed, **kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {
            "numeric_method": self.numeric_method,
            "categorical_method": self.categorical_method,
            "alpha": self.alpha,
            "correction": self.correction,
            "min_rows": self.min_rows,
            "drift_share": self.drift_share,
            "importance_share": self.importance_share,
            "ignore": list(self.ignore),
            "columns": {k: v.to_dict() for k, v in self.columns.items()},
        }
        if self.numeric_threshold is not None:
            out["numeric_threshold"] = self.numeric_threshold
        if self.categorical_threshold is not None:
            out["categorical_threshold"] = self.categorical_threshold
        return out

    def resolve(self, column: str, kind: ColumnKind) -> tuple[str, float]:
        """The ``(method, threshold)`` for ``column`` of ``kind``.

        Raises:
            ConfigError: an override names a method for the other kind of column.
        """
        cc = self.columns.get(column)
        if kind == "numeric":
            method: str = self.numeric_method
            threshold = self.numeric_threshold
            allowed = NUMERIC_METHODS
        else:
            method = self.categorical_method
            threshold = self.categorical_threshold
            allowed = CATEGORICAL_METHODS
        if cc is not None and cc.method is not None:
            if cc.method not in allowed:
                raise ConfigError(
                    f"columns.{column}.method={cc.method!r} does not apply to {kind} column "
                    f"{column!r}; pass one of {list(allowed)!r}"
                )
            method = cc.method
            threshold = None
        if cc is not None and cc.threshold is not None:
            threshold = cc.threshold
        if threshold is None:
            return method, DEFAULT_THRESHOLDS[method]
        return method, _check_threshold(method, threshold, f"columns.{column}.threshold")


@dataclass(frozen=True)
class ColumnDrift:
    """The drift test of one column (or of the model's output).

    Attributes:
        column: the column name (:data:`PREDICTION_COLUMN` for the model's output).
        kind: ``"numeric"`` or ``"categorical"``.
        method: the effect-size measure.
        statistic: the effect size (normalised Wasserstein, KS D, PSI, Jensen-Shannon
            distance, Cramer's V).
        threshold: the minimum effect size.
        test: the significance test, ``"ks"`` or ``"chisquare"``.
        test_statistic: its statistic (KS D, chi-square).
        p_value: its p-value, before correction.
        p_adjusted: the p-value after the multiple-testing correction (``None`` until
            :func:`decide` has adjusted the family).
        significant: ``p_adjusted < alpha``.
        drifted: significant and ``statistic >= threshold`` (a side with no value while
            the other has some drifts too).
        reference_rows: rows in the reference (nulls included).
        current_rows: rows in the current data.
        importance: the column's share of the model's feature importance (``None``
            without a model).
        details: extra figures: means and standard deviations, null shares, top categories.
    """

    column: str
    kind: ColumnKind
    method: str
    statistic: float
    threshold: float
    test: str
    test_statistic: float
    p_value: float
    reference_rows: int
    current_rows: int
    p_adjusted: float | None = None
    significant: bool = False
    drifted: bool = False
    importance: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def large(self) -> bool:
        """Whether the effect reaches the threshold (NaN, e.g. an empty side: no)."""
        return bool(self.statistic >= self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats as ``None``)."""
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "statistic": _json(self.statistic),
            "threshold": self.threshold,
            "test": self.test,
            "test_statistic": _json(self.test_statistic),
            "p_value": _json(self.p_value),
            "p_adjusted": _json(self.p_adjusted),
            "significant": self.significant,
            "drifted": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "importance": _json(self.importance),
            "details": {k: _json(v) for k, v in self.details.items()},
        }


@dataclass(frozen=True)
class DriftResult:
    """The drift of a data set against its reference, and the verdict.

    Attributes:
        status: ``"drift"``, ``"no_drift"`` or ``"insufficient_data"``.
        rules: the rules that fired (see :data:`RULES`), empty unless ``status`` is drift.
        reasons: one line per rule considered, with its figures.
        columns: one :class:`ColumnDrift` per tested column, in reference order.
        prediction: the test of the model's output distribution (``None`` without one).
        n_columns: columns tested.
        n_drifted: columns that drifted.
        drift_share: ``n_drifted / n_columns`` (0 when nothing was tested).
        importance_drifted: the share of feature importance on drifted columns (``None``
            without importance).
        reference_rows: rows in the reference profile.
        current_rows: rows in the current profile.
        config: the settings used (:meth:`DriftConfig.to_dict`).
        notes: caveats, e.g. truncated categorical counts or untested columns.
    """

    status: DriftStatus
    rules: list[str]
    reasons: list[str]
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None
    n_columns: int
    n_drifted: int
    drift_share: float
    importance_drifted: float | None
    reference_rows: int
    current_rows: int
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def dataset_drift(self) -> bool:
        """Whether the verdict is drift."""
        return self.status == "drift"

    @property
    def model_aware(self) -> bool:
        """Whether the verdict used the model (importance or output)."""
        return self.importance_drifted is not None or self.prediction is not None

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns."""
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift:
        """The result for one column; ConfigError if it was not tested."""
        for c in self.columns:
            if c.column == name:
                return c
        raise ConfigError(
            f"column {name!r} was not tested; tested columns are "
            f"{[c.column for c in self.columns]!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "status": self.status,
            "dataset_drift": self.dataset_drift,
            "verdict": self.verdict,
            "rules": list(self.rules),
            "reasons": list(self.reasons),
            "summary": self.summary(),
            "model_aware": self.model_aware,
            "n_columns": self.n_columns,
            "n_drifted": self.n_drifted,
            "drift_share": self.drift_share,
            "importance_drifted": _json(self.importance_drifted),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted_columns": self.drifted_columns,
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "columns": [c.to_dict() for c in self.columns],
            "config": dict(self.config),
            "notes": list(self.notes),
        }

    @property
    def verdict(self) -> str:
        """``drift``, ``no drift`` or ``insufficient data``."""
        return self.status.replace("_", " ")

    def summary(self) -> str:
        """One line: the verdict and the reasons, with their figures."""
        return f"{self.verdict}: " + "; ".join(self.reasons)


def _json(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.floating):
        return _json(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# --------------------------------------------------------------------------- statistics


def _nodes(ref: NumericSketch, cur: NumericSketch) -> np.ndarray:
    return np.union1d(ref.edges(), cur.edges())


def ks_from_sketches(ref: NumericSketch, cur: NumericSketch) -> tuple[float, float]:
    """Two-sample KS statistic and p-value from two sketches.

    The statistic is the largest ``|F_ref - F_cur|`` over the bin edges of both sketches
    (the CDFs are exact there when both sketches share their relative accuracy). The
    p-value is the Kolmogorov distribution's with ``n * m / (n + m)`` samples (exact up to
    10,000 effective samples, the asymptotic form with Stephens' correction above).

    Returns:
        ``(D, p_value)``; ``(nan, nan)`` when a side holds no finite value.
    """
    from scipy import stats

    n, m = ref.count, cur.count
    if n == 0 or m == 0:
        return math.nan, math.nan
    x = _nodes(ref, cur)
    d = float(np.max(np.abs(ref.cdf(x) - cur.cdf(x)))) if x.size else 0.0
    en = n * m / (n + m)
    if en <= _KS_EXACT_MAX_N:
        p = float(stats.kstwo.sf(d, max(1, round(en))))
    else:
        # kstwo's exact sf costs ~0.1 s per call past ~20,000; the Kolmogorov limit with
        # Stephens' correction agrees with it to about 0.2% (relative) there.
        s = math.sqrt(en)
        p = float(stats.kstwobign.sf(d * (s + 0.12 + 0.11 / s)))
    return d, min(max(p, 0.0), 1.0)


def wasserstein_from_sketches(ref: NumericSketch, cur: NumericSketch) -> float:
    """Wasserstein-1 distance ``integral |F_ref - F_cur| dx`` from two sketches.

    Both CDFs are piecewise linear between the union of bin edges, so the integral of
    their absolute difference is computed exactly segment by segment.
    """
    if ref.count == 0 or cur.count == 0:
        return math.nan
    x = _nodes(ref, cur)
    if x.size < 2:
        return 0.0
    d = ref.cdf(x) - cur.cdf(x)
    dx = np.diff(x)
    d0, d1 = d[:-1], d[1:]
    a0, a1 = np.abs(d0), np.abs(d1)
    same = d0 * d1 >= 0
    s = a0 + a1
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(s > 0, (d0 * d0 + d1 * d1) / (2.0 * np.where(s > 0, s, 1.0)), 0.0)
    area = np.where(same, 0.5 * s, crossing) * dx
    return float(area.sum())


def psi_from_sketches(
    ref: NumericSketch, cur: NumericSketch, buckets: int = PSI_BUCKETS
) -> tuple[float, list[float]]:
    """Population stability index over buckets cut at the reference quantiles.

    The cuts are the upper edges of the reference bins holding the deciles (so both CDFs
    are exact there); repeated cuts (discrete data) collapse. Empty buckets count as
    :data:`PSI_EPSILON`.

    Returns:
        ``(psi, cuts)``.
    """
    if ref.count == 0 or cur.count == 0:
        return math.nan, []
    cuts = sorted({ref.bin_upper(i / buckets) for i in range(1, buckets)})
    edges = np.asarray(cuts, dtype=np.float64)
    r = np.diff(np.concatenate([[0.0], ref.cdf(edges), [1.0]]))
    c = np.diff(np.concatenate([[0.0], cur.cdf(edges), [1.0]]))
    r = np.where(r <= 0, PSI_EPSILON, r)
    c = np.where(c <= 0, PSI_EPSILON, c)
    return float(np.sum((c - r) * np.log(c / r))), cuts


def _aligned_counts(
    ref: CategoricalCounts, cur: CategoricalCounts
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts over the union of categories, then null, then other."""
    cats = sorted(set(ref.counts) | set(cur.counts))
    r = [ref.counts.get(k, 0) for k in cats] + [ref.null_count, ref.other_count]
    c = [cur.counts.get(k, 0) for k in cats] + [cur.null_count, cur.other_count]
    return cats, np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64)


def jensenshannon_from_counts(ref: CategoricalCounts, cur: CategoricalCounts) -> float:
    """Jensen-Shannon distance (base 2) between the two category distributions."""
    from scipy.spatial.distance import jensenshannon

    _, r, c = _aligned_counts(ref, cur)
    if r.sum() == 0 or c.sum() == 0:
        return math.nan
    return float(jensenshannon(r / r.sum(), c / c.sum(), base=2.0))


def _contingency(ref: CategoricalCounts, cur: CategoricalCounts) -> tuple[np.ndarray, np.ndarray]:
    """The 2 x k table of counts. Categories expected fewer than 5 times on either side are
    pooled into one cell; a pool still that small joins the smallest other cell."""
    _, r, c = _aligned_counts(ref, cur)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    n_r, n_c = r.sum(), c.sum()
    if n_r == 0 or n_c == 0:
        return r, c

    def small(col: np.ndarray) -> np.ndarray:
        return np.asarray(np.minimum(col * n_r, col * n_c) / (n_r + n_c) < CHISQUARE_MIN_EXPECTED)

    rare = small(r + c)
    if rare.any() and (~rare).any():
        pr, pc = r[rare].sum(), c[rare].sum()
        r, c = r[~rare], c[~rare]
        if small(np.array([pr + pc]))[0]:
            j = int(np.argmin(r + c))
            r[j] += pr
            c[j] += pc
        else:
            r, c = np.append(r, pr), np.append(c, pc)
    return r, c


def chisquare_from_counts(ref: CategoricalCounts, cur: CategoricalCounts) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity of the two category distributions.

    Both sides are samples (the reference is not taken as the truth): the 2 x k table of
    counts over the union of categories (missing values and the ``other`` bucket included)
    is tested with ``k - 1`` degrees of freedom; categories expected fewer than 5 times on
    either side are pooled into one.

    Returns:
        ``(chi2, p_value)``; ``(nan, nan)`` when a side is empty.
    """
    from scipy import stats

    r, c = _contingency(ref, cur)
    n_r, n_c = float(r.sum()), float(c.sum())
    if n_r == 0 or n_c == 0:
        return math.nan, math.nan
    if r.size < 2:
        return 0.0, 1.0
    n = n_r + n_c
    col = r + c
    e_r, e_c = col * n_r / n, col * n_c / n
    chi2 = float(np.sum((r - e_r) ** 2 / e_r) + np.sum((c - e_c) ** 2 / e_c))
    return chi2, float(stats.chi2.sf(chi2, r.size - 1))


def cramers_v_from_counts(ref: CategoricalCounts, cur: CategoricalCounts) -> float:
    """Cramer's V of the 2 x k table: ``sqrt(chi2 / n)``, in ``[0, 1]``."""
    chi2, _ = chisquare_from_counts(ref, cur)
    n = ref.total + cur.total
    return math.sqrt(chi2 / n) if n and math.isfinite(chi2) else math.nan


def _null_share(n_null: int, total: int) -> float:
    return n_null / total if total else math.nan


def numeric_drift(
    name: str, ref: NumericSketch, cur: NumericSketch, method: str, threshold: float
) -> ColumnDrift:
    """Test one numeric column from its two sketches (KS test, effect by ``method``).

    The result is not yet adjusted for multiple testing (see :func:`decide`).
    """
    details: dict[str, Any] = {
        "reference_mean": ref.mean,
        "current_mean": cur.mean,
        "reference_std": ref.std,
        "current_std": cur.std,
        "reference_null_share": _null_share(ref.null_count, ref.total),
        "current_null_share": _null_share(cur.null_count, cur.total),
    }
    if ref.count == 0 or cur.count == 0:
        d = p = effect = math.nan
        details["empty"] = _empty_side(ref.count, cur.count)
    else:
        d, p = ks_from_sketches(ref, cur)
        if method == "wasserstein":
            w = wasserstein_from_sketches(ref, cur)
            effect = w / max(ref.std, _MIN_STD)
            details["wasserstein"] = w
        elif method == "ks":
            effect = d
        elif method == "psi":
            effect, cuts = psi_from_sketches(ref, cur)
            details["psi_cuts"] = len(cuts)
        else:  # pragma: no cover - resolve() rejects it
            raise ConfigError(f"method={method!r} is not a numeric drift method")
    return ColumnDrift(
        name, "numeric", method, effect, threshold, "ks", d, p, ref.total, cur.total,
        details=details,
    )  # fmt: skip


def _empty_side(n_ref: int, n_cur: int) -> str:
    return "both" if n_ref == n_cur == 0 else ("reference" if n_ref == 0 else "current")


def _top(c: CategoricalCounts) -> dict[str, float]:
    total = c.total
    if not total:
        return {}
    ordered = sorted(c.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP]
    return {k: round(v / total, 6) for k, v in ordered}


def categorical_drift(
    name: str, ref: CategoricalCounts, cur: CategoricalCounts, method: str, threshold: float
) -> ColumnDrift:
    """Test one categorical column from its two count tables (chi-square, effect by
    ``method``); not yet adjusted for multiple testing (see :func:`decide`)."""
    details: dict[str, Any] = {
        "reference_top": _top(ref),
        "current_top": _top(cur),
        "reference_null_share": _null_share(ref.null_count, ref.total),
        "current_null_share": _null_share(cur.null_count, cur.total),
        "new_categories": len(set(cur.counts) - set(ref.counts)),
    }
    chi2, p = chisquare_from_counts(ref, cur)
    if method == "jensenshannon":
        effect = jensenshannon_from_counts(ref, cur)
    elif method == "chisquare":
        n = ref.total + cur.total
        effect = math.sqrt(chi2 / n) if n and math.isfinite(chi2) else math.nan
    else:  # pragma: no cover - resolve() rejects it
        raise ConfigError(f"method={method!r} is not a categorical drift method")
    if ref.total == 0 or cur.total == 0:
        details["empty"] = _empty_side(ref.total, cur.total)
    return ColumnDrift(
        name, "categorical", method, effect, threshold, "chisquare", chi2, p, ref.total,
        cur.total, details=details,
    )  # fmt: skip


def compare_column(
    name: str, ref: ColumnProfile, cur: ColumnProfile, method: str, threshold: float
) -> ColumnDrift:
    """Test one column of either kind (not yet adjusted for multiple testing)."""
    if ref.kind == "numeric":
        return numeric_drift(name, ref.numeric, cur.numeric, method, threshold)
    return categorical_drift(name, ref.categorical, cur.categorical, method, threshold)


def adjust_p_values(p_values: Sequence[float], correction: str) -> np.ndarray:
    """Multiple-testing adjusted p-values (NaN, e.g. an empty side, stays NaN).

    Args:
        p_values: one p-value per hypothesis.
        correction: ``holm`` (Holm-Bonferroni step-down: family-wise error, any
            dependence) or ``bh`` (Benjamini-Hochberg step-up: false discovery rate).

    Returns:
        The adjusted p-values, in the input order; reject when ``< alpha``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ps = p[order]
    if correction == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ps))
    elif correction == "bh":
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * ps)[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    else:
        raise ConfigError(f"correction={correction!r} is not one of {list(CORRECTIONS)!r}")
    out[order] = adj
    return out


def _judged(col: ColumnDrift, p_adj: float, alpha: float, weight: float | None) -> ColumnDrift:
    from dataclasses import replace

    if "empty" in col.details:
        # One side without a value while the other has some is drift; both empty is not.
        drifted = col.details["empty"] != "both"
        return replace(
            col, p_adjusted=p_adj, significant=drifted, drifted=drifted, importance=weight
        )
    significant = bool(math.isfinite(p_adj) and p_adj < alpha)
    return replace(
        col,
        p_adjusted=p_adj,
        significant=significant,
        drifted=significant and col.large,
        importance=weight,
    )


def _fmt_col(c: ColumnDrift) -> str:
    imp = "" if c.importance is None else f", importance {c.importance:.1%}"
    return (
        f"{c.column} ({c.method} {_num(c.statistic)} >= {c.threshold:g}, adjusted p "
        f"{_num(c.p_adjusted)}{imp})"
    )


def _num(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"


def decide(
    columns: Sequence[ColumnDrift],
    config: DriftConfig,
    *,
    reference_rows: int,
    current_rows: int,
    importance: Mapping[str, float] | None = None,
    prediction: ColumnDrift | None = None,
    notes: Sequence[str] = (),
) -> DriftResult:
    """The dataset verdict from the unadjusted column tests: the one rule every caller uses.

    Adjusts the p-values of the columns and of the model's output together
    (``config.correction``), marks each as drifted (significant and large), then decides
    (see the module doc): ``insufficient_data`` below ``config.min_rows`` rows on either
    side; with a model, ``important_features`` and ``prediction_drift``; without one,
    ``share_of_columns``.

    Args:
        columns: the per-column tests (:func:`numeric_drift`, :func:`categorical_drift`).
        config: thresholds and rules.
        reference_rows: rows on the reference side.
        current_rows: rows on the current side.
        importance: the model's feature importance by column (normalised here over the
            tested columns; a column missing from it weighs 0); ``None``: no model.
        prediction: the test of the model's output (``None``: none).
        notes: caveats to carry into the result.

    Returns:
        The result, with the rule(s) that fired and their figures.
    """
    family = [*columns, *([prediction] if prediction is not None else [])]
    adjusted = adjust_p_values([c.p_value for c in family], config.correction)
    weights: dict[str, float] | None = None
    if importance is not None:
        raw = {c.column: max(0.0, float(importance.get(c.column, 0.0))) for c in columns}
        total = sum(raw.values())
        weights = {k: (v / total if total > 0 else 0.0) for k, v in raw.items()}
    judged = [
        _judged(c, float(adjusted[i]), config.alpha, None if weights is None else weights[c.column])
        for i, c in enumerate(columns)
    ]
    pred = (
        _judged(prediction, float(adjusted[-1]), config.alpha, None)
        if prediction is not None
        else None
    )
    n = len(judged)
    drifted = [c for c in judged if c.drifted]
    share = len(drifted) / n if n else 0.0
    imp_drifted = None if weights is None else sum(c.importance or 0.0 for c in drifted)
    tests = f"{config.correction} correction at alpha {config.alpha:g} over {len(family)} test(s)"
    rules: list[str] = []
    reasons: list[str] = []
    low = min(reference_rows, current_rows)
    if low < config.min_rows:
        status: DriftStatus = "insufficient_data"
        reasons.append(
            f"reference {reference_rows} rows, current {current_rows} rows; at least "
            f"min_rows {config.min_rows} on each side are needed for a verdict"
        )
    else:
        if weights is not None:
            assert imp_drifted is not None
            listed = ", ".join(_fmt_col(c) for c in drifted) or "none"
            fired = bool(drifted) and imp_drifted >= config.importance_share
            op = ">=" if fired else "<"
            reasons.append(
                f"important features: drifted columns carry {imp_drifted:.1%} of the model's "
                f"feature importance ({op} {config.importance_share:.0%}); drifted: {listed}"
            )
            if fired:
                rules.append("important_features")
        if pred is not None:
            ref_mean = pred.details.get("reference_mean")
            cur_mean = pred.details.get("current_mean")
            means = (
                f", mean {ref_mean:.4g} -> {cur_mean:.4g}"
                if isinstance(ref_mean, float) and isinstance(cur_mean, float)
                else ""
            )
            reasons.append(
                f"prediction drift: {'yes' if pred.drifted else 'no'}, model output "
                f"{pred.method} {_num(pred.statistic)} (minimum {pred.threshold:g}), adjusted "
                f"p {_num(pred.p_adjusted)}{means}"
            )
            if pred.drifted:
                rules.append("prediction_drift")
        if weights is None and pred is None:
            fired = bool(drifted) and share >= config.drift_share
            op = ">=" if fired else "<"
            listed = ", ".join(_fmt_col(c) for c in drifted) or "none"
            reasons.append(
                f"share of columns: {len(drifted)} of {n} columns drifted ({share:.1%} {op} "
                f"{config.drift_share:.0%}); drifted: {listed}"
            )
            if fired:
                rules.append("share_of_columns")
        elif drifted and "important_features" not in rules:
            reasons.append(
                f"{len(drifted)} of {n} columns drifted, but they carry too little of the "
                "model's importance to drift the data set by themselves"
            )
        status = "drift" if rules else "no_drift"
        reasons.append(f"{tests}; reference {reference_rows} rows, current {current_rows} rows")
    return DriftResult(
        status=status,
        rules=rules,
        reasons=reasons,
        columns=judged,
        prediction=pred,
        n_columns=n,
        n_drifted=len(drifted),
        drift_share=share,
        importance_drifted=imp_drifted,
        reference_rows=reference_rows,
        current_rows=current_rows,
        config=config.to_dict(),
        notes=list(notes),
    )


def detect_drift(
    reference: ReferenceProfile,
    current: ReferenceProfile,
    config: DriftConfig | None = None,
    *,
    importance: Mapping[str, float] | None = None,
    predictions: tuple[ColumnProfile, ColumnProfile] | None = None,
) -> DriftResult:
    """Test every reference column for drift in the current profile, and decide.

    Columns present only in the current profile are not tested (a note says so); columns
    in ``config.ignore`` are skipped.

    Args:
        reference: the reference profile (training data).
        current: the profile of the data to check.
        config: methods, thresholds and rules; ``None`` uses :class:`DriftConfig` defaults.
        importance: the model's feature importance by column (``None``: no model; the
            share-of-columns rule decides).
        predictions: profiles of the model's output on the reference and on the current
            data (same kind), tested as :data:`PREDICTION_COLUMN`.

    Returns:
        The per-column results and the dataset verdict (:func:`decide`).

    Raises:
        ConfigError: a reference column is missing from the current profile (the message
            names them; profile the same columns or list them in ``ignore``), a column has
            a different kind in the two profiles, or an override names a column the
            reference lacks or a method for the other kind.
    """
    config = config or DriftConfig()
    if not isinstance(config, DriftConfig):
        raise ConfigError(
            f"config={config!r} is not a DriftConfig; pass DriftConfig(...) or "
            f"DriftConfig.from_dict(...)"
        )
    ignore = set(config.ignore)
    unknown = sorted((set(config.columns) | ignore) - set(reference.columns))
    if unknown:
        raise ConfigError(
            f"drift config names column(s) {unknown!r} that the reference profile lacks; "
            f"reference columns are {list(reference.columns)!r}"
        )
    tested = [c for c in reference.columns if c not in ignore]
    missing = [c for c in tested if c not in current.columns]
    if missing:
        raise ConfigError(
            f"column(s) {missing!r} are in the reference profile but not in the current one; "
            f"profile the same columns or add them to the drift config's ignore list"
        )
    mismatched = [
        f"{c} (reference {reference.columns[c].kind}, current {current.columns[c].kind})"
        for c in tested
        if reference.columns[c].kind != current.columns[c].kind
    ]
    if mismatched:
        raise ConfigError(
            f"column kinds differ between the profiles: {mismatched}; build both profiles "
            f"with the same categorical= list"
        )

    notes: list[str] = []
    extra = [c for c in current.columns if c not in reference.columns]
    if extra:
        notes.append(f"columns not in the reference were not tested: {extra}")
    if not math.isclose(reference.relative_accuracy, current.relative_accuracy):
        notes.append(
            f"profiles use different relative accuracy ({reference.relative_accuracy} vs "
            f"{current.relative_accuracy}); CDFs are interpolated inside bins"
        )

    results: list[ColumnDrift] = []
    for name in tested:
        rc, cc = reference.columns[name], current.columns[name]
        method, threshold = config.resolve(name, rc.kind)
        res = compare_column(name, rc, cc, method, threshold)
        if rc.kind == "numeric":
            rs = rc.numeric
            if res.method == "wasserstein" and rs.count and rs.std < _MIN_STD:
                notes.append(
                    f"column {name!r} is (nearly) constant in the reference; its Wasserstein "
                    f"distance is divided by {_MIN_STD} instead of its std {rs.std:.3g}"
                )
        else:
            for side, counts in (("reference", rc.categorical), ("current", cc.categorical)):
                if counts.truncated:
                    notes.append(
                        f"categorical counts of {name!r} in the {side} profile truncated to "
                        f"{counts.max_values} values; rarer values compared as one 'other' "
                        f"category"
                    )
        if "empty" in res.details:
            side = res.details["empty"]
            notes.append(
                f"column {name!r} has no value in {'either side' if side == 'both' else 'the ' + side}"
            )
        results.append(res)

    prediction: ColumnDrift | None = None
    if predictions is not None:
        ref_out, cur_out = predictions
        method = config.numeric_method if ref_out.kind == "numeric" else config.categorical_method
        chosen = (
            config.numeric_threshold if ref_out.kind == "numeric" else config.categorical_threshold
        )
        prediction = compare_column(
            PREDICTION_COLUMN,
            ref_out,
            cur_out,
            method,
            DEFAULT_THRESHOLDS[method] if chosen is None else chosen,
        )
        if ref_out.stats.total < reference.rows:
            notes.append(
                f"the model's reference output comes from {ref_out.stats.total} sampled "
                f"reference rows (of {reference.rows}); its test uses that count"
            )
    return decide(
        results,
        config,
        reference_rows=reference.rows,
        current_rows=current.rows,
        importance=importance,
        prediction=prediction,
        notes=notes,
    )


def frame_drift(
    reference: ReferenceProfile,
    df: pd.DataFrame,
    config: DriftConfig | None = None,
    *,
    exclude: Sequence[str] = (),
    sample_rows: int = 0,
    importance: Mapping[str, float] | None = None,
    predictions: tuple[ColumnProfile, ColumnProfile] | None = None,
) -> DriftResult | None:
    """Drift of a data frame against a reference profile, on the columns both have.

    Columns in ``exclude`` (the label, which serving data lacks) are left out; the frame is
    profiled with the reference's column kinds, keeping ``sample_rows`` rows as a sample.
    ``importance`` and ``predictions`` as for :func:`detect_drift`. None when no column is
    shared.
    """
    from kfgpu.validation.profile import build_profile

    shared = [c for c in reference.columns if c in df.columns and c not in exclude]
    if not shared:
        return None
    categorical = [c for c in reference.categorical_columns() if c in shared]
    current = build_profile([df[shared]], categorical=categorical, sample_rows=sample_rows)
    return detect_drift(
        reference.select(shared),
        current,
        config,
        importance=importance,
        predictions=predictions,
    )
