"""Tests for kfgpu.features.split: seeded, stratified train / validation / test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import ConfigError, DataError
from kfgpu.features.split import split_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return fraud(2_000, seed=11)


def _key(df: pd.DataFrame) -> set[tuple[object, ...]]:
    return set(df[["amount", "hour", "velocity_score"]].itertuples(index=False, name=None))


def test_sizes_partition_all_rows(frame: pd.DataFrame) -> None:
    train, val, test = split_frame(
        frame, LABEL_COLUMN, task="classification", val_fraction=0.2, test_fraction=0.1
    )
    n = len(frame)
    assert len(train) + len(val) + len(test) == n
    assert abs(len(val) - 0.2 * n) <= 2
    assert abs(len(test) - 0.1 * n) <= 2
    for part in (train, val, test):
        assert list(part.columns) == list(frame.columns)
        assert part.index.equals(pd.RangeIndex(len(part)))
    # Disjoint, and together every row (the three float columns identify a row here).
    k_train, k_val, k_test = _key(train), _key(val), _key(test)
    assert len(k_train | k_val | k_test) == len(_key(frame))
    assert not (k_train & k_val) and not (k_train & k_test) and not (k_val & k_test)


def test_stratification_keeps_rare_class_everywhere(frame: pd.DataFrame) -> None:
    rate = frame[LABEL_COLUMN].mean()
    assert 0 < rate < 0.05  # the premise: a rare positive class
    splits = split_frame(frame, LABEL_COLUMN, task="classification", seed=4)
    for part in splits:
        positives = int(part[LABEL_COLUMN].sum())
        assert positives >= 1
        # Stratified: each split's rate is the overall rate up to one row of rounding.
        assert abs(positives - rate * len(part)) <= 1.0


def test_stratification_with_a_handful_of_rows_of_a_class() -> None:
    df = pd.DataFrame({"x": np.arange(100.0), "y": ["a"] * 94 + ["b"] * 6})
    train, val, test = split_frame(df, "y", task="classification")
    assert (val["y"] == "b").sum() >= 1 and (test["y"] == "b").sum() >= 1
    assert (train["y"] == "b").sum() >= 3


def test_seed_determinism(frame: pd.DataFrame) -> None:
    a = split_frame(frame, LABEL_COLUMN, task="classification", seed=7)
    b = split_frame(frame, LABEL_COLUMN, task="classification", seed=7)
    c = split_frame(frame, LABEL_COLUMN, task="classification", seed=8)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0].equals(c[0])


def test_regression_split_is_not_stratified() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=200), "y": rng.normal(size=200)})
    train, val, test = split_frame(df, "y", task="regression")
    assert len(train) + len(val) + len(test) == 200
    assert len(val) == pytest.approx(30, abs=1) and len(test) == pytest.approx(30, abs=1)


def test_rows_with_null_target_are_dropped(frame: pd.DataFrame) -> None:
    df = frame.copy()
    df[LABEL_COLUMN] = df[LABEL_COLUMN].astype("float64")
    df.loc[df.index[:37], LABEL_COLUMN] = np.nan
    parts = split_frame(df, LABEL_COLUMN, task="classification")
    assert sum(len(p) for p in parts) == len(df) - 37
    for part in parts:
        assert part[LABEL_COLUMN].notna().all()


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [
        (0.0, 0.15, "val_fraction"),
        (1.0, 0.15, "val_fraction"),
        (-0.1, 0.15, "val_fraction"),
        (0.15, 0.0, "test_fraction"),
        (0.15, 1.5, "test_fraction"),
        (0.5, 0.45, "leaves under 10%"),
    ],
)
def test_bad_fractions(frame: pd.DataFrame, val: float, test: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        split_frame(
            frame, LABEL_COLUMN, task="classification", val_fraction=val, test_fraction=test
        )


def test_class_with_fewer_than_three_rows() -> None:
    df = pd.DataFrame({"x": np.arange(50.0), "y": ["a"] * 48 + ["rare"] * 2})
    with pytest.raises(DataError, match="'rare'"):
        split_frame(df, "y", task="classification")
    # Class counts only matter when stratifying: the same rows split for regression.
    df["y"] = np.arange(50.0)
    assert sum(len(p) for p in split_frame(df, "y", task="regression")) == 50


def test_too_few_rows() -> None:
    df = pd.DataFrame({"x": np.arange(9.0), "y": np.arange(9.0)})
    with pytest.raises(DataError, match="9 rows"):
        split_frame(df, "y", task="regression")


def test_time_split_puts_the_latest_rows_last() -> None:
    import numpy as np
    import pandas as pd

    from kfgpu.features.split import split_frame

    rng = np.random.default_rng(0)
    times = pd.date_range("2026-01-01", periods=200, freq="h", tz="UTC")
    df = pd.DataFrame(
        {"ts": rng.permutation(times), "x": rng.normal(size=200), "y": rng.integers(0, 2, 200)}
    )
    train, val, test = split_frame(
        df, "y", task="classification", val_fraction=0.1, test_fraction=0.2, time_column="ts"
    )
    assert (len(train), len(val), len(test)) == (140, 20, 40)
    assert train["ts"].max() < val["ts"].min() <= val["ts"].max() < test["ts"].min()


def test_time_split_refuses_missing_times() -> None:
    import pandas as pd
    import pytest

    from kfgpu.errors import DataError, SchemaError
    from kfgpu.features.split import split_frame

    df = pd.DataFrame({"ts": ["2026-01-01"] * 19 + ["not a date"], "y": [0, 1] * 10})
    with pytest.raises(DataError, match="unparseable"):
        split_frame(df, "y", task="classification", time_column="ts")
    with pytest.raises(SchemaError, match="time_column 'when'"):
        split_frame(df, "y", task="classification", time_column="when")


# --------------------------------------------------------------------------- streaming split


def _sharded(tmp_path, df: pd.DataFrame, name: str, **kw: int) -> str:  # type: ignore[no-untyped-def]
    from kfgpu.data.shards import write_shards

    uri = str(tmp_path / name)
    write_shards(df, uri, **kw)
    return uri


@pytest.fixture(scope="module")
def keyed() -> pd.DataFrame:
    df = fraud(3_000, seed=5)
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    df["ts"] = np.random.default_rng(2).integers(0, 40, len(df))  # many equal times
    df["user"] = np.random.default_rng(3).integers(0, 900, len(df)).astype(str)
    return df


@pytest.mark.parametrize("by", ["position", "time", "key"])
def test_streamed_split_is_the_in_memory_split_whatever_the_layout(
    tmp_path, keyed: pd.DataFrame, by: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import kfgpu.features.split as split_module
    from kfgpu.data.shards import open_shards
    from kfgpu.features.split import SPLIT_NAMES, SplitConfig, split_source

    kw = {"time_column": "ts"} if by == "time" else {"key_column": "user"} if by == "key" else {}
    expected = split_frame(keyed, LABEL_COLUMN, task="classification", seed=9, **kw)
    # A tiny collect limit makes the cut search narrow through histogram passes, the path
    # tables of millions of rows take.
    monkeypatch.setattr(split_module, "_COLLECT_MAX", 40)
    assert all(
        a.equals(b)
        for a, b in zip(
            expected,
            split_frame(keyed, LABEL_COLUMN, task="classification", seed=9, **kw),
            strict=True,
        )
    )
    config = SplitConfig(LABEL_COLUMN, "classification", seed=9, **kw)
    for layout, (file_rows, group_rows, batch_rows) in enumerate(
        [(1_000, 300, 256), (3_000, 3_000, 3_000), (777, 100, 200)]
    ):
        src = _sharded(
            tmp_path, keyed, f"src{layout}", file_rows=file_rows, row_group_rows=group_rows
        )
        outs = {n: str(tmp_path / f"out{layout}" / n) for n in SPLIT_NAMES}
        result = split_source(src, outs, config, batch_rows=batch_rows, row_group_rows=500)
        assert result.by == by and result.dropped == 0
        for name, want in zip(SPLIT_NAMES, expected, strict=True):
            got = pd.read_parquet(outs[name])
            pd.testing.assert_frame_equal(got, want)
            shards = open_shards(outs[name])
            assert shards.rows == result.rows[name] == len(want)
            assert all(max(f.row_groups, default=0) <= 500 for f in shards.files)
            assert shards.manifest is not None
            assert shards.manifest.metadata["split"] == name
    if by == "key":  # rows of one user always share a split
        owner = {}
        for i, part in enumerate(expected):
            for user in part["user"].unique():
                assert owner.setdefault(user, i) == i
    if by == "time":
        train, val, test = expected
        assert train["ts"].max() <= val["ts"].min() and val["ts"].max() <= test["ts"].min()
        assert (len(train), len(val), len(test)) == (2_100, 450, 450)


def test_key_split_is_not_stratified_but_keeps_keys_together() -> None:
    df = pd.DataFrame({"user": np.arange(400) // 4, "y": [0, 1] * 198 + [2] * 4})
    train, val, test = split_frame(df, "y", task="classification", key_column="user")
    assert len(set(train.user) & set(val.user)) == len(set(val.user) & set(test.user)) == 0
    assert (len(train), len(val), len(test)) == (280, 60, 60)


def test_streamed_split_counts_are_exact_per_class_and_drop_missing_targets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kfgpu.features.split import SPLIT_NAMES, SplitConfig, split_source

    df = pd.DataFrame(
        {
            "x": np.arange(1_003.0),
            "y": ["a"] * 900 + ["b"] * 97 + ["c"] * 3 + [None] * 3,
        }
    )
    src = _sharded(tmp_path, df, "src", file_rows=200, row_group_rows=64)
    outs = {n: str(tmp_path / n) for n in SPLIT_NAMES}
    result = split_source(src, outs, SplitConfig("y", "classification", 0.1, 0.2))
    assert result.dropped == 3 and result.classes == {"a": 900, "b": 97, "c": 3}
    counts = {n: pd.read_parquet(outs[n])["y"].value_counts().to_dict() for n in SPLIT_NAMES}
    assert counts["test"] == {"a": 180, "b": 19, "c": 1}
    assert counts["validation"] == {"a": 90, "b": 10, "c": 1}
    assert counts["train"] == {"a": 630, "b": 68, "c": 1}


def test_streamed_split_errors_name_the_column(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kfgpu.errors import SchemaError
    from kfgpu.features.split import SPLIT_NAMES, SplitConfig, split_source

    src = _sharded(tmp_path, pd.DataFrame({"x": np.arange(20.0), "y": [0, 1] * 10}), "s")
    outs = {n: str(tmp_path / n) for n in SPLIT_NAMES}
    with pytest.raises(SchemaError, match="key_column 'nope'"):
        split_source(src, outs, SplitConfig("y", "classification", key_column="nope"))
    with pytest.raises(ConfigError, match="give one output URI"):
        split_source(src, {"train": outs["train"]}, SplitConfig("y", "classification"))
    with pytest.raises(ConfigError, match="pass only one"):
        SplitConfig("y", "classification", time_column="x", key_column="x")
    # Nothing half-written is left behind by a failed split.
    assert not any((tmp_path / n).exists() for n in SPLIT_NAMES)


@pytest.mark.parametrize("by", ["position", "time", "key"])
def test_units_written_by_workers_are_the_in_memory_split(
    tmp_path, keyed: pd.DataFrame, by: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The write pass cuts the data into units of row groups that workers write apart. A
    time split's cuts fall inside runs of equal times here (40 distinct times over 3,000
    rows), so each unit must start from the ties counted before it; the rows, their
    order and the bytes of the files must not depend on the worker count."""
    import kfgpu.features.split as split_module
    from kfgpu.data.shards import open_shards
    from kfgpu.features.split import SPLIT_NAMES, SplitConfig, SplitPlan, split_source

    kw = {"time_column": "ts"} if by == "time" else {"key_column": "user"} if by == "key" else {}
    expected = split_frame(keyed, LABEL_COLUMN, task="classification", seed=4, **kw)
    # Narrowing passes too (histograms summed over units), not only the collect pass.
    monkeypatch.setattr(split_module, "_COLLECT_MAX", 40)
    src = _sharded(tmp_path, keyed, "src", file_rows=1_000, row_group_rows=120)
    config = SplitConfig(LABEL_COLUMN, "classification", seed=4, **kw)
    plans = [
        SplitPlan(open_shards(src), config, batch_rows=50, unit_rows=400, workers=w) for w in (1, 3)
    ]
    for plan in plans:  # the passes scan units in threads: the same plan whatever the count
        assert len(plan.units) >= 7 and all(sum(g.rows for g in u) <= 400 for u in plan.units)
        assert list(plan.classes.items()) == list(plans[0].classes.items())
        assert plan.ties_before() == plans[0].ties_before()
        assert [(c.group, c.value, c.ties) for c in plan._plan.cuts] == [
            (c.group, c.value, c.ties) for c in plans[0]._plan.cuts
        ]
    if by == "time":  # ties at the cuts: counted before every unit, rising
        ties = plans[0].ties_before()
        assert ties[0] == {k: 0 for k in ties[-1]} and any(ties[-1].values())
    fingerprints = set()
    for overlap, workers in ((False, None), (True, 2), (True, 5)):
        outs = {n: str(tmp_path / f"out-{overlap}-{workers}" / n) for n in SPLIT_NAMES}
        result = split_source(
            src,
            outs,
            config,
            batch_rows=50,
            file_rows=400,
            row_group_rows=64,
            overlap=overlap,
            workers=workers,
        )
        for name, want in zip(SPLIT_NAMES, expected, strict=True):
            pd.testing.assert_frame_equal(pd.read_parquet(outs[name]), want)
            files = result.manifests[name].files
            assert all(f.rows <= 400 and max(f.row_groups) <= 64 for f in files)
        fingerprints.add(tuple(result.manifests[n].fingerprint for n in SPLIT_NAMES))
    assert len(fingerprints) == 1  # byte-identical files whatever the workers


