"""The label-leakage check: one feature alone predicts the target on held-out rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfgpu.validation.checks.base import Anomaly, CheckContext, unique_names
from kfgpu.validation.schema import column_kind, stringify

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["LEAKAGE_BINS", "LEAKAGE_MIN_ROWS", "LEAKAGE_SEED", "check_label_leakage"]

#: The leakage check needs at least this many rows with a target.
LEAKAGE_MIN_ROWS = 50
#: The leakage check cuts a numeric feature into at most this many quantile bins.
LEAKAGE_BINS = 32
#: Seed of the permutation that splits rows into the leakage check's fit and score halves.
LEAKAGE_SEED = 0
#: The leakage check scores only when at least two classes have this many held-out rows.
_LEAKAGE_MIN_CLASS_ROWS = 5


def check_label_leakage(ctx: CheckContext) -> list[Anomaly]:
    """Error: one feature alone predicts the target almost perfectly on held-out rows.

    The rows with a target are split in two halves by a permutation seeded with
    :data:`LEAKAGE_SEED`. Each feature is cut into buckets (a numeric feature with more than
    :data:`LEAKAGE_BINS` distinct values into quantile bins fitted on the first half, any
    other feature by value; nulls, and values unseen in the first half, are buckets of their
    own). On the first half each bucket is mapped to its majority class (classification)
    or its mean target (regression); an unseen bucket to the overall majority class or
    mean. The second half is scored by balanced accuracy (classification) or R^2
    (regression), and a score of at least ``options.leakage_threshold`` is an error.

    Skipped with fewer than :data:`LEAKAGE_MIN_ROWS` rows with a target, with a threshold
    of 1.0 or more, and for classification unless two classes have at least 5 held-out
    rows each (else a constant guess would score perfectly).
    """
    import numpy as np

    threshold = ctx.options.leakage_threshold
    if threshold >= 1.0 or not ctx.has_target or ctx.task is None or not ctx.features:
        return []
    prepared = _leakage_target(ctx)
    if prepared is None:
        return []
    y, rows, fit, held = prepared
    n_classes = int(y.max()) + 1 if ctx.task == "classification" else 0
    if n_classes:
        held_counts = np.bincount(y[held], minlength=n_classes)
        if int((held_counts >= _LEAKAGE_MIN_CLASS_ROWS).sum()) < 2:
            return []
    out = []
    for name in unique_names(ctx.features):
        buckets = _leakage_buckets(ctx, name, rows, fit)
        if buckets is None:
            continue
        if n_classes:
            score = _balanced_accuracy(buckets, y, fit, held, n_classes)
            metric, label = "balanced_accuracy", "balanced accuracy"
        else:
            score = _bucket_r2(buckets, y, fit, held)
            metric, label = "r2", "R^2"
        if score is None or score < threshold:
            continue
        out.append(
            Anomaly(
                name,
                "label_leakage",
                "error",
                f"feature {name!r} alone predicts target {ctx.target!r} with {label} "
                f"{score:.4f} on held-out rows (leakage_threshold={threshold:g}); if it is "
                "derived from the label or recorded after it, remove the column; if it is a "
                "legitimate feature, set leakage_threshold above the score (1.0 turns it off; "
                "kfgpu run --param leakage_threshold=1.0)",
                {"score": round(score, 6), "metric": metric},
            )
        )
    return out


def _codes(series: pd.Series) -> np.ndarray:
    """Integer codes of a column's values, -1 for nulls (stringified when unhashable)."""
    import numpy as np
    import pandas as pd

    try:
        codes, _ = pd.factorize(series)
    except TypeError:  # unhashable values (lists, dicts): compare their string forms
        codes = np.full(len(series), -1, dtype=np.int64)
        codes[series.notna().to_numpy()] = pd.factorize(stringify(series))[0]
    return np.asarray(codes, dtype=np.int64)


def _leakage_target(
    ctx: CheckContext,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(y, rows, fit, held)``: the target of the usable rows, their positions, the split.

    For classification ``y`` holds class codes 0..K-1, for regression finite floats;
    ``fit`` and ``held`` index into ``rows`` / ``y``. None when too few rows are usable.
    """
    import numpy as np
    import pandas as pd

    target = ctx.series(ctx.target)
    if ctx.task == "classification":
        codes = _codes(target)
        rows = np.flatnonzero(codes >= 0)
        _, y = np.unique(codes[rows], return_inverse=True)
        y = y.astype(np.int64)
    else:
        values = pd.to_numeric(target, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        rows = np.flatnonzero(np.isfinite(values))
        y = values[rows]
    n = rows.size
    if n < LEAKAGE_MIN_ROWS:
        return None
    order = np.random.default_rng(LEAKAGE_SEED).permutation(n)
    return y, rows, order[: n // 2], order[n // 2 :]


def _leakage_buckets(
    ctx: CheckContext, name: str, rows: np.ndarray, fit: np.ndarray
) -> np.ndarray | None:
    """Bucket codes (>= 0) of feature ``name`` on ``rows``; nulls are bucket 0."""
    import numpy as np

    col = ctx.stats.column(name)
    series = ctx.series(name).iloc[rows]
    if col is None:
        return None
    if col.kind in ("numeric", "datetime") and col.n_unique > LEAKAGE_BINS:
        if col.kind == "datetime":
            values = series.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
            values[series.isna().to_numpy()] = np.nan
        else:
            values = series.to_numpy(dtype=float, na_value=np.nan)
        train = values[fit]
        train = train[np.isfinite(train)]
        if train.size == 0:
            return None
        qs = np.linspace(0.0, 1.0, LEAKAGE_BINS + 1)[1:-1]
        edges = np.unique(np.quantile(train, qs))
        buckets = np.searchsorted(edges, values, side="right") + 1
        buckets[np.isnan(values)] = 0
        return buckets.astype(np.int64)
    if column_kind(series) == "numeric":
        return _codes(series.astype(float)) + 1
    return _codes(series) + 1


def _balanced_accuracy(
    buckets: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray, k: int
) -> float | None:
    import numpy as np

    n_buckets = int(buckets.max()) + 1
    bf, yf = buckets[fit], y[fit]
    table = np.bincount(bf * k + yf, minlength=n_buckets * k).reshape(n_buckets, k)
    fallback = int(np.bincount(yf, minlength=k).argmax())
    mapping = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), fallback)
    yh = y[held]
    pred = mapping[buckets[held]]
    support = np.bincount(yh, minlength=k)
    hits = np.bincount(yh[pred == yh], minlength=k)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def _bucket_r2(
    buckets: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray
) -> float | None:
    import numpy as np

    n_buckets = int(buckets.max()) + 1
    bf, yf = buckets[fit], y[fit]
    counts = np.bincount(bf, minlength=n_buckets)
    sums = np.bincount(bf, weights=yf, minlength=n_buckets)
    means = np.full(n_buckets, float(yf.mean()))
    seen = counts > 0
    means[seen] = sums[seen] / counts[seen]
    yh = y[held]
    sst = float(((yh - yh.mean()) ** 2).sum())
    if sst <= 0.0:
        return None
    sse = float(((yh - means[buckets[held]]) ** 2).sum())
    return 1.0 - sse / sst
