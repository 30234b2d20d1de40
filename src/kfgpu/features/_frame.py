"""Column readers of the shared front half: a raw frame column -> a clean array.

Fitting (:mod:`kfgpu.features.stats`) and applying (:mod:`kfgpu.features.transform`) read
columns through these same functions, so what is fitted is exactly what is applied.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kfgpu.errors import SchemaError

__all__ = [
    "F32_MAX",
    "PART_CARDINALITY",
    "category_strings",
    "datetime_part_codes",
    "datetime_values",
    "hash_codes",
    "hashed_codes",
    "numeric_values",
    "require_columns",
    "signed_log1p",
    "vocabulary_codes",
    "year_range",
]

F32_MAX = float(np.finfo(np.float32).max)

#: Table size of each datetime part's code (part value + 1; 0 = missing). ``year`` is fitted.
PART_CARDINALITY = {
    "hour": 25,
    "dayofweek": 8,
    "day": 33,
    "month": 14,
    "dayofyear": 368,
    "minute": 61,
}


def require_columns(df: pd.DataFrame, names: Sequence[str]) -> None:
    """Raise :class:`SchemaError` naming every column of ``names`` that ``df`` lacks."""
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise SchemaError(
            f"input is missing column(s) {missing} that the feature transform reads; "
            f"send all of {list(names)}"
        )


def _not_number(v: object) -> bool:
    if v is None:
        return False
    try:
        pd.to_numeric(pd.Series([v]), errors="raise")
    except (ValueError, TypeError):
        return True
    return False


def numeric_values(df: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric column as float32: NaN where missing or non-finite.

    Numeric strings are parsed; finite values beyond float32's range are capped to
    ``±F32_MAX`` (out of range, not missing: the transform clips them).

    Raises:
        SchemaError: the column holds a value that is not a number (named in the message).
    """
    col = df[name]
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)) or (
        pd.api.types.is_complex_dtype(col)
    ):
        try:
            if pd.api.types.is_complex_dtype(col):
                raise TypeError("complex numbers are not real numbers")
            col = pd.to_numeric(col, errors="raise")
        except (ValueError, TypeError) as e:
            bad = next((v for v in df[name] if _not_number(v)), df[name].iloc[0])
            raise SchemaError(
                f"column {name!r} must be numeric but holds {bad!r}; "
                "send numbers (or null for missing)"
            ) from e
    with np.errstate(invalid="ignore", over="ignore"):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.where(np.isfinite(values), np.clip(values, -F32_MAX, F32_MAX), np.nan)
        return values.astype(np.float32)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)`` (the same expression the torch module evaluates)."""
    return np.sign(x) * np.log1p(np.abs(x))


def category_strings(col: pd.Series, fill: str | None = None) -> np.ndarray:
    """Values as an object array of strings; missing values ``fill`` (None = stay missing)."""
    mask = col.isna().to_numpy()
    out = col.astype(str).to_numpy(dtype=object)
    if mask.any():
        out[mask] = fill
    return out


def _factorized(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Row codes (-1 = missing) and each distinct value as the string ``astype(str)`` gives.

    Distinct values are few; converting them, not every row, is what keeps categorical
    columns fast (a pandas ``category`` column factorizes without touching its rows).
    """
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return np.asarray(codes), [str(u) for u in uniques]


def vocabulary_codes(col: pd.Series, index: pd.Index, fill: str | None) -> np.ndarray:
    """``1 + position in the vocabulary`` per row (0 = unseen); missing rows take ``fill``'s
    code (0 when ``fill`` is None). Same result as looking up ``category_strings``."""
    codes, keys = _factorized(col)
    lut = index.get_indexer(pd.Index(keys, dtype=object)).astype(np.int64) + 1
    fill_code = (
        int(index.get_indexer(pd.Index([fill], dtype=object))[0] + 1) if fill is not None else 0
    )
    if not len(lut):
        return np.full(len(codes), fill_code, dtype=np.int64)
    return np.where(codes >= 0, lut[np.maximum(codes, 0)], fill_code)


def hashed_codes(col: pd.Series, buckets: int, fill: str | None) -> np.ndarray:
    """:func:`hash_codes` of ``category_strings(col, fill)``, hashing each distinct value once."""
    codes, keys = _factorized(col)
    lut = hash_codes(np.asarray(keys, dtype=object), buckets)
    fill_code = (
        int(hash_codes(np.asarray([fill], dtype=object), buckets)[0]) if fill is not None else 0
    )
    if not len(lut):
        return np.full(len(codes), fill_code, dtype=np.int64)
    return np.where(codes >= 0, lut[np.maximum(codes, 0)], fill_code)


def hash_codes(strings: np.ndarray, buckets: int) -> np.ndarray:
    """``1 + stable_hash(value) % buckets`` per string (0 where None), int64.

    ``pandas.util.hash_array`` (SipHash with a fixed key) is the same in every process.
    """
    codes = np.zeros(len(strings), dtype=np.int64)
    present = np.fromiter((s is not None for s in strings), dtype=bool, count=len(strings))
    if present.any():
        h = pd.util.hash_array(np.asarray(strings[present], dtype=object), categorize=False)
        codes[present] = (h % np.uint64(buckets)).astype(np.int64) + 1
    return codes


def datetime_values(df: pd.DataFrame, name: str) -> pd.Series:
    """A column as UTC timestamps (NaT where missing or unparseable).

    Naive timestamps are taken as UTC; strings are parsed with
    ``pd.to_datetime(..., utc=True, errors="coerce")``.
    """
    col = df[name]
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dtype, "tz", None) is None:
            return col.dt.tz_localize("UTC")
        return col.dt.tz_convert("UTC")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return pd.to_datetime(col, utc=True, errors="coerce")
        except (TypeError, ValueError, OverflowError):
            # Values pandas cannot even coerce in bulk: one at a time, failures missing.
            return pd.Series(
                [pd.to_datetime(v, utc=True, errors="coerce") for v in col],
                index=col.index,
                dtype="datetime64[ns, UTC]",
            )


def _part_values(ts: pd.Series, part: str) -> np.ndarray:
    values = getattr(ts.dt, part)
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def datetime_part_codes(
    ts: pd.Series, part: str, *, min_year: int = 1970, year_span: int = 1
) -> np.ndarray:
    """One part's int64 code: value + 1 (``year``: ``clamp(year - min_year + 1, 1, span)``),
    0 where the timestamp is missing."""
    v = _part_values(ts, part)
    missing = np.isnan(v)
    v = np.where(missing, 0.0, v)
    code = np.clip(v - min_year + 1, 1, year_span) if part == "year" else v + 1
    return np.where(missing, 0, code).astype(np.int64)


def year_range(ts: pd.Series) -> tuple[int, int] | None:
    """Smallest and largest year present, or None when every value is missing."""
    v = _part_values(ts, "year")
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None
    return int(v.min()), int(v.max())
