"""The drift verdict's false-alarm rate and power, measured on seeded splits.

Every split is judged by the same call the product makes (``detect_drift`` with the bundle's
feature importance and the model's output, as ``check_source``/``check_frame`` pass them).
To keep 100 splits of 100,000 rows per side fast, the sketches of a split are built from
per-row bin keys computed once for a 200,000-row pool (``NumericSketch.from_dict``); a test
below checks that they equal the sketches ``build_profile`` makes of the same rows, so the
statistics are the ones the streaming path computes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfgpu.validation.drift import PREDICTION_COLUMN, DriftConfig, DriftResult, detect_drift
from kfgpu.validation.profile import (
    DEFAULT_RELATIVE_ACCURACY,
    CategoricalCounts,
    ColumnProfile,
    NumericSketch,
    ReferenceProfile,
    build_profile,
)

from .conftest import UNUSED, with_unused

POOL_ROWS = 200_000
SPLITS = 100
MAX_FALSE_ALARMS = 5  # 5% of 100 splits


class _NumericPool:
    """One numeric column of the pool as per-row bin codes, so that the sketch of any row
    subset is a bincount (the keys ``NumericSketch.add`` computes, without the logs)."""

    def __init__(self, values: np.ndarray) -> None:
        v = values.astype(np.float64)
        finite = np.isfinite(v)
        ax = np.abs(np.where(finite, v, 1.0))
        zero = finite & (ax < 1e-12)
        ax[zero] = 1.0  # the zero bucket has no key
        keys = np.ceil(np.log(ax) / math.log(NumericSketch().gamma)).astype(np.int64)
        pos, neg = finite & ~zero & (v > 0), finite & ~zero & (v < 0)
        self.pos_lo = int(keys[pos].min()) if pos.any() else 0
        self.neg_lo = int(keys[neg].min()) if neg.any() else 0
        n_pos = int(keys[pos].max()) - self.pos_lo + 1 if pos.any() else 0
        n_neg = int(keys[neg].max()) - self.neg_lo + 1 if neg.any() else 0
        # Codes: 0 null, 1 +inf, 2 -inf, 3 zero, then positive keys, then negative keys.
        code = np.zeros(v.size, dtype=np.int64)
        code[v == np.inf] = 1
        code[v == -np.inf] = 2
        code[zero] = 3
        code[pos] = 4 + keys[pos] - self.pos_lo
        code[neg] = 4 + n_pos + keys[neg] - self.neg_lo
        self.n_pos, self.size = n_pos, 4 + n_pos + n_neg
        self.code, self.v, self.finite = code, v, finite
        self.vf = np.where(finite, v, 0.0)
        self.vf2 = self.vf * self.vf
        self.order = np.flatnonzero(finite)[np.argsort(v[finite], kind="stable")]
        self.sorted = v[self.order]

    def _sketch(
        self, counts: np.ndarray, s: float, sq: float, lo: float, hi: float
    ) -> NumericSketch:
        n = int(counts[3:].sum())
        pos, neg = counts[4 : 4 + self.n_pos], counts[4 + self.n_pos :]
        pk, nk = np.flatnonzero(pos), np.flatnonzero(neg)
        return NumericSketch.from_dict(
            {
                "relative_accuracy": DEFAULT_RELATIVE_ACCURACY,
                "count": n,
                "null_count": int(counts[0]),
                "pos_inf_count": int(counts[1]),
                "neg_inf_count": int(counts[2]),
                "zero_count": int(counts[3]),
                "min": lo if n else None,
                "max": hi if n else None,
                "sum": s,
                "m2": max(0.0, sq - s * s / n) if n else 0.0,
                "pos_keys": (pk + self.pos_lo).tolist(),
                "pos_counts": pos[pk].tolist(),
                "neg_keys": (nk + self.neg_lo).tolist(),
                "neg_counts": neg[nk].tolist(),
            }
        )

    def sketch(self, idx: np.ndarray) -> NumericSketch:
        counts = np.bincount(self.code[idx], minlength=self.size)
        x = self.v[idx][self.finite[idx]]
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        return self._sketch(counts, float(self.vf[idx].sum()), float(self.vf2[idx].sum()), lo, hi)

    def halves(self, mask: np.ndarray) -> tuple[NumericSketch, NumericSketch]:
        """The sketches of the rows in ``mask`` and of the others, each from one bincount
        over the pool (no gathers: at 100,000 rows a side they dominate the cost)."""
        m = mask.view(np.int8).astype(np.intp)
        counts = np.bincount(self.code * 2 + m, minlength=2 * self.size).reshape(-1, 2)
        sums = np.bincount(m, weights=self.vf, minlength=2)
        squares = np.bincount(m, weights=self.vf2, minlength=2)
        in_sorted = mask[self.order]
        out = []
        for side, flag in ((1, in_sorted), (0, ~in_sorted)):
            first = int(np.argmax(flag))
            last = flag.size - 1 - int(np.argmax(flag[::-1]))
            lo, hi = (
                (float(self.sorted[first]), float(self.sorted[last])) if flag.any() else (0.0, 0.0)
            )
            out.append(
                self._sketch(counts[:, side], float(sums[side]), float(squares[side]), lo, hi)
            )
        return out[0], out[1]


class _CategoricalPool:
    def __init__(self, values: pd.Series) -> None:
        codes, names = pd.factorize(values, use_na_sentinel=True)
        self.codes = codes + 1  # 0: null
        self.names = [str(n) for n in names]

    def _counts(self, bc: np.ndarray) -> CategoricalCounts:
        order = [i for i in np.argsort(-bc[1:], kind="stable") if bc[i + 1] > 0]
        return CategoricalCounts.from_dict(
            {
                "max_values": 10_000,
                "values": [self.names[i] for i in order],
                "counts": [int(bc[i + 1]) for i in order],
                "null_count": int(bc[0]),
                "other_count": 0,
                "truncated": False,
            }
        )

    def counts(self, idx: np.ndarray) -> CategoricalCounts:
        return self._counts(np.bincount(self.codes[idx], minlength=len(self.names) + 1))

    def halves(self, mask: np.ndarray) -> tuple[CategoricalCounts, CategoricalCounts]:
        k = len(self.names) + 1
        m = mask.view(np.int8).astype(np.intp)
        both = np.bincount(self.codes * 2 + m, minlength=2 * k).reshape(-1, 2)
        return self._counts(both[:, 1]), self._counts(both[:, 0])


class _Pool:
    """A table (and the model's output on it) whose row subsets profile in milliseconds."""

    def __init__(self, df: pd.DataFrame, categorical: list[str], outputs: np.ndarray) -> None:
        self.rows = len(df)
        self.columns: dict[str, _NumericPool | _CategoricalPool] = {
            c: _CategoricalPool(df[c]) if c in categorical else _NumericPool(df[c].to_numpy())
            for c in df.columns
        }
        self.outputs = _NumericPool(outputs)

    def profile(self, idx: np.ndarray) -> ReferenceProfile:
        cols: dict[str, ColumnProfile] = {}
        for name, pool in self.columns.items():
            if isinstance(pool, _CategoricalPool):
                cols[name] = ColumnProfile(name, "categorical", pool.counts(idx))
            else:
                cols[name] = ColumnProfile(name, "numeric", pool.sketch(idx))
        return ReferenceProfile(rows=int(idx.size), columns=cols, sample=pd.DataFrame())

    def output(self, idx: np.ndarray) -> ColumnProfile:
        return ColumnProfile(PREDICTION_COLUMN, "numeric", self.outputs.sketch(idx))

    def halves(
        self, mask: np.ndarray
    ) -> tuple[ReferenceProfile, ReferenceProfile, ColumnProfile, ColumnProfile]:
        """Profiles and outputs of the rows in ``mask`` and of the rest (a half split)."""
        a: dict[str, ColumnProfile] = {}
        b: dict[str, ColumnProfile] = {}
        for name, pool in self.columns.items():
            kind = "categorical" if isinstance(pool, _CategoricalPool) else "numeric"
            x, y = pool.halves(mask)
            a[name], b[name] = ColumnProfile(name, kind, x), ColumnProfile(name, kind, y)
        n = int(mask.sum())
        oa, ob = self.outputs.halves(mask)
        return (
            ReferenceProfile(rows=n, columns=a, sample=pd.DataFrame()),
            ReferenceProfile(rows=self.rows - n, columns=b, sample=pd.DataFrame()),
            ColumnProfile(PREDICTION_COLUMN, "numeric", oa),
            ColumnProfile(PREDICTION_COLUMN, "numeric", ob),
        )


def _judge(
    ref: _Pool, ref_idx: np.ndarray, cur: _Pool, cur_idx: np.ndarray, importance: dict[str, float]
) -> DriftResult:
    """The verdict on the two row sets, as ``check_source`` asks for it."""
    if ref_idx.size + cur_idx.size == ref.rows:  # a half split: sequential passes
        mask = np.zeros(ref.rows, dtype=bool)
        mask[ref_idx] = True
        r, c, ro, co = ref.halves(mask)
        if cur is not ref:
            _, c, _, co = cur.halves(mask)
    else:
        r, ro = ref.profile(ref_idx), ref.output(ref_idx)
        c, co = cur.profile(cur_idx), cur.output(cur_idx)
    return detect_drift(r, c, DriftConfig(), importance=importance, predictions=(ro, co))


@pytest.fixture(scope="module")
def model(unused_column_bundle: Path):  # type: ignore[no-untyped-def]
    from kfgpu.bundle import load_reference
    from kfgpu.monitoring.drift_check import ModelView

    reference = load_reference(str(unused_column_bundle))
    view = ModelView.from_bundle(str(unused_column_bundle), reference)
    assert view is not None
    return view


@pytest.fixture(scope="module")
def pool_frame() -> pd.DataFrame:
    from kfgpu.data import fraud

    return with_unused(fraud(POOL_ROWS, seed=77), seed=77).drop(columns=["is_fraud"])


def _categorical(model) -> list[str]:  # type: ignore[no-untyped-def]
    return list(model.bundle.transform.categorical)


def _pool(model, df: pd.DataFrame) -> _Pool:  # type: ignore[no-untyped-def]
    from kfgpu.monitoring.drift_check import ModelView

    assert isinstance(model, ModelView)
    outputs = model.bundle.predict_raw(df)[:, 1].astype(np.float64)
    return _Pool(df, _categorical(model), outputs)


@pytest.fixture(scope="module")
def pool(model, pool_frame: pd.DataFrame) -> _Pool:  # type: ignore[no-untyped-def]
    return _pool(model, pool_frame)


def _split(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random row sets of ``rows`` each (a half split of the whole pool)."""
    idx = (
        rng.permutation(POOL_ROWS)
        if 2 * rows == POOL_ROWS
        else rng.choice(POOL_ROWS, 2 * rows, replace=False)
    )
    return idx[:rows], idx[rows : 2 * rows]


def _most_important_numeric(model) -> str:  # type: ignore[no-untyped-def]
    numeric = [c for c in model.importance if c not in _categorical(model)]
    return max(numeric, key=lambda c: model.importance[c])


def _same(fast: ReferenceProfile, real: ReferenceProfile) -> None:
    assert list(fast.columns) == list(real.columns)
    for name, col in real.columns.items():
        a, b = fast.columns[name].stats.to_dict(), col.stats.to_dict()
        for key in ("sum", "m2"):
            if key in a:
                assert a.pop(key) == pytest.approx(b.pop(key), rel=1e-7, abs=1e-6), name
        assert a == b, name


def test_pool_sketches_equal_the_streaming_profile(model, pool, pool_frame) -> None:  # type: ignore[no-untyped-def]
    categorical = _categorical(model)
    idx = np.random.default_rng(0).choice(POOL_ROWS, 3000, replace=False)
    _same(
        pool.profile(idx),
        build_profile(pool_frame.iloc[idx], categorical=categorical, sample_rows=0),
    )
    mask = np.zeros(POOL_ROWS, dtype=bool)
    mask[idx] = True
    inside, outside, _, _ = pool.halves(mask)
    _same(inside, build_profile(pool_frame[mask], categorical=categorical, sample_rows=0))
    _same(outside, build_profile(pool_frame[~mask], categorical=categorical, sample_rows=0))


@pytest.mark.parametrize("rows", [200, 1_000, 10_000, 100_000])
def test_false_alarm_rate_on_same_distribution_splits(model, pool, rows: int) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(rows)
    alarms = 0
    for _ in range(SPLITS):
        ref_idx, cur_idx = _split(rng, rows)
        result = _judge(pool, ref_idx, pool, cur_idx, model.importance)
        assert result.status != "insufficient_data"
        alarms += result.dataset_drift
    assert alarms <= MAX_FALSE_ALARMS, f"{alarms} alarms in {SPLITS} splits at {rows} rows"


@pytest.fixture(scope="module")
def moved(model, pool_frame):  # type: ignore[no-untyped-def]
    """The pool with its most important numeric feature shifted by one standard deviation
    (and the model's output on the shifted rows)."""
    feature = _most_important_numeric(model)
    shifted = pool_frame.copy()
    shifted[feature] = shifted[feature] + float(np.nanstd(pool_frame[feature]))
    return _pool(model, shifted)


@pytest.mark.parametrize("rows", [1_000, 10_000, 100_000])
def test_power_for_a_one_std_shift_of_the_most_important_feature(
    model, pool, moved, rows: int
) -> None:  # type: ignore[no-untyped-def]
    feature = _most_important_numeric(model)
    rng = np.random.default_rng(1000 + rows)
    detected = 0
    for _ in range(SPLITS):
        ref_idx, cur_idx = _split(rng, rows)
        result = _judge(pool, ref_idx, moved, cur_idx, model.importance)
        detected += result.dataset_drift and feature in result.drifted_columns
    assert detected >= 95, f"{feature}: detected in {detected} of {SPLITS} at {rows} rows"


def test_a_feature_the_model_ignores_drifts_alone_without_a_dataset_alarm(
    model, pool, pool_frame
) -> None:  # type: ignore[no-untyped-def]
    assert model.importance.get(UNUSED, 0.0) == 0.0
    shifted = pool_frame.copy()
    shifted[UNUSED] = shifted[UNUSED] + float(pool_frame[UNUSED].std())
    moved = _pool(model, shifted)
    rng = np.random.default_rng(5)
    column_flags = alarms = 0
    for _ in range(SPLITS):
        ref_idx, cur_idx = _split(rng, 1000)
        result = _judge(pool, ref_idx, moved, cur_idx, model.importance)
        column_flags += UNUSED in result.drifted_columns
        alarms += result.dataset_drift
    assert column_flags >= 95
    assert alarms <= MAX_FALSE_ALARMS
    # The same shift judged without a model (a data set as reference) is dataset drift:
    # the share rule sees one drifted column of 12 (>= 5%).
    ref_idx, cur_idx = _split(rng, 1000)
    plain = detect_drift(pool.profile(ref_idx), moved.profile(cur_idx))
    assert plain.dataset_drift and plain.rules == ["share_of_columns"]


def test_prediction_drift_from_a_covariate_shift_at_10000_rows(model, pool, pool_frame) -> None:  # type: ignore[no-untyped-def]
    """Resample rows towards higher scores (inputs move, P(y|x) does not) until the mean
    predicted probability rises 5 points; the verdict names prediction drift."""
    rows = 10_000
    scores = pool.outputs.v
    rng = np.random.default_rng(9)
    ref_idx = rng.choice(POOL_ROWS, rows, replace=False)
    base = scores[ref_idx].mean()
    lam = 0.0
    for lam in np.linspace(0.0, 20.0, 201):
        w = np.exp(lam * (scores - scores.max()))
        if (w * scores).sum() / w.sum() >= base + 0.05:
            break
    w = np.exp(lam * (scores - scores.max()))
    cur_idx = rng.choice(POOL_ROWS, rows, replace=True, p=w / w.sum())
    moved = scores[cur_idx].mean() - base
    assert 0.045 <= moved <= 0.06, moved
    result = _judge(pool, ref_idx, pool, cur_idx, model.importance)
    assert result.dataset_drift and "prediction_drift" in result.rules, result.summary()
    assert result.prediction is not None and result.prediction.drifted
    assert result.prediction.details["current_mean"] - result.prediction.details[
        "reference_mean"
    ] == pytest.approx(moved, abs=1e-9)
    data = result.to_dict()
    assert data["prediction"]["drifted"] and "prediction drift: yes" in data["summary"]
