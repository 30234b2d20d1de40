"""The evaluate_model step: the bundle on the held-out split, through the served module."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu._redact import redact_obj, without_masked
from kfgpu._step import StepResult, step

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from kfgpu.description import BundleDescription
    from kfgpu.evaluation.streaming import (
        ClassificationStream,
        RegressionStream,
        StreamSettings,
    )

__all__ = ["EvaluationOutput", "evaluate_model_step", "parse_columns"]


@dataclass(frozen=True)
class EvaluationOutput:
    """What :func:`evaluate_model_step` returns for the component's KFP visualisations.

    Attributes:
        headline: the headline metric's name.
        confusion_matrix: rows: true class, columns: predicted (``[]`` for regression).
        classes: the class labels as strings, in matrix order.
        roc_curve: ``{"fpr", "tpr", "threshold"}`` points (``{}`` when not binary).
        pr_curve: precision-recall points (``{}`` when not binary).
    """

    headline: str
    confusion_matrix: list[list[int]]
    classes: list[str]
    roc_curve: dict[str, list[float]]
    pr_curve: dict[str, list[float]]


def parse_columns(value: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty -> ``[]``."""
    return [c.strip() for c in (value or "").split(",") if c.strip()]


def _auto_slices(test: Any, features: list[str], *, limit: int = 4) -> list[str]:
    """Categorical features with 2..20 values, the first ``limit`` of them."""
    import pandas as pd

    out = []
    for col in features:
        s = test[col]
        if (
            not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
        ) and 2 <= s.nunique(dropna=True) <= 20:
            out.append(col)
    return out[:limit]


def model_summary(desc: BundleDescription, features: list[str]) -> dict[str, Any]:
    """What the evaluation JSON (and so the model card) records about the model."""
    return {
        "target": desc.target,
        "task": desc.task,
        "family": desc.model_family,
        "kfgpu_version": desc.kfgpu_version,
        "created_at": desc.created_at,
        "features": features,
        # The raw inputs and their kinds: with task and target, the model's identity (the
        # gate compares with a champion only when all three agree).
        "signature": desc.inputs,
        "train_rows": (desc.training or {}).get("train_rows"),
        "train_distribution": desc.train_distribution,
        "hyperparameters": desc.hyperparameters or {},
        "lineage": desc.lineage or {},
    }


