"""Data-quality checks of the feature columns (warnings: the table can still be used)."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

from kfgpu.validation.checks.base import Anomaly, CheckContext, format_value, unique_names

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "check_all_null",
    "check_constant_features",
    "check_duplicate_rows",
    "check_high_cardinality",
    "check_infinite_values",
    "check_mixed_types",
    "check_null_fraction",
]

_MAX_EXAMPLES = 3


def check_null_fraction(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a feature's null fraction is above ``max_null_fraction``."""
    out = []
    for name in ctx.features:
        col = ctx.stats.column(name)
        if col is None or col.null_fraction <= ctx.max_null_fraction:
            continue
        out.append(
            Anomaly(
                name,
                "null_fraction",
                "warning",
                f"feature {name!r} is null in {col.null_fraction:.1%} of rows, above "
                f"max_null_fraction={ctx.max_null_fraction:g}; impute it, drop it, or raise "
                "max_null_fraction",
                round(col.null_fraction, 6),
            )
        )
    return out


def check_constant_features(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a feature has exactly one distinct non-null value (none: see all_null)."""
    if ctx.stats.n_rows == 0:
        return []
    out = []
    for name in ctx.features:
        col = ctx.stats.column(name)
        if col is None or col.n_unique != 1:
            continue  # n_unique == 0: no value at all, reported by check_all_null
        value: object
        if col.domain:
            only = next(iter(col.domain))
            what = f"has the single value {format_value(only)}"
            value = only
        else:
            only = ctx.series(name).dropna().iloc[0]
            what = f"has the single value {format_value(only)}"
            value = format_value(only)
        out.append(
            Anomaly(
                name,
                "constant_feature",
                "warning",
                f"feature {name!r} {what}; it carries no signal; drop it",
                value,
            )
        )
    return out


def check_duplicate_rows(ctx: CheckContext) -> list[Anomaly]:
    """Warning: some rows are exact duplicates of an earlier row."""
    df = ctx.df
    if len(df) < 2 or df.shape[1] == 0:
        return []
    try:
        n_dup = int(df.duplicated().sum())
    except TypeError:  # unhashable cells (lists, dicts): compare their string forms
        n_dup = int(df.astype(str).duplicated().sum())
    if not n_dup:
        return []
    return [
        Anomaly(
            None,
            "duplicate_rows",
            "warning",
            f"{n_dup} of {len(df)} rows ({n_dup / len(df):.1%}) duplicate an earlier row; "
            "deduplicate the data if they are not genuine repeats",
            n_dup,
        )
    ]


def check_all_null(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a feature column holds no non-null value at all."""
    n_rows = ctx.stats.n_rows
    if n_rows == 0:
        return []
    out = []
    for name in unique_names(ctx.features):
        col = ctx.stats.column(name)
        if col is None or col.null_fraction < 1.0:
            continue
        out.append(
            Anomaly(
                name,
                "all_null",
                "warning",
                f"feature {name!r} is null in all {n_rows} rows; it carries no signal; drop "
                "it or fix the export that should fill it",
                n_rows,
            )
        )
    return out


def check_infinite_values(ctx: CheckContext) -> list[Anomaly]:
    """Warning: a numeric column (target included) holds +inf or -inf."""
    import numpy as np

    n_rows = ctx.stats.n_rows
    out = []
    for name in unique_names(ctx.stats.names):
        col = ctx.stats.column(name)
        if col is None or col.kind != "numeric" or n_rows == 0:
            continue
        arr = ctx.series(name).to_numpy(dtype=float, na_value=np.nan)
        pos = int(np.isposinf(arr).sum())
        neg = int(np.isneginf(arr).sum())
        if not (pos or neg):
            continue
        count = pos + neg
        fraction = count / n_rows
        out.append(
            Anomaly(
                name,
                "infinite_values",
                "warning",
                f"column {name!r} holds {count} infinite value(s) ({pos} +inf, {neg} -inf; "
                f"{fraction:.1%} of rows); replace them with nulls or clip them to finite "
                "values",
                {"count": count, "fraction": round(fraction, 6), "pos": pos, "neg": neg},
            )
        )
    return out


def check_mixed_types(ctx: CheckContext) -> list[Anomaly]:
    """Warning: an object or string column mixes numbers and text (or Python types).

    Fires when some but not all non-null values are numbers (numeric Python values, or
    strings that parse as numbers, like ``"12"`` or ``"7.5"``), the typical CSV column with
    junk such as ``"abc"`` in it, and when Python values of different types (``int`` and
    ``str``) share a column. Target included.
    """
    out = []
    for name in unique_names(ctx.stats.names):
        col = ctx.stats.column(name)
        if col is None or col.kind != "categorical" or col.n_unique == 0:
            continue
        series = ctx.series(name)
        found = _mixed(series)
        if found is None:
            continue
        fraction, n, examples, types = found
        listed = ", ".join(f"{t}: {k}" for t, k in types.items())
        if 0.0 < fraction < 1.0:
            shown = ", ".join(format_value(v, 30) for v in examples)
            message = (
                f"column {name!r} mixes numbers and text: {fraction:.1%} of its {n} non-null "
                f"values parse as numbers, the others do not (e.g. {shown})"
            )
            if types:
                message += f"; its values have {len(types)} Python types ({listed})"
            fix = "replace the non-numeric values with numbers or nulls so the column reads as numeric"
        else:
            message = f"column {name!r} holds values of {len(types)} Python types ({listed})"
            fix = "convert the column to one type"
        out.append(
            Anomaly(
                name,
                "mixed_types",
                "warning",
                f"{message}; {fix}",
                {"numeric_fraction": round(fraction, 6), "examples": examples, "types": types},
            )
        )
    return out


def check_high_cardinality(ctx: CheckContext) -> list[Anomaly]:
    """Warning: an ID-like categorical feature (too many distinct values to generalise).

    Fires when the distinct count is above ``options.max_categories`` and above
    ``options.max_category_fraction`` of the feature's non-null rows.
    """
    opts = ctx.options
    out = []
    for name in unique_names(ctx.features):
        col = ctx.stats.column(name)
        if col is None or col.kind != "categorical":
            continue
        k = col.n_unique
        if k <= opts.max_categories:
            continue
        n = int(ctx.series(name).notna().sum())
        if k <= opts.max_category_fraction * n:
            continue
        out.append(
            Anomaly(
                name,
                "high_cardinality",
                "warning",
                f"categorical feature {name!r} has {k} distinct values in {n} non-null rows "
                f"({k / n:.0%}), above max_categories={opts.max_categories} and "
                f"max_category_fraction={opts.max_category_fraction:g}; an ID-like column "
                "will not generalise; drop it or hash it into a fixed number of buckets",
                {"n_unique": k, "fraction": round(k / n, 6)},
            )
        )
    return out


def _number_kind(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _mixed(series: pd.Series) -> tuple[float, int, list[str], dict[str, int]] | None:
    """``(numeric fraction, non-null count, non-numeric examples, type counts)`` or None.

    None when the column is not object/string or holds one kind of value only.
    """
    import pandas as pd
    from pandas.api import types as pdt

    if not (pdt.is_object_dtype(series.dtype) or pdt.is_string_dtype(series.dtype)):
        return None
    values = series[series.notna()]
    n = len(values)
    if n == 0:
        return None
    inferred = pdt.infer_dtype(values, skipna=True)
    types: dict[str, int] = {}
    if inferred in ("string", "empty"):
        try:
            counts = values.value_counts(sort=False)
        except TypeError:  # pragma: no cover - strings are hashable
            return None
        keys = pd.Series(counts.index.astype(str), index=counts.index)
        parsed = pd.to_numeric(keys, errors="coerce").notna().to_numpy()
        counts_arr = counts.to_numpy()
        n_numeric = int(counts_arr[parsed].sum())
        junk = [
            (str(k), int(c)) for k, c, ok in zip(keys, counts_arr, parsed, strict=True) if not ok
        ]
    else:
        type_names = values.map(lambda v: type(v).__name__)
        is_number = values.map(_number_kind).to_numpy(dtype=bool)
        is_str = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        numeric = is_number.copy()
        if is_str.any():
            parsed = pd.to_numeric(values[is_str].astype(str), errors="coerce")
            numeric[is_str] = parsed.notna().to_numpy()
        n_numeric = int(numeric.sum())
        counts_junk = values[~numeric].map(_safe_text).value_counts()
        junk = [(str(k), int(c)) for k, c in counts_junk.items()]
        # ints and floats together are one kind (numbers); other types each their own
        kinds = type_names.where(~is_number, "number")
        if kinds.nunique() > 1:
            by_type = type_names.value_counts()
            types = {str(t): int(c) for t, c in by_type.items()}
            types = dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))
    fraction = n_numeric / n
    if not (0.0 < fraction < 1.0) and len(types) <= 1:
        return None
    junk.sort(key=lambda kv: (-kv[1], kv[0]))
    return fraction, n, [k for k, _ in junk[:_MAX_EXAMPLES]], types


def _safe_text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not stop validation
        return f"<{type(value).__name__}>"
