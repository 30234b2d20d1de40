"""Seeded train / validation / test splits, stratified for classification."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from kfgpu.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["split_frame"]


def split_frame(
    df: pd.DataFrame,
    target: str,
    *,
    task: Literal["classification", "regression"],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    time_column: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows into train, validation and test.

    Rows whose target is missing are dropped first. Classification splits are stratified
    so a rare class (2% fraud) lands in every split. With ``time_column``, the split is by
    time instead: the latest rows are the test split, the ones before them validation, so
    no future row informs training (leakage through time).

    Raises:
        ConfigError: a fraction is outside (0, 1) or the two leave no training rows.
        DataError: too few rows for the split (or to stratify by every class).
    """
    from sklearn.model_selection import train_test_split

    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    if val_fraction + test_fraction >= 0.9:
        raise ConfigError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:.2f} leaves under 10% "
            "of rows for training; lower one of them"
        )
    df = df[df[target].notna()].reset_index(drop=True)
    if time_column:
        return _split_by_time(df, time_column, val_fraction, test_fraction)
    if len(df) < 10:
        raise DataError(
            f"only {len(df)} rows with a non-missing target {target!r}; need at least 10 to "
            "split into train, validation and test"
        )
    stratify = df[target] if task == "classification" else None
    if stratify is not None:
        counts = stratify.value_counts()
        if int(counts.min()) < 3:
            rare = counts.idxmin()
            raise DataError(
                f"class {rare!r} of target {target!r} has {int(counts.min())} row(s); each class "
                "needs at least 3 to appear in train, validation and test; add rows or drop it"
            )
    holdout = val_fraction + test_fraction
    try:
        train, rest = train_test_split(
            df, test_size=holdout, random_state=seed, stratify=stratify, shuffle=True
        )
        rest_strat = rest[target] if stratify is not None else None
        val, test = train_test_split(
            rest,
            test_size=test_fraction / holdout,
            random_state=seed + 1,
            stratify=rest_strat,
            shuffle=True,
        )
    except ValueError as e:
        raise DataError(
            f"cannot split {len(df)} rows of target {target!r} with val_fraction={val_fraction} "
            f"and test_fraction={test_fraction}: {e}; add rows or change the fractions"
        ) from e
    return (
        train.reset_index(drop=True),
        val.reset_index(drop=True),
        test.reset_index(drop=True),
    )


def _split_by_time(
    df: pd.DataFrame, time_column: str, val_fraction: float, test_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    from kfgpu.errors import SchemaError

    if time_column not in df.columns:
        raise SchemaError(
            f"time_column {time_column!r} is not a column; pass one of {list(df.columns)[:20]}"
        )
    col = df[time_column]
    if not (pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_numeric_dtype(col)):
        col = pd.to_datetime(col, utc=True, errors="coerce")
    if col.isna().any():
        raise DataError(
            f"time_column {time_column!r} has {int(col.isna().sum())} missing or unparseable "
            "value(s); a time split needs a time for every row"
        )
    if len(df) < 10:
        raise DataError(f"only {len(df)} rows; need at least 10 to split by time")
    order = col.argsort(kind="stable").to_numpy()
    ordered = df.iloc[order].reset_index(drop=True)
    n_test = max(1, round(len(df) * test_fraction))
    n_val = max(1, round(len(df) * val_fraction))
    n_train = len(df) - n_val - n_test
    return (
        ordered.iloc[:n_train].reset_index(drop=True),
        ordered.iloc[n_train : n_train + n_val].reset_index(drop=True),
        ordered.iloc[n_train + n_val :].reset_index(drop=True),
    )
