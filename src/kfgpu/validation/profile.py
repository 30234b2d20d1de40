"""Reference profiles: small, mergeable summaries of a table for drift detection.

A :class:`ReferenceProfile` is computed once, at training time, streamed over chunks of
any size, and travels in the model bundle; a later drift check profiles only the new data
and compares the two profiles (:func:`kfgpu.validation.drift.detect_drift`), never the raw
reference rows.

* :class:`NumericSketch` summarises a numeric column DDSketch-style: values are binned by
  ``ceil(log(|x|) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)``, so every quantile is
  returned within relative accuracy ``a`` of the exact order statistic, whatever the
  distribution. Counts, min, max, mean and variance are exact (up to float rounding), and
  nulls and infinities are counted apart.
* :class:`CategoricalCounts` counts the (stringified) values of a categorical column,
  capped at ``max_values`` distinct values.
* :class:`ReferenceProfile` holds one of those per column plus a uniform sample of rows.

Every piece merges: the profile of a table equals the merge of the profiles of its chunks
(exactly, for counts and bins), so profiles are built in bounded memory by
:func:`build_profile` and :func:`profile_source`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from kfgpu.errors import ConfigError, DataFormatError, EmptyDataError, SchemaError

__all__ = [
    "DEFAULT_MAX_VALUES",
    "DEFAULT_RELATIVE_ACCURACY",
    "DEFAULT_SAMPLE_ROWS",
    "PROFILE_FILE",
    "PROFILE_VERSION",
    "SAMPLE_FILE",
    "CategoricalCounts",
    "ColumnKind",
    "ColumnProfile",
    "NumericSketch",
    "ReferenceProfile",
    "build_profile",
    "iter_source",
    "profile_source",
]

ColumnKind = Literal["numeric", "categorical"]

DEFAULT_RELATIVE_ACCURACY = 0.01
"""Relative accuracy of :class:`NumericSketch` quantiles unless told otherwise."""

DEFAULT_MAX_VALUES = 10_000
"""Distinct values a :class:`CategoricalCounts` keeps before folding the rest into ``other``."""

DEFAULT_SAMPLE_ROWS = 5_000
"""Rows in a profile's uniform sample unless told otherwise."""

PROFILE_VERSION = 1
PROFILE_FILE = "profile.json"
SAMPLE_FILE = "sample.parquet"

_ZERO_THRESHOLD = 1e-12
"""Values with ``|x|`` below this go to the zero bucket (quantile 0, no relative guarantee)."""

_EMPTY_I64 = np.zeros(0, dtype=np.int64)


def _check_accuracy(relative_accuracy: float) -> float:
    try:
        a = float(relative_accuracy)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"relative_accuracy={relative_accuracy!r} is not a number; pass a value in (0, 1) "
            f"such as 0.01"
        ) from e
    if not 0.0 < a < 1.0:
        raise ConfigError(
            f"relative_accuracy={relative_accuracy!r} is outside (0, 1); pass a value in "
            f"(0, 1) such as 0.01"
        )
    return a


@dataclass(frozen=True)
class _Bins:
    """A sketch flattened into sorted bins: ``lower < x <= upper`` holds ``counts``."""

    lower: np.ndarray
    upper: np.ndarray
    value: np.ndarray
    counts: np.ndarray
    cum: np.ndarray  # cumulative counts, cum[-1] == total


