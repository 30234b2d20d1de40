"""A seeded synthetic tabular data set shaped like card-fraud transactions.

The generator streams: rows are produced in fixed internal blocks of
:data:`BLOCK_ROWS` rows, each block drawn from its own
``numpy.random.SeedSequence([seed, block_index])``, and re-sliced into chunks of the size
the caller asks for. The data therefore depend only on ``(rows, seed, drift)``, never on
``chunk_rows``, and memory stays bounded by ``chunk_rows + BLOCK_ROWS`` rows however many
rows are generated.

Columns:

* ``amount`` (float, lognormal, per-category scale), ``hour`` (int 0-23),
  ``account_age_days`` (float, some NaN), ``n_tx_24h`` (int, Poisson),
  ``distance_km`` (float, some NaN), ``velocity_score`` (float 0-1),
  ``merchant_risk`` (float 0-1, some NaN);
* ``merchant_category`` (12 skewed levels), ``country`` (20 levels), ``channel``
  (``web``/``pos``/``app``), ``device_type`` (some ``None``);
* ``is_fraud`` (int 0/1, about 2% positive), drawn from a logistic model with interactions
  and categorical effects, so a good model reaches a ROC AUC around 0.9 but not 1.0.

``drift`` in ``[0, 1]`` shifts the amount scale, the distance scale, the transaction count
and the category frequencies proportionally; ``drift=0`` is the reference distribution.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from kfgpu.data._atomic import atomic_local_file
from kfgpu.errors import ConfigError

__all__ = [
    "BLOCK_ROWS",
    "CATEGORICAL_COLUMNS",
    "COLUMNS",
    "LABEL_COLUMN",
    "NUMERIC_COLUMNS",
    "fraud",
    "iter_fraud",
    "write_fraud_parquet",
    "write_fraud_shards",
]

BLOCK_ROWS = 65_536
"""Rows per internal generation block; fixed so the data never depend on ``chunk_rows``."""

LABEL_COLUMN = "is_fraud"
NUMERIC_COLUMNS = (
    "amount",
    "hour",
    "account_age_days",
    "n_tx_24h",
    "distance_km",
    "velocity_score",
    "merchant_risk",
)
CATEGORICAL_COLUMNS = ("merchant_category", "country", "channel", "device_type")
COLUMNS = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS, LABEL_COLUMN)

# merchant category: (name, reference weight, drifted weight, log-amount offset, base risk,
# logit effect)
_CATEGORIES = (
    ("grocery", 0.22, 0.12, -0.4, 0.10, -0.6),
    ("restaurants", 0.16, 0.10, -0.2, 0.15, -0.4),
    ("fuel", 0.11, 0.06, -0.1, 0.20, -0.2),
    ("retail", 0.10, 0.09, 0.1, 0.25, 0.0),
    ("travel", 0.07, 0.08, 0.9, 0.45, 0.5),
    ("electronics", 0.06, 0.14, 0.8, 0.55, 0.8),
    ("entertainment", 0.06, 0.06, 0.0, 0.30, 0.1),
    ("health", 0.05, 0.04, 0.2, 0.15, -0.3),
    ("utilities", 0.05, 0.03, 0.3, 0.10, -0.5),
    ("online_services", 0.05, 0.12, 0.0, 0.50, 0.6),
    ("jewelry", 0.04, 0.08, 1.2, 0.60, 0.9),
    ("gambling", 0.03, 0.08, 0.5, 0.70, 1.0),
)
_CAT_NAMES = np.array([c[0] for c in _CATEGORIES], dtype=object)
_CAT_P0 = np.array([c[1] for c in _CATEGORIES])
_CAT_P1 = np.array([c[2] for c in _CATEGORIES])
_CAT_AMOUNT = np.array([c[3] for c in _CATEGORIES])
_CAT_RISK = np.array([c[4] for c in _CATEGORIES])
_CAT_LOGIT = np.array([c[5] for c in _CATEGORIES])

# country: (code, reference weight, drifted weight, logit effect)
_COUNTRIES = (
    ("US", 0.30, 0.20, 0.0),
    ("GB", 0.09, 0.07, 0.0),
    ("DE", 0.08, 0.06, -0.1),
    ("FR", 0.07, 0.05, -0.1),
    ("CA", 0.06, 0.05, 0.0),
    ("ES", 0.05, 0.04, 0.0),
    ("IT", 0.05, 0.04, 0.1),
    ("NL", 0.04, 0.03, -0.1),
    ("AU", 0.04, 0.03, 0.0),
    ("JP", 0.04, 0.03, -0.2),
    ("BR", 0.03, 0.05, 0.5),
    ("MX", 0.03, 0.05, 0.4),
    ("IN", 0.03, 0.05, 0.3),
    ("SE", 0.02, 0.02, -0.2),
    ("CH", 0.02, 0.02, -0.2),
    ("PL", 0.02, 0.03, 0.2),
    ("NG", 0.01, 0.05, 1.1),
    ("RU", 0.01, 0.05, 0.9),
    ("ID", 0.01, 0.04, 0.6),
    ("RO", 0.01, 0.04, 0.7),
)
_COUNTRY_NAMES = np.array([c[0] for c in _COUNTRIES], dtype=object)
_COUNTRY_P0 = np.array([c[1] for c in _COUNTRIES])
_COUNTRY_P1 = np.array([c[2] for c in _COUNTRIES])
_COUNTRY_LOGIT = np.array([c[3] for c in _COUNTRIES])

_CHANNEL_NAMES = np.array(["pos", "web", "app"], dtype=object)
_CHANNEL_P0 = np.array([0.55, 0.30, 0.15])
_CHANNEL_P1 = np.array([0.25, 0.50, 0.25])
_CHANNEL_LOGIT = np.array([-0.5, 0.4, 0.1])

_DEVICE_NAMES = np.array(["mobile", "desktop", "tablet"], dtype=object)
_DEVICE_P = np.array([0.6, 0.3, 0.1])

# Missing-value rates.
_NAN_ACCOUNT_AGE = 0.02
_NAN_DISTANCE = 0.04
_NAN_MERCHANT_RISK = 0.01
_NONE_DEVICE = 0.03

# Calibrated so that the positive rate is about 2% at drift=0.
_INTERCEPT = -5.98


def _check_args(rows: int, seed: int, drift: float, chunk_rows: int) -> None:
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows <= 0:
        raise ConfigError(f"rows={rows!r} is not a positive integer; pass rows >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r} is not a non-negative integer; pass seed >= 0")
    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, (int, np.integer))
        or chunk_rows <= 0
    ):
        raise ConfigError(
            f"chunk_rows={chunk_rows!r} is not a positive integer; pass chunk_rows >= 1"
        )
    try:
        drift_f = float(drift)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"drift={drift!r} is not a number; pass drift in [0, 1]") from e
    if not 0.0 <= drift_f <= 1.0:
        raise ConfigError(f"drift={drift!r} is outside [0, 1]; pass drift in [0, 1]")


def _mix(p0: np.ndarray, p1: np.ndarray, drift: float) -> np.ndarray:
    p = (1.0 - drift) * p0 + drift * p1
    return p / p.sum()


def _block(n: int, seed: int, block_index: int, drift: float) -> pd.DataFrame:
    """Generate one block of ``n`` rows from ``SeedSequence([seed, block_index])``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, block_index]))

    # The uniform draws used for categories are taken the same way at every drift, so that
    # drift moves frequencies without reshuffling unrelated columns.
    cat = np.searchsorted(np.cumsum(_mix(_CAT_P0, _CAT_P1, drift)), rng.random(n), side="right")
    cat = np.minimum(cat, len(_CAT_NAMES) - 1)
    country = np.searchsorted(
        np.cumsum(_mix(_COUNTRY_P0, _COUNTRY_P1, drift)), rng.random(n), side="right"
    )
    country = np.minimum(country, len(_COUNTRY_NAMES) - 1)
    channel = np.searchsorted(
        np.cumsum(_mix(_CHANNEL_P0, _CHANNEL_P1, drift)), rng.random(n), side="right"
    )
    channel = np.minimum(channel, len(_CHANNEL_NAMES) - 1)
    device = np.minimum(
        np.searchsorted(np.cumsum(_DEVICE_P), rng.random(n), side="right"), len(_DEVICE_NAMES) - 1
    )

    log_amount = 3.4 + _CAT_AMOUNT[cat] + rng.normal(0.0, 1.0, n)
    amount = np.round(np.exp(log_amount) * (1.0 + drift), 2)

    night = rng.random(n) < 0.12
    hour = np.where(
        night,
        rng.integers(0, 6, n),
        np.clip(np.round(rng.normal(14.0, 4.0, n)), 6, 23),
    ).astype(np.int64)

    account_age = np.floor(rng.exponential(700.0, n)).astype(np.float64)
    n_tx = rng.poisson(2.0 * (1.0 + drift), n).astype(np.int64)
    distance = np.round(rng.lognormal(2.0, 1.2, n) * (1.0 + 2.0 * drift), 3)
    velocity = 1.0 / (1.0 + np.exp(-(0.6 * (n_tx - 2.0) + rng.normal(0.0, 1.0, n))))
    merchant_risk = np.clip(_CAT_RISK[cat] + rng.normal(0.0, 0.1, n), 0.0, 1.0)

    # Reference statistics (fixed constants, so drift changes the labels only through the
    # features it moves).
    z_amount = (np.log(amount + 1.0) - 3.6) / 1.05
    logit = (
        _INTERCEPT
        + 0.7 * z_amount
        + 0.9 * night
        + 1.1 * (account_age < 30)
        + 0.25 * np.minimum(n_tx, 10)
        + 0.45 * (np.log1p(distance) - 2.1)
        + 2.0 * velocity * merchant_risk
        + 0.6 * z_amount * (channel == 1)
        + _CAT_LOGIT[cat]
        + _COUNTRY_LOGIT[country]
        + _CHANNEL_LOGIT[channel]
        + rng.normal(0.0, 0.3, n)
    )
    is_fraud = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    # Missing values are masked after the label is drawn: the truth existed, it was not
    # recorded.
    account_age[rng.random(n) < _NAN_ACCOUNT_AGE] = np.nan
    distance[rng.random(n) < _NAN_DISTANCE] = np.nan
    merchant_risk = np.round(merchant_risk, 4)
    merchant_risk[rng.random(n) < _NAN_MERCHANT_RISK] = np.nan
    device_type = _DEVICE_NAMES[device]
    device_type[channel == 0] = "terminal"
    device_type[rng.random(n) < _NONE_DEVICE] = None

    return pd.DataFrame(
        {
            "amount": amount,
            "hour": hour,
            "account_age_days": account_age,
            "n_tx_24h": n_tx,
            "distance_km": distance,
            "velocity_score": np.round(velocity, 4),
            "merchant_risk": merchant_risk,
            "merchant_category": _CAT_NAMES[cat],
            "country": _COUNTRY_NAMES[country],
            "channel": _CHANNEL_NAMES[channel],
            "device_type": device_type,
            LABEL_COLUMN: is_fraud,
        }
    )