def test_a_failing_worker_fails_the_split_and_leaves_nothing(
    tmp_path, keyed: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from kfgpu.data.shards import ShardSegment, write_shards
    from kfgpu.features.split import SPLIT_NAMES, SplitConfig, split_source

    src = _sharded(tmp_path, keyed, "src", file_rows=500, row_group_rows=100)
    outs = {n: str(tmp_path / n) for n in SPLIT_NAMES}
    write_shards(keyed.head(10), outs["test"])  # an older output stays as it was
    real = ShardSegment.write

    def write(self: ShardSegment, data: object) -> None:
        if self.index == 3:
            raise OSError(28, "No space left on device")
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(ShardSegment, "write", write)
    config = SplitConfig(LABEL_COLUMN, "classification")
    with pytest.raises(OSError, match="No space left"):
        split_source(src, outs, config, file_rows=500, workers=3)
    assert not (tmp_path / "train").exists() and not (tmp_path / "validation").exists()
    assert len(pd.read_parquet(outs["test"])) == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kfgpu-tmp-")]
    with pytest.raises(ConfigError, match="workers=0"):
        split_source(src, outs, config, workers=0)


@pytest.mark.parametrize(
    "target",
    [
        [1.0, 0.0, np.nan, 2.0] * 30,
        [True, False, None, False] * 30,
        pd.array([3, 1, None, 2] * 30, dtype="Int64"),  # an Arrow int64 column with nulls
        ["b", "a", None, "c"] * 30,
    ],
    ids=["float-nan", "bool-none", "int-none", "text-none"],
)
def test_streamed_targets_name_and_group_classes_as_in_memory(tmp_path, target: object) -> None:  # type: ignore[no-untyped-def]
    """The streamed passes group the target from Arrow, the in-memory split through pandas:
    the same classes (names included) and rows, a missing target (None, NaN) dropped."""
    from kfgpu.features.split import SPLIT_NAMES, SplitConfig, split_source

    df = pd.DataFrame({"x": np.arange(len(target), dtype=np.float64), "y": target})
    expected = split_frame(df, "y", task="classification")  # drops the missing too
    src = _sharded(tmp_path, df, "src", file_rows=50, row_group_rows=20)
    outs = {n: str(tmp_path / n) for n in SPLIT_NAMES}
    result = split_source(src, outs, SplitConfig("y", "classification"), file_rows=40)
    assert result.dropped == 30
    want = {str(k).removesuffix(".0"): int(n) for k, n in df["y"].value_counts().items()}
    assert result.classes == want
    for name, part in zip(SPLIT_NAMES, expected, strict=True):
        assert pd.read_parquet(outs[name])["x"].tolist() == part["x"].tolist()


@pytest.mark.parametrize("window", [0, 8, 4096])
@pytest.mark.parametrize("by", ["position", "key"])
def test_cuts_are_exact_whether_the_first_pass_keeps_them_or_a_pass_collects_them(
    by: str, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass keeps the values near where a random split's cuts should land and
    settles the cuts from them; a cut outside (window 0 misses most) is collected in
    another pass. Against a brute-force oracle (sort every group's values) the split is
    the same either way."""
    import kfgpu.features.split as split_module

    n = 200_000
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "y": rng.choice(["a", "b", "c"], size=n, p=[0.9, 0.08, 0.02]),
            "user": rng.integers(0, 40_000, n),
        }
    )
    monkeypatch.setattr(split_module, "_WINDOW", window)
    collects = []
    real_collect = split_module._Plan._collect
    monkeypatch.setattr(
        split_module._Plan,
        "_collect",
        lambda self, cuts: (collects.append(len(cuts)), real_collect(self, cuts))[1],
    )
    kw = {"key_column": "user"} if by == "key" else {}
    train, val, test = split_frame(
        df.assign(row=np.arange(n)), "y", task="classification", seed=3, **kw
    )

    rows = split_module._Rows(split_module.SplitConfig("y", "classification", seed=3, **kw))
    values = rows.values(df, 0)
    want = np.zeros(n, dtype=np.int8)  # 0 train, 1 validation, 2 test
    groups = [np.arange(n)] if by == "key" else [np.flatnonzero(df["y"] == c) for c in "abc"]
    for idx in groups:
        s = np.sort(values[idx])
        n_test, n_val = round(len(idx) * 0.15), round(len(idx) * 0.15)
        want[idx[values[idx] < s[n_test + n_val]]] = 1
        want[idx[values[idx] < s[n_test]]] = 2
    for i, part in enumerate((train, val, test)):
        assert part["row"].tolist() == np.flatnonzero(want == i).tolist()
    if window == 4096:  # every bucket kept: no collect pass at all
        assert collects == []
    if window == 0:  # the cuts' buckets are missed: they are collected
        assert sum(collects) >= 1


def test_units_are_even_runs_of_row_groups_within_the_size() -> None:
    """Units are consecutive row groups of about equal rows, at most ``max_rows`` each, in
    a count that is a multiple of 4 (so 1, 2 or 4 workers end together); an empty group
    is left out and a group larger than ``max_rows`` is a unit alone."""
    from kfgpu.data.shards import RowGroup
    from kfgpu.features.split import _units

    def groups(sizes: list[int]) -> list[RowGroup]:
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        return [
            RowGroup(0, i, n, int(o)) for i, (n, o) in enumerate(zip(sizes, offsets, strict=True))
        ]

    # The 20M-row benchmark table: 305 full groups and a short one.
    units = _units(groups([65_536] * 305 + [11_520]), 1_048_576)
    sizes = [sum(g.rows for g in u) for u in units]
    assert len(units) == 20 and sum(sizes) == 20_000_000
    assert max(sizes) <= 1_048_576 and min(sizes) >= 900_000  # no small last unit
    flat = [g for u in units for g in u]
    assert [g.index for g in flat] == list(range(306))  # consecutive, in order
    assert [len(_units(groups([100] * k), 1_000)) for k in (10, 11, 25)] == [1, 4, 4]
    assert [[g.rows for g in u] for u in _units(groups([500, 0, 10, 700]), 400)] == [
        [500],
        [10],
        [700],
    ]
    assert _units(groups([0, 0]), 10) == []