class NumericSketch:
    """A mergeable sketch of a numeric column with relative-error quantiles (DDSketch).

    A finite value ``x`` with ``|x| >= 1e-12`` goes to bin ``k = ceil(log(|x|) / log(gamma))``
    (kept apart for positive and negative values), which holds the values with ``|x|`` in
    ``(gamma**(k-1), gamma**k]``; its representative value ``2 * gamma**k / (gamma + 1)`` is
    within ``a`` of every one of them. Smaller ``|x|`` go to a zero bucket; NaN (and None)
    to ``null_count``; ``+inf`` and ``-inf`` to their own counts. ``count``, ``min``,
    ``max``, ``mean`` and ``std`` cover the finite values and are exact up to float
    rounding (``m2``, the sum of squared deviations from the mean, merges by Chan's
    formula).

    Bins are stored as dense ``int64`` arrays from an offset, so :meth:`add` is a handful
    of vectorised numpy calls per chunk.

    Args:
        relative_accuracy: ``a`` in ``(0, 1)``; quantiles are within ``a`` (relative) of
            the exact order statistic.
        quantiles: keep the bins; False keeps only the exact counts and moments (a feature
            that is mean-imputed and standardised needs no quantile, and skipping the bins
            makes :meth:`add` several times faster).
    """

    def __init__(
        self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY, *, quantiles: bool = True
    ) -> None:
        self.quantiles = bool(quantiles)
        self.relative_accuracy = _check_accuracy(relative_accuracy)
        self.gamma = (1.0 + self.relative_accuracy) / (1.0 - self.relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self._inv_log_gamma = 1.0 / self._log_gamma
        self.pos_offset = 0
        self.pos_counts = _EMPTY_I64
        self.neg_offset = 0
        self.neg_counts = _EMPTY_I64
        self.zero_count = 0
        self.null_count = 0
        self.pos_inf_count = 0
        self.neg_inf_count = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self.sum = 0.0
        self.m2 = 0.0
        self._bins_cache: _Bins | None = None

    # ------------------------------------------------------------------ building

    def add(self, values: Any) -> NumericSketch:
        """Add values (any array-like of numbers; NaN and None count as null).

        Returns:
            ``self``, for chaining.
        """
        x = _as_float_array(values)
        if x.size == 0:
            return self
        self._bins_cache = None
        finite = np.isfinite(x)
        n_finite = int(np.count_nonzero(finite))
        if n_finite < x.size:
            nan = np.isnan(x)
            n_nan = int(np.count_nonzero(nan))
            n_pos_inf = int(np.count_nonzero(x == np.inf))
            self.null_count += n_nan
            self.pos_inf_count += n_pos_inf
            self.neg_inf_count += x.size - n_finite - n_nan - n_pos_inf
            x = x[finite]
        if x.size == 0:
            return self

        # Exact moments, merged by Chan's parallel formula.
        n_b = x.size
        s_b = float(x.sum())
        mean_b = s_b / n_b
        m2_b = float(np.dot(x - mean_b, x - mean_b))
        self._merge_moments(n_b, s_b, m2_b, float(x.min()), float(x.max()))
        if not self.quantiles:
            return self

        # One log per value: k = ceil(log|x| / log gamma).
        ax = np.abs(x)
        with np.errstate(divide="ignore"):
            keys = np.ceil(np.log(ax) * self._inv_log_gamma)
        nonzero = ax >= _ZERO_THRESHOLD
        negative = x < 0
        n_zero = n_b - int(np.count_nonzero(nonzero))
        self.zero_count += n_zero
        if n_zero:
            pos_keys = keys[nonzero & ~negative]
            neg_keys = keys[nonzero & negative]
        elif negative.any():
            pos_keys = keys[~negative]
            neg_keys = keys[negative]
        else:
            pos_keys = keys
            neg_keys = keys[:0]
        self.pos_offset, self.pos_counts = _add_keys(self.pos_offset, self.pos_counts, pos_keys)
        self.neg_offset, self.neg_counts = _add_keys(self.neg_offset, self.neg_counts, neg_keys)
        return self

    def _merge_moments(self, n_b: int, s_b: float, m2_b: float, mn: float, mx: float) -> None:
        n_a = self.count
        if n_a == 0:
            self.count, self.sum, self.m2 = n_b, s_b, m2_b
        else:
            n = n_a + n_b
            delta = s_b / n_b - self.sum / n_a
            self.m2 = self.m2 + m2_b + delta * delta * n_a * n_b / n
            self.count = n
            self.sum = self.sum + s_b
        self.min = min(self.min, mn)
        self.max = max(self.max, mx)

    def merge(self, other: NumericSketch) -> NumericSketch:
        """Add every value summarised by ``other`` into this sketch.

        Bin counts merge exactly: merging the sketches of chunks gives the sketch of their
        concatenation.

        Raises:
            ConfigError: the sketches have different relative accuracy.

        Returns:
            ``self``, for chaining.
        """
        if self.quantiles and not other.quantiles:
            raise ConfigError(
                "cannot merge a moments-only numeric sketch into one that keeps quantiles; "
                "build both with the same `quantiles` setting"
            )
        if not math.isclose(self.relative_accuracy, other.relative_accuracy, rel_tol=1e-12):
            raise ConfigError(
                f"cannot merge numeric sketches with relative_accuracy="
                f"{self.relative_accuracy!r} and relative_accuracy={other.relative_accuracy!r}; "
                f"build both profiles with the same relative_accuracy"
            )
        self._bins_cache = None
        self.null_count += other.null_count
        self.pos_inf_count += other.pos_inf_count
        self.neg_inf_count += other.neg_inf_count
        self.zero_count += other.zero_count
        if other.count:
            self._merge_moments(other.count, other.sum, other.m2, other.min, other.max)
        self.pos_offset, self.pos_counts = _merge_dense(
            self.pos_offset, self.pos_counts, other.pos_offset, other.pos_counts
        )
        self.neg_offset, self.neg_counts = _merge_dense(
            self.neg_offset, self.neg_counts, other.neg_offset, other.neg_counts
        )
        return self

    # ------------------------------------------------------------------ statistics

    @property
    def total(self) -> int:
        """Every value added: finite, null and infinite."""
        return self.count + self.null_count + self.pos_inf_count + self.neg_inf_count

    @property
    def mean(self) -> float:
        """Mean of the finite values (NaN when there are none)."""
        return self.sum / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values (NaN when there are none)."""
        return math.sqrt(max(self.m2, 0.0) / self.count) if self.count else math.nan

    def _bins(self) -> _Bins:
        """The non-empty bins in ascending value order, clipped to ``[min, max]``."""
        if self._bins_cache is not None:
            return self._bins_cache
        g = self.gamma
        parts_lo: list[np.ndarray] = []
        parts_hi: list[np.ndarray] = []
        parts_c: list[np.ndarray] = []
        nz = np.flatnonzero(self.neg_counts)[::-1]  # most negative first
        if nz.size:
            k = (nz + self.neg_offset).astype(np.float64)
            parts_lo.append(-np.power(g, k))
            parts_hi.append(-np.power(g, k - 1.0))
            parts_c.append(self.neg_counts[nz])
        if self.zero_count:
            parts_lo.append(np.zeros(1))
            parts_hi.append(np.zeros(1))
            parts_c.append(np.array([self.zero_count], dtype=np.int64))
        pz = np.flatnonzero(self.pos_counts)
        if pz.size:
            k = (pz + self.pos_offset).astype(np.float64)
            parts_lo.append(np.power(g, k - 1.0))
            parts_hi.append(np.power(g, k))
            parts_c.append(self.pos_counts[pz])
        if parts_c:
            lower = np.concatenate(parts_lo)
            upper = np.concatenate(parts_hi)
            counts = np.concatenate(parts_c)
            # Representative value 2 g^k / (g + 1) (relative error <= a), as a midpoint in
            # log space, then everything clipped to the exact range.
            value = np.where(upper > 0, 2.0 * upper / (g + 1.0), 2.0 * lower / (g + 1.0))
            value[(lower == 0) & (upper == 0)] = 0.0
            lower = np.clip(lower, self.min, self.max)
            upper = np.clip(upper, self.min, self.max)
            value = np.clip(value, self.min, self.max)
        else:
            lower = upper = value = np.zeros(0)
            counts = _EMPTY_I64
        self._bins_cache = _Bins(lower, upper, value, counts, np.cumsum(counts))
        return self._bins_cache

    def quantile(self, q: float | Sequence[float] | np.ndarray) -> Any:
        """Quantile(s) of the finite values, within relative accuracy ``a``.

        Raises:
            ConfigError: the sketch keeps moments only (``quantiles=False``).

        The returned value is within ``a * |x|`` of ``x``, the exact order statistic of rank
        ``floor(q * (count - 1))`` (``numpy.quantile(..., method="lower")``), and always
        within ``[min, max]``.

        Args:
            q: a quantile or an array of quantiles in ``[0, 1]``.

        Returns:
            A float for a scalar ``q``, else a float array of ``q``'s shape (NaN when the
            sketch holds no finite value).

        Raises:
            ConfigError: a ``q`` outside ``[0, 1]``.
        """
        if not self.quantiles:
            raise ConfigError(
                "this numeric sketch keeps moments only (quantiles=False); build it with "
                "quantiles=True to ask for quantiles"
            )
        qa = np.asarray(q, dtype=np.float64)
        if np.any(~((qa >= 0.0) & (qa <= 1.0))):
            raise ConfigError(f"quantile q={q!r} is outside [0, 1]; pass values in [0, 1]")
        if self.count == 0:
            out = np.full(qa.shape, np.nan)
        else:
            b = self._bins()
            rank = np.floor(qa * (self.count - 1))
            idx = np.searchsorted(b.cum, rank, side="right")
            out = b.value[np.minimum(idx, b.value.size - 1)]
            out = np.where(qa == 0.0, self.min, np.where(qa == 1.0, self.max, out))
        return float(out) if out.ndim == 0 else out

    def bin_upper(self, q: float) -> float:
        """The upper edge of the bin holding quantile ``q``: a cut where :meth:`cdf` is exact."""
        if self.count == 0:
            return math.nan
        b = self._bins()
        rank = math.floor(q * (self.count - 1))
        idx = int(np.searchsorted(b.cum, rank, side="right"))
        return float(b.upper[min(idx, b.upper.size - 1)])

    def edges(self) -> np.ndarray:
        """Sorted unique bin edges (lower and upper) of the non-empty bins."""
        b = self._bins()
        return np.unique(np.concatenate([b.lower, b.upper]))

    def cdf(self, x: Any) -> Any:
        """Fraction of the finite values ``<= x`` (not for a moments-only sketch).

        Exact at bin edges (:meth:`edges`), linear inside a bin, non-decreasing in ``x``.

        Args:
            x: a value or an array of values.

        Returns:
            A float or a float array of ``x``'s shape (NaN when no finite value was added).
        """
        xa = np.asarray(x, dtype=np.float64)
        if self.count == 0:
            out = np.full(xa.shape, np.nan)
        else:
            out = _cdf_counts(self._bins(), xa) / self.count
        return float(out) if out.ndim == 0 else out

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready dict: bin maps as parallel ``*_keys``/``*_counts`` lists."""
        pk = np.flatnonzero(self.pos_counts)
        nk = np.flatnonzero(self.neg_counts)
        return {
            **({} if self.quantiles else {"quantiles": False}),
            "relative_accuracy": self.relative_accuracy,
            "count": self.count,
            "null_count": self.null_count,
            "pos_inf_count": self.pos_inf_count,
            "neg_inf_count": self.neg_inf_count,
            "zero_count": self.zero_count,
            "min": _json_float(self.min),
            "max": _json_float(self.max),
            "sum": self.sum,
            "m2": self.m2,
            "pos_keys": (pk + self.pos_offset).tolist(),
            "pos_counts": self.pos_counts[pk].tolist(),
            "neg_keys": (nk + self.neg_offset).tolist(),
            "neg_counts": self.neg_counts[nk].tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericSketch:
        """Rebuild a sketch from :meth:`to_dict` output.

        Raises:
            ConfigError: a key is missing or a value has the wrong shape.
        """
        try:
            s = cls(float(data["relative_accuracy"]), quantiles=bool(data.get("quantiles", True)))
            s.count = int(data["count"])
            s.null_count = int(data["null_count"])
            s.pos_inf_count = int(data["pos_inf_count"])
            s.neg_inf_count = int(data["neg_inf_count"])
            s.zero_count = int(data["zero_count"])
            s.min = _from_json_float(data["min"], math.inf)
            s.max = _from_json_float(data["max"], -math.inf)
            s.sum = float(data["sum"])
            s.m2 = float(data["m2"])
            s.pos_offset, s.pos_counts = _dense_from_lists(data["pos_keys"], data["pos_counts"])
            s.neg_offset, s.neg_counts = _dense_from_lists(data["neg_keys"], data["neg_counts"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"numeric sketch dict is invalid ({type(e).__name__}: {e}); pass the output "
                f"of NumericSketch.to_dict()"
            ) from e
        return s

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericSketch):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"NumericSketch(count={self.count}, null_count={self.null_count}, "
            f"bins={np.count_nonzero(self.pos_counts) + np.count_nonzero(self.neg_counts)}, "
            f"relative_accuracy={self.relative_accuracy})"
        )


