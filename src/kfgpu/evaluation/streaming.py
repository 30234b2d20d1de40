"""Metrics from streamed predictions, in memory bounded whatever the test set's size.

:func:`kfgpu.evaluation.step.evaluate_model_step` reads the held-out split in record
batches, predicts each batch with the served module and feeds it to a
:class:`ClassificationStream` or :class:`RegressionStream`. What each metric is computed
from:

* **exact running sums** (any size, float round-off only): the confusion matrix at the
  bundle's stored decision rule (and at argmax), accuracy, balanced accuracy,
  precision/recall/F1, log loss, Brier score, the expected calibration error (per-bin
  sums), the constant baseline's metrics (from the class counts); for regression the sums
  of squared and absolute errors and y's running mean and squared deviations (Chan's
  parallel update), hence MSE, RMSE, MAE and R² exactly.
* **a seeded uniform sample of ``exact_rows`` rows** (bottom-k of a random key per row,
  then put back in row order): slices (and their quantile bins), fairness, bootstrap
  intervals, permutation importance and the auto-slice choice. While the split has at
  most ``exact_rows`` rows the sample *is* the split, in order, so these are exactly what
  the in-memory evaluation computes; above it they are estimates on that sample.
* **ROC AUC, average precision and the ROC/PR curves**: exact (scikit-learn on the
  sample) while the sample is the whole split; above ``exact_rows``, from a fixed-bin
  histogram of each class's scores, separately for rows of that class and the others:
  ``bins`` (65,536) equal-width bins of the logit ``log(p / (1 - p))`` over [-17, 17]
  (the probabilities evaluate clips to [1e-7, 1] all fall inside): 2 x bins x 8 bytes
  (1 MB) per class, at most 64 MB whatever the number of classes.

Error bound of the sketch's ROC AUC. Pairs (positive, negative) whose scores fall in
different bins are ordered exactly as by their scores; a pair in the same bin is counted
as a tie (credit 1/2) where the exact AUC gives it 0, 1/2 or 1. Hence, with ``pos_b`` and
``neg_b`` the counts in bin ``b``::

    |AUC_sketch - AUC_exact| <= 1/2 * sum_b pos_b * neg_b / (P * N)

a bound computed from the sketch itself and recorded in the evaluation's
``settings.streaming.roc_auc_error_bound`` (for multiclass, the mean of the per-class
bounds, as the macro AUC is their mean). With 65,536 bins a bin spans 5.2e-4 in logit
(1.3e-4 in probability around 0.5). Measured |AUC_sketch - AUC_exact|: 1.1e-16 on
scikit-learn's breast-cancer data (bound 0), 1.9e-7 on digits (10 classes, bound 8.7e-7),
4.8e-7 on 1,000,000 rows of kfgpu's fraud data (bound 2.2e-4; ``bench/stream_eval.py``). Average precision and the curves take one
point per non-empty bin; no bound is claimed for them beyond that resolution.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from kfgpu.evaluation.metrics import Evaluation

__all__ = [
    "ClassificationStream",
    "RegressionStream",
    "ScoreSketch",
    "StreamSettings",
]

#: The sketch's logit range: logit(1e-7) = -16.1, so every clipped probability fits.
_LOGIT_RANGE = 17.0


@dataclass(frozen=True)
class StreamSettings:
    """How a streamed evaluation bounds its memory.

    Attributes:
        exact_rows: rows kept (a seeded uniform sample) for slices, fairness, bootstrap,
            importance and, while the split has no more rows, exact rank metrics.
        bins: histogram bins per class of the score sketch used above ``exact_rows``
            (with k > 4 classes, fewer: at most 2**22 bins over all classes, 64 MB).
        batch_rows: rows read and predicted at a time.
    """

    exact_rows: int = 250_000
    bins: int = 65_536
    batch_rows: int = 65_536

    def __post_init__(self) -> None:
        for name, low in (("exact_rows", 1), ("bins", 16), ("batch_rows", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"StreamSettings.{name}={value!r} is invalid; use an integer >= {low}"
                )


# ---------------------------------------------------------------- the score sketch


class ScoreSketch:
    """Per-class histograms of scores, for rows of the class and for the others.

    ``columns`` is the number of score columns sketched (1 for a binary task: the
    positive class's score; k for multiclass one-vs-rest).
    """

    def __init__(self, columns: int, bins: int) -> None:
        import numpy as np

        self.bins = bins
        self.pos = np.zeros((columns, bins), dtype=np.float64)
        self.neg = np.zeros((columns, bins), dtype=np.float64)

    def _ids(self, score: np.ndarray) -> np.ndarray:
        import numpy as np

        s = np.clip(np.asarray(score, dtype=np.float64), 1e-300, 1.0 - 1e-16)
        z = np.log(s) - np.log1p(-s)
        u = (z + _LOGIT_RANGE) * (self.bins / (2 * _LOGIT_RANGE))
        return np.clip(np.floor(u), 0, self.bins - 1).astype(np.int64)

    def update(self, column: int, is_pos: np.ndarray, score: np.ndarray) -> None:
        import numpy as np

        ids = self._ids(score)
        is_pos = np.asarray(is_pos, dtype=bool)
        self.pos[column] += np.bincount(ids[is_pos], minlength=self.bins)
        self.neg[column] += np.bincount(ids[~is_pos], minlength=self.bins)

    def edge(self, b: np.ndarray) -> np.ndarray:
        """The probability at the lower edge of bins ``b``."""
        import numpy as np

        z = np.asarray(b, dtype=np.float64) * (2 * _LOGIT_RANGE / self.bins) - _LOGIT_RANGE
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def auc(self, column: int) -> tuple[float, float]:
        """``(ROC AUC, its error bound)``; NaN when a side is empty."""
        import numpy as np

        pos, neg = self.pos[column], self.neg[column]
        p, n = pos.sum(), neg.sum()
        if p == 0 or n == 0:
            return float("nan"), float("nan")
        below = np.cumsum(neg) - neg
        auc = float((pos * (below + 0.5 * neg)).sum() / (p * n))
        return auc, float(0.5 * (pos * neg).sum() / (p * n))

    def _descending(self, column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cumulative (true positives, false positives) over the non-empty bins, highest
        scores first, and those bins."""
        import numpy as np

        pos, neg = self.pos[column], self.neg[column]
        nz = np.flatnonzero((pos + neg) > 0)[::-1]
        return np.cumsum(pos[nz]), np.cumsum(neg[nz]), nz

    def average_precision(self, column: int) -> float:
        """scikit-learn's AP with each non-empty bin as one threshold."""

        tp, fp, nz = self._descending(column)
        p = self.pos[column].sum()
        if p == 0:
            return float("nan")
        return float((self.pos[column][nz] / p * (tp / (tp + fp))).sum())

    def roc_curve(self, column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import numpy as np

        tp, fp, nz = self._descending(column)
        fpr = np.r_[0.0, fp / max(fp[-1], 1.0)]
        tpr = np.r_[0.0, tp / max(tp[-1], 1.0)]
        return fpr, tpr, np.r_[np.inf, self.edge(nz)]

    def pr_curve(self, column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall, thresholds, ascending thresholds (scikit-learn's order)."""
        import numpy as np

        tp, fp, nz = self._descending(column)
        precision = (tp / (tp + fp))[::-1]
        recall = (tp / max(tp[-1], 1.0))[::-1]
        return np.r_[precision, 1.0], np.r_[recall, 0.0], self.edge(nz)[::-1]


# ---------------------------------------------------------------- the row sample


class _Sample:
    """A seeded uniform sample of ``size`` rows: bottom-k of a random key per row.

    Holds the label, the raw prediction and the kept columns of each sampled row;
    :meth:`parts` returns them in row order. While no more than ``size`` rows arrived, it
    holds every row.
    """

    def __init__(self, size: int, seed: int) -> None:
        import numpy as np

        self.size = size
        self.rng = np.random.default_rng([seed, 0x5A3E])
        self.seen = 0
        self.limit = 1.0  # keys >= limit cannot enter (size smaller keys exist)
        self._parts: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._held = 0

    def add(self, frame: pd.DataFrame, y: np.ndarray, raw: np.ndarray) -> None:
        import numpy as np

        m = len(y)
        keys = self.rng.random(m)
        rows = np.arange(self.seen, self.seen + m)
        self.seen += m
        take = np.flatnonzero(keys < self.limit)
        if len(take) < m:
            frame, y, raw, rows, keys = (
                frame.iloc[take],
                y[take],
                raw[take],
                rows[take],
                keys[take],
            )
        if len(take):
            self._parts.append((frame, y, raw, rows, keys))
            self._held += len(take)
        if self._held > 2 * self.size:
            self._compact()

    def _compact(self) -> None:
        import numpy as np
        import pandas as pd

        if len(self._parts) > 1:
            frame = pd.concat([p[0] for p in self._parts], ignore_index=True)
            y, raw, rows, keys = (np.concatenate([p[i] for p in self._parts]) for i in (1, 2, 3, 4))
        else:
            frame, y, raw, rows, keys = self._parts[0]
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            self.limit = float(keys[keep].max())
            keep.sort()
            frame, y, raw, rows, keys = (
                frame.iloc[keep].reset_index(drop=True),
                y[keep],
                raw[keep],
                rows[keep],
                keys[keep],
            )
        self._parts = [(frame, y, raw, rows, keys)]
        self._held = len(keys)

    @property
    def complete(self) -> bool:
        return self.seen <= self.size

    def parts(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """``(kept columns, labels, raw predictions)`` of the sampled rows, in row order."""
        import numpy as np

        if not self._parts:
            raise DataError("the held-out split is empty; raise test_fraction or add rows")
        self._compact()
        frame, y, raw, rows, _ = self._parts[0]
        order = np.argsort(rows, kind="stable")
        if np.any(order != np.arange(len(order))):
            frame, y, raw = frame.iloc[order], y[order], raw[order]
        return frame.reset_index(drop=True), y, raw


# ---------------------------------------------------------------- classification


def _count_scores(
    cm: np.ndarray, k: int, pos: int, *, nll: float, brier: float, gap: np.ndarray
) -> dict[str, float]:
    """The count-based metrics of :func:`kfgpu.evaluation.metrics` from sums: the
    confusion matrix ``cm`` (true x predicted), the summed log loss, Brier score and
    per-bin calibration gaps."""
    import numpy as np

    n = float(cm.sum())
    true, pred, tp = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm).astype(np.float64)
    present = true > 0

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)

    precision, recall = ratio(tp, pred), ratio(tp, true)
    f1 = ratio(2 * tp, (pred + true).astype(np.float64))
    out = {
        "accuracy": float(tp.sum() / n),
        "balanced_accuracy": float(recall[present].mean()),
        "log_loss": nll / n,
    }
    if k == 2:
        out.update(
            precision=float(precision[pos]),
            recall=float(recall[pos]),
            f1=float(f1[pos]),
            brier=brier / n,
        )
    else:
        out.update(
            precision=float(precision.mean()), recall=float(recall.mean()), f1=float(f1.mean())
        )
    out["calibration_error"] = float(np.abs(gap).sum() / n)
    return out


class ClassificationStream:
    """Classification metrics of streamed batches (see the module docstring).

    Args:
        classes: the bundle's classes, in its output order.
        positive_class: the binary positive class (default: index 1).
        prior: the training class distribution (the constant baseline); uniform if None.
        decision: the bundle's stored decision rule (:mod:`kfgpu.decision`).
        ece_bins: equal-width bins of the calibration error.
        settings: the memory bounds.
        seed: seeds the row sample (and, through the in-memory functions, bootstrap).
    """

    def __init__(
        self,
        classes: list[Any],
        *,
        positive_class: Any = None,
        prior: np.ndarray | None = None,
        decision: Mapping[str, Any] | None = None,
        ece_bins: int = 10,
        settings: StreamSettings | None = None,
        seed: int = 0,
    ) -> None:
        import numpy as np

        self.classes = list(classes)
        self.k = k = len(classes)
        self.index = {str(c): i for i, c in enumerate(classes)}
        if positive_class is not None and str(positive_class) not in self.index:
            raise ConfigError(
                f"positive_class {positive_class!r} is not one of the classes {list(classes)}"
            )
        self.positive_class = positive_class
        self.pos = self.index[str(positive_class)] if (positive_class is not None and k == 2) else 1
        self.prior = prior
        self.decision = decision
        self.ece_bins = ece_bins
        self.settings = settings or StreamSettings()
        self.seed = seed
        self.cm = np.zeros((k, k), dtype=np.int64)
        self.cm_argmax = np.zeros((k, k), dtype=np.int64)
        self.nll = 0.0
        self.brier = 0.0
        self.gap = np.zeros(ece_bins, dtype=np.float64)
        columns = 1 if k == 2 else k
        self.sketch = ScoreSketch(columns, min(self.settings.bins, max(1024, 2**22 // columns)))
        self.sample = _Sample(self.settings.exact_rows, seed)

    def update(self, y_true: np.ndarray, raw: np.ndarray, keep: pd.DataFrame) -> None:
        """Add one batch: labels, the served probabilities ``(m, k)`` and the columns of
        these rows to keep in the sample (slices, features for importance)."""
        import numpy as np

        from kfgpu.decision import label_indices
        from kfgpu.evaluation.metrics import calibration_bins

        if len(y_true) == 0:
            return
        import pandas as pd

        k, pos = self.k, self.pos
        # Labels compare as text, as in evaluate_classification; mapped once per value.
        codes, uniques = pd.factorize(np.asarray(y_true, dtype=object), use_na_sentinel=False)
        names = [str(v) for v in uniques]
        unknown = sorted(set(names) - set(self.index))
        if unknown:
            raise DataError(f"held-out labels {unknown} were never seen in training")
        y = np.asarray([self.index[n] for n in names], dtype=np.int64)[codes]
        pred = label_indices(raw, self.decision, self.classes)
        # The same clipping and renormalisation as evaluate_classification.
        proba = np.clip(np.asarray(raw, dtype=np.float64), 1e-7, 1.0)
        proba = proba / proba.sum(axis=1, keepdims=True)
        argmax = proba.argmax(axis=1)
        self.cm += np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        self.cm_argmax += np.bincount(y * k + argmax, minlength=k * k).reshape(k, k)
        eps = np.finfo(np.float64).eps
        self.nll += float(-np.log(np.clip(proba[np.arange(len(y)), y], eps, 1 - eps)).sum())
        if k == 2:
            target, prob = (y == pos).astype(np.float64), proba[:, pos]
            self.brier += float(((prob - target) ** 2).sum())
            self.sketch.update(0, y == pos, prob)
        else:
            target, prob = (argmax == y).astype(np.float64), proba.max(axis=1)
            for c in range(k):
                self.sketch.update(c, y == c, proba[:, c])
        ids = calibration_bins(prob, self.ece_bins)
        self.gap += np.bincount(ids, weights=target - prob, minlength=self.ece_bins)
        self.sample.add(keep, np.asarray(y_true), np.asarray(raw))

    @property
    def rows(self) -> int:
        return int(self.cm.sum())

    def _baseline(self) -> dict[str, float]:
        """The constant predictor's count metrics, from the class counts."""
        import numpy as np

        k, pos = self.k, self.pos
        prior = np.full(k, 1.0 / k) if self.prior is None else np.asarray(self.prior, float)
        prior = prior / prior.sum()
        counts = self.cm.sum(axis=1).astype(np.float64)
        a = int(prior.argmax())
        cm = np.zeros((k, k), dtype=np.int64)
        cm[:, a] = self.cm.sum(axis=1)
        eps = np.finfo(np.float64).eps
        nll = float((counts * -np.log(np.clip(prior, eps, 1 - eps))).sum())
        gap = np.zeros(self.ece_bins)
        from kfgpu.evaluation.metrics import calibration_bins

        if k == 2:
            p = float(prior[pos])
            brier = float(counts[pos] * (p - 1) ** 2 + counts[1 - pos] * p**2)
            target_sum, prob = counts[pos], p
        else:
            brier = 0.0
            target_sum, prob = counts[a], float(prior.max())
        gap[int(calibration_bins(np.asarray([prob]), self.ece_bins)[0])] = (
            target_sum - counts.sum() * prob
        )
        out = _count_scores(cm, k, pos, nll=nll, brier=brier, gap=gap)
        # Constant scores tie everywhere: AUC 1/2, AP the positive rate.
        present = counts > 0
        if k == 2 and present.all():
            out["roc_auc"], out["pr_auc"] = 0.5, float(counts[pos] / counts.sum())
        elif k > 2 and present.all():
            out["roc_auc"], out["pr_auc"] = 0.5, float((counts / counts.sum()).mean())
        return _ordered(out)

    def finish(
        self,
        *,
        slices: Mapping[str, np.ndarray] | None = None,
        sensitive: tuple[str, np.ndarray] | None = None,
        bootstrap: int = 0,
        confidence: float = 0.95,
    ) -> Evaluation:
        """The evaluation: slices/fairness/intervals on the sample (``slices`` and
        ``sensitive`` label the rows of :meth:`sample_frame`), counts on every row."""
        import numpy as np

        from kfgpu.evaluation.metrics import (
            evaluate_classification,
            thin_pr_curve,
            thin_roc_curve,
        )

        _, y_s, raw_s = self.sample.parts()
        ev = evaluate_classification(
            y_s,
            raw_s,
            self.classes,
            positive_class=self.positive_class,
            prior=self.prior,
            decision=self.decision,
            ece_bins=self.ece_bins,
            slices=slices,
            sensitive=sensitive,
            bootstrap=bootstrap,
            confidence=confidence,
            seed=self.seed,
        )
        k, pos = self.k, self.pos
        metrics = _count_scores(self.cm, k, pos, nll=self.nll, brier=self.brier, gap=self.gap)
        present = self.cm.sum(axis=1) > 0
        ranks_ok = bool(present.all()) if k > 2 else bool(present[pos] and present[1 - pos])
        streaming: dict[str, Any] = {
            "exact_rows": self.settings.exact_rows,
            "sampled_rows": len(y_s),
            "rank_metrics": "exact" if self.sample.complete else "sketch",
        }
        roc, pr = ev.roc_curve, ev.pr_curve
        if ranks_ok and self.sample.complete:
            metrics["roc_auc"], metrics["pr_auc"] = ev.metrics["roc_auc"], ev.metrics["pr_auc"]
        elif ranks_ok:
            cols = [0] if k == 2 else list(range(k))
            aucs = [self.sketch.auc(c) for c in cols]
            metrics["roc_auc"] = float(np.mean([a for a, _ in aucs]))
            metrics["pr_auc"] = float(np.mean([self.sketch.average_precision(c) for c in cols]))
            streaming["bins"] = self.sketch.bins
            streaming["roc_auc_error_bound"] = float(np.mean([b for _, b in aucs]))
            if k == 2:
                roc = thin_roc_curve(*self.sketch.roc_curve(0))
                pr = thin_pr_curve(*self.sketch.pr_curve(0))
        threshold = dict(ev.threshold)
        if "argmax_metrics" in threshold:
            argmax = _count_scores(
                self.cm_argmax, k, pos, nll=self.nll, brier=self.brier, gap=self.gap
            )
            threshold["argmax_metrics"] = {m: argmax[m] for m in threshold["argmax_metrics"]}
        return dataclasses.replace(
            ev,
            metrics=_ordered(metrics),
            baseline=self._baseline(),
            rows=self.rows,
            confusion_matrix=self.cm.tolist(),
            roc_curve=roc,
            pr_curve=pr,
            threshold=threshold,
            settings={**ev.settings, "streaming": streaming},
        )

    def sample_frame(self) -> pd.DataFrame:
        """The kept columns of the sampled rows, in row order."""
        return self.sample.parts()[0]


_ORDER = (
    "accuracy",
    "balanced_accuracy",
    "log_loss",
    "precision",
    "recall",
    "f1",
    "brier",
    "calibration_error",
    "roc_auc",
    "pr_auc",
)


def _ordered(m: dict[str, float]) -> dict[str, float]:
    """The in-memory evaluation's key order (JSON is written sorted; reports iterate)."""
    return {k: m[k] for k in (*_ORDER, *sorted(set(m) - set(_ORDER))) if k in m}


# ---------------------------------------------------------------- regression


class RegressionStream:
    """Regression metrics of streamed batches: exact sums, the sample for the rest."""

    def __init__(
        self, *, train_mean: float, settings: StreamSettings | None = None, seed: int = 0
    ) -> None:
        self.train_mean = float(train_mean)
        self.settings = settings or StreamSettings()
        self.seed = seed
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations of y from its running mean
        self.sse = self.sae = self.sse_b = self.sae_b = 0.0
        self.sample = _Sample(self.settings.exact_rows, seed)

    def update(self, y_true: np.ndarray, pred: np.ndarray, keep: pd.DataFrame) -> None:
        import numpy as np

        y = np.asarray(y_true, dtype=np.float64)
        if len(y) == 0:
            return
        p = np.asarray(pred, dtype=np.float64).reshape(len(y))
        m = len(y)
        mean_b = float(y.mean())
        m2_b = float(((y - mean_b) ** 2).sum())
        delta = mean_b - self.mean
        total = self.n + m
        self.m2 += m2_b + delta**2 * self.n * m / total
        self.mean += delta * m / total
        self.n = total
        self.sse += float(((y - p) ** 2).sum())
        self.sae += float(np.abs(y - p).sum())
        self.sse_b += float(((y - self.train_mean) ** 2).sum())
        self.sae_b += float(np.abs(y - self.train_mean).sum())
        self.sample.add(keep, y, p)

    @property
    def rows(self) -> int:
        return self.n

    def _scores(self, sse: float, sae: float) -> dict[str, float]:
        mse = sse / self.n
        out = {"mse": mse, "rmse": math.sqrt(mse), "mae": sae / self.n}
        if self.n >= 2:
            # scikit-learn's r2_score, force_finite: a constant y gives 1 (perfect) or 0.
            out["r2"] = (1.0 - sse / self.m2) if self.m2 > 0 else (1.0 if sse == 0 else 0.0)
        return out

    def finish(
        self,
        *,
        slices: Mapping[str, np.ndarray] | None = None,
        sensitive: tuple[str, np.ndarray] | None = None,
        bootstrap: int = 0,
        confidence: float = 0.95,
    ) -> Evaluation:
        from kfgpu.evaluation.metrics import evaluate_regression

        _, y_s, p_s = self.sample.parts()
        ev = evaluate_regression(
            y_s,
            p_s,
            train_mean=self.train_mean,
            slices=slices,
            sensitive=sensitive,
            bootstrap=bootstrap,
            confidence=confidence,
            seed=self.seed,
        )
        streaming = {
            "exact_rows": self.settings.exact_rows,
            "sampled_rows": len(y_s),
        }
        return dataclasses.replace(
            ev,
            metrics=self._scores(self.sse, self.sae),
            baseline=self._scores(self.sse_b, self.sae_b),
            rows=self.n,
            settings={**ev.settings, "streaming": streaming},
        )

    def sample_frame(self) -> pd.DataFrame:
        return self.sample.parts()[0]
