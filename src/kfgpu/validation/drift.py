"""Data drift from two profiles: per-column tests and a dataset-level verdict.

:func:`detect_drift` compares a reference :class:`~kfgpu.validation.profile.ReferenceProfile`
(computed once, at training time) with a profile of the current data. Every statistic is
computed from the sketches and counts, never from raw rows, so a check over millions of
rows costs one streaming pass over the current data.

Numeric columns (``DriftConfig.numeric_method``):

* ``wasserstein`` (default): the Wasserstein-1 distance divided by the reference standard
  deviation (as Evidently does); drift when ``>= threshold`` (default 0.1).
* ``ks``: the two-sample Kolmogorov-Smirnov test; the statistic is the largest gap
  between the two CDFs over the bin edges of both sketches, the p-value comes from
  ``scipy.stats.kstwo`` with ``n * m / (n + m)`` samples; drift when ``p < threshold``
  (default 0.05). On large samples the test flags even negligible shifts.
* ``psi``: the population stability index over 10 buckets cut at the reference deciles;
  drift when ``>= threshold`` (default 0.2).

Categorical columns (``DriftConfig.categorical_method``), with missing values as their own
category and values beyond the count cap as an ``other`` category:

* ``jensenshannon`` (default): the Jensen-Shannon distance, base 2, in ``[0, 1]``; drift
  when ``>= threshold`` (default 0.1).
* ``chisquare``: Pearson's chi-square test of the current counts against the reference
  proportions, categories expected fewer than 5 times merged into one; drift when
  ``p < threshold`` (default 0.05).

The data set drifts when the share of drifted columns is at least ``drift_share``.
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
from kfgpu.validation.profile import (
    CategoricalCounts,
    ColumnKind,
    NumericSketch,
    ReferenceProfile,
)

__all__ = [
    "CATEGORICAL_METHODS",
    "DEFAULT_THRESHOLDS",
    "NUMERIC_METHODS",
    "P_VALUE_METHODS",
    "CategoricalMethod",
    "ColumnDrift",
    "ColumnDriftConfig",
    "DriftConfig",
    "DriftMethod",
    "DriftResult",
    "NumericMethod",
    "categorical_drift",
    "chisquare_from_counts",
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

NUMERIC_METHODS: tuple[str, ...] = get_args(NumericMethod)
CATEGORICAL_METHODS: tuple[str, ...] = get_args(CategoricalMethod)
P_VALUE_METHODS = ("ks", "chisquare")
"""Methods whose threshold is a p-value: drift when ``p < threshold``."""

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "wasserstein": 0.1,
    "ks": 0.05,
    "psi": 0.2,
    "jensenshannon": 0.1,
    "chisquare": 0.05,
}
"""Default threshold per method."""

PSI_BUCKETS = 10
PSI_EPSILON = 1e-4
CHISQUARE_MIN_EXPECTED = 5.0
_MIN_STD = 1e-3  # Evidently's guard for a constant reference column.
_TOP = 5


def _check_threshold(method: str, threshold: Any, where: str) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{where}={threshold!r} is not a number; pass a threshold for method {method!r} "
            f"such as {DEFAULT_THRESHOLDS[method]}"
        ) from e
    if isinstance(threshold, bool) or not math.isfinite(t):
        raise ConfigError(
            f"{where}={threshold!r} is not a finite number; pass a threshold for method "
            f"{method!r} such as {DEFAULT_THRESHOLDS[method]}"
        )
    if method in P_VALUE_METHODS:
        ok, why = 0.0 < t < 1.0, "a p-value in (0, 1)"
    elif method == "jensenshannon":
        ok, why = 0.0 < t <= 1.0, "a distance in (0, 1]"
    else:
        ok, why = t > 0.0, "a positive distance"
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


@dataclass(frozen=True)
class ColumnDriftConfig:
    """A per-column override.

    Attributes:
        method: the method for this column (``None``: the default for its kind).
        threshold: the threshold (``None``: the method's default, or the kind's threshold
            from :class:`DriftConfig` when ``method`` is ``None`` too).
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
                    f"threshold={t!r} is not a positive number; pass a threshold such as 0.1"
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
    "categorical_method",
    "categorical_threshold",
    "columns",
    "drift_share",
    "ignore",
    "numeric_method",
    "numeric_threshold",
)
_COLUMN_KEYS = ("method", "threshold")