def _cdf_counts(b: _Bins, x: np.ndarray) -> np.ndarray:
    """Number of values ``<= x`` (linear inside a bin) for sorted bins ``b``."""
    if b.counts.size == 0:
        return np.zeros(x.shape)
    # First bin whose upper edge is >= x: every bin before it lies entirely <= x.
    idx = np.searchsorted(b.upper, x, side="left")
    inside = np.minimum(idx, b.upper.size - 1)
    before = np.where(idx > 0, b.cum[np.maximum(idx - 1, 0)], 0).astype(np.float64)
    lo = b.lower[inside]
    hi = b.upper[inside]
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(width > 0, (x - lo) / np.where(width > 0, width, 1.0), 1.0)
    frac = np.where(x >= hi, 1.0, np.clip(frac, 0.0, 1.0))
    frac = np.where(x < lo, 0.0, frac)
    out = before + np.where(idx < b.upper.size, frac * b.counts[inside], 0.0)
    return np.asarray(out, dtype=np.float64)


def _as_float_array(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series):
        if values.dtype == object:
            return np.asarray(pd.to_numeric(values, errors="raise"), dtype=np.float64)
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    arr = np.asarray(values)
    if arr.dtype == object:
        return np.asarray(pd.to_numeric(pd.Series(arr.ravel()), errors="raise"), np.float64)
    return np.asarray(arr, dtype=np.float64).ravel()


