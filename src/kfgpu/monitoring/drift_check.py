"""The model-aware drift check every caller runs: CLI, detect_drift, validate_batch, monitor.

:func:`kfgpu.validation.drift.detect_drift` decides from profiles; this module adds what a
model bundle knows, so that the verdict weighs what the model depends on:

* **feature importance**: the permutation sensitivity of the model's output on the
  reference profile's row sample (:func:`feature_importance`): for each input, the mean
  change of the output when that input's values are shuffled across rows (half the L1
  distance between probability vectors for classification, the absolute change over the
  output's standard deviation for regression), normalised to sum to 1. It needs no labels
  and is computed from the bundle and its reference alone. A reference column that is not a
  model input weighs 0.
* **the model's output**: the probability of the positive class (binary classification),
  the predicted value (regression) or the predicted class (multi-class), profiled on the
  reference sample and on every current row, and tested like a column.

With a profile or a data set as the reference there is no model, and the verdict falls back
to the share-of-columns rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.validation.drift import PREDICTION_COLUMN, DriftConfig, DriftResult, detect_drift

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from kfgpu.bundle import Bundle
    from kfgpu.validation.profile import ColumnKind, ColumnProfile, ReferenceProfile

__all__ = [
    "IMPORTANCE_ROWS",
    "ModelView",
    "SourceCheck",
    "check_frame",
    "check_source",
    "feature_importance",
    "is_bundle",
]

IMPORTANCE_ROWS = 2000
"""Reference sample rows the permutation sensitivity is computed on."""


def is_bundle(uri: str) -> bool:
    """Whether ``uri`` is a local model bundle directory."""
    from kfgpu.bundle import DESCRIPTION_FILE

    path = Path(uri)
    return "://" not in uri and path.is_dir() and (path / DESCRIPTION_FILE).is_file()


def _output_kind(bundle: Bundle) -> ColumnKind:
    if bundle.task == "classification" and len(bundle.classes) > 2:
        return "categorical"
    return "numeric"


def _outputs(bundle: Bundle, df: pd.DataFrame) -> np.ndarray:
    """The tested output: P(positive class), the value, or the predicted class."""
    import numpy as np

    raw = bundle.predict_raw(df)
    if bundle.task != "classification":
        return np.asarray(raw, dtype=np.float64)
    if raw.shape[1] == 2:
        return np.asarray(raw[:, 1], dtype=np.float64)
    return np.asarray([str(c) for c in bundle.classes], dtype=object)[raw.argmax(axis=1)]


def feature_importance(
    bundle: Bundle, sample: pd.DataFrame, *, rows: int = IMPORTANCE_ROWS, seed: int = 0
) -> dict[str, float]:
    """Permutation sensitivity of the model's output per input column, summing to 1.

    Args:
        bundle: the loaded model.
        sample: reference rows holding the model's inputs.
        rows: at most this many rows are used.
        seed: the shuffles' seed.

    Returns:
        ``{input column: share}``; all zero when no input moves the output.
    """
    import numpy as np

    inputs = [c for c in bundle.transform.input_columns if c in sample.columns]
    x = sample[inputs].head(rows).reset_index(drop=True)
    if x.empty:
        return dict.fromkeys(inputs, 0.0)
    base = bundle.predict_raw(x)
    scale = 1.0
    if bundle.task != "classification":
        scale = float(np.std(base)) or 1.0
    rng = np.random.default_rng(seed)
    raw: dict[str, float] = {}
    for name in inputs:
        shuffled = x.copy()
        shuffled[name] = x[name].to_numpy()[rng.permutation(len(x))]
        out = bundle.predict_raw(shuffled)
        if bundle.task == "classification":
            raw[name] = float(0.5 * np.abs(out - base).sum(axis=1).mean())
        else:
            raw[name] = float(np.abs(out - base).mean() / scale)
    total = sum(raw.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in raw.items()}


@dataclass(frozen=True)
class ModelView:
    """What the drift verdict needs from a model: its importance and its output.

    Attributes:
        bundle: the loaded bundle.
        importance: :func:`feature_importance` on the reference sample.
        reference_outputs: the output's profile on the reference sample.
    """

    bundle: Bundle
    importance: dict[str, float]
    reference_outputs: ColumnProfile

    @classmethod
    def from_bundle(cls, path: str, reference: ReferenceProfile) -> ModelView | None:
        """Load the bundle at ``path``; None when the reference holds no row sample."""
        from kfgpu.bundle import load_bundle

        sample = reference.sample
        if sample is None or not len(sample):
            return None
        bundle = load_bundle(path)
        if any(c not in sample.columns for c in bundle.transform.input_columns):
            return None
        out = _empty_outputs(_output_kind(bundle))
        out.stats.add(_outputs(bundle, sample))
        return cls(bundle, feature_importance(bundle, sample), out)

    @property
    def inputs(self) -> list[str]:
        """The model's input columns."""
        return list(self.bundle.transform.input_columns)

    def output_profile(self, frames: Sequence[pd.DataFrame] | pd.DataFrame) -> ColumnProfile:
        """The output's profile over ``frames``."""
        import pandas as pd

        out = _empty_outputs(self.reference_outputs.kind)
        for frame in [frames] if isinstance(frames, pd.DataFrame) else frames:
            out.stats.add(_outputs(self.bundle, frame))
        return out

    def to_dict(self) -> dict[str, Any]:
        """What drift.json records about the model."""
        ranked = sorted(self.importance.items(), key=lambda kv: -kv[1])
        return {
            "bundle": str(self.bundle.path),
            "task": self.bundle.task,
            "output": (
                f"P({self.bundle.description.target}={self.bundle.classes[1]})"
                if self.bundle.task == "classification" and len(self.bundle.classes) == 2
                else ("predicted class" if self.bundle.task == "classification" else "value")
            ),
            "reference_output_rows": self.reference_outputs.stats.total,
            "importance_method": (
                "permutation sensitivity of the model output on "
                f"{min(IMPORTANCE_ROWS, self.reference_outputs.stats.total)} reference rows"
            ),
            "importance": [{"feature": k, "share": round(v, 6)} for k, v in ranked],
        }


