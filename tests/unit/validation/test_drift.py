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
    adjust_p_values,
    chisquare_from_counts,
    cramers_v_from_counts,
    decide,
    detect_drift,
    jensenshannon_from_counts,
    ks_from_sketches,
    psi_from_sketches,
    wasserstein_from_sketches,
)
from kfgpu.validation.profile import (
    CategoricalCounts,
    ColumnProfile,
    NumericSketch,
    ReferenceProfile,
    build_profile,
)

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
    # Chi-square test of homogeneity (both sides are samples): 'd' (2 values) is expected
    # fewer than 5 times on each side, so it joins the smallest other cell (missing).
    chi2, pv = chisquare_from_counts(r, c)
    table = np.array([[500, 300, 200, 50], [400, 350, 0, 102]])
    want = stats.chi2_contingency(table, correction=False)
    assert chi2 == pytest.approx(want.statistic) and pv == pytest.approx(want.pvalue)
    # No small cell: exactly scipy's contingency test, and Cramer's V from it.
    cur2 = pd.Series(["a"] * 500 + ["b"] * 300 + ["c"] * 200 + [None] * 40)
    c2 = CategoricalCounts().add(cur2)
    chi2, pv = chisquare_from_counts(r, c2)
    want = stats.chi2_contingency(
        np.array([[500, 300, 200, 50], [500, 300, 200, 40]]), correction=False
    )
    assert chi2 == pytest.approx(want.statistic) and pv == pytest.approx(want.pvalue)
    assert cramers_v_from_counts(r, c2) == pytest.approx(np.sqrt(want.statistic / 2090))


def test_p_value_corrections_match_their_definitions() -> None:
    p = [0.01, 0.04, 0.03, np.nan, 0.005]
    holm = adjust_p_values(p, "holm")
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4*0.005, 3*0.01, 2*0.03, 1*0.04 (running max)
    assert holm[[4, 0, 2, 1]] == pytest.approx([0.02, 0.03, 0.06, 0.06])
    bh = adjust_p_values(p, "bh")
    # 4/1*0.005, 4/2*0.01, 4/3*0.03, 4/4*0.04 (running min from the top)
    assert bh[[4, 0, 2, 1]] == pytest.approx([0.02, 0.02, 0.04, 0.04])
    assert np.isnan(holm[3]) and np.isnan(bh[3])
    with pytest.raises(ConfigError, match="correction='bonferroni'"):
        adjust_p_values(p, "bonferroni")


def _profile(values: dict[str, np.ndarray]) -> ReferenceProfile:
    return build_profile([pd.DataFrame(values)], sample_rows=0)


def test_millions_of_rows_do_not_flag_a_trivial_shift() -> None:
    """Significant is not enough: a 0.02-std shift over 400,000 rows is real but tiny."""
    rng = np.random.default_rng(3)
    ref = _profile({"x": rng.normal(0, 1, 400_000)})
    cur = _profile({"x": rng.normal(0.02, 1, 400_000)})
    col = detect_drift(ref, cur).column("x")
    assert col.significant and col.p_adjusted is not None and col.p_adjusted < 1e-6
    assert col.statistic < 0.1 and not col.drifted


def test_hundreds_of_rows_do_not_flag_noise() -> None:
    """Large is not enough: the distance between two 150-row samples is noisy."""
    rng = np.random.default_rng(4)
    flagged_by_distance = flagged = 0
    for _ in range(20):
        ref = _profile({"x": rng.lognormal(0, 1, 150), "y": rng.normal(0, 1, 150)})
        cur = _profile({"x": rng.lognormal(0, 1, 150), "y": rng.normal(0, 1, 150)})
        result = detect_drift(ref, cur)
        flagged_by_distance += any(c.large for c in result.columns)
        flagged += result.n_drifted > 0
    assert flagged_by_distance >= 5  # the old distance-only rule alarmed on these
    assert flagged <= 1  # at most alpha = 5% of the 20 splits


def test_too_few_rows_give_insufficient_data() -> None:
    rng = np.random.default_rng(5)
    ref = _profile({"x": rng.normal(0, 1, 80)})
    cur = _profile({"x": rng.normal(5, 1, 80)})
    result = detect_drift(ref, cur)
    assert result.status == "insufficient_data" and not result.dataset_drift
    assert result.summary() == (
        "insufficient data: reference 80 rows, current 80 rows; at least min_rows 100 on "
        "each side are needed for a verdict"
    )
    assert result.column("x").drifted  # the column figures are still reported
    assert detect_drift(ref, cur, DriftConfig(min_rows=50)).status == "drift"


def _numeric(values: np.ndarray) -> ColumnProfile:
    return ColumnProfile("prediction", "numeric", NumericSketch().add(values))