def _add_keys(offset: int, counts: np.ndarray, keys: np.ndarray) -> tuple[int, np.ndarray]:
    """Add float bin keys to the dense ``counts`` starting at ``offset``."""
    if keys.size == 0:
        return offset, counts
    lo = int(keys.min())
    hi = int(keys.max())
    new = np.bincount((keys - lo).astype(np.intp), minlength=hi - lo + 1).astype(np.int64)
    return _merge_dense(offset, counts, lo, new)


def _merge_dense(off_a: int, a: np.ndarray, off_b: int, b: np.ndarray) -> tuple[int, np.ndarray]:
    if b.size == 0:
        return off_a, a
    if a.size == 0:
        return off_b, b.copy()
    lo = min(off_a, off_b)
    hi = max(off_a + a.size, off_b + b.size)
    if lo == off_a and hi == off_a + a.size:
        out = a.copy()
    else:
        out = np.zeros(hi - lo, dtype=np.int64)
        out[off_a - lo : off_a - lo + a.size] += a
    out[off_b - lo : off_b - lo + b.size] += b
    return lo, out


def _dense_from_lists(keys: Sequence[int], counts: Sequence[int]) -> tuple[int, np.ndarray]:
    k = np.asarray(keys, dtype=np.int64)
    c = np.asarray(counts, dtype=np.int64)
    if k.shape != c.shape or k.ndim != 1:
        raise ValueError("keys and counts must be parallel lists of the same length")
    if k.size == 0:
        return 0, _EMPTY_I64
    lo = int(k.min())
    out = np.zeros(int(k.max()) - lo + 1, dtype=np.int64)
    np.add.at(out, k - lo, c)
    return lo, out


def _json_float(x: float) -> float | None:
    return None if not math.isfinite(x) else x


def _from_json_float(x: Any, default: float) -> float:
    return default if x is None else float(x)


# --------------------------------------------------------------------------- categorical


