"""The declarative feature spec: which columns feed the model and how.

The same spec is written in Python, JSON or YAML::

    {"columns": {"amount": {"type": "numeric", "scale": "log1p", "missing_indicator": true},
                 "country": {"type": "categorical", "encode": "onehot", "max_categories": 20},
                 "ts": {"type": "datetime", "parts": ["hour", "dayofweek"]}},
     "crosses": [{"columns": ["country", "channel"], "buckets": 256}]}

Every spec class validates itself on construction and raises :class:`ConfigError` naming
the setting (as its key path when read from a dict, e.g. ``columns.amount.scale``), the
value and the fix. A spec says *what* to do; :func:`kfgpu.features.fit_transform` fits it.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.validation.schema import Schema

__all__ = [
    "DEFAULT_CLIP",
    "HASHING_MAX_DISTINCT",
    "HASHING_MIN_DISTINCT",
    "HASHING_RATIO",
    "CategoricalEncode",
    "CategoricalImpute",
    "CategoricalSpec",
    "ColumnSpec",
    "CrossSpec",
    "DatetimePart",
    "DatetimeSpec",
    "FeatureSpec",
    "IndexEncode",
    "NumericImpute",
    "NumericScale",
    "NumericSpec",
    "infer_feature_spec",
    "infer_feature_spec_from_schema",
]

NumericImpute = Literal["mean", "median", "constant", "zero"]
NumericScale = Literal["standard", "minmax", "robust", "log1p", "none"]
CategoricalEncode = Literal["embedding", "onehot", "ordinal", "hashing"]
CategoricalImpute = Literal["oov", "most_frequent", "constant"]
DatetimePart = Literal["hour", "dayofweek", "day", "month", "year", "dayofyear", "minute"]
IndexEncode = Literal["embedding", "onehot"]

#: Scaled values are clipped to ``[-clip, clip]``: an absurd input (a typo, an overflow
#: upstream) cannot push activations anywhere training never saw.
DEFAULT_CLIP = 10.0

#: :func:`infer_feature_spec` hashes a categorical column with more distinct values than
#: this, or with more than ``HASHING_MIN_DISTINCT`` distinct values that are more than
#: ``HASHING_RATIO`` of the rows (an id-like column).
HASHING_MAX_DISTINCT = 100_000
HASHING_MIN_DISTINCT = 1000
HASHING_RATIO = 0.5

#: The key path that error messages name (set while :meth:`FeatureSpec.from_dict` builds).
_WHERE: contextvars.ContextVar[str] = contextvars.ContextVar("kfgpu_spec_where", default="")


@contextmanager
def _at(where: str) -> Iterator[None]:
    token = _WHERE.set(where)
    try:
        yield
    finally:
        _WHERE.reset(token)


def _path(name: str) -> str:
    where = _WHERE.get()
    return f"{where}.{name}" if where else name


def _choice(name: str, value: object, options: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in options:
        raise ConfigError(
            f"{_path(name)}={value!r} is not supported; use one of "
            + ", ".join(repr(o) for o in options)
        )


def _integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{_path(name)}={value!r} is invalid; use an integer >= {minimum}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _floats(name: str, value: object) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not all(_is_real(v) for v in value):
        raise ConfigError(f"{_path(name)}={value!r} is invalid; use a list of numbers")
    out = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{_path(name)}={value!r} holds a non-finite number; use finite ones")
    return out


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class NumericSpec:
    """How one numeric (or boolean) column is turned into model inputs.

    In order: missing and non-finite values are imputed; raw values are clipped to the
    fitted ``clip_quantiles``; the value is scaled; the result is clipped to
    ``[-FeatureSpec.clip, FeatureSpec.clip]`` (not for ``scale="none"``).

    Args:
        impute: the value that replaces missing ones: the training ``mean``, ``median``
            (within the quantile sketch's 1% relative accuracy), a ``constant``
            (``fill_value``) or ``zero``.
        fill_value: the constant for ``impute="constant"``.
        missing_indicator: add a 0/1 output that is 1 where the value was missing.
        scale: ``standard`` ((x - mean) / std), ``minmax`` ((x - min) / (max - min)),
            ``robust`` ((x - median) / IQR), ``log1p`` (``sign(x) * log1p(|x|)``, then
            standardised) or ``none``.
        clip_quantiles: ``(low, high)``: raw values are clipped to these fitted quantiles
            before scaling.
        bucketize: ``N > 0`` adds a bucket index output (``N`` quantile buckets; fewer
            where quantiles coincide) next to the scaled value; index 0 is missing.
        boundaries: explicit, strictly increasing bucket boundaries instead of quantiles
            (``len(boundaries) + 1`` buckets).
        bucket_encode: the bucket index feeds an ``embedding`` or ``onehot`` block.
    """

    impute: NumericImpute = "mean"
    fill_value: float | None = None
    missing_indicator: bool = False
    scale: NumericScale = "standard"
    clip_quantiles: tuple[float, float] | None = None
    bucketize: int = 0
    boundaries: tuple[float, ...] | None = None
    bucket_encode: IndexEncode = "embedding"

    def __post_init__(self) -> None:
        _choice("impute", self.impute, get_args(NumericImpute))
        if self.impute == "constant":
            if not _is_real(self.fill_value) or not math.isfinite(float(self.fill_value)):  # type: ignore[arg-type]
                raise ConfigError(
                    f"{_path('fill_value')}={self.fill_value!r} is invalid; impute='constant' "
                    "needs a finite number as fill_value"
                )
            _set(self, "fill_value", float(self.fill_value))  # type: ignore[arg-type]
        elif self.fill_value is not None:
            raise ConfigError(
                f"{_path('fill_value')}={self.fill_value!r} is only used with "
                "impute='constant'; drop it or set impute='constant'"
            )
        if not isinstance(self.missing_indicator, bool):
            raise ConfigError(
                f"{_path('missing_indicator')}={self.missing_indicator!r} is invalid; use "
                "true or false"
            )
        _choice("scale", self.scale, get_args(NumericScale))
        if self.clip_quantiles is not None:
            q = _floats("clip_quantiles", self.clip_quantiles)
            if len(q) != 2 or not 0.0 <= q[0] < q[1] <= 1.0:
                raise ConfigError(
                    f"{_path('clip_quantiles')}={self.clip_quantiles!r} is invalid; use "
                    "[low, high] with 0 <= low < high <= 1, e.g. [0.01, 0.99]"
                )
            _set(self, "clip_quantiles", q)
        _integer("bucketize", self.bucketize, 0)
        if self.boundaries is not None:
            b = _floats("boundaries", self.boundaries)
            if not b or any(x >= y for x, y in itertools.pairwise(b)):
                raise ConfigError(
                    f"{_path('boundaries')}={self.boundaries!r} is invalid; use a non-empty, "
                    "strictly increasing list of numbers"
                )
            if self.bucketize not in (0, len(b) + 1):
                raise ConfigError(
                    f"{_path('bucketize')}={self.bucketize!r} disagrees with "
                    f"{len(b)} boundaries ({len(b) + 1} buckets); set bucketize to "
                    f"{len(b) + 1} or leave it 0"
                )
            _set(self, "boundaries", b)
        _choice("bucket_encode", self.bucket_encode, get_args(IndexEncode))

    @property
    def n_buckets(self) -> int:
        """Buckets asked for (0 = no bucket output)."""
        return len(self.boundaries) + 1 if self.boundaries else self.bucketize


@dataclass(frozen=True)
class CategoricalSpec:
    """How one categorical column is turned into an index (0 = missing or unseen).

    Args:
        encode: ``embedding`` (an index for an embedding table), ``onehot`` (a 0/1 block),
            ``ordinal`` (the index as one float, most frequent value first) or ``hashing``
            (``1 + stable_hash(str(value)) % hash_buckets``, no vocabulary).
        max_categories: the most frequent values kept in the vocabulary.
        min_frequency: values seen fewer times than this go to index 0.
        hash_buckets: buckets for ``encode="hashing"``.
        impute: missing values go to index 0 (``oov``), to the most frequent value
            (``most_frequent``) or to ``fill_value`` (``constant``; it is always kept in
            the vocabulary).
        fill_value: the constant for ``impute="constant"``.
    """

    encode: CategoricalEncode = "embedding"
    max_categories: int = 1000
    min_frequency: int = 1
    hash_buckets: int = 1024
    impute: CategoricalImpute = "oov"
    fill_value: str | None = None

    def __post_init__(self) -> None:
        _choice("encode", self.encode, get_args(CategoricalEncode))
        _integer("max_categories", self.max_categories, 1)
        _integer("min_frequency", self.min_frequency, 1)
        _integer("hash_buckets", self.hash_buckets, 1)
        _choice("impute", self.impute, get_args(CategoricalImpute))
        if self.impute == "constant":
            if not isinstance(self.fill_value, str) or not self.fill_value:
                raise ConfigError(
                    f"{_path('fill_value')}={self.fill_value!r} is invalid; impute='constant' "
                    "needs a non-empty string as fill_value"
                )
        elif self.fill_value is not None:
            raise ConfigError(
                f"{_path('fill_value')}={self.fill_value!r} is only used with "
                "impute='constant'; drop it or set impute='constant'"
            )


@dataclass(frozen=True)
class DatetimeSpec:
    """Which calendar parts of a timestamp column become indices (UTC; 0 = missing).

    Each part is a small integer code: the part's value + 1 (``hour`` 0..23 -> 1..24,
    ``month`` 1..12 -> 2..13 ...). ``year`` is ``clamp(year - min_year + 1, 1, span)`` with
    ``min_year`` and ``span`` fitted on the training data.

    Args:
        parts: the parts extracted, each once.
        encode: every part feeds an ``embedding`` or a ``onehot`` block.
    """

    parts: tuple[DatetimePart, ...] = ("hour", "dayofweek", "month")
    encode: IndexEncode = "embedding"

    def __post_init__(self) -> None:
        options = get_args(DatetimePart)
        if not isinstance(self.parts, (list, tuple)) or not self.parts:
            raise ConfigError(
                f"{_path('parts')}={self.parts!r} is invalid; use a non-empty list of "
                + ", ".join(repr(o) for o in options)
            )
        for p in self.parts:
            _choice("parts", p, options)
        if len(set(self.parts)) != len(self.parts):
            raise ConfigError(f"{_path('parts')}={self.parts!r} repeats a part; list each once")
        _set(self, "parts", tuple(self.parts))
        _choice("encode", self.encode, get_args(IndexEncode))


@dataclass(frozen=True)
class CrossSpec:
    """A crossed feature of two or more categorical columns or datetime parts.

    ``cross = 1 + combine(component indices) % buckets``, 0 when any component is 0.
    A component is a categorical column, a datetime column with a single part, or one part
    of a datetime column written ``"<column>__<part>"`` (``"ts__hour"``).

    Args:
        columns: the components, at least two.
        buckets: the cross's index range (plus 0).
        encode: the cross feeds an ``embedding`` or a ``onehot`` block.
    """

    columns: tuple[str, ...]
    buckets: int = 1000
    encode: IndexEncode = "embedding"

    def __post_init__(self) -> None:
        cols = self.columns
        if (
            not isinstance(cols, (list, tuple))
            or len(cols) < 2
            or not all(isinstance(c, str) and c for c in cols)
            or len(set(cols)) != len(cols)
        ):
            raise ConfigError(
                f"{_path('columns')}={cols!r} is invalid; name at least two distinct "
                "categorical columns or datetime parts"
            )
        _set(self, "columns", tuple(cols))
        _integer("buckets", self.buckets, 1)
        _choice("encode", self.encode, get_args(IndexEncode))

    @property
    def name(self) -> str:
        """The output's name: the components joined by ``_x_``."""
        return "_x_".join(self.columns)