def _reject_unknown(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    """ConfigError naming every key of ``data`` outside ``known``."""
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown!r}; the keys are {list(known)!r}")


@dataclass(frozen=True)
class DriftConfig:
    """How :func:`detect_drift` tests each column and decides dataset drift.

    Attributes:
        numeric_method: method for numeric columns.
        categorical_method: method for categorical columns.
        numeric_threshold: threshold for numeric columns (``None``: the method's default
            from :data:`DEFAULT_THRESHOLDS`).
        categorical_threshold: threshold for categorical columns (``None``: the default).
        columns: per-column overrides by column name.
        drift_share: the data set drifts when at least this share of the tested columns
            drift, in ``(0, 1]``.
        ignore: columns not tested.
    """

    numeric_method: NumericMethod = "wasserstein"
    categorical_method: CategoricalMethod = "jensenshannon"
    numeric_threshold: float | None = None
    categorical_threshold: float | None = None
    columns: Mapping[str, ColumnDriftConfig] = field(default_factory=dict)
    drift_share: float = 0.5
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
        share = self.drift_share
        if (
            isinstance(share, bool)
            or not isinstance(share, (int, float))
            or not 0.0 < float(share) <= 1.0
        ):
            raise ConfigError(
                f"drift_share={share!r} is outside (0, 1]; pass the share of drifted columns "
                f"that means dataset drift, such as 0.5"
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

        Example: ``{"numeric_method": "psi", "columns": {"amount": {"method": "ks",
        "threshold": 0.01}}}``.

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
        _reject_unknown(data, _CONFIG_KEYS, "drift config")
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
            _reject_unknown(spec, _COLUMN_KEYS, f"columns.{name}")
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
            "drift_share": self.drift_share,
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
    """The drift test of one column.

    Attributes:
        column: the column name.
        kind: ``"numeric"`` or ``"categorical"``.
        method: the method used.
        statistic: the test statistic or distance (KS D, chi-square, normalised
            Wasserstein, PSI, Jensen-Shannon distance).
        p_value: the p-value for ``ks`` and ``chisquare``, else ``None``.
        score: the value compared with ``threshold``: ``p_value`` for tests, else
            ``statistic``.
        threshold: the threshold used.
        drifted: ``p_value < threshold`` for tests, ``statistic >= threshold`` otherwise.
        reference_rows: rows in the reference profile (nulls included).
        current_rows: rows in the current profile.
        details: extra figures: means and standard deviations, null shares, top categories.
    """

    column: str
    kind: ColumnKind
    method: str
    statistic: float
    p_value: float | None
    score: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats as ``None``)."""
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "statistic": _json(self.statistic),
            "p_value": _json(self.p_value),
            "score": _json(self.score),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "details": {k: _json(v) for k, v in self.details.items()},
        }


@dataclass(frozen=True)
class DriftResult:
    """The drift of a data set against its reference.

    Attributes:
        columns: one :class:`ColumnDrift` per tested column, in reference order.
        n_columns: columns tested.
        n_drifted: columns that drifted.
        drift_share: ``n_drifted / n_columns`` (0 when nothing was tested).
        drift_share_threshold: the configured ``drift_share``.
        dataset_drift: ``drift_share >= drift_share_threshold`` (and at least one column tested).
        reference_rows: rows in the reference profile.
        current_rows: rows in the current profile.
        notes: caveats, e.g. truncated categorical counts or untested columns.
    """

    columns: list[ColumnDrift]
    n_columns: int
    n_drifted: int
    drift_share: float
    drift_share_threshold: float
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    notes: list[str] = field(default_factory=list)

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
            "dataset_drift": self.dataset_drift,
            "n_columns": self.n_columns,
            "n_drifted": self.n_drifted,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.drift_share_threshold,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted_columns": self.drifted_columns,
            "columns": [c.to_dict() for c in self.columns],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line: the verdict, the share and the drifted columns."""
        verdict = "dataset drift" if self.dataset_drift else "no dataset drift"
        op = ">=" if self.dataset_drift else "<"
        drifted = ", ".join(self.drifted_columns) or "none"
        return (
            f"{verdict}: {self.n_drifted} of {self.n_columns} columns drifted "
            f"({self.drift_share:.1%} {op} {self.drift_share_threshold:.0%}); drifted: {drifted}; "
            f"reference {self.reference_rows} rows, current {self.current_rows} rows"
        )