class CategoricalCounts:
    """Counts of the values of a categorical column, stringified, capped at ``max_values``.

    Missing values (None, NaN, NA) are counted in ``null_count``. When more than
    ``max_values`` distinct values are seen, the most frequent ``max_values`` are kept and
    the rest are folded into ``other_count`` and ``truncated`` is set. Merging capped counts
    is approximate: a value folded into ``other`` in one part and kept in another is counted
    only where it was kept (``truncated: true`` in :meth:`to_dict` says so). Totals stay
    exact.

    Args:
        max_values: distinct values kept, at least 1.
    """

    def __init__(self, max_values: int = DEFAULT_MAX_VALUES) -> None:
        if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 1:
            raise ConfigError(
                f"max_values={max_values!r} is not a positive integer; pass max_values >= 1 "
                f"such as {DEFAULT_MAX_VALUES}"
            )
        self.max_values = max_values
        self.counts: dict[str, int] = {}
        self.null_count = 0
        self.other_count = 0
        self.truncated = False

    @property
    def total(self) -> int:
        """Every value added, null included."""
        return sum(self.counts.values()) + self.null_count + self.other_count

    def add(self, values: Any) -> CategoricalCounts:
        """Count the values of a Series or array-like (vectorised with ``value_counts``).

        Returns:
            ``self``, for chaining.
        """
        s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
        vc = s.value_counts(dropna=True, sort=False)
        self.null_count += len(s) - int(vc.sum())
        vc = vc[vc > 0]  # a categorical dtype lists its unused categories too
        if len(vc) > self.max_values:
            # Fold the rare tail here already: no dict of a million ids per chunk.
            vc = vc.sort_values(ascending=False, kind="stable")
            self.other_count += int(vc.iloc[self.max_values :].sum())
            vc = vc.iloc[: self.max_values]
            self.truncated = True
        if len(vc):
            keys = vc.index.astype(str)
            if not keys.is_unique:  # e.g. 1 and "1" stringify alike
                vc = pd.Series(vc.to_numpy(), index=keys).groupby(level=0).sum()
                keys = vc.index
            new = dict(zip(keys.tolist(), vc.to_numpy().tolist(), strict=True))
            self._merge_counts(new)
        return self

    def _merge_counts(self, new: Mapping[str, int]) -> None:
        if not self.counts:
            merged = dict(new)
        else:
            merged = self.counts
            for k, v in new.items():
                merged[k] = merged.get(k, 0) + v
        if len(merged) > self.max_values:
            ordered = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
            keep = ordered[: self.max_values]
            self.other_count += sum(v for _, v in ordered[self.max_values :])
            merged = dict(keep)
            self.truncated = True
        self.counts = merged

    def merge(self, other: CategoricalCounts) -> CategoricalCounts:
        """Add ``other``'s counts into these (approximate once either side is truncated).

        Returns:
            ``self``, for chaining.
        """
        self.null_count += other.null_count
        self.other_count += other.other_count
        self.truncated = self.truncated or other.truncated
        self._merge_counts(other.counts)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: values and counts as parallel lists, most frequent first."""
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "max_values": self.max_values,
            "values": [k for k, _ in ordered],
            "counts": [v for _, v in ordered],
            "null_count": self.null_count,
            "other_count": self.other_count,
            "truncated": self.truncated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalCounts:
        """Rebuild counts from :meth:`to_dict` output.

        Raises:
            ConfigError: a key is missing or a value has the wrong shape.
        """
        try:
            c = cls(int(data["max_values"]))
            values = [str(v) for v in data["values"]]
            counts = [int(v) for v in data["counts"]]
            if len(values) != len(counts):
                raise ValueError("values and counts must be parallel lists of the same length")
            c.counts = dict(zip(values, counts, strict=True))
            c.null_count = int(data["null_count"])
            c.other_count = int(data["other_count"])
            c.truncated = bool(data["truncated"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"categorical counts dict is invalid ({type(e).__name__}: {e}); pass the "
                f"output of CategoricalCounts.to_dict()"
            ) from e
        return c

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalCounts):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"CategoricalCounts(values={len(self.counts)}, null_count={self.null_count}, "
            f"other_count={self.other_count}, truncated={self.truncated})"
        )


# --------------------------------------------------------------------------- profiles


@dataclass
class ColumnProfile:
    """The summary of one column.

    Attributes:
        name: the column name.
        kind: ``"numeric"`` (a :class:`NumericSketch`) or ``"categorical"`` (a
            :class:`CategoricalCounts`).
        stats: the sketch or the counts.
    """

    name: str
    kind: ColumnKind
    stats: NumericSketch | CategoricalCounts

    @property
    def numeric(self) -> NumericSketch:
        """The numeric sketch; ConfigError for a categorical column."""
        if not isinstance(self.stats, NumericSketch):
            raise ConfigError(f"column {self.name!r} is {self.kind}, not numeric")
        return self.stats

    @property
    def categorical(self) -> CategoricalCounts:
        """The categorical counts; ConfigError for a numeric column."""
        if not isinstance(self.stats, CategoricalCounts):
            raise ConfigError(f"column {self.name!r} is {self.kind}, not categorical")
        return self.stats

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """Merge ``other`` (same kind) into this profile; returns ``self``."""
        if other.kind != self.kind:
            raise ConfigError(
                f"column {self.name!r} is {self.kind} in one profile and {other.kind} in the "
                f"other; pass categorical= with the same columns to both"
            )
        if isinstance(self.stats, NumericSketch):
            self.stats.merge(other.numeric)
        else:
            self.stats.merge(other.categorical)
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., "stats": ...}``, JSON-ready."""
        return {"kind": self.kind, "stats": self.stats.to_dict()}

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild from :meth:`to_dict` output."""
        kind = data.get("kind")
        if kind == "numeric":
            return cls(name, "numeric", NumericSketch.from_dict(data["stats"]))
        if kind == "categorical":
            return cls(name, "categorical", CategoricalCounts.from_dict(data["stats"]))
        raise ConfigError(
            f"column {name!r} has kind={kind!r} in the profile; expected 'numeric' or 'categorical'"
        )


@dataclass
class ReferenceProfile:
    """Per-column summaries of a table plus a uniform sample of its rows.

    Attributes:
        rows: rows summarised.
        columns: per-column profiles, in table order.
        sample: a uniform random sample of up to ``sample_rows`` rows (reservoir sampling;
            merged by drawing from each side in proportion to the rows it saw).
        sample_rows: the sample's capacity.
        seed: seed for the sample draws.
        relative_accuracy: relative accuracy of the numeric sketches.
    """

    rows: int
    columns: dict[str, ColumnProfile]
    sample: pd.DataFrame = field(repr=False)
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    seed: int = 0
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        """``{column: kind}``."""
        return {name: c.kind for name, c in self.columns.items()}

    def categorical_columns(self) -> list[str]:
        """Names of the categorical columns, in table order."""
        return [n for n, c in self.columns.items() if c.kind == "categorical"]

    def select(self, columns: Sequence[str]) -> ReferenceProfile:
        """A new profile of only ``columns`` (statistics shared, sample subset copied).

        Raises:
            ConfigError: a column is not in the profile.
        """
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ConfigError(
                f"columns {missing!r} are not in the profile; profile columns are "
                f"{list(self.columns)!r}"
            )
        keep = [c for c in columns if c in self.sample.columns]
        return ReferenceProfile(
            self.rows,
            {c: self.columns[c] for c in columns},
            self.sample[keep].copy(),
            self.sample_rows,
            self.seed,
            self.relative_accuracy,
        )

    def merge(self, other: ReferenceProfile) -> ReferenceProfile:
        """Merge ``other`` (same columns and kinds) into this profile; returns ``self``.

        Raises:
            ConfigError: the profiles have different columns or kinds.
        """
        mine, theirs = set(self.columns), set(other.columns)
        if mine != theirs:
            raise ConfigError(
                f"cannot merge profiles with different columns: only in this profile "
                f"{sorted(mine - theirs)!r}, only in the other {sorted(theirs - mine)!r}; "
                f"profile the same columns (categorical=, exclude=) in both"
            )
        for name, col in self.columns.items():
            col.merge(other.columns[name])
        rng = np.random.default_rng([self.seed, self.rows, other.rows])
        self.sample = _merge_samples(
            self.sample, self.rows, other.sample, other.rows, self.sample_rows, rng
        )
        self.rows += other.rows
        return self

    def to_dict(self) -> dict[str, Any]:
        """The profile without its sample, JSON-ready."""
        return {
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "sample_rows": self.sample_rows,
            "seed": self.seed,
            "relative_accuracy": self.relative_accuracy,
            "column_order": list(self.columns),
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], sample: pd.DataFrame | None = None
    ) -> ReferenceProfile:
        """Rebuild from :meth:`to_dict` output (and an optional sample).

        Raises:
            ConfigError: the dict is not a profile of a version this code reads.
        """
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise ConfigError(
                f"profile version={version!r} is not supported; rebuild the profile with "
                f"this kfgpu (version {PROFILE_VERSION})"
            )
        try:
            cols_data = data["columns"]
            order = list(data.get("column_order") or cols_data)
            columns = {name: ColumnProfile.from_dict(name, cols_data[name]) for name in order}
            rows = int(data["rows"])
            sample_rows = int(data["sample_rows"])
            seed = int(data["seed"])
            accuracy = float(data["relative_accuracy"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"profile dict is invalid ({type(e).__name__}: {e}); pass the output of "
                f"ReferenceProfile.to_dict()"
            ) from e
        if sample is None:
            sample = pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
        return cls(rows, columns, sample, sample_rows, seed, accuracy)

    def save(self, directory: str | os.PathLike[str]) -> dict[str, str]:
        """Write ``profile.json`` (sorted keys, compact) and ``sample.parquet`` atomically.

        Returns:
            ``{"profile": path, "sample": path}``.
        """
        from kfgpu.data._atomic import atomic_write_text
        from kfgpu.data.io import write_parquet

        d = os.fspath(directory)
        os.makedirs(d, exist_ok=True)
        profile_path = os.path.join(d, PROFILE_FILE)
        sample_path = os.path.join(d, SAMPLE_FILE)
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        atomic_write_text(profile_path, text)
        write_parquet(self.sample, sample_path)
        return {"profile": profile_path, "sample": sample_path}

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ReferenceProfile:
        """Read a profile written by :meth:`save` (the sample is optional).

        Raises:
            DataNotFoundError: there is no ``profile.json`` in ``directory``.
            ConfigError: the file is not a profile.
        """
        from kfgpu.errors import DataNotFoundError

        d = os.fspath(directory)
        profile_path = os.path.join(d, PROFILE_FILE)
        if not os.path.exists(profile_path):
            raise DataNotFoundError(
                f"profile directory {d!r} has no {PROFILE_FILE}; pass a directory written by "
                f"ReferenceProfile.save()"
            )
        try:
            with open(profile_path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"profile file {profile_path!r} is not JSON ({e}); rewrite it with "
                f"ReferenceProfile.save()"
            ) from e
        sample_path = os.path.join(d, SAMPLE_FILE)
        sample = None
        if os.path.exists(sample_path):
            import pyarrow.parquet as pq

            sample = pq.read_table(sample_path).to_pandas()
        return cls.from_dict(data, sample)


def _merge_samples(
    a: pd.DataFrame, seen_a: int, b: pd.DataFrame, seen_b: int, k: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Merge two uniform reservoirs of ``seen_a`` and ``seen_b`` rows into one of ``k``.

    Each input is a uniform sample of ``min(k, seen)`` rows; drawing the number taken from
    ``a`` from the hypergeometric law over the seen counts keeps the result uniform.
    """
    if seen_b == 0 or len(b) == 0:
        return a
    if seen_a == 0 or len(a) == 0:
        return b
    if len(a) + len(b) <= k:
        return pd.concat([a, b], ignore_index=True)
    n = min(k, seen_a + seen_b)
    take_a = int(rng.hypergeometric(seen_a, seen_b, n))
    take_a = min(take_a, len(a))
    take_b = min(n - take_a, len(b))
    ia = np.sort(rng.choice(len(a), take_a, replace=False))
    ib = np.sort(rng.choice(len(b), take_b, replace=False))
    return pd.concat([a.iloc[ia], b.iloc[ib]], ignore_index=True)


