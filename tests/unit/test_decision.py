"""kfgpu.decision: threshold policies chosen on given rows, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from kfgpu.decision import choose_decision, label_indices, parse_policy
from kfgpu.errors import ConfigError


def _scores(n: int = 2_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels (about 5% positive) and a noisy score that ranks them."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    score = 1 / (1 + np.exp(-(2.5 * y + rng.normal(size=n) - 3)))
    # Ties, as a saturated network produces.
    score[:50] = np.round(score[:50], 2)
    return y, np.c_[1 - score, score].astype(np.float32)


def _brute(y: np.ndarray, p: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """(threshold, precision, recall, f1, tp, fp, fn) at every candidate threshold."""
    s = p[:, 1].astype(np.float64)
    out = []
    for t in np.r_[np.unique(s), 1.01]:
        pred = s >= t
        tp, fp = float((pred & (y == 1)).sum()), float((pred & (y == 0)).sum())
        fn = float((~pred & (y == 1)).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        out.append((t, prec, rec, f1, tp, fp, fn))
    return out


def _at(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float, float, float, float]:
    pred = p[:, 1].astype(np.float64) >= t
    tp, fp = float((pred & (y == 1)).sum()), float((pred & (y == 0)).sum())
    fn = float((~pred & (y == 1)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return prec, rec, f1, fp, fn


def test_f1_is_the_best_f1_of_any_threshold() -> None:
    y, p = _scores()
    d = choose_decision("f1", y, p, [0, 1], positive_class=1)
    best = max(r[3] for r in _brute(y, p))
    assert _at(y, p, d["threshold"])[2] == pytest.approx(best)
    assert d["validation"]["f1"] == pytest.approx(best)
    assert d["chosen_on"] == "validation" and d["rows"] == len(y)
    # Halfway between two neighbouring scores: no row sits on the threshold.
    assert not np.isclose(p[:, 1].astype(np.float64), d["threshold"], rtol=0, atol=1e-9).any()


@pytest.mark.parametrize("floor", [0.5, 0.8, 0.95])
def test_precision_at_recall_meets_the_floor_with_the_best_precision(floor: float) -> None:
    y, p = _scores()
    d = choose_decision(f"precision_at_recall:{floor}", y, p, [0, 1], positive_class=1)
    prec, rec, *_ = _at(y, p, d["threshold"])
    assert rec >= floor
    assert prec == pytest.approx(max(r[1] for r in _brute(y, p) if r[2] >= floor))


@pytest.mark.parametrize("floor", [0.3, 0.6])
def test_recall_at_precision_meets_the_floor_with_the_best_recall(floor: float) -> None:
    y, p = _scores()
    d = choose_decision(f"recall_at_precision:{floor}", y, p, [0, 1], positive_class=1)
    prec, rec, *_ = _at(y, p, d["threshold"])
    assert prec >= floor
    assert rec == pytest.approx(max(r[2] for r in _brute(y, p) if r[1] >= floor and r[4] > 0))
    assert "note" not in d


def test_recall_at_an_unreachable_precision_says_so() -> None:
    y, p = _scores()
    top = int(np.flatnonzero(y == 0)[0])
    p[top] = [0.0, 1.0]  # a negative above every positive: precision 1 is out of reach
    d = choose_decision("recall_at_precision:1.0", y, p, [0, 1], positive_class=1)
    assert "no threshold reaches precision 1" in d["note"]


def test_cost_is_the_least_total_cost() -> None:
    y, p = _scores()
    d = choose_decision("cost:fn=10,fp=1", y, p, [0, 1], positive_class=1)
    *_, fp, fn = _at(y, p, d["threshold"])
    least = min(10 * r[6] + r[5] for r in _brute(y, p))
    assert 10 * fn + fp == least == d["validation_cost"]
    # A missed positive costing more lowers the threshold.
    cheap = choose_decision("cost:fn=1,fp=1", y, p, [0, 1], positive_class=1)
    assert d["threshold"] < cheap["threshold"]


def test_positive_class_other_than_index_one() -> None:
    y, p = _scores()
    # Classes named, the positive one first: the same decision, mirrored.
    flipped = choose_decision(
        "f1", np.where(y == 1, "fraud", "ok"), p[:, ::-1], ["fraud", "ok"], positive_class="fraud"
    )
    plain = choose_decision("f1", y, p, [0, 1], positive_class=1)
    assert flipped["threshold"] == pytest.approx(plain["threshold"])
    got = label_indices(p[:, ::-1], flipped, ["fraud", "ok"])
    assert ((got == 0) == (label_indices(p, plain, [0, 1]) == 1)).all()


def test_labels_apply_the_stored_threshold_whatever_the_float_width() -> None:
    y, p = _scores()
    d = choose_decision("f1", y, p, [0, 1], positive_class=1)
    want = (p[:, 1].astype(np.float64) >= d["threshold"]).astype(int)
    assert (label_indices(p, d, [0, 1]) == want).all()
    assert (label_indices(p.astype(np.float64), d, [0, 1]) == want).all()
    assert want.sum() != (p.argmax(axis=1)).sum()  # the threshold is not argmax's here


def test_argmax_without_a_record_and_for_multiclass() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet([1, 1, 1], size=50)
    d = choose_decision("f1", rng.integers(0, 3, 50), p, ["a", "b", "c"])
    assert d["rule"] == "argmax" and "multiclass uses argmax" in d["note"]
    assert (label_indices(p, d, ["a", "b", "c"]) == p.argmax(axis=1)).all()
    two = rng.dirichlet([1, 1], size=50)
    assert (label_indices(two, None, [0, 1]) == two.argmax(axis=1)).all()
    assert choose_decision("argmax", rng.integers(0, 2, 50), two, [0, 1])["threshold"] == 0.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("best", "is not understood"),
        ("precision_at_recall", "needs a floor"),
        ("recall_at_precision:1.5", "must lie in"),
        ("cost", "gives no cost"),
        ("cost:fn=-1,fp=1", "is not a cost"),
        ("cost:miss=3", "is not a cost"),
        ("1.5", "must lie in"),
    ],
)
def test_bad_policies_name_the_field_and_the_fix(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse_policy(text)
    assert "threshold_policy=" in str(err.value)


def test_policy_text_round_trips() -> None:
    for text in ("f1", "argmax", "precision_at_recall:0.9", "cost:fn=10,fp=1", "0.3"):
        assert parse_policy(parse_policy(text).text).text == parse_policy(text).text
    assert parse_policy("COST: fn=10, fp=1").costs == {"fn": 10.0, "fp": 1.0}
