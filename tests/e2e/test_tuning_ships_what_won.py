"""Tuning ships what won (issue 15, acceptance 3), with small settings.

On the three data sets of ``bench/decisions.py`` (diabetes; breast cancer with string
columns and 5% missing values; an imbalanced ``make_classification``, here 10,000 rows
instead of the bench's 200,000), a 10-trial study through the real steps, then
train_model with the tuned configuration: the shipped model's validation metric must equal
the best trial's (a refit: within 1%), and its held-out metric must not fall below the
untuned default's by more than the default's bootstrap half-width. Before the fix trials
ran with another epoch count and schedule than the shipped model, and were compared on
the validation loss rather than the gate's metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.decisions import breast_cancer, diabetes, imbalanced, tune_and_compare

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
    ),
]

SMALL_SPACE = {
    "learning_rate": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
    "hidden_sizes": {"type": "categorical", "choices": ["16", "32,16"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
}
#: What every trial starts from and what the untuned default trains with: short runs.
SMALL = {"accelerator": "cpu", "max_epochs": 3, "hidden_sizes": "32", "lr_schedule": "cosine"}


@pytest.mark.parametrize(
    "make",
    [diabetes, breast_cancer, lambda: imbalanced(10_000)],
    ids=["diabetes", "breast_cancer", "imbalanced"],
)
def test_shipped_model_is_the_best_trial(make: Any, tmp_path: Path) -> None:
    frame, target, task = make()
    r = tune_and_compare(
        frame, target, task, workdir=tmp_path, trials=10, space=SMALL_SPACE, train_config=SMALL
    )
    # Compared on the gate's metric on the validation rows.
    assert r["metric"] in r["compared_on"]
    # Exactly the trial's configuration: epochs, schedule, seed and every tuned setting.
    shipped = {k: v for k, v in r["shipped_config"].items() if k in r["best_config"]}
    assert shipped == r["best_config"]
    assert r["best_config"]["max_epochs"] == SMALL["max_epochs"]
    # A refit in the same environment reproduces the trial bit for bit here (the issue
    # allows 1% for a refit; asserted far tighter).
    assert r["shipped_val"] == pytest.approx(r["best_value"], rel=1e-6)
    lo, hi = r["default_interval"]
    assert r["shipped_test"] >= r["default_test"] - (hi - lo) / 2