def _infer_kinds(
    frame: pd.DataFrame, categorical: Sequence[str] | None, exclude: Sequence[str]
) -> dict[str, ColumnKind]:
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SchemaError(f"columns {dup!r} appear more than once; give every column a unique name")
    unknown = [c for c in exclude if c not in names]
    if unknown:
        raise SchemaError(
            f"exclude={unknown!r} names columns the data does not have; available columns are "
            f"{names!r}"
        )
    if categorical is not None:
        cat = [str(c) for c in categorical]
        unknown = [c for c in cat if c not in names]
        if unknown:
            raise SchemaError(
                f"categorical={unknown!r} names columns the data does not have; available "
                f"columns are {names!r}"
            )
    kinds: dict[str, ColumnKind] = {}
    for col, name in zip(frame.columns, names, strict=True):
        if name in exclude:
            continue
        if categorical is not None:
            kinds[name] = "categorical" if name in cat else "numeric"
        else:
            dtype = frame[col].dtype
            is_num = pd.api.types.is_bool_dtype(dtype) or (
                pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
            )
            kinds[name] = "numeric" if is_num else "categorical"
    return kinds


def _profile_chunk(
    frame: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    sample_rows: int,
    seed: int,
    relative_accuracy: float,
    max_values: int,
    chunk_index: int,
) -> ReferenceProfile:
    columns: dict[str, ColumnProfile] = {}
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"chunk {chunk_index} has no column(s) {missing!r} that the first chunk had; "
            f"every chunk must have the same columns (available: {list(map(str, frame.columns))!r})"
        )
    for name, kind in kinds.items():
        s = frame[name]
        if kind == "numeric":
            try:
                columns[name] = ColumnProfile(
                    name, "numeric", NumericSketch(relative_accuracy).add(s)
                )
            except (TypeError, ValueError) as e:
                raise SchemaError(
                    f"column {name!r} (dtype {s.dtype}) in chunk {chunk_index} is not numeric "
                    f"({e}); list it in categorical= or clean the data"
                ) from e
        else:
            columns[name] = ColumnProfile(name, "categorical", CategoricalCounts(max_values).add(s))
    n = len(frame)
    rng = np.random.default_rng([seed, chunk_index, n])
    cols = list(kinds)
    if n > sample_rows:
        # Rows first, then columns: never copy the whole chunk.
        idx = np.sort(rng.choice(n, sample_rows, replace=False))
        sample = frame.iloc[idx][cols].reset_index(drop=True)
    else:
        sample = frame[cols].reset_index(drop=True)
    return ReferenceProfile(n, columns, sample, sample_rows, seed, relative_accuracy)


