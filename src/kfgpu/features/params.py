"""Fitted values of each feature column, and how they are fitted from streamed statistics.

:func:`fit_numeric` and :func:`fit_categorical` turn a column's sketch or counts
(:mod:`kfgpu.features.stats`) into its :class:`NumericParams` or
:class:`CategoricalParams`; :func:`params_to_dict` / :func:`params_from_dict` are their JSON
form inside a fitted transform (``"fitted": [...]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import SchemaError
from kfgpu.features.spec import CategoricalSpec, DatetimeSpec, NumericSpec

if TYPE_CHECKING:
    import numpy as np

    from kfgpu.validation.sketch import NumericSketch

__all__ = [
    "F32_MAX",
    "PARAM_TYPES",
    "CategoricalParams",
    "ColumnParams",
    "DatetimeParams",
    "NumericParams",
    "describe_categorical",
    "describe_numeric",
    "fit_categorical",
    "fit_numeric",
    "params_from_dict",
    "params_to_dict",
]

#: float32's largest finite value: the "no clip" bound (raw values are capped to it).
F32_MAX = 3.4028234663852886e38

#: Quantile grid for the moments of a quantile-clipped column (see _clipped_moments).
_GRID = 4096


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class NumericParams:
    """Fitted values of a numeric column.

    ``y = clip((g(clip(impute(x), clip_low, clip_high)) - center) / scale)`` with ``g`` =
    ``sign(x) * log1p(|x|)`` for ``scale="log1p"``, else the identity.

    Attributes:
        fill: replaces missing and non-finite raw values.
        clip_low: raw values are clipped from below to this (``-3.4e38``: no clip).
        clip_high: raw values are clipped from above to this.
        center: subtracted after the optional log.
        scale: divides after centring (never 0).
        boundaries: bucket boundaries (float32-exact), None when not bucketized.
        summary: training statistics for reports (count, missing, mean, std, min, max).
    """

    fill: float
    clip_low: float = -F32_MAX
    clip_high: float = F32_MAX
    center: float = 0.0
    scale: float = 1.0
    boundaries: tuple[float, ...] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = (self.fill, self.clip_low, self.clip_high, self.center, self.scale)
        if not all(math.isfinite(v) for v in values) or self.scale == 0:
            raise SchemaError(
                f"fitted transform is malformed (numeric parameters {values}); re-run "
                "engineer_features"
            )


@dataclass(frozen=True)
class CategoricalParams:
    """Fitted values of a categorical column.

    Attributes:
        vocabulary: kept values; value ``i`` maps to index ``i + 1`` (empty for hashing).
        fill: the value missing values take (None: they map to index 0).
        summary: training statistics for reports (count, missing, distinct, oov_share).
    """

    vocabulary: tuple[str, ...] = ()
    fill: str | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatetimeParams:
    """Fitted values of a datetime column: the year code's range.

    Attributes:
        min_year: the year with code 1.
        year_span: years coded (later years take the last code).
    """

    min_year: int = 1970
    year_span: int = 1


ColumnParams = NumericParams | CategoricalParams | DatetimeParams
PARAM_TYPES: dict[type, type] = {
    NumericSpec: NumericParams,
    CategoricalSpec: CategoricalParams,
    DatetimeSpec: DatetimeParams,
}


def _g(x: np.ndarray, log: bool) -> np.ndarray:
    import numpy as np

    return np.sign(x) * np.log1p(np.abs(x)) if log else x


def fit_numeric(
    s: NumericSpec, sk: NumericSketch, log_sk: NumericSketch | None, clip: float
) -> NumericParams:
    import numpy as np

    n = sk.count
    n_miss = sk.total - n
    has = n > 0
    if s.impute == "mean":
        fill = sk.mean if has else 0.0
    elif s.impute == "median":
        fill = float(sk.quantile(0.5)) if has else 0.0
    elif s.impute == "constant":
        fill = float(s.fill_value or 0.0)
    else:
        fill = 0.0
    lo, hi = -F32_MAX, F32_MAX
    if s.clip_quantiles is not None and has:
        lo, hi = (float(v) for v in sk.quantile(list(s.clip_quantiles)))
    log = s.scale == "log1p"
    fill_c = float(_g(np.asarray(min(max(fill, lo), hi)), log))  # the fill, as scaled
    center, scale = 0.0, 1.0
    if s.scale in ("standard", "log1p"):
        if not has:
            center = fill_c
        else:
            if s.clip_quantiles is not None:
                m_obs, m2_obs = _clipped_moments(sk, lo, hi, log)
            else:
                src = log_sk if log and log_sk is not None else sk
                m_obs, m2_obs = src.mean, src.m2
            total = n + n_miss
            center = (n * m_obs + n_miss * fill_c) / total
            m2 = m2_obs + (n * n_miss * (m_obs - fill_c) ** 2 / total)
            std = math.sqrt(max(m2, 0.0) / total)
            scale = std if std > 1e-12 * max(1.0, abs(center)) else 1.0
    elif s.scale == "minmax":
        mn, mx = (max(sk.min, lo), min(sk.max, hi)) if has else (fill_c, fill_c)
        if n_miss:
            mn, mx = min(mn, fill_c), max(mx, fill_c)
        center = mn
        scale = mx - mn if mx - mn > 1e-12 * max(1.0, abs(mn)) else 1.0
    elif s.scale == "robust":
        if has:
            med, q1, q3 = np.clip(sk.quantile([0.5, 0.25, 0.75]), lo, hi)
            center = float(med)
            iqr = float(q3 - q1)
            scale = iqr if iqr > 1e-12 * max(1.0, abs(center)) else 1.0
        else:
            center = fill_c
    boundaries: tuple[float, ...] | None = None
    if s.boundaries is not None:
        boundaries = tuple(float(v) for v in np.unique(np.asarray(s.boundaries, np.float32)))
    elif s.bucketize > 0:
        if has:
            qs = sk.quantile(np.arange(1, s.bucketize) / s.bucketize)
            boundaries = tuple(float(v) for v in np.unique(np.asarray(qs, np.float32)))
        else:
            boundaries = ()
    summary = {
        "count": n,
        "missing": n_miss,
        "mean": _finite_or_none(sk.mean),
        "std": _finite_or_none(sk.std),
        "min": _finite_or_none(sk.min),
        "max": _finite_or_none(sk.max),
    }
    return NumericParams(
        fill=float(fill),
        clip_low=float(lo),
        clip_high=float(hi),
        center=float(center),
        scale=float(scale),
        boundaries=boundaries,
        summary=summary,
    )


def _clipped_moments(sk: NumericSketch, lo: float, hi: float, log: bool) -> tuple[float, float]:
    """Mean and sum of squared deviations of ``g(clip(x, lo, hi))`` over the finite values.

    Integrates over the sketch's quantile function on a midpoint grid of ``_GRID`` points:
    each quantile is within the sketch's relative accuracy, so the moments are too (plus a
    discretisation error of order ``1 / _GRID``).
    """
    import numpy as np

    u = (np.arange(_GRID) + 0.5) / _GRID
    v = _g(np.clip(np.asarray(sk.quantile(u), dtype=np.float64), lo, hi), log)
    mean = float(v.mean())
    return mean, float(((v - mean) ** 2).mean()) * sk.count


def fit_categorical(s: CategoricalSpec, counts: Mapping[str, Any]) -> CategoricalParams:
    values: list[str] = counts["values"]  # most frequent first, ties by value
    freq: list[int] = counts["counts"]
    non_null = sum(freq) + int(counts["other_count"])
    if s.encode == "hashing":
        vocab: tuple[str, ...] = ()
        kept = non_null
    else:
        pairs = [(v, c) for v, c in zip(values, freq, strict=True) if c >= s.min_frequency]
        pairs = pairs[: s.max_categories]
        vocab = tuple(v for v, _ in pairs)
        kept = sum(c for _, c in pairs)
    fill: str | None = None
    if s.impute == "most_frequent" and values:
        fill = values[0]
    elif s.impute == "constant":
        fill = s.fill_value
        if s.encode != "hashing" and fill is not None and fill not in vocab:
            vocab = (*vocab, fill)
    summary = {
        "count": non_null,
        "missing": int(counts["null_count"]),
        "distinct": len(values),
        "distinct_truncated": bool(counts["truncated"]),
        "oov_share": (1.0 - kept / non_null) if non_null else 0.0,
    }
    return CategoricalParams(vocabulary=vocab, fill=fill, summary=summary)


def describe_numeric(s: NumericSpec, p: NumericParams, clip: float) -> dict[str, Any]:
    steps = [f"impute missing with {s.impute} = {p.fill:.6g}"]
    if s.missing_indicator:
        steps.append("add a missing indicator")
    if s.clip_quantiles is not None:
        steps.append(
            f"clip to quantiles {list(s.clip_quantiles)} = [{p.clip_low:.6g}, {p.clip_high:.6g}]"
        )
    steps.append(
        {
            "standard": f"standardise: (x - {p.center:.6g}) / {p.scale:.6g}",
            "log1p": f"sign(x)*log1p(|x|), standardise: (x - {p.center:.6g}) / {p.scale:.6g}",
            "minmax": f"min-max: (x - {p.center:.6g}) / {p.scale:.6g}",
            "robust": f"robust: (x - median {p.center:.6g}) / IQR {p.scale:.6g}",
            "none": "no scaling",
        }[s.scale]
    )
    if s.scale != "none":
        steps.append(f"clip to ±{clip:g}")
    fitted: dict[str, Any] = {
        "fill": p.fill,
        "center": p.center,
        "scale": p.scale,
        **{k: v for k, v in p.summary.items()},
    }
    if s.clip_quantiles is not None:
        fitted["clip_range"] = [p.clip_low, p.clip_high]
    if p.boundaries is not None:
        steps.append(f"bucket into {len(p.boundaries) + 1} buckets ({s.bucket_encode})")
        fitted["buckets"] = len(p.boundaries) + 1
        fitted["boundaries"] = list(p.boundaries)
    return {"kind": "numeric", "steps": steps, "fitted": fitted}


def describe_categorical(s: CategoricalSpec, p: CategoricalParams) -> dict[str, Any]:
    if s.encode == "hashing":
        steps = [f"hash into {s.hash_buckets} buckets"]
        fitted: dict[str, Any] = {"hash_buckets": s.hash_buckets}
    else:
        steps = [
            f"vocabulary of {len(p.vocabulary)} values (min_frequency {s.min_frequency}, "
            f"max {s.max_categories}); others -> 0",
            f"encode {s.encode}",
        ]
        fitted = {"vocabulary_size": len(p.vocabulary)}
    if s.impute != "oov":
        steps.insert(0, f"impute missing with {s.impute} = {p.fill!r}")
    fitted["fill"] = p.fill
    fitted.update(p.summary)
    return {"kind": "categorical", "steps": steps, "fitted": fitted}


def params_to_dict(p: ColumnParams) -> dict[str, Any]:
    """The JSON form of one column's fitted values (``kind`` first), as a transform file has it."""
    if isinstance(p, NumericParams):
        return {
            "kind": "numeric",
            "fill": p.fill,
            "clip_low": p.clip_low,
            "clip_high": p.clip_high,
            "center": p.center,
            "scale": p.scale,
            "boundaries": None if p.boundaries is None else list(p.boundaries),
            "summary": dict(p.summary),
        }
    if isinstance(p, CategoricalParams):
        return {
            "kind": "categorical",
            "vocabulary": list(p.vocabulary),
            "fill": p.fill,
            "summary": dict(p.summary),
        }
    return {"kind": "datetime", "min_year": p.min_year, "year_span": p.year_span}


def params_from_dict(entry: Mapping[str, Any]) -> ColumnParams:
    """Rebuild one column's fitted values from :func:`params_to_dict` output.

    Raises:
        KeyError, TypeError, ValueError: the entry is malformed (the caller names the file).
    """
    kind = entry["kind"]
    if kind == "numeric":
        b = entry.get("boundaries")
        return NumericParams(
            fill=float(entry["fill"]),
            clip_low=float(entry["clip_low"]),
            clip_high=float(entry["clip_high"]),
            center=float(entry["center"]),
            scale=float(entry["scale"]),
            boundaries=None if b is None else tuple(float(x) for x in b),
            summary=dict(entry.get("summary") or {}),
        )
    if kind == "categorical":
        fill = entry.get("fill")
        return CategoricalParams(
            vocabulary=tuple(str(v) for v in entry["vocabulary"]),
            fill=None if fill is None else str(fill),
            summary=dict(entry.get("summary") or {}),
        )
    if kind == "datetime":
        return DatetimeParams(min_year=int(entry["min_year"]), year_span=int(entry["year_span"]))
    raise ValueError(f"unknown column kind {kind!r}")
