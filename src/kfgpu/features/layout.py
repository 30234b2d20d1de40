"""The output layout of a fitted transform: which input feeds which dense or embedding output.

:func:`build_layout` flattens a spec and its fitted values into :class:`Layout`, the plain
tuples both back halves read (the NumPy :meth:`~kfgpu.features.transform.FittedTransform.transform_arrays`
and the torch :class:`~kfgpu.features._torch.TransformModule`), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kfgpu.errors import SchemaError
from kfgpu.features.params import (
    F32_MAX,
    CategoricalParams,
    ColumnParams,
    DatetimeParams,
    NumericParams,
)
from kfgpu.features.spec import CategoricalSpec, FeatureSpec, NumericSpec

__all__ = ["CROSS_MOD", "CROSS_PRIME", "Layout", "Output", "build_layout", "check_arrays"]

#: Crosses combine component indices as ``h = (h * CROSS_PRIME + c) % CROSS_MOD``: every
#: intermediate stays below 2**52, so int64 arithmetic never wraps, in NumPy or torch.
CROSS_PRIME = 1_000_003
CROSS_MOD = 2_147_483_647


@dataclass(frozen=True)
class Output:
    """One integer-index output of the back half."""

    name: str
    owner: str  # the input column (or cross name) it comes from
    source: Literal["code", "bucket", "cross"]
    index: int  # code column, numeric column or cross number
    cardinality: int
    encode: Literal["embedding", "onehot", "ordinal"]
    labels: tuple[str, ...] = ()  # names of indices 1.. for one-hot column names


@dataclass(frozen=True)
class Layout:
    """Everything both back halves need, as plain tuples."""

    numeric: tuple[str, ...]
    code_inputs: tuple[str, ...]
    code_sources: tuple[tuple[str, str | None], ...]
    code_card: tuple[int, ...]
    fill: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    log: tuple[bool, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    outclip: tuple[float, ...]
    indicator_cols: tuple[int, ...]
    dense_perm: tuple[int, ...]
    boundaries: tuple[tuple[int, tuple[float, ...]], ...]
    crosses: tuple[tuple[tuple[int, ...], int], ...]
    outputs: tuple[Output, ...]
    base_names: tuple[tuple[str, str], ...]  # (owner, name) of the numeric dense block

    @property
    def onehot(self) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if o.encode == "onehot")

    @property
    def ordinal(self) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if o.encode == "ordinal")

    @property
    def embedding(self) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if o.encode == "embedding")


def build_layout(spec: FeatureSpec, params: Mapping[str, ColumnParams]) -> Layout:
    from kfgpu.features._frame import PART_CARDINALITY

    numeric: list[str] = []
    fill: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    log: list[bool] = []
    center: list[float] = []
    scale: list[float] = []
    outclip: list[float] = []
    indicators: list[int] = []
    boundaries: list[tuple[int, tuple[float, ...]]] = []
    code_inputs: list[str] = []
    code_sources: list[tuple[str, str | None]] = []
    code_card: list[int] = []
    outputs: list[Output] = []
    for name, s in spec.columns.items():
        p = params[name]
        if isinstance(s, NumericSpec):
            assert isinstance(p, NumericParams)
            j = len(numeric)
            numeric.append(name)
            fill.append(p.fill)
            lo.append(p.clip_low)
            hi.append(p.clip_high)
            log.append(s.scale == "log1p")
            center.append(p.center)
            scale.append(p.scale)
            outclip.append(F32_MAX if s.scale == "none" else spec.clip)
            if s.missing_indicator:
                indicators.append(j)
            if p.boundaries is not None:
                boundaries.append((j, p.boundaries))
                outputs.append(
                    Output(
                        f"{name}__bucket",
                        name,
                        "bucket",
                        j,
                        len(p.boundaries) + 2,
                        s.bucket_encode,
                    )
                )
        elif isinstance(s, CategoricalSpec):
            assert isinstance(p, CategoricalParams)
            card = s.hash_buckets + 1 if s.encode == "hashing" else len(p.vocabulary) + 1
            encode: Literal["embedding", "onehot", "ordinal"] = (
                "embedding" if s.encode == "hashing" else s.encode
            )
            outputs.append(Output(name, name, "code", len(code_inputs), card, encode, p.vocabulary))
            code_inputs.append(name)
            code_sources.append((name, None))
            code_card.append(card)
        else:
            assert isinstance(p, DatetimeParams)
            for part in s.parts:
                card = p.year_span + 1 if part == "year" else PART_CARDINALITY[part]
                outputs.append(
                    Output(f"{name}__{part}", name, "code", len(code_inputs), card, s.encode)
                )
                code_inputs.append(f"{name}__{part}")
                code_sources.append((name, part))
                code_card.append(card)
    crosses: list[tuple[tuple[int, ...], int]] = []
    for i, c in enumerate(spec.crosses):
        comps = []
        for comp in c.columns:
            resolved = spec.resolve_component(comp)
            assert resolved is not None  # FeatureSpec checked it
            comps.append(code_sources.index(resolved))
        crosses.append((tuple(comps), c.buckets))
        outputs.append(Output(c.name, c.name, "cross", i, c.buckets + 1, c.encode))
    k = len(numeric)
    perm: list[int] = []
    base_names: list[tuple[str, str]] = []
    for j, name in enumerate(numeric):
        perm.append(j)
        base_names.append((name, name))
        if j in indicators:
            perm.append(k + indicators.index(j))
            base_names.append((name, f"{name}__missing"))
    return Layout(
        numeric=tuple(numeric),
        code_inputs=tuple(code_inputs),
        code_sources=tuple(code_sources),
        code_card=tuple(code_card),
        fill=tuple(fill),
        lo=tuple(lo),
        hi=tuple(hi),
        log=tuple(log),
        center=tuple(center),
        scale=tuple(scale),
        outclip=tuple(outclip),
        indicator_cols=tuple(indicators),
        dense_perm=tuple(perm),
        boundaries=tuple(boundaries),
        crosses=tuple(crosses),
        outputs=tuple(outputs),
        base_names=tuple(base_names),
    )


def check_arrays(num_shape: tuple[int, ...], codes_shape: tuple[int, ...], lay: Layout) -> None:
    k, c = len(lay.numeric), len(lay.code_inputs)
    if len(num_shape) != 2 or num_shape[1] != k or len(codes_shape) != 2 or codes_shape[1] != c:
        raise SchemaError(
            f"transform inputs have shapes {num_shape} and {codes_shape}; expected "
            f"[n, {k}] numerics and [n, {c}] codes as raw_arrays returns them"
        )
    if num_shape[0] != codes_shape[0]:
        raise SchemaError(
            f"transform inputs disagree on rows ({num_shape[0]} numeric, {codes_shape[0]} "
            "codes); pass both arrays from one raw_arrays call"
        )
