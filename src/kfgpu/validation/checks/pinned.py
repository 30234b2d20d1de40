"""Checks of a table against a pinned schema (columns, kinds, categories, ranges)."""

from __future__ import annotations

from kfgpu.validation.checks.base import Anomaly, CheckContext, format_value
from kfgpu.validation.schema import stringify

__all__ = [
    "check_schema_columns",
    "check_schema_kinds",
    "check_schema_ranges",
    "check_unseen_categories",
]


def check_schema_columns(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: error for a missing column, warning for an extra one."""
    if ctx.pinned is None:
        return []
    have = set(ctx.stats.names)
    pinned = set(ctx.pinned.names)
    out = [
        Anomaly(
            name,
            "schema_missing_column",
            "error",
            f"column {name!r} of the pinned schema is missing from the data; add it to the "
            "data or regenerate the schema",
            None,
        )
        for name in ctx.pinned.names
        if name not in have
    ]
    out += [
        Anomaly(
            name,
            "schema_extra_column",
            "warning",
            f"column {name!r} is not in the pinned schema; it will be treated as a new "
            "feature; drop it or regenerate the schema",
            None,
        )
        for name in ctx.stats.names
        if name not in pinned
    ]
    return out


def check_schema_kinds(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: error when a column's kind differs."""
    if ctx.pinned is None:
        return []
    out = []
    for want in ctx.pinned.columns:
        got = ctx.stats.column(want.name)
        if got is None or got.kind == want.kind:
            continue
        out.append(
            Anomaly(
                want.name,
                "schema_kind_mismatch",
                "error",
                f"column {want.name!r} is {got.kind} (dtype {got.dtype}) but the pinned schema "
                f"says {want.kind} (dtype {want.dtype}); fix the column's type or regenerate "
                "the schema",
                {"expected": want.kind, "actual": got.kind},
            )
        )
    return out


def check_unseen_categories(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: warning when categorical values are outside the domain.

    Warns when the fraction of non-null values outside the pinned domain is above
    ``options.max_unseen_fraction`` (0 by default: any unseen value). Skipped for a column whose pinned domain was truncated (more than ``MAX_DOMAIN_SIZE``
    values), where a value missing from it may still have been seen.
    """
    if ctx.pinned is None:
        return []
    out = []
    for want in ctx.pinned.columns:
        got = ctx.stats.column(want.name)
        if (
            got is None
            or want.kind not in ("categorical", "boolean")
            or got.kind != want.kind
            or not want.domain_complete
        ):
            continue
        values = stringify(ctx.series(want.name))
        if values.empty:
            continue
        domain = set(want.domain or {})
        unseen_mask = ~values.isin(domain)
        n_unseen = int(unseen_mask.sum())
        fraction = n_unseen / len(values)
        limit = ctx.options.max_unseen_fraction
        if not n_unseen or fraction <= limit:
            continue
        examples = sorted(set(values[unseen_mask]))[:5]
        above = f" (above max_unseen_fraction={limit:g})" if limit > 0 else ""
        out.append(
            Anomaly(
                want.name,
                "schema_unseen_categories",
                "warning",
                f"{fraction:.1%} of non-null values of {want.name!r} ({n_unseen}) are not in "
                f"the pinned domain{above}, e.g. {', '.join(format_value(v, 30) for v in examples)}; "
                "the model has not seen them; regenerate the schema if they are expected",
                round(fraction, 6),
            )
        )
    return out


def check_schema_ranges(ctx: CheckContext) -> list[Anomaly]:
    """Against a pinned schema: warning when numeric values fall outside its min/max."""
    if ctx.pinned is None:
        return []
    out = []
    for want in ctx.pinned.columns:
        got = ctx.stats.column(want.name)
        if (
            got is None
            or want.kind != "numeric"
            or got.kind != "numeric"
            or want.min is None
            or want.max is None
        ):
            continue
        s = ctx.series(want.name)
        below = int((s < want.min).sum())
        above = int((s > want.max).sum())
        if not (below or above):
            continue
        n = int(s.notna().sum())
        out.append(
            Anomaly(
                want.name,
                "schema_out_of_range",
                "warning",
                f"{below + above} of {n} values of {want.name!r} are outside the pinned range "
                f"[{want.min:g}, {want.max:g}] ({below} below, {above} above; observed "
                f"[{got.min:g}, {got.max:g}]); check the data or regenerate the schema",
                {"below": below, "above": above, "fraction": round((below + above) / n, 6)},
            )
        )
    return out
