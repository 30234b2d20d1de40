"""The reader of version-1 fitted transforms (kfgpu before the feature spec)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kfgpu.features.params import CategoricalParams, ColumnParams, NumericParams
from kfgpu.features.spec import DEFAULT_CLIP, CategoricalSpec, ColumnSpec, FeatureSpec, NumericSpec

__all__ = ["read_v1"]


def read_v1(d: Mapping[str, Any]) -> tuple[FeatureSpec, dict[str, ColumnParams]]:
    """A version-1 dict (flat numeric/fill/mean/scale + categorical/vocabularies) as the
    spec and fitted values of a version-2 transform.

    Raises:
        KeyError, TypeError, ValueError: the dict is malformed (the caller names the file).
    """
    numeric = [str(n) for n in d["numeric"]]
    fills = [float(x) for x in d["fill"]]
    means = [float(x) for x in d["mean"]]
    scales = [float(x) for x in d["scale"]]
    categorical = [str(n) for n in d["categorical"]]
    vocabularies = [tuple(str(v) for v in voc) for voc in d["vocabularies"]]
    if not (len(numeric) == len(fills) == len(means) == len(scales)) or len(categorical) != len(
        vocabularies
    ):
        raise ValueError("numeric/fill/mean/scale and categorical/vocabularies lengths differ")
    columns: dict[str, ColumnSpec] = {n: NumericSpec() for n in numeric}
    params: dict[str, ColumnParams] = {
        n: NumericParams(fill=f, center=m, scale=s)
        for n, f, m, s in zip(numeric, fills, means, scales, strict=True)
    }
    for name, voc in zip(categorical, vocabularies, strict=True):
        columns[name] = CategoricalSpec(max_categories=max(1, len(voc)))
        params[name] = CategoricalParams(vocabulary=voc)
    spec = FeatureSpec(columns=columns, clip=float(d.get("clip", DEFAULT_CLIP)))
    return spec, params
