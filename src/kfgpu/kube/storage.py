"""Object-storage credentials (S3-compatible and GCS) for pipeline steps and KServe.

One Kubernetes Secret, :data:`STORAGE_SECRET` (``kfgpu-storage``) by default, serves both
sides; every key is optional, so it holds S3 keys, a GCS key, or both:

=====================================  =============================================
key                                    used as
=====================================  =============================================
``AWS_ACCESS_KEY_ID``                  S3 access key (s3fs, boto3, MLflow, KServe)
``AWS_SECRET_ACCESS_KEY``              S3 secret key
``AWS_SESSION_TOKEN``                  S3 session token (temporary credentials)
``AWS_DEFAULT_REGION``                 S3 region
``AWS_ENDPOINT_URL``                   an S3-compatible endpoint (MinIO, Ceph, R2 ...)
``gcloud-application-credentials.json``  a GCS service-account key (the file name
                                       KServe's storage initializer reads)
=====================================  =============================================

* **Pipeline steps** (:func:`use_object_storage`, applied by ``kfgpu.pipelines`` to every
  step that reads or writes data): the S3 keys as environment variables of the same names,
  and the Secret mounted at :data:`MOUNT_PATH`; both ``optional``, so a run without the
  Secret starts as before (anonymous or workload-identity access). :data:`GCS_FILE_ENV`
  names the GCS key's path; :func:`apply_gcs_credentials` (run by every kfgpu step) sets
  ``GOOGLE_APPLICATION_CREDENTIALS`` to it only when the file is really there, because
  Google's clients fail on a variable that names a missing file.
* **KServe** reads storage credentials from the predictor's service account: the Secrets it
  lists, and the ``serving.kserve.io/s3-*`` annotations on that account or Secret for the
  endpoint. :func:`build_storage_service_account` renders such an account;
  ``manifests/serving`` ships one (``kfgpu-serving``) and ``manifests/secrets`` generates the
  Secret from a git-ignored file.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from kfgpu.errors import ConfigError

__all__ = [
    "DATA_INPUTS",
    "GCS_FILE_ENV",
    "GCS_KEY",
    "MOUNT_PATH",
    "S3_KEYS",
    "STORAGE_SECRET",
    "KServeStorage",
    "apply_gcs_credentials",
    "build_storage_service_account",
    "use_object_storage",
    "use_object_storage_on_data_steps",
]

#: The default name of the object-storage Secret (pipeline parameter ``storage_secret``).
STORAGE_SECRET = "kfgpu-storage"
#: Secret keys exposed to pipeline steps as environment variables of the same names.
S3_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
)
#: The GCS service-account key in the Secret (KServe's default credential file name).
GCS_KEY = "gcloud-application-credentials.json"
#: Where pipeline steps see the Secret's files.
MOUNT_PATH = "/var/run/secrets/kfgpu/storage"
#: The environment variable naming the GCS key file a step may find at ``MOUNT_PATH``.
GCS_FILE_ENV = "KFGPU_GCS_CREDENTIALS_FILE"
#: Component inputs that name data outside KFP's artifact store (a URI a step reads or
#: writes, or an MLflow server whose artifact store may be S3/GCS): a step with any of them
#: gets the Secret.
DATA_INPUTS = frozenset(
    {
        "checkpoint_dir",
        "data_uri",
        "labels_uri",
        "logs_uri",
        "mlflow_tracking_uri",
        "model_uri",
        "reference_uri",
        "schema_uri",
        "storage_uri",
    }
)
_GOOGLE_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_S3_ANNOTATION = "serving.kserve.io/s3-"


def use_object_storage(task: Any, secret: Any = STORAGE_SECRET) -> Any:
    """Give a pipeline task the object-storage Secret, when it exists; return the task.

    Args:
        task: a ``PipelineTask`` inside a ``@dsl.pipeline`` body.
        secret: the Secret's name: a string or a pipeline parameter (``storage_secret``).
    """
    from kfp import kubernetes

    kubernetes.use_secret_as_env(task, secret, {k: k for k in S3_KEYS}, optional=True)
    kubernetes.use_secret_as_volume(task, secret, mount_path=MOUNT_PATH, optional=True)
    task.set_env_variable(GCS_FILE_ENV, f"{MOUNT_PATH}/{GCS_KEY}")
    return task


def use_object_storage_on_data_steps(secret: Any = STORAGE_SECRET) -> list[str]:
    """:func:`use_object_storage` on every step of the pipeline being defined that takes
    one of :data:`DATA_INPUTS`; call it last in a ``@dsl.pipeline`` body.

    Returns:
        the names of the tasks given the Secret.

    Raises:
        ConfigError: called outside a pipeline definition.
    """
    from kfp.dsl import pipeline_context

    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise ConfigError(
            "use_object_storage_on_data_steps() was called outside a @dsl.pipeline body; "
            "call it as the pipeline function's last statement"
        )
    given = []
    for name, task in pipeline.tasks.items():
        if set(task.component_spec.inputs or {}) & DATA_INPUTS:
            use_object_storage(task, secret)
            given.append(name)
    return given


def apply_gcs_credentials(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Point ``GOOGLE_APPLICATION_CREDENTIALS`` at the mounted GCS key, if there is one.

    Does nothing when the variable is already set, when :data:`GCS_FILE_ENV` is unset, or
    when the file it names does not exist (no GCS key in the Secret, or no Secret).

    Returns:
        the path set, or None.
    """
    env = os.environ if environ is None else environ
    path = env.get(GCS_FILE_ENV, "")
    if env.get(_GOOGLE_ENV) or not path or not os.path.isfile(path):
        return None
    env[_GOOGLE_ENV] = path
    return path


