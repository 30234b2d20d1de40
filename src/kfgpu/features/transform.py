"""The fitted feature transform: fitted once on the training split, applied identically
offline (NumPy) and inside the served model (torch).

Numeric columns are imputed, standardised and clipped; categorical columns map to an
integer index with index 0 reserved for missing and out-of-vocabulary values, ready for an
embedding. The fitted state is plain JSON, so a bundle never holds a pickle, and the torch
module is rebuilt from that JSON: the served model applies exactly what training fitted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kfgpu.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

__all__ = [
    "FeatureSpec",
    "FittedTransform",
    "NumericImpute",
    "fit_transform",
    "infer_feature_spec",
]

NumericImpute = Literal["mean", "median", "zero"]

#: Standardised values are clipped to this many standard deviations: an absurd input
#: (a typo, an overflow upstream) cannot push activations anywhere training never saw.
DEFAULT_CLIP = 10.0


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model and how.

    Args:
        numeric: columns imputed, standardised and clipped.
        categorical: columns mapped to a vocabulary index (0 = missing or unseen).
        impute: the statistic that fills missing and non-finite numeric values.
        max_categories: the most frequent values kept per categorical column.
        min_frequency: values seen fewer times than this go to the out-of-vocabulary index.
        clip: standardised values are clipped to ``[-clip, clip]``.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    impute: NumericImpute = "mean"
    max_categories: int = 1000
    min_frequency: int = 1
    clip: float = DEFAULT_CLIP

    def __post_init__(self) -> None:
        if not self.numeric and not self.categorical:
            raise ConfigError(
                "feature spec has no columns: name at least one numeric or categorical column"
            )
        overlap = sorted(set(self.numeric) & set(self.categorical))
        if overlap:
            raise ConfigError(
                f"columns {overlap} are listed as both numeric and categorical; keep each in one"
            )
        if self.impute not in ("mean", "median", "zero"):
            raise ConfigError(
                f"impute={self.impute!r} is not supported; use 'mean', 'median' or 'zero'"
            )
        if self.max_categories < 1:
            raise ConfigError(f"max_categories must be >= 1, got {self.max_categories}")
        if self.min_frequency < 1:
            raise ConfigError(f"min_frequency must be >= 1, got {self.min_frequency}")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ConfigError(f"clip must be a positive finite number, got {self.clip}")


def infer_feature_spec(df: pd.DataFrame, target: str, *, max_categories: int = 1000) -> FeatureSpec:
    """A sensible spec from a frame: numbers and booleans are numeric, the rest categorical.

    Constant columns and the target are left out.
    """
    import pandas as pd

    numeric: list[str] = []
    categorical: list[str] = []
    for name in df.columns:
        if name == target:
            continue
        col = df[name]
        if col.nunique(dropna=True) <= 1:
            continue
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            numeric.append(str(name))
        else:
            categorical.append(str(name))
    if not numeric and not categorical:
        raise SchemaError(
            f"no usable feature columns besides target {target!r}: every other column is "
            "constant or empty; add feature columns to the data"
        )
    return FeatureSpec(
        numeric=tuple(numeric), categorical=tuple(categorical), max_categories=max_categories
    )


@dataclass(frozen=True)
class FittedTransform:
    """The fitted state of a :class:`FeatureSpec`, JSON-serialisable.

    Attributes:
        numeric: numeric column names, in model input order.
        fill: per numeric column, the value that replaces missing and non-finite values.
        mean: per numeric column, the training mean after imputation.
        scale: per numeric column, the training standard deviation (1.0 where it was 0).
        clip: standardised values are clipped to ``[-clip, clip]``.
        categorical: categorical column names, in model input order.
        vocabularies: per categorical column, the kept values; value ``i`` maps to index
            ``i + 1`` and everything else to 0.
    """

    numeric: tuple[str, ...]
    fill: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float
    categorical: tuple[str, ...]
    vocabularies: tuple[tuple[str, ...], ...]
    version: int = field(default=1)

    # ---- shape ---------------------------------------------------------------------
    @property
    def columns(self) -> tuple[str, ...]:
        """Every raw input column the transform reads."""
        return self.numeric + self.categorical

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """Embedding table sizes: vocabulary plus the missing/unseen index 0."""
        return tuple(len(v) + 1 for v in self.vocabularies)

    # ---- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(map(list, v)) if k == "vocabularies" else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FittedTransform:
        try:
            return cls(
                numeric=tuple(d["numeric"]),
                fill=tuple(float(x) for x in d["fill"]),
                mean=tuple(float(x) for x in d["mean"]),
                scale=tuple(float(x) for x in d["scale"]),
                clip=float(d["clip"]),
                categorical=tuple(d["categorical"]),
                vocabularies=tuple(tuple(v) for v in d["vocabularies"]),
                version=int(d.get("version", 1)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SchemaError(
                f"fitted transform is malformed ({e!r}); re-run engineer_features"
            ) from e

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FittedTransform:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ---- the shared front half: raw frame -> raw arrays -----------------------------
    def raw_arrays(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Pull the model's raw inputs out of a frame, checking every column.

        Returns:
            ``(numeric, codes)``: float32 numeric values with NaN where missing or
            non-finite, and int64 vocabulary indices (0 = missing or unseen).

        Raises:
            SchemaError: a column is missing, or a numeric column holds non-numbers.
        """
        import numpy as np
        import pandas as pd

        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise SchemaError(
                f"input is missing column(s) {missing} that the model was trained on; "
                f"send all of {list(self.columns)}"
            )
        n = len(df)
        num = np.empty((n, len(self.numeric)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            col = df[name]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                try:
                    col = pd.to_numeric(col, errors="raise")
                except (ValueError, TypeError) as e:
                    bad = next((v for v in df[name] if _not_number(v)), "?")
                    raise SchemaError(
                        f"column {name!r} must be numeric but holds {bad!r}; "
                        "send numbers (or null for missing)"
                    ) from e
            with np.errstate(invalid="ignore", over="ignore"):
                values = col.to_numpy(dtype=np.float64, na_value=np.nan)
                # A finite value beyond float32's range is out of range, not missing: keep
                # it finite so the transform clips it instead of imputing it.
                big = float(np.finfo(np.float32).max)
                values = np.where(np.isfinite(values), np.clip(values, -big, big), values)
                num[:, j] = values.astype(np.float32)
        num[~np.isfinite(num)] = np.nan
        codes = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, (name, vocab) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            strings = _as_category_strings(df[name])
            cat = pd.Categorical(strings, categories=list(vocab))
            codes[:, j] = cat.codes.astype(np.int64) + 1  # -1 (unseen or missing) -> 0
        return num, codes

    # ---- the offline back half: NumPy ------------------------------------------------
    def transform_arrays(self, num: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Impute, standardise and clip raw numeric values (NumPy, float32)."""
        import numpy as np

        fill = np.asarray(self.fill, dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        x = np.where(np.isfinite(num), num, fill)  # as the torch module: non-finite = missing
        x = np.clip((x - mean) / scale, -self.clip, self.clip).astype(np.float32)
        return x, codes

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The offline path: raw frame -> (standardised numerics, category indices)."""
        return self.transform_arrays(*self.raw_arrays(df))

    # ---- the served back half: torch ---------------------------------------------------
    def to_module(self) -> torch.nn.Module:
        """The same arithmetic as :meth:`transform_arrays` as a torch module."""
        from kfgpu.features._torch import TransformModule

        return TransformModule(self)


def _not_number(v: object) -> bool:
    import pandas as pd

    if v is None:
        return False
    try:
        pd.to_numeric(pd.Series([v]), errors="raise")
    except (ValueError, TypeError):
        return True
    return False


def _as_category_strings(col: pd.Series) -> pd.Series:
    """Categorical values as strings, missing kept missing (it maps to index 0)."""
    import pandas as pd

    mask = col.isna()
    out = col.astype(str)
    if mask.any():
        out = out.where(~mask, other=pd.NA)
    return out


def fit_transform(df: pd.DataFrame, spec: FeatureSpec) -> FittedTransform:
    """Fit a :class:`FeatureSpec` on (training) data.

    Raises:
        SchemaError: a spec column is missing or a numeric column holds non-numbers.
        EmptyDataError: the frame has no rows.
    """
    import numpy as np

    from kfgpu.errors import EmptyDataError

    if len(df) == 0:
        raise EmptyDataError("cannot fit features on 0 rows; the training split is empty")
    # Reuse the checking front half with an empty vocabulary to read raw numerics.
    probe = FittedTransform(
        numeric=spec.numeric,
        fill=(0.0,) * len(spec.numeric),
        mean=(0.0,) * len(spec.numeric),
        scale=(1.0,) * len(spec.numeric),
        clip=spec.clip,
        categorical=spec.categorical,
        vocabularies=((),) * len(spec.categorical),
    )
    num, _ = probe.raw_arrays(df)
    num64 = num.astype(np.float64)
    fills: list[float] = []
    for j in range(num64.shape[1]):
        column = num64[:, j]
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            fills.append(0.0)
        elif spec.impute == "mean":
            fills.append(float(finite.mean()))
        elif spec.impute == "median":
            fills.append(float(np.median(finite)))
        else:
            fills.append(0.0)
    filled = np.where(np.isnan(num64), np.asarray(fills), num64)
    mean = filled.mean(axis=0) if len(filled) else np.zeros(num64.shape[1])
    std = filled.std(axis=0) if len(filled) else np.ones(num64.shape[1])
    scale = np.where(std > 1e-12, std, 1.0)

    vocabularies: list[tuple[str, ...]] = []
    for name in spec.categorical:
        counts = _as_category_strings(df[name]).value_counts(dropna=True)
        counts = counts[counts >= spec.min_frequency]
        # Most frequent first, ties broken by value, so the vocabulary is deterministic.
        ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        vocabularies.append(tuple(str(k) for k, _ in ordered[: spec.max_categories]))

    return FittedTransform(
        numeric=spec.numeric,
        fill=tuple(fills),
        mean=tuple(float(x) for x in mean),
        scale=tuple(float(x) for x in scale),
        clip=spec.clip,
        categorical=spec.categorical,
        vocabularies=tuple(vocabularies),
    )
