"""MLflow "models from code" entry: logged with each registered version, run at load."""

from mlflow.models import set_model

from kfgpu.registry.pyfunc import BundleModel

set_model(BundleModel())
