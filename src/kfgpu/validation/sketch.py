"""Mergeable column sketches: the pieces a :class:`~kfgpu.validation.profile.ReferenceProfile` is made of.

* :class:`NumericSketch` summarises a numeric column DDSketch-style: values are binned by
  ``ceil(log(|x|) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)``, so every quantile is
  returned within relative accuracy ``a`` of the exact order statistic, whatever the
  distribution. Counts, min, max, mean and variance are exact (up to float rounding), and
  nulls and infinities are counted apart.
* :class:`CategoricalCounts` counts the (stringified) values of a categorical column,
  capped at ``max_values`` distinct values.

Both merge exactly (counts and bins), so a table's sketch equals the merge of its chunks'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kfgpu.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_VALUES",
    "DEFAULT_RELATIVE_ACCURACY",
    "CategoricalCounts",
    "NumericSketch",
    "check_relative_accuracy",
]

DEFAULT_RELATIVE_ACCURACY = 0.01
"""Relative accuracy of :class:`NumericSketch` quantiles unless told otherwise."""

DEFAULT_MAX_VALUES = 10_000
"""Distinct values a :class:`CategoricalCounts` keeps before folding the rest into ``other``."""


_ZERO_THRESHOLD = 1e-12
"""Values with ``|x|`` below this go to the zero bucket (quantile 0, no relative guarantee)."""

_EMPTY_I64 = np.zeros(0, dtype=np.int64)


def check_relative_accuracy(relative_accuracy: float) -> float:
    """``relative_accuracy`` as a float in (0, 1); ConfigError naming the value otherwise."""
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
        self.relative_accuracy = check_relative_accuracy(relative_accuracy)
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
