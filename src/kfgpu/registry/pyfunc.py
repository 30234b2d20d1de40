"""The MLflow pyfunc wrapper of a kfgpu bundle: ``mlflow.pyfunc.load_model`` serves it.

The registered model holds the bundle itself as an artifact; ``load_context`` verifies
and loads it, ``predict`` takes a DataFrame of raw rows and returns the bundle's
predictions (``prediction`` plus ``proba_<class>`` for classification). ``prediction``
applies the bundle's stored decision rule (a binary model's threshold, chosen on the
validation rows at training time; see :mod:`kfgpu.decision`), as every other consumer
of the bundle does.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

__all__ = ["BundleModel"]


class BundleModel(PythonModel):
    """A kfgpu bundle as an MLflow python model."""

    def load_context(self, context: Any) -> None:
        from kfgpu.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.bundle.predict(model_input)