def _json(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.floating):
        return _json(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


# --------------------------------------------------------------------------- statistics


def _nodes(ref: NumericSketch, cur: NumericSketch) -> np.ndarray:
    return np.union1d(ref.edges(), cur.edges())


def ks_from_sketches(ref: NumericSketch, cur: NumericSketch) -> tuple[float, float]:
    """Two-sample KS statistic and p-value from two sketches.

    The statistic is the largest ``|F_ref - F_cur|`` over the bin edges of both sketches
    (the CDFs are exact there when both sketches share their relative accuracy).

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
    p = float(stats.kstwo.sf(d, max(1, round(en))))
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


def chisquare_from_counts(ref: CategoricalCounts, cur: CategoricalCounts) -> tuple[float, float]:
    """Chi-square test of current counts against reference proportions.

    Categories expected fewer than 5 times are merged into one bucket; current counts in
    categories the reference never saw (expected 0) make the statistic infinite.

    Returns:
        ``(chi2, p_value)``.
    """
    from scipy import stats

    _, r, c = _aligned_counts(ref, cur)
    if r.sum() == 0 or c.sum() == 0:
        return math.nan, math.nan
    expected = r / r.sum() * c.sum()
    small = expected < CHISQUARE_MIN_EXPECTED
    obs = list(c[~small])
    exp = list(expected[~small])
    if small.any():
        o_small, e_small = float(c[small].sum()), float(expected[small].sum())
        if e_small == 0.0:
            if o_small > 0:
                return math.inf, 0.0
        else:
            obs.append(o_small)
            exp.append(e_small)
    if len(obs) < 2:
        return 0.0, 1.0
    e = np.asarray(exp)
    e *= sum(obs) / e.sum()  # exact sums for scipy's check
    res = stats.chisquare(np.asarray(obs), e)
    return float(res.statistic), float(res.pvalue)


def _null_share(n_null: int, total: int) -> float:
    return n_null / total if total else math.nan


def numeric_drift(
    name: str, ref: NumericSketch, cur: NumericSketch, method: str, threshold: float
) -> ColumnDrift:
    """Test one numeric column from its two sketches."""
    details: dict[str, Any] = {
        "reference_mean": ref.mean,
        "current_mean": cur.mean,
        "reference_std": ref.std,
        "current_std": cur.std,
        "reference_null_share": _null_share(ref.null_count, ref.total),
        "current_null_share": _null_share(cur.null_count, cur.total),
    }
    p_value: float | None = None
    if ref.count == 0 or cur.count == 0:
        # A side without one finite value: drift when exactly one side is empty.
        stat = math.nan
        score = math.nan
        drifted = (ref.count == 0) != (cur.count == 0)
        details["empty"] = "reference" if ref.count == 0 else "current"
        if method in P_VALUE_METHODS:
            p_value = math.nan
    elif method == "wasserstein":
        w = wasserstein_from_sketches(ref, cur)
        std = ref.std
        norm = max(std, _MIN_STD)
        stat = score = w / norm
        details["wasserstein"] = w
        drifted = score >= threshold
    elif method == "ks":
        stat, p = ks_from_sketches(ref, cur)
        p_value = score = p
        drifted = p < threshold
    elif method == "psi":
        stat, cuts = psi_from_sketches(ref, cur)
        score = stat
        details["psi_cuts"] = len(cuts)
        drifted = score >= threshold
    else:  # pragma: no cover - resolve() rejects it
        raise ConfigError(f"method={method!r} is not a numeric drift method")
    return ColumnDrift(
        name,
        "numeric",
        method,
        stat,
        p_value,
        score,
        threshold,
        bool(drifted),
        ref.total,
        cur.total,
        details,
    )


def _top(c: CategoricalCounts) -> dict[str, float]:
    total = c.total
    if not total:
        return {}
    ordered = sorted(c.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP]
    return {k: round(v / total, 6) for k, v in ordered}


def categorical_drift(
    name: str, ref: CategoricalCounts, cur: CategoricalCounts, method: str, threshold: float
) -> ColumnDrift:
    """Test one categorical column from its two count tables."""
    details: dict[str, Any] = {
        "reference_top": _top(ref),
        "current_top": _top(cur),
        "reference_null_share": _null_share(ref.null_count, ref.total),
        "current_null_share": _null_share(cur.null_count, cur.total),
        "new_categories": len(set(cur.counts) - set(ref.counts)),
    }
    p_value: float | None = None
    if method == "jensenshannon":
        stat = score = jensenshannon_from_counts(ref, cur)
        drifted = score >= threshold
    elif method == "chisquare":
        stat, p = chisquare_from_counts(ref, cur)
        p_value = score = p
        drifted = p < threshold
    else:  # pragma: no cover - resolve() rejects it
        raise ConfigError(f"method={method!r} is not a categorical drift method")
    if math.isnan(score):
        drifted = (ref.total == 0) != (cur.total == 0)
    return ColumnDrift(
        name,
        "categorical",
        method,
        stat,
        p_value,
        score,
        threshold,
        bool(drifted),
        ref.total,
        cur.total,
        details,
    )


def detect_drift(
    reference: ReferenceProfile,
    current: ReferenceProfile,
    config: DriftConfig | None = None,
) -> DriftResult:
    """Test every reference column for drift in the current profile.

    Columns present only in the current profile are not tested (a note says so); columns
    in ``config.ignore`` are skipped.

    Args:
        reference: the reference profile (training data).
        current: the profile of the data to check.
        config: methods and thresholds; ``None`` uses :class:`DriftConfig` defaults.

    Returns:
        The per-column results and the dataset verdict.

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
        if rc.kind == "numeric":
            rs, cs = rc.numeric, cc.numeric
            res = numeric_drift(name, rs, cs, method, threshold)
            if res.method == "wasserstein" and rs.count and rs.std < _MIN_STD:
                notes.append(
                    f"column {name!r} is (nearly) constant in the reference; its Wasserstein "
                    f"distance is divided by {_MIN_STD} instead of its std {rs.std:.3g}"
                )
        else:
            rcat, ccat = rc.categorical, cc.categorical
            res = categorical_drift(name, rcat, ccat, method, threshold)
            for side, counts in (("reference", rcat), ("current", ccat)):
                if counts.truncated:
                    notes.append(
                        f"categorical counts of {name!r} in the {side} profile truncated to "
                        f"{counts.max_values} values; rarer values compared as one 'other' "
                        f"category"
                    )
        if "empty" in res.details:
            notes.append(f"column {name!r} has no finite value in the {res.details['empty']}")
        results.append(res)

    n = len(results)
    n_drifted = sum(r.drifted for r in results)
    share = n_drifted / n if n else 0.0
    return DriftResult(
        columns=results,
        n_columns=n,
        n_drifted=n_drifted,
        drift_share=share,
        drift_share_threshold=float(config.drift_share),
        dataset_drift=bool(n and share >= config.drift_share),
        reference_rows=reference.rows,
        current_rows=current.rows,
        notes=notes,
    )


def frame_drift(
    reference: ReferenceProfile,
    df: pd.DataFrame,
    config: DriftConfig | None = None,
    *,
    exclude: Sequence[str] = (),
    sample_rows: int = 0,
) -> DriftResult | None:
    """Drift of a data frame against a reference profile, on the columns both have.

    Columns in ``exclude`` (the label, which serving data lacks) are left out; the frame is
    profiled with the reference's column kinds, keeping ``sample_rows`` rows as a sample.
    None when no column is shared.
    """
    from kfgpu.validation.profile import build_profile

    shared = [c for c in reference.columns if c in df.columns and c not in exclude]
    if not shared:
        return None
    categorical = [c for c in reference.categorical_columns() if c in shared]
    current = build_profile([df[shared]], categorical=categorical, sample_rows=sample_rows)
    return detect_drift(reference.select(shared), current, config)
