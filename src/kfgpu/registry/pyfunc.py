"""The MLflow pyfunc wrapper of a kfgpu bundle: ``mlflow.pyfunc.load_model`` serves it.

The registered model holds the bundle itself as an artifact; ``load_context`` verifies
and loads it, ``predict`` takes a DataFrame of raw rows and returns the bundle's
predictions (``prediction`` plus ``proba_<class>`` for classification). When the
evaluation chose a binary decision threshold, a ``decision`` column applies it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

__all__ = ["BundleModel"]


class BundleModel(PythonModel):
    """A kfgpu bundle as an MLflow python model."""

    def load_context(self, context: Any) -> None:
        from kfgpu.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])
        self.threshold: float | None = None
        self.positive: Any = None
        evaluation = context.artifacts.get("evaluation")
        if evaluation and Path(evaluation).is_file():
            thr = json.loads(Path(evaluation).read_text()).get("threshold", {})
            if thr.get("policy") not in (None, "argmax") and thr.get("value") is not None:
                self.threshold = float(thr["value"])
                self.positive = thr.get("positive_class")

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        out = self.bundle.predict(model_input)
        if self.threshold is not None and len(self.bundle.classes) == 2:
            pos = self.positive
            neg = next(c for c in self.bundle.classes if str(c) != str(pos))
            out["decision"] = [pos if p >= self.threshold else neg for p in out[f"proba_{pos}"]]
        return out