def _select_columns(
    frames: Iterable[pd.DataFrame], wanted: list[str], categorical: Sequence[str] | None
) -> tuple[Iterator[pd.DataFrame], list[str] | None]:
    """Keep the wanted columns the first chunk has; later chunks must have them too."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return iter(()), None if categorical is None else list(categorical)
    keep = [c for c in wanted if c in first.columns]
    if not keep:
        raise SchemaError(
            f"the data has none of the columns {wanted[:10]} (it has "
            f"{[str(c) for c in first.columns][:10]}); compare data of the same kind"
        )
    if categorical is not None:
        categorical = [c for c in categorical if c in keep]

    def chunks() -> Iterator[pd.DataFrame]:
        yield first[keep]
        for i, frame in enumerate(it, start=1):
            missing = [c for c in keep if c not in frame.columns]
            if missing:
                raise SchemaError(
                    f"chunk {i} lacks column(s) {missing} that the first chunk had; every "
                    "chunk of one table needs the same columns"
                )
            yield frame[keep]

    return chunks(), None if categorical is None else list(categorical)


def build_profile(
    frames: Iterable[pd.DataFrame] | pd.DataFrame,
    *,
    categorical: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
    max_values: int = DEFAULT_MAX_VALUES,
) -> ReferenceProfile:
    """Profile a table given as chunks (or as one frame), in memory bounded by one chunk.

    Args:
        frames: DataFrames with the same columns (a single DataFrame is accepted too).
        categorical: the columns to treat as categorical (every other one is numeric);
            ``None`` infers from the first chunk: numeric and bool dtypes are numeric,
            everything else categorical.
        exclude: columns not to profile.
        columns: profile only those of these columns the data has (e.g. a reference
            profile's columns, when the current data has more or fewer); ``None`` keeps all.
        sample_rows: capacity of the uniform row sample (0 keeps none).
        seed: seed of the sample draws.
        relative_accuracy: relative accuracy of the numeric quantile sketches.
        max_values: distinct values kept per categorical column.

    Returns:
        The merged profile.

    Raises:
        ConfigError: an argument is out of range.
        EmptyDataError: ``frames`` is empty.
        SchemaError: a later chunk lacks a column of the first, or a named column does not
            exist.
    """
    _check_accuracy(relative_accuracy)
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 0:
        raise ConfigError(
            f"sample_rows={sample_rows!r} is not a non-negative integer; pass e.g. "
            f"{DEFAULT_SAMPLE_ROWS}"
        )
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    if columns is not None:
        frames, categorical = _select_columns(frames, [str(c) for c in columns], categorical)
    exclude = [str(c) for c in exclude]
    profile: ReferenceProfile | None = None
    kinds: dict[str, ColumnKind] = {}
    for i, frame in enumerate(frames):
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(
                f"chunk {i} is a {type(frame).__name__}, not a pandas DataFrame; pass an "
                f"iterable of DataFrames"
            )
        if profile is None:
            kinds = _infer_kinds(frame, categorical, exclude)
            if not kinds:
                raise EmptyDataError("no column left to profile; exclude fewer columns")
        part = _profile_chunk(frame, kinds, sample_rows, seed, relative_accuracy, max_values, i)
        profile = part if profile is None else profile.merge(part)
    if profile is None:
        raise EmptyDataError("no chunk to profile; pass at least one DataFrame")
    return profile


def _iter_source(uri: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    from kfgpu.data.io import read_table

    path = uri[len("file://") :] if uri.startswith("file://") else uri
    lower = path.lower()
    is_local = "://" not in path
    if is_local and os.path.isdir(path):
        files = sorted(
            os.path.join(path, f)
            for f in os.listdir(path)
            if f.lower().endswith((".parquet", ".pq")) and not f.startswith((".", "_"))
        )
        if not files:
            raise DataFormatError(
                f"directory {uri!r} holds no .parquet files; pass a Parquet file, a CSV file "
                f"or a directory of Parquet files"
            )
    elif is_local and lower.endswith((".parquet", ".pq")):
        files = [path]
    else:
        files = []
    if files:
        for f in files:
            if not os.path.exists(f):
                from kfgpu.errors import DataNotFoundError

                raise DataNotFoundError(f"data file {uri!r} does not exist; pass a path to data")
            try:
                pf = pq.ParquetFile(f)
                # One row group at a time: iter_batches over the whole file keeps every
                # decoded row group alive until the end (pyarrow 25: 1.9 GB for a 1.6 GB
                # file), per row group peak memory stays at one group.
                for group in range(pf.num_row_groups):
                    for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=[group]):
                        yield batch.to_pandas()
            except OSError as e:
                raise DataFormatError(
                    f"data file {f!r} is not a Parquet file kfgpu can read ({e}); pass a "
                    f"valid Parquet file"
                ) from e
        return
    if is_local and lower.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        if not os.path.exists(path):
            from kfgpu.errors import DataNotFoundError

            raise DataNotFoundError(f"data file {uri!r} does not exist; pass a path to data")
        sep = "\t" if ".tsv" in lower else ","
        try:
            with pd.read_csv(path, sep=sep, chunksize=chunk_rows, low_memory=False) as reader:
                yield from reader
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataFormatError(
                f"data file {uri!r} cannot be parsed as CSV ({e}); pass a CSV with a header row"
            ) from e
        return
    yield read_table(uri)


def iter_source(uri: str, chunk_rows: int = 250_000) -> Iterator[pd.DataFrame]:
    """The rows of a data source as DataFrame chunks, streamed as :func:`profile_source`
    streams them (local Parquet and CSV in chunks, anything else read whole)."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is not a positive integer; pass e.g. 250000")
    return _iter_source(uri, chunk_rows)


def profile_source(uri: str, *, chunk_rows: int = 250_000, **kw: Any) -> ReferenceProfile:
    """Profile a data source in bounded memory.

    A local Parquet file (or a directory of them) is streamed with
    ``pyarrow.parquet.ParquetFile.iter_batches``, one row group at a time (peak memory is
    about one decoded row group plus one chunk), a local CSV/TSV with
    ``pandas.read_csv(chunksize=...)``; anything else (JSON lines, remote URIs, built-in
    ``kfgpu://`` data sets) is read whole with :func:`kfgpu.data.read_table`.

    Args:
        uri: a path or URI.
        chunk_rows: rows per streamed chunk.
        **kw: passed to :func:`build_profile`.

    Returns:
        The profile of the whole source.

    Raises:
        ConfigError: ``chunk_rows`` is not positive, or a :func:`build_profile` argument.
        DataError: the source cannot be read (see :func:`kfgpu.data.read_table`).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} is not a positive integer; pass e.g. 250000")
    try:
        return build_profile(_iter_source(uri, chunk_rows), **kw)
    except EmptyDataError as e:
        if "no chunk" in str(e):
            raise EmptyDataError(f"data source {uri!r} has no rows; pass a non-empty table") from e
        raise
