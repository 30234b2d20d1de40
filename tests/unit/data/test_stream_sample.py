"""kfgpu.data.stream.RowSample: a bounded, seeded, uniform sample of a streamed table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kfgpu.data.stream import RowSample
from kfgpu.errors import ConfigError


def _sample(n: int, size: int, chunk: int, seed: int = 0) -> pd.DataFrame:
    s = RowSample(size, seed=seed)
    for start in range(0, n, chunk):
        s.add(pd.DataFrame({"i": np.arange(start, min(n, start + chunk))}))
    assert s.rows == n
    return s.frame()


def test_holds_every_row_while_the_table_is_no_larger() -> None:
    assert _sample(300, 300, 64)["i"].tolist() == list(range(300))


def test_keeps_size_rows_in_row_order_without_repeats() -> None:
    got = _sample(10_000, 700, 333)["i"].to_numpy()
    assert len(got) == 700 and len(set(got)) == 700
    assert (np.diff(got) > 0).all()


def test_is_uniform_over_the_rows() -> None:
    # Over 200 seeds, each tenth of the table holds about a tenth of the sampled rows.
    counts = np.zeros(10)
    for seed in range(200):
        got = _sample(5_000, 100, 777, seed=seed)["i"].to_numpy()
        counts += np.bincount(got // 500, minlength=10)
    share = counts / counts.sum()
    assert np.abs(share - 0.1).max() < 0.01, share


def test_refuses_a_bad_size_and_an_empty_stream() -> None:
    with pytest.raises(ConfigError, match="sample size=0"):
        RowSample(0)
    with pytest.raises(ValueError, match="no rows"):
        RowSample(5).frame()
