"""Mergeable fitting statistics of a :class:`~kfgpu.features.spec.FeatureSpec`.

One pass over any number of chunks (or workers, merged afterwards) collects everything a
:class:`~kfgpu.features.transform.FittedTransform` needs:

* per numeric column a :class:`~kfgpu.validation.sketch.NumericSketch` of the raw values
  (exactly as the transform's front half reads them: float32, non-finite = missing), and
  for ``scale="log1p"`` a second one of ``sign(x) * log1p(|x|)``. Count, mean, std, min
  and max are exact; the median, quantiles and IQR are within the sketch's relative
  accuracy (1% by default) of the exact order statistic.
* per categorical column :class:`~kfgpu.validation.sketch.CategoricalCounts` of the
  stringified values, capped at ``max(10 * max_categories, 10_000)`` distinct values.
* per datetime column the smallest and largest year.

Merging is exact for counts, bins, min/max and moments: stats of chunks merged equal the
stats of their concatenation (vocabularies too, unless a column exceeded its cap).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from kfgpu.errors import ConfigError, EmptyDataError
from kfgpu.features._frame import (
    datetime_values,
    numeric_values,
    require_columns,
    signed_log1p,
    year_range,
)
from kfgpu.features.spec import CategoricalSpec, FeatureSpec, NumericSpec
from kfgpu.validation.sketch import DEFAULT_RELATIVE_ACCURACY, CategoricalCounts, NumericSketch

__all__ = ["STATS_VERSION", "FeatureStats", "categorical_cap", "fit_stats", "needs_quantiles"]

STATS_VERSION = 1


def categorical_cap(spec: CategoricalSpec) -> int:
    """Distinct values counted per categorical column: ``max(10 * max_categories, 10_000)``."""
    return max(10 * spec.max_categories, 10_000)


class FeatureStats:
    """Everything fitting a spec needs, collected in one mergeable pass.

    Args:
        spec: the spec whose columns are summarised.
        relative_accuracy: the numeric sketches' quantile accuracy.

    Attributes:
        rows: rows seen.
        numeric: numeric column -> sketch of its raw values.
        log1p: ``scale="log1p"`` column -> sketch of ``sign(x) * log1p(|x|)``.
        categorical: categorical column -> value counts.
        years: datetime column -> ``(min_year, max_year)``, None while no value was seen.
    """

    def __init__(
        self, spec: FeatureSpec, *, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    ) -> None:
        self.spec = spec
        self.relative_accuracy = float(relative_accuracy)
        self.rows = 0
        self.numeric: dict[str, NumericSketch] = {}
        self.log1p: dict[str, NumericSketch] = {}
        self.categorical: dict[str, CategoricalCounts] = {}
        self.years: dict[str, tuple[int, int] | None] = {}
        for name, s in spec.columns.items():
            if isinstance(s, NumericSpec):
                self.numeric[name] = NumericSketch(relative_accuracy, quantiles=needs_quantiles(s))
                if s.scale == "log1p":
                    # Only its mean and std are used (quantile clips act on raw values).
                    self.log1p[name] = NumericSketch(relative_accuracy, quantiles=False)
            elif isinstance(s, CategoricalSpec):
                self.categorical[name] = CategoricalCounts(categorical_cap(s))
            else:
                self.years[name] = None

    def update(self, df: pd.DataFrame) -> FeatureStats:
        """Add a chunk.

        Raises:
            SchemaError: a spec column is missing or a numeric column holds non-numbers.

        Returns:
            ``self``, for chaining.
        """
        require_columns(df, list(self.spec.columns))
        names = list(self.numeric)
        if len(df) >= _PARALLEL_ROWS and len(names) > 1:
            # Columns are independent: their sketches (NumPy, which releases the GIL on
            # arrays this long) are filled by threads; the first error in column order is
            # raised, as the loop below would.
            cols = {name: df[name] for name in names}
            futures = [_pool().submit(self._add_numeric, cols, name) for name in names]
            for f in futures:
                f.result()
        else:
            for name in names:
                self._add_numeric(df, name)
        for name, counts in self.categorical.items():
            # value_counts on the column itself, keys stringified after: the same strings
            # category_strings gives row by row, at the cost of the distinct values only.
            counts.add(df[name])
        for name, seen in self.years.items():
            rng = year_range(datetime_values(df, name))
            if rng is not None:
                self.years[name] = (
                    rng if seen is None else (min(seen[0], rng[0]), max(seen[1], rng[1]))
                )
        self.rows += len(df)
        return self

    def _add_numeric(self, df: Any, name: str) -> None:
        x = numeric_values(df, name)
        self.numeric[name].add(x.astype("float64"))
        if name in self.log1p:
            self.log1p[name].add(signed_log1p(x).astype("float64"))

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another worker's stats (of the same spec) into these.

        Raises:
            ConfigError: the stats were collected for different specs.

        Returns:
            ``self``, for chaining.
        """
        if other.spec != self.spec:
            raise ConfigError(
                "cannot merge feature stats collected for different feature specs; collect "
                "every part with the same spec"
            )
        for name, sketch in self.numeric.items():
            sketch.merge(other.numeric[name])
        for name, sketch in self.log1p.items():
            sketch.merge(other.log1p[name])
        for name, counts in self.categorical.items():
            counts.merge(other.categorical[name])
        for name, seen in self.years.items():
            theirs = other.years[name]
            if theirs is not None:
                self.years[name] = (
                    theirs if seen is None else (min(seen[0], theirs[0]), max(seen[1], theirs[1]))
                )
        self.rows += other.rows
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with the spec, so :meth:`from_dict` needs nothing else)."""
        return {
            "version": STATS_VERSION,
            "spec": self.spec.to_dict(),
            "relative_accuracy": self.relative_accuracy,
            "rows": self.rows,
            "numeric": {k: v.to_dict() for k, v in self.numeric.items()},
            "log1p": {k: v.to_dict() for k, v in self.log1p.items()},
            "categorical": {k: v.to_dict() for k, v in self.categorical.items()},
            "years": {k: (None if v is None else list(v)) for k, v in self.years.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureStats:
        """Rebuild stats from :meth:`to_dict` output.

        Raises:
            ConfigError: the dict is malformed.
        """
        try:
            spec = FeatureSpec.from_dict(data["spec"])
            out = cls(spec, relative_accuracy=float(data["relative_accuracy"]))
            out.rows = int(data["rows"])
            for k in out.numeric:
                out.numeric[k] = NumericSketch.from_dict(data["numeric"][k])
            for k in out.log1p:
                out.log1p[k] = NumericSketch.from_dict(data["log1p"][k])
            for k in out.categorical:
                out.categorical[k] = CategoricalCounts.from_dict(data["categorical"][k])
            for k in out.years:
                v = data["years"][k]
                out.years[k] = None if v is None else (int(v[0]), int(v[1]))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ConfigError(
                f"feature stats dict is invalid ({type(e).__name__}: {e}); pass the output of "
                "FeatureStats.to_dict()"
            ) from e
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureStats):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FeatureStats(rows={self.rows}, columns={list(self.spec.columns)})"


_PARALLEL_ROWS = 16_384
"""Chunks of at least this many rows fill their numeric sketches in threads."""
_POOL: list[Any] = []
_POOL_LOCK = threading.Lock()


def _pool() -> Any:
    """One small thread pool for the process (created on first use)."""
    from concurrent.futures import ThreadPoolExecutor

    with _POOL_LOCK:
        if not _POOL:
            from kfgpu.data.shards import usable_cpus

            workers = max(2, min(4, usable_cpus()))
            _POOL.append(ThreadPoolExecutor(workers, thread_name_prefix="kfgpu-fit"))
        return _POOL[0]


def needs_quantiles(spec: NumericSpec) -> bool:
    """Whether fitting ``spec`` needs quantiles (median, IQR, quantile clips or buckets) or
    only the exact count, mean, std, min and max."""
    return (
        spec.impute == "median"
        or spec.scale == "robust"
        or spec.clip_quantiles is not None
        or (spec.bucketize > 0 and spec.boundaries is None)
    )


def fit_stats(
    frames: pd.DataFrame | Iterable[pd.DataFrame],
    spec: FeatureSpec,
    *,
    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
) -> FeatureStats:
    """Collect :class:`FeatureStats` over a frame or an iterable of chunks, in one pass.

    Raises:
        EmptyDataError: no rows at all.
        SchemaError: a spec column is missing or a numeric column holds non-numbers.
    """
    stats = FeatureStats(spec, relative_accuracy=relative_accuracy)
    if isinstance(frames, pd.DataFrame):
        # One big frame is read in slices (views): the per-column temporaries of a
        # 5-million-row table would otherwise all be alive at once.
        step = 262_144
        chunks: Iterable[pd.DataFrame] = (
            frames.iloc[i : i + step] for i in range(0, max(len(frames), 1), step)
        )
    else:
        chunks = frames
    for chunk in chunks:
        stats.update(chunk)
    if stats.rows == 0:
        raise EmptyDataError("cannot fit features on 0 rows; the training data is empty")
    return stats