ColumnSpec = NumericSpec | CategoricalSpec | DatetimeSpec

_TYPES: dict[str, type[NumericSpec] | type[CategoricalSpec] | type[DatetimeSpec]] = {
    "numeric": NumericSpec,
    "categorical": CategoricalSpec,
    "datetime": DatetimeSpec,
}
_TYPE_NAMES = {cls: name for name, cls in _TYPES.items()}


def _spec_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _build(cls: type[Any], data: object, where: str, **extra: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}={data!r} is invalid; use a mapping of settings")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(map(str, data)) - known - set(extra))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]} is not a {cls.__name__} setting; use " + ", ".join(sorted(known))
        )
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    if cls is CrossSpec and "columns" not in kwargs:
        raise ConfigError(f"{where}.columns is missing; name the crossed columns")
    with _at(where):
        return cls(**kwargs)


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model and how, in input order.

    Args:
        columns: column name -> its :class:`NumericSpec`, :class:`CategoricalSpec` or
            :class:`DatetimeSpec`. The order is the model's input order.
        crosses: crossed features of categorical columns and datetime parts.
        clip: scaled numeric values are clipped to ``[-clip, clip]``.
    """

    columns: Mapping[str, ColumnSpec]
    crosses: tuple[CrossSpec, ...] = ()
    clip: float = DEFAULT_CLIP

    def __post_init__(self) -> None:
        where = _WHERE.get()
        at = f"{where}." if where else ""
        if not isinstance(self.columns, Mapping) or not self.columns:
            raise ConfigError(
                f"{at}columns is empty; name at least one numeric, categorical or datetime column"
            )
        for name, col in self.columns.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{at}columns has a column named {name!r}; use non-empty names")
            if not isinstance(col, (NumericSpec, CategoricalSpec, DatetimeSpec)):
                raise ConfigError(
                    f"{at}columns.{name}={col!r} is invalid; use a NumericSpec, "
                    "CategoricalSpec or DatetimeSpec"
                )
        _set(self, "columns", MappingProxyType(dict(self.columns)))
        if not isinstance(self.crosses, (list, tuple)) or not all(
            isinstance(c, CrossSpec) for c in self.crosses
        ):
            raise ConfigError(f"{at}crosses={self.crosses!r} is invalid; use a list of CrossSpec")
        _set(self, "crosses", tuple(self.crosses))
        for i, cross in enumerate(self.crosses):
            for comp in cross.columns:
                if self.resolve_component(comp) is None:
                    raise ConfigError(
                        f"{at}crosses[{i}].columns names {comp!r}, which is not a categorical "
                        "column, a single-part datetime column or '<datetime column>__<part>'; "
                        "cross categorical columns or datetime parts"
                    )
        if not _is_real(self.clip) or not (self.clip > 0 and math.isfinite(self.clip)):
            raise ConfigError(f"{at}clip={self.clip!r} is invalid; use a positive finite number")
        _set(self, "clip", float(self.clip))

    def resolve_component(self, name: str) -> tuple[str, DatetimePart | None] | None:
        """A cross component as ``(column, part)`` (part None for a categorical column)."""
        spec = self.columns.get(name)
        if isinstance(spec, CategoricalSpec):
            return name, None
        if isinstance(spec, DatetimeSpec) and len(spec.parts) == 1:
            return name, spec.parts[0]
        column, sep, part = name.rpartition("__")
        spec = self.columns.get(column) if sep else None
        if isinstance(spec, DatetimeSpec) and part in spec.parts:
            return column, part
        return None

    # ---- kinds -------------------------------------------------------------------------
    @property
    def numeric(self) -> tuple[str, ...]:
        """Numeric columns, in order."""
        return tuple(n for n, s in self.columns.items() if isinstance(s, NumericSpec))

    @property
    def categorical(self) -> tuple[str, ...]:
        """Categorical columns, in order."""
        return tuple(n for n, s in self.columns.items() if isinstance(s, CategoricalSpec))

    @property
    def datetime(self) -> tuple[str, ...]:
        """Datetime columns, in order."""
        return tuple(n for n, s in self.columns.items() if isinstance(s, DatetimeSpec))

    # ---- dict / JSON / YAML ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON/YAML form (every setting written out; column order kept)."""
        return {
            "columns": {
                name: {"type": _TYPE_NAMES[type(s)], **_spec_dict(s)}
                for name, s in self.columns.items()
            },
            "crosses": [_spec_dict(c) for c in self.crosses],
            "clip": self.clip,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Build a spec from its dict form.

        A column may be written as just its type (``"amount": "numeric"``). The version-1
        form ``{"numeric": [...], "categorical": [...], "impute": ..., "max_categories":
        ..., "min_frequency": ..., "clip": ...}`` is read too.

        Raises:
            ConfigError: naming the key path of the first bad setting.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"feature spec={data!r} is invalid; use a mapping with 'columns'")
        if "columns" not in data and ("numeric" in data or "categorical" in data):
            return cls._from_v1(data)
        unknown = sorted(set(map(str, data)) - {"columns", "crosses", "clip"})
        if unknown:
            raise ConfigError(
                f"{unknown[0]} is not a feature spec setting; use columns, crosses and clip"
            )
        raw = data.get("columns")
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(
                f"columns={raw!r} is invalid; map each column name to its settings, e.g. "
                '{"amount": {"type": "numeric"}}'
            )
        columns: dict[str, ColumnSpec] = {}
        for name, settings in raw.items():
            where = f"columns.{name}"
            if isinstance(settings, str):
                settings = {"type": settings}
            if not isinstance(settings, Mapping):
                raise ConfigError(f"{where}={settings!r} is invalid; use a mapping of settings")
            kind = settings.get("type")
            if kind not in _TYPES:
                raise ConfigError(
                    f"{where}.type={kind!r} is not supported; use 'numeric', 'categorical' or "
                    "'datetime'"
                )
            body = {k: v for k, v in settings.items() if k != "type"}
            columns[str(name)] = _build(_TYPES[kind], body, where)
        crosses_raw = data.get("crosses", ())
        if not isinstance(crosses_raw, (list, tuple)):
            raise ConfigError(f"crosses={crosses_raw!r} is invalid; use a list of crosses")
        crosses = tuple(_build(CrossSpec, c, f"crosses[{i}]") for i, c in enumerate(crosses_raw))
        return cls(columns=columns, crosses=crosses, clip=data.get("clip", DEFAULT_CLIP))

    @classmethod
    def _from_v1(cls, data: Mapping[str, Any]) -> FeatureSpec:
        allowed = {"numeric", "categorical", "impute", "max_categories", "min_frequency", "clip"}
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise ConfigError(
                f"{unknown[0]} is not a feature spec setting; use columns, crosses and clip"
            )
        num = data.get("numeric", ())
        cat = data.get("categorical", ())
        for key, names in (("numeric", num), ("categorical", cat)):
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{key}={names!r} is invalid; use a list of column names")
        overlap = sorted(set(num) & set(cat))
        if overlap:
            raise ConfigError(
                f"columns {overlap} are listed as both numeric and categorical; keep each in one"
            )
        columns: dict[str, ColumnSpec] = {}
        for name in num:
            columns[name] = _build(
                NumericSpec, {"impute": data.get("impute", "mean")}, f"columns.{name}"
            )
        for name in cat:
            settings = {k: data[k] for k in ("max_categories", "min_frequency") if k in data}
            columns[name] = _build(CategoricalSpec, settings, f"columns.{name}")
        return cls(columns=columns, clip=data.get("clip", DEFAULT_CLIP))

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Parse a spec from JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"feature spec is not valid JSON ({e.msg} at line {e.lineno}); fix the JSON"
            ) from e
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls, text: str) -> FeatureSpec:
        """Parse a spec from YAML text (see :meth:`from_dict`)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"feature spec is not valid YAML ({e}); fix the YAML") from e
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> FeatureSpec:
        """Read a spec from a ``.json``, ``.yaml`` or ``.yml`` file."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ConfigError(
                f"feature spec path {str(p)!r} has suffix {suffix!r}; use .json, .yaml or .yml"
            )
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(
                f"feature spec {str(p)!r} cannot be read ({e}); check the path"
            ) from e
        return cls.from_json(text) if suffix == ".json" else cls.from_yaml(text)