def iter_fraud(
    rows: int, *, seed: int = 0, chunk_rows: int = 100_000, drift: float = 0.0
) -> Iterator[pd.DataFrame]:
    """Stream the synthetic fraud table in chunks.

    Args:
        rows: total number of rows, at least 1.
        seed: non-negative random seed; the same ``(rows, seed, drift)`` gives the same data.
        chunk_rows: rows per yielded chunk (the last may be shorter); does not change the data.
        drift: distribution shift in ``[0, 1]``; 0 is the reference distribution.

    Yields:
        DataFrames with the columns in :data:`COLUMNS` and a fresh ``RangeIndex``.

    Raises:
        ConfigError: an argument is out of range.
    """
    _check_args(rows, seed, drift, chunk_rows)
    # Validate eagerly, generate lazily.
    return _iter_fraud(int(rows), int(seed), int(chunk_rows), float(drift))


def _iter_fraud(rows: int, seed: int, chunk_rows: int, drift: float) -> Iterator[pd.DataFrame]:
    pending: list[pd.DataFrame] = []
    pending_rows = 0
    n_blocks = -(-rows // BLOCK_ROWS)
    for b in range(n_blocks):
        n = min(BLOCK_ROWS, rows - b * BLOCK_ROWS)
        pending.append(_block(n, seed, b, drift))
        pending_rows += n
        while pending_rows >= chunk_rows:
            buf = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
            yield buf.iloc[:chunk_rows].reset_index(drop=True)
            rest = buf.iloc[chunk_rows:]
            pending = [rest] if len(rest) else []
            pending_rows = len(rest)
    if pending_rows:
        buf = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
        yield buf.reset_index(drop=True)


def fraud(rows: int = 50_000, *, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Return the whole synthetic fraud table in memory.

    Args:
        rows: number of rows, at least 1.
        seed: non-negative random seed.
        drift: distribution shift in ``[0, 1]``.

    Returns:
        The same rows :func:`iter_fraud` streams, concatenated.

    Raises:
        ConfigError: an argument is out of range.
    """
    chunks = list(iter_fraud(rows, seed=seed, drift=drift, chunk_rows=BLOCK_ROWS))
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def _arrow_schema() -> Any:
    import pyarrow as pa

    fields = []
    for name in COLUMNS:
        if name in ("hour", "n_tx_24h", LABEL_COLUMN):
            fields.append(pa.field(name, pa.int64()))
        elif name in CATEGORICAL_COLUMNS:
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, pa.float64()))
    return pa.schema(fields)


def write_fraud_parquet(
    path: str,
    rows: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    chunk_rows: int = 100_000,
) -> dict[str, Any]:
    """Stream the synthetic fraud table into one Parquet file, one row group per chunk.

    The file is written to a temporary name in the same directory and renamed into place,
    so a reader never sees a partial file. Parent directories are created.

    Args:
        path: local destination path (a ``file://`` prefix is accepted).
        rows: total number of rows, at least 1.
        seed: non-negative random seed.
        drift: distribution shift in ``[0, 1]``.
        chunk_rows: rows per row group.

    Returns:
        ``{"path": <absolute path written>, "rows": <rows written>}``.

    Raises:
        ConfigError: an argument is out of range.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks = iter_fraud(rows, seed=seed, chunk_rows=chunk_rows, drift=drift)
    schema = _arrow_schema()
    written = 0
    with atomic_local_file(path) as (tmp, dest), pq.ParquetWriter(tmp, schema) as writer:
        for chunk in chunks:
            table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
            writer.write_table(table, row_group_size=len(chunk))
            written += len(chunk)
    return {"path": dest, "rows": written}


def write_fraud_shards(
    uri: str,
    rows: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    extra_columns: int = 0,
    row_id: bool = True,
    file_rows: int = 1_048_576,
    row_group_rows: int = 65_536,
) -> dict[str, Any]:
    """Stream the synthetic fraud table into sharded Parquet, never holding more than a block.

    Written with :class:`kfgpu.data.shards.ShardWriter`: many files of bounded row groups,
    committed atomically with a manifest of row counts and fingerprints.

    Args:
        uri: the output directory (local path or fsspec URI).
        rows: total number of rows, at least 1.
        seed: non-negative random seed.
        drift: distribution shift in ``[0, 1]``.
        extra_columns: add this many float columns ``x000``, ``x001`` ... of seeded noise
            (to make a wider table; they carry no signal).
        row_id: add an ``int64`` column ``row_id`` holding each row's position (first).
        file_rows: the most rows per file.
        row_group_rows: the most rows per row group.

    Returns:
        ``{"uri": uri, "rows": rows written, "columns": column count, "fingerprint": ...}``.

    Raises:
        ConfigError: an argument is out of range.
    """
    from kfgpu.data.shards import ShardWriter

    if isinstance(extra_columns, bool) or not isinstance(extra_columns, int) or extra_columns < 0:
        raise ConfigError(
            f"extra_columns={extra_columns!r} is not a whole number >= 0; pass e.g. 18"
        )
    chunks = iter_fraud(rows, seed=seed, chunk_rows=BLOCK_ROWS, drift=drift)
    start = 0
    columns = 0
    with ShardWriter(uri, file_rows=file_rows, row_group_rows=row_group_rows) as writer:
        for b, chunk in enumerate(chunks):
            n = len(chunk)
            if extra_columns:
                rng = np.random.default_rng(np.random.SeedSequence([seed, b, 1]))
                noise = rng.standard_normal((extra_columns, n)).astype(np.float64)
                for j in range(extra_columns):
                    chunk[f"x{j:03d}"] = noise[j]
            if row_id:
                chunk.insert(0, "row_id", np.arange(start, start + n, dtype=np.int64))
            start += n
            columns = chunk.shape[1]
            writer.write(chunk)
    assert writer.manifest is not None
    return {
        "uri": uri,
        "rows": writer.manifest.rows,
        "columns": columns,
        "fingerprint": writer.manifest.fingerprint,
    }