@dataclass(frozen=True)
class KServeStorage:
    """How KServe's storage initializer reaches an S3-compatible store.

    Attributes:
        secret: the Secret with the credentials (see the module docstring).
        s3_endpoint: ``host[:port]`` of the S3 API, e.g. ``s3.amazonaws.com`` or
            ``minio.minio:9000``; empty: KServe's configured default.
        s3_region: the region; empty: KServe's default.
        s3_use_https: False for a plain-HTTP endpoint (an in-cluster MinIO).
        s3_verify_ssl: False to skip certificate checks (self-signed endpoints).
        s3_anonymous: use anonymous access and ignore the Secret's keys.
    """

    secret: str = STORAGE_SECRET
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_use_https: bool = True
    s3_verify_ssl: bool = True
    s3_anonymous: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str) or not _NAME.match(self.secret):
            raise ConfigError(
                f"KServeStorage.secret={self.secret!r} is not a Secret name; use lower-case "
                "letters, digits, '-' and '.'"
            )
        if "://" in self.s3_endpoint:
            raise ConfigError(
                f"KServeStorage.s3_endpoint={self.s3_endpoint!r} has a scheme; give host[:port] "
                "and set s3_use_https instead"
            )

    def annotations(self) -> dict[str, str]:
        """The ``serving.kserve.io/s3-*`` annotations KServe reads from the account."""
        out = {
            f"{_S3_ANNOTATION}usehttps": "1" if self.s3_use_https else "0",
            f"{_S3_ANNOTATION}verifyssl": "1" if self.s3_verify_ssl else "0",
        }
        if self.s3_endpoint:
            out[f"{_S3_ANNOTATION}endpoint"] = self.s3_endpoint
        if self.s3_region:
            out[f"{_S3_ANNOTATION}region"] = self.s3_region
        if self.s3_anonymous:
            out[f"{_S3_ANNOTATION}useanoncredential"] = "true"
        return dict(sorted(out.items()))


def build_storage_service_account(
    name: str, storage: KServeStorage | None = None, *, namespace: str = ""
) -> dict[str, Any]:
    """A ServiceAccount for an InferenceService's predictor that carries storage access.

    Set the InferenceService's ``serviceAccountName`` (``ServiceConfig.service_account``,
    ``kfgpu deploy --service-account``) to ``name``: KServe's storage initializer then
    downloads ``storageUri`` with the Secret's credentials and the annotations' endpoint.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"service account name={name!r} is invalid; use lower-case letters, digits, '-'"
        )
    cfg = storage or KServeStorage()
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "kfgpu"},
        "annotations": cfg.annotations(),
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        "secrets": [{"name": cfg.secret}],
    }