def _empty_outputs(kind: ColumnKind) -> ColumnProfile:
    from kfgpu.validation.profile import CategoricalCounts, ColumnProfile, NumericSketch

    stats = NumericSketch() if kind == "numeric" else CategoricalCounts()
    return ColumnProfile(PREDICTION_COLUMN, kind, stats)


def check_frame(
    reference: ReferenceProfile,
    df: pd.DataFrame,
    config: DriftConfig | None = None,
    *,
    model: ModelView | None = None,
    exclude: Sequence[str] = (),
) -> DriftResult | None:
    """The drift verdict for an in-memory frame (None when no column is shared)."""
    from kfgpu.validation.drift import frame_drift

    importance: Mapping[str, float] | None = None
    predictions = None
    if model is not None:
        importance = model.importance
        if all(c in df.columns for c in model.inputs):
            predictions = (model.reference_outputs, model.output_profile(df))
    return frame_drift(
        reference,
        df,
        config,
        exclude=exclude,
        importance=importance,
        predictions=predictions,
    )


@dataclass(frozen=True)
class SourceCheck:
    """What :func:`check_source` found.

    Attributes:
        result: the verdict.
        reference: the reference profile as loaded.
        current: the current data's profile.
        absent: reference columns the current data lacks (typically the label).
        model: the model view, when the reference was a bundle.
    """

    result: DriftResult
    reference: ReferenceProfile
    current: ReferenceProfile
    absent: list[str]
    model: ModelView | None

    def to_dict(self) -> dict[str, Any]:
        """drift.json: the verdict, the model, and the columns not compared."""
        data = self.result.to_dict()
        if self.absent:
            # Typically the label, which serving data does not carry; said, never hidden.
            data["notes"] = [
                *data["notes"],
                f"not in the current data, not compared: {self.absent}",
            ]
            data["absent_columns"] = self.absent
        data["model"] = None if self.model is None else self.model.to_dict()
        if self.model is not None and self.result.prediction is None:
            data["notes"] = [
                *data["notes"],
                "the current data lacks model inputs: the model's output was not tested",
            ]
        return data


def _profile_with_outputs(
    model: ModelView, uri: str, chunk_rows: int, **kw: Any
) -> tuple[ReferenceProfile, ColumnProfile | None]:
    """One pass over ``uri``: its profile, and the model's output on every row (None when
    a chunk lacks a model input)."""
    from kfgpu.validation.profile import build_profile, iter_source

    out = _empty_outputs(model.reference_outputs.kind)
    complete = True

    def chunks() -> Iterator[pd.DataFrame]:
        nonlocal complete
        for frame in iter_source(uri, chunk_rows):
            if complete and all(c in frame.columns for c in model.inputs):
                out.stats.add(_outputs(model.bundle, frame))
            else:
                complete = False
            yield frame

    current = build_profile(chunks(), **kw)
    return current, (out if complete else None)


def check_source(
    reference_uri: str,
    current_uri: str,
    config: DriftConfig | None = None,
    *,
    sample_rows: int = 5000,
    chunk_rows: int = 250_000,
) -> SourceCheck:
    """Stream ``current_uri`` once: profile every row and, with a bundle as the reference,
    run the model on every row; then decide.

    Args:
        reference_uri: a model bundle (model-aware verdict), a profile, or a data set.
        current_uri: any data URI.
        config: the drift settings.
        sample_rows: rows of the current data kept as a sample (for the HTML report).
        chunk_rows: rows per streamed chunk.
    """
    from kfgpu.bundle import load_reference
    from kfgpu.validation.profile import profile_source

    reference = load_reference(reference_uri)
    model = ModelView.from_bundle(reference_uri, reference) if is_bundle(reference_uri) else None
    columns = list(reference.columns)
    categorical = reference.categorical_columns()
    outputs: ColumnProfile | None = None
    if model is None:
        current = profile_source(
            current_uri, columns=columns, categorical=categorical, sample_rows=sample_rows
        )
    else:
        current, outputs = _profile_with_outputs(
            model,
            current_uri,
            chunk_rows,
            columns=columns,
            categorical=categorical,
            sample_rows=sample_rows,
        )
    absent = [c for c in reference.columns if c not in current.columns]
    result = detect_drift(
        reference.select([c for c in reference.columns if c not in absent]),
        current,
        config,
        importance=None if model is None else model.importance,
        predictions=(
            None if model is None or outputs is None else (model.reference_outputs, outputs)
        ),
    )
    if model is None and is_bundle(reference_uri):
        result.notes.append(
            "the bundle's reference profile holds no row sample with the model's inputs: "
            "the verdict could not use the model and fell back to the share of columns"
        )
    return SourceCheck(result, reference, current, absent, model)
