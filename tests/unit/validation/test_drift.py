"""Tests for kfgpu.validation.drift: statistics from sketches vs scipy, verdicts, config."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from kfgpu.data.synthetic import fraud
from kfgpu.errors import ConfigError
from kfgpu.validation.drift import (
    ColumnDriftConfig,
    DriftConfig,
    chisquare_from_counts,
    detect_drift,
    jensenshannon_from_counts,
    ks_from_sketches,
    psi_from_sketches,
    wasserstein_from_sketches,
)
from kfgpu.validation.profile import CategoricalCounts, NumericSketch, build_profile

ROWS = 20_000


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return build_profile([fraud(ROWS, seed=0)], sample_rows=0)


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    return [
        (rng.normal(0, 1, 20_000), rng.normal(0.05, 1, 15_000)),
        (rng.normal(0, 1, 20_000), rng.normal(0.0, 1.3, 20_000)),
        (rng.lognormal(0, 1, 20_000), rng.lognormal(0.2, 1, 10_000)),
        (rng.uniform(-5, 5, 20_000), rng.uniform(-4, 6, 20_000)),
        (rng.normal(0, 1, 20_000), rng.normal(0, 1, 20_000)),
    ]


@pytest.mark.parametrize("i", range(5))
def test_ks_close_to_scipy(i: int) -> None:
    x, y = _pairs()[i]
    d, p = ks_from_sketches(NumericSketch().add(x), NumericSketch().add(y))
    exact = stats.ks_2samp(x, y)
    assert abs(d - exact.statistic) < 0.02, (d, exact.statistic)
    assert 0.0 <= p <= 1.0
    assert (p < 0.05) == (exact.pvalue < 0.05) or abs(d - exact.statistic) < 0.005


@pytest.mark.parametrize("i", range(5))
def test_wasserstein_close_to_scipy(i: int) -> None:
    x, y = _pairs()[i]
    w = wasserstein_from_sketches(NumericSketch().add(x), NumericSketch().add(y)) / x.std()
    exact = stats.wasserstein_distance(x, y) / x.std()
    assert w == pytest.approx(exact, rel=0.05, abs=1e-3)


def test_psi_matches_raw_deciles() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, 50_000), rng.normal(0.3, 1, 50_000)
    psi, cuts = psi_from_sketches(NumericSketch().add(x), NumericSketch().add(y))
    edges = np.quantile(x, np.linspace(0.1, 0.9, 9))
    r = np.diff(np.concatenate([[0], np.searchsorted(np.sort(x), edges) / x.size, [1]]))
    c = np.diff(np.concatenate([[0], np.searchsorted(np.sort(y), edges) / y.size, [1]]))
    exact = float(np.sum((c - r) * np.log(c / r)))
    assert len(cuts) == 9
    assert psi == pytest.approx(exact, rel=0.05)
    same, _ = psi_from_sketches(NumericSketch().add(x), NumericSketch().add(x))
    assert same == pytest.approx(0.0, abs=1e-12)


def test_jensenshannon_and_chisquare_match_scipy() -> None:
    ref = pd.Series(["a"] * 500 + ["b"] * 300 + ["c"] * 200 + [None] * 50)
    cur = pd.Series(["a"] * 400 + ["b"] * 350 + ["d"] * 2 + [None] * 100)
    r, c = CategoricalCounts().add(ref), CategoricalCounts().add(cur)
    # categories a, b, c, d, then null, other
    p = np.array([500, 300, 200, 0, 50, 0], dtype=float)
    q = np.array([400, 350, 0, 2, 100, 0], dtype=float)
    expected_js = jensenshannon(p / p.sum(), q / q.sum(), base=2)
    assert jensenshannon_from_counts(r, c) == pytest.approx(expected_js, rel=1e-12)
    # chi-square: 'd' (expected 0) and nothing else small -> infinite statistic.
    chi2, pv = chisquare_from_counts(r, c)
    assert chi2 == np.inf and pv == 0.0
    cur2 = pd.Series(["a"] * 500 + ["b"] * 300 + ["c"] * 200 + [None] * 40)
    chi2, pv = chisquare_from_counts(r, CategoricalCounts().add(cur2))
    exp = np.array([500, 300, 200, 50]) / 1050 * 1040
    want = stats.chisquare([500, 300, 200, 40], exp)
    assert chi2 == pytest.approx(want.statistic) and pv == pytest.approx(want.pvalue)


def test_drift_flagged_on_drifted_data(reference) -> None:  # type: ignore[no-untyped-def]
    current = build_profile([fraud(ROWS, seed=1, drift=0.5)], sample_rows=0)
    result = detect_drift(reference, current)
    assert result.dataset_drift, result.summary()
    drifted = set(result.drifted_columns)
    assert {"amount", "distance_km", "n_tx_24h", "merchant_category"} <= drifted
    assert "hour" not in drifted
    assert (
        result.column("amount").details["current_mean"]
        > result.column("amount").details["reference_mean"]
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["dataset_drift"] is True and data["n_columns"] == 12
    assert "dataset drift" in result.summary()


def test_no_drift_on_same_distribution(reference) -> None:  # type: ignore[no-untyped-def]
    current = build_profile([fraud(ROWS, seed=1)], sample_rows=0)
    result = detect_drift(reference, current)
    assert not result.dataset_drift, result.summary()
    assert result.n_drifted <= 1
    assert result.summary().startswith("no dataset drift")


def test_false_alarm_rate(reference) -> None:  # type: ignore[no-untyped-def]
    alarms = 0
    column_alarms = 0
    for seed in range(1, 21):
        current = build_profile([fraud(ROWS, seed=seed)], sample_rows=0)
        result = detect_drift(reference, current)
        alarms += result.dataset_drift
        column_alarms += result.n_drifted
    print(
        f"false alarm rate: {alarms}/20 datasets = {alarms / 20:.2f}; "
        f"column alarms {column_alarms}/{20 * 12}"
    )
    assert alarms <= 1


def test_per_column_overrides(reference) -> None:  # type: ignore[no-untyped-def]
    current = build_profile([fraud(ROWS, seed=1)], sample_rows=0)
    config = DriftConfig.from_dict(
        {
            "numeric_method": "psi",
            "columns": {
                "amount": {"method": "ks", "threshold": 0.01},
                "hour": {"threshold": 1e-6},
                "country": {"method": "chisquare"},
            },
            "ignore": ["is_fraud"],
        }
    )
    result = detect_drift(reference, current, config)
    assert result.n_columns == 11
    amount = result.column("amount")
    assert (amount.method, amount.threshold) == ("ks", 0.01)
    assert amount.p_value is not None and amount.score == amount.p_value
    hour = result.column("hour")
    assert hour.method == "psi" and hour.threshold == 1e-6 and hour.drifted
    assert result.column("distance_km").method == "psi"
    assert result.column("distance_km").threshold == 0.2
    assert result.column("country").method == "chisquare"
    assert result.column("channel").method == "jensenshannon"
    with pytest.raises(ConfigError, match="is_fraud"):
        result.column("is_fraud")

    share = DriftConfig(drift_share=0.05, columns={"hour": ColumnDriftConfig(threshold=1e-6)})
    assert detect_drift(reference, current, share).dataset_drift


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"numeric_methd": "psi"}, "numeric_methd"),
        ({"numeric_method": "jensenshannon"}, "numeric_method"),
        ({"categorical_method": "ks"}, "categorical_method"),
        ({"drift_share": 0}, "drift_share"),
        ({"numeric_threshold": -1}, "numeric_threshold"),
        ({"columns": {"amount": {"method": "ks", "threshold": 2}}}, "columns.amount.threshold"),
        ({"columns": {"amount": {"metod": "ks"}}}, "metod"),
        ({"columns": {"amount": {"method": "nope"}}}, "columns.amount.method"),
        ({"columns": {"amount": "ks"}}, "columns.amount"),
        ({"ignore": "amount"}, "ignore"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        DriftConfig.from_dict(data)


def test_config_round_trip_and_kind_errors(reference) -> None:  # type: ignore[no-untyped-def]
    config = DriftConfig.from_dict(
        {"categorical_method": "chisquare", "columns": {"amount": {"method": "psi"}}}
    )
    assert DriftConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    wrong = DriftConfig(columns={"country": ColumnDriftConfig(method="ks")})
    with pytest.raises(ConfigError, match="country"):
        detect_drift(reference, reference, wrong)
    with pytest.raises(ConfigError, match="typo_col"):
        detect_drift(reference, reference, DriftConfig(ignore=("typo_col",)))


def test_missing_and_mismatched_columns(reference) -> None:  # type: ignore[no-untyped-def]
    df = fraud(2_000, seed=3)
    missing = build_profile([df.drop(columns=["amount", "hour"])], sample_rows=0)
    with pytest.raises(ConfigError, match=r"\['amount', 'hour'\]"):
        detect_drift(reference, missing)
    assert detect_drift(reference.select(["country"]), missing).n_columns == 1
    ok = detect_drift(reference, missing, DriftConfig(ignore=("amount", "hour")))
    assert ok.n_columns == 10
    kinds = build_profile(
        [df],
        categorical=["country", "channel", "merchant_category", "device_type", "hour"],
        sample_rows=0,
    )
    with pytest.raises(ConfigError, match="hour"):
        detect_drift(reference, kinds)


def test_truncated_counts_noted() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": rng.integers(0, 500, 5_000).astype(str)})
    ref = build_profile([df], max_values=50)
    result = detect_drift(ref, ref)
    assert any("truncated to 50 values" in n for n in result.notes)
    assert not result.dataset_drift