# ---- inference ----------------------------------------------------------------------------


def _wants_hashing(distinct: int, rows: int) -> bool:
    return distinct > HASHING_MAX_DISTINCT or (
        rows > 0 and distinct / rows > HASHING_RATIO and distinct > HASHING_MIN_DISTINCT
    )


def _no_features(target: str) -> SchemaError:
    return SchemaError(
        f"no usable feature columns besides target {target!r}: every other column is "
        "constant or empty; add feature columns to the data"
    )


def infer_feature_spec(df: pd.DataFrame, target: str, *, max_categories: int = 1000) -> FeatureSpec:
    """A sensible spec from a frame.

    Numbers and booleans are numeric, datetime dtypes datetime, the rest categorical; a
    categorical column with more than ``HASHING_MAX_DISTINCT`` distinct values, or with more
    than ``HASHING_MIN_DISTINCT`` that are over half the rows, is hashed. Constant and
    all-null columns and the target are left out.

    Raises:
        SchemaError: no column is left.
    """
    import pandas as pd

    columns: dict[str, ColumnSpec] = {}
    for name in df.columns:
        if name == target:
            continue
        col = df[name]
        try:
            distinct = int(col.nunique(dropna=True))
        except TypeError:  # unhashable values (lists, dicts): count them as strings
            distinct = int(col.dropna().astype(str).nunique())
        if distinct <= 1:
            continue
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
        ):
            columns[str(name)] = NumericSpec()
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            columns[str(name)] = DatetimeSpec()
        elif _wants_hashing(distinct, len(df)):
            columns[str(name)] = CategoricalSpec(encode="hashing", max_categories=max_categories)
        else:
            columns[str(name)] = CategoricalSpec(max_categories=max_categories)
    if not columns:
        raise _no_features(target)
    return FeatureSpec(columns=columns)


def infer_feature_spec_from_schema(
    schema: Schema, target: str, *, max_categories: int = 1000
) -> FeatureSpec:
    """A spec from a validation :class:`~kfgpu.validation.schema.Schema`, by column kind.

    ``numeric`` and ``boolean`` columns are numeric, ``datetime`` datetime and
    ``categorical`` categorical (hashed by the rule of :func:`infer_feature_spec`); columns
    with at most one distinct value and the target are left out.

    Raises:
        SchemaError: no column is left.
    """
    columns: dict[str, ColumnSpec] = {}
    for col in schema.columns:
        if col.name == target or col.n_unique <= 1:
            continue
        if col.kind in ("numeric", "boolean"):
            columns[col.name] = NumericSpec()
        elif col.kind == "datetime":
            columns[col.name] = DatetimeSpec()
        elif _wants_hashing(col.n_unique, schema.n_rows):
            columns[col.name] = CategoricalSpec(encode="hashing", max_categories=max_categories)
        else:
            columns[col.name] = CategoricalSpec(max_categories=max_categories)
    if not columns:
        raise _no_features(target)
    return FeatureSpec(columns=columns)