def test_model_aware_verdict_names_the_rule_and_its_figures() -> None:
    rng = np.random.default_rng(6)
    n = 2000
    ref = _profile({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n), "c": rng.normal(0, 1, n)})
    moved = _profile({"a": rng.normal(1, 1, n), "b": rng.normal(0, 1, n), "c": rng.normal(0, 1, n)})
    same_out = (_numeric(rng.beta(2, 8, n)), _numeric(rng.beta(2, 8, n)))
    important = detect_drift(ref, moved, importance={"a": 3, "b": 1}, predictions=same_out)
    assert important.rules == ["important_features"]
    assert important.column("a").importance == pytest.approx(0.75)
    assert important.column("c").importance == 0.0  # not a model input
    assert important.importance_drifted == pytest.approx(0.75)
    assert "drifted columns carry 75.0% of the model's feature importance (>= 10%)" in (
        important.summary()
    )
    assert "prediction drift: no" in important.summary()
    # The same column drift on a column the model ignores: reported, no dataset drift.
    ignored = detect_drift(ref, moved, importance={"b": 1, "c": 1}, predictions=same_out)
    assert ignored.drifted_columns == ["a"] and ignored.status == "no_drift"
    assert "carry too little of the model's importance" in ignored.summary()
    # Without a model the share rule decides: 1 of 3 columns >= 5%.
    plain = detect_drift(ref, moved)
    assert plain.rules == ["share_of_columns"] and "1 of 3 columns drifted" in plain.summary()
    # The model's output moved (mean 0.2 -> 0.3) with no input column flagged.
    shifted_out = (_numeric(rng.beta(2, 8, n)), _numeric(rng.beta(3, 7, n)))
    same = _profile({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n), "c": rng.normal(0, 1, n)})
    pred = detect_drift(ref, same, importance={"a": 1}, predictions=shifted_out)
    assert pred.rules == ["prediction_drift"] and pred.prediction is not None
    assert pred.prediction.drifted and "prediction drift: yes" in pred.summary()
    data = json.loads(json.dumps(pred.to_dict(), allow_nan=False))
    assert data["status"] == "drift" and data["prediction"]["drifted"] is True
    assert data["rules"] == ["prediction_drift"] and data["model_aware"] is True


def test_decide_adjusts_the_whole_family() -> None:
    """Holm over the columns and the model's output together: a p-value that passes alone
    fails once adjusted for 20 tests."""
    from dataclasses import replace

    rng = np.random.default_rng(7)
    ref = _profile({f"x{i}": rng.normal(0, 1, 300) for i in range(20)})
    cur = _profile({f"x{i}": rng.normal(0, 1, 300) for i in range(20)})
    cols = detect_drift(ref, cur).columns
    weak = replace(cols[0], p_value=0.01, statistic=0.5)  # significant alone, large
    result = decide([weak, *cols[1:]], DriftConfig(), reference_rows=300, current_rows=300)
    assert result.columns[0].p_adjusted is not None and result.columns[0].p_adjusted >= 0.05
    assert not result.columns[0].drifted and result.status == "no_drift"
    bh = decide(
        [weak, *cols[1:]], DriftConfig(correction="bh"), reference_rows=300, current_rows=300
    )
    assert "bh correction at alpha 0.05 over 20 test(s)" in bh.summary()


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
    assert data["rules"] == ["share_of_columns"] and data["status"] == "drift"
    assert result.summary().startswith("drift: share of columns: ")


def test_no_drift_on_same_distribution(reference) -> None:  # type: ignore[no-untyped-def]
    current = build_profile([fraud(ROWS, seed=1)], sample_rows=0)
    result = detect_drift(reference, current)
    assert not result.dataset_drift, result.summary()
    assert result.n_drifted <= 1
    assert result.summary().startswith("no drift: share of columns: 0 of 12")


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
    assert alarms <= 1 and column_alarms <= 2


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
    assert (amount.method, amount.threshold, amount.test) == ("ks", 0.01, "ks")
    assert amount.statistic == amount.test_statistic
    hour = result.column("hour")
    # A near-zero effect threshold no longer flags noise: the test must be significant too.
    assert hour.method == "psi" and hour.threshold == 1e-6 and hour.large
    assert not hour.significant and not hour.drifted
    assert result.column("distance_km").method == "psi"
    assert result.column("distance_km").threshold == 0.2
    assert result.column("country").method == "chisquare"
    assert result.column("channel").method == "jensenshannon"
    with pytest.raises(ConfigError, match="is_fraud"):
        result.column("is_fraud")

    shifted = fraud(ROWS, seed=1)
    shifted["hour"] = (shifted["hour"] + 2) % 24
    moved = build_profile([shifted], sample_rows=0)
    assert detect_drift(reference, moved).drifted_columns == ["hour"]
    assert detect_drift(reference, moved).dataset_drift  # 1 of 12 >= 5%
    assert not detect_drift(reference, moved, DriftConfig(drift_share=0.1)).dataset_drift


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
        ({"alpha": 0.7}, "alpha=0.7"),
        ({"correction": "bonferroni"}, "correction='bonferroni'"),
        ({"min_rows": 0}, "min_rows=0"),
        ({"importance_share": 1.5}, "importance_share=1.5"),
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