@step("evaluate_model")
def evaluate_model_step(
    *,
    bundle_path: str,
    test_path: str,
    report_path: str,
    evaluation_path: str = "",
    mlflow_tracking_uri: str = "",
    slice_columns: str = "",
    sensitive_column: str = "",
    bootstrap: int = 0,
    confidence: float = 0.95,
    importance_repeats: int = 0,
    seed: int = 0,
    card_path: str = "",
    card_html_path: str = "",
    track: bool = True,
    stream_settings: StreamSettings | None = None,
) -> StepResult[EvaluationOutput]:
    """Score the bundle on the test split exactly as serving would (raw rows in).

    Hard labels follow the bundle's stored decision rule (a binary model's threshold,
    chosen on the validation rows at training time): the confusion matrix is the one
    serving produces on these rows. The test rows choose nothing.

    The split is read in record batches and predicted batch by batch; counts and sums
    cover every row, slices, fairness, intervals and importance a seeded sample of
    ``stream_settings.exact_rows`` rows (the whole split when it is no larger), ROC/PR
    AUC a bounded score sketch above that (:mod:`kfgpu.evaluation.streaming`).

    Args:
        slice_columns: comma-separated columns of the test split to report metrics per
            value (numeric: per quartile); ``auto``: the categorical features with 2 to 20
            values (at most 4).
        sensitive_column: a column across whose groups fairness is measured (binary).
        bootstrap: resamples for confidence intervals (0: none).
        importance_repeats: shuffles per feature for permutation importance (0: none).
        card_path, card_html_path: where to write the model card (empty: not written).
        track: log the test metrics to the bundle's MLflow training run.
        stream_settings: the memory bounds of the streamed evaluation (the test split is
            read and predicted in record batches; see :mod:`kfgpu.evaluation.streaming`).

    Raises:
        BundleError: the bundle is incomplete or fails its checksums.
        ConfigError: an unknown slice or sensitive column.
        DataError: the test split is empty or holds unknown labels.
    """
    from kfgpu.bundle import load_bundle
    from kfgpu.evaluation.card import render_card_html, render_card_markdown
    from kfgpu.evaluation.metrics import slice_labels
    from kfgpu.evaluation.records import EvaluationRecord
    from kfgpu.evaluation.report import render_html
    from kfgpu.registry import tracking

    bundle = load_bundle(bundle_path)
    desc = bundle.description
    target = desc.target
    features = list(bundle.transform.input_columns)
    auto = slice_columns.strip().lower() == "auto"
    columns = [] if auto else parse_columns(slice_columns)
    stream, sample, y_sample = _stream_predictions(
        bundle,
        test_path,
        target=target,
        keep=[*columns, *([sensitive_column] if sensitive_column else [])],
        keep_features=auto or importance_repeats > 0,
        settings=stream_settings,
        seed=int(seed),
    )
    if auto:
        columns = _auto_slices(sample, features)
    labels_by_col = slice_labels(sample, columns + ([sensitive_column] if sensitive_column else []))
    slices = {c: labels_by_col[c] for c in columns}
    sensitive = (sensitive_column, labels_by_col[sensitive_column]) if sensitive_column else None
    ev = stream.finish(
        slices=slices, sensitive=sensitive, bootstrap=int(bootstrap), confidence=float(confidence)
    )
    if importance_repeats > 0:
        ev.importance = _importance(
            bundle,
            sample.drop(columns=[target]),
            y_sample,
            features,
            ev.headline,
            importance_repeats,
            seed,
        )
    ev.model = model_summary(desc, features)
    ev.settings.update({"slice_columns": columns, "importance_repeats": importance_repeats})
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(render_html(ev, desc))
    data = redact_obj(ev.to_dict())  # a bundle from an older kfgpu may hold a password
    if evaluation_path:
        Path(evaluation_path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    record = EvaluationRecord.from_dict(data)
    if card_path:
        Path(card_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_path).write_text(render_card_markdown(record))
    if card_html_path:
        Path(card_html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_html_path).write_text(render_card_html(record))
    # The bundle records its tracking URI redacted: without the masked password, MLflow's
    # own credentials (MLFLOW_TRACKING_USERNAME/PASSWORD) apply.
    recorded = without_masked(desc.lineage_value("mlflow_tracking_uri") or "")
    uri = tracking.resolve_tracking_uri(mlflow_tracking_uri or recorded)
    run_id = desc.lineage_value("mlflow_run_id")
    if track and uri and run_id:
        tracking.log_metrics(uri, run_id, {f"test_{k}": v for k, v in ev.metrics.items()})
    headline = ev.metrics.get(ev.headline, float("nan"))
    metrics = {f"test_{k}": v for k, v in ev.metrics.items()}
    metrics.update({f"baseline_{k}": v for k, v in ev.baseline.items()})
    iv = ev.intervals.get(ev.headline)
    return StepResult(
        metrics=metrics,
        summary=(
            f"held-out {ev.headline} {headline:.4f}"
            + (f" [{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "")
            + f" on {ev.rows} rows (constant predictor {ev.baseline.get(ev.headline, float('nan')):.4f})"
        ),
        output=EvaluationOutput(
            headline=ev.headline,
            confusion_matrix=ev.confusion_matrix,
            classes=[str(c) for c in ev.classes],
            roc_curve=ev.roc_curve,
            pr_curve=ev.pr_curve,
        ),
    )


def _stream_predictions(
    bundle: Any,
    test_path: str,
    *,
    target: str,
    keep: list[str],
    keep_features: bool,
    settings: StreamSettings | None,
    seed: int,
) -> tuple[ClassificationStream | RegressionStream, pd.DataFrame, np.ndarray]:
    """Read the test split in record batches, predict each through the served module and
    feed the metric accumulators; return them, the sampled rows' kept columns (in row
    order) and their labels."""
    import numpy as np

    from kfgpu.data.shards import open_shards
    from kfgpu.errors import ConfigError, SchemaError
    from kfgpu.evaluation.streaming import (
        ClassificationStream,
        RegressionStream,
        StreamSettings,
    )

    settings = settings or StreamSettings()
    shards = open_shards(test_path)
    names = shards.columns
    missing = [c for c in keep if c not in names]
    if missing:
        raise ConfigError(
            f"slice/sensitive column(s) {missing} are not in the held-out split; "
            f"available columns: {sorted(names)}"
        )
    if target not in names:
        raise SchemaError(
            f"the held-out split {test_path!r} has no target column {target!r} (the "
            f"bundle's target); its columns are {names}: pass the split engineer_features wrote"
        )
    # Missing inputs are left to the transform, whose error names them.
    inputs = [c for c in bundle.transform.input_columns if c in names]
    kept = list(dict.fromkeys([target, *keep, *(inputs if keep_features else [])]))
    read = list(dict.fromkeys([*inputs, target, *keep]))
    stream: ClassificationStream | RegressionStream
    desc = bundle.description
    if bundle.task == "classification":
        dist = desc.train_distribution or {}
        prior = np.asarray([dist.get(str(c), 0) for c in bundle.classes], dtype=np.float64)
        # A bundle written before decisions were stored is served by argmax.
        decision = bundle.decision or {"policy": "argmax", "rule": "argmax", "chosen_on": "-"}
        stream = ClassificationStream(
            bundle.classes,
            positive_class=decision.get("positive_class", desc.positive_class),
            prior=prior if prior.sum() > 0 else None,
            decision=decision,
            settings=settings,
            seed=seed,
        )
    else:
        stream = RegressionStream(train_mean=desc.target_mean, settings=settings, seed=seed)
    for frame in shards.iter_frames(read, batch_rows=settings.batch_rows):
        raw = bundle.predict_raw(frame[inputs])
        stream.update(frame[target].to_numpy(), raw, frame[kept])
    sample = stream.sample_frame()
    return stream, sample, sample[target].to_numpy()


def _importance(
    bundle: Any,
    frame: Any,
    y_true: Any,
    features: list[str],
    headline: str,
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    import numpy as np
    from sklearn import metrics as skm

    if bundle.task == "classification":
        index = {str(c): i for i, c in enumerate(bundle.classes)}
        y = np.asarray([index.get(str(v), -1) for v in y_true])
        k = len(bundle.classes)
        pos = index.get(str(bundle.description.positive_class), 1)

        def score(yy: Any, p: Any) -> float:
            if headline == "roc_auc" and len(np.unique(yy)) == k:
                if k == 2:
                    return float(skm.roc_auc_score(yy == pos, p[:, pos]))
                return float(skm.roc_auc_score(yy, p, multi_class="ovr", labels=list(range(k))))
            return float(np.mean(p.argmax(axis=1) == yy))

    else:
        y = np.asarray(y_true, dtype=np.float64)

        def score(yy: Any, p: Any) -> float:
            return float(skm.r2_score(yy, p)) if len(yy) >= 2 else 0.0

    from kfgpu.evaluation.importance import permutation_importance

    return permutation_importance(
        bundle.predict_raw, frame, y, score, columns=features, repeats=repeats, seed=seed
    )
