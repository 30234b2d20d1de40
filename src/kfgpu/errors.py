"""The one error tree of kfgpu.

Every error kfgpu raises on purpose derives from :class:`KfgpuError`, so a caller can catch
them all with one ``except`` and a CLI can print them as one line. Messages name the field,
the value that was wrong and how to fix it.

::

    KfgpuError
    ├── ConfigError            a setting has a value kfgpu cannot use
    ├── DataError              input data cannot be used
    │   ├── DataNotFoundError      the URI points at nothing
    │   ├── DataFormatError        the file is not a table kfgpu can read
    │   ├── EmptyDataError         the table has no rows (or no usable columns)
    │   └── SchemaError            a column is missing or has the wrong type
    ├── ValidationError        validation found error-level anomalies (all listed)
    ├── DriftDetected          the data drifted and the caller asked to fail on drift
    ├── TrainingError          training could not produce a model
    ├── BundleError            a model bundle is missing, incomplete or corrupt
    │   └── ChecksumError          a bundle file does not match its recorded checksum
    ├── RegistryError          a model registry operation cannot be done (no such version,
    │                          no challenger to promote, a concurrent change)
    ├── ServingError           a model cannot be served or deployed
    │   ├── RequestError           a prediction request is malformed (names the field)
    │   └── DeployError            an InferenceService rollout failed (and was rolled back)
    ├── PipelineError          a local pipeline run failed
    └── OpsError               a Kubeflow operation failed (upload, submit, schedule, doctor)
        └── KfpApiError            the KFP API answered with an error or not at all
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ChecksumError",
    "ConfigError",
    "DataError",
    "DataFormatError",
    "DataNotFoundError",
    "DeployError",
    "DriftDetected",
    "EmptyDataError",
    "KfgpuError",
    "KfpApiError",
    "OpsError",
    "PipelineError",
    "RegistryError",
    "RequestError",
    "SchemaError",
    "ServingError",
    "TrainingError",
    "ValidationError",
]


class KfgpuError(Exception):
    """Root of every error kfgpu raises on purpose."""


class ConfigError(KfgpuError, ValueError):
    """A setting has a value kfgpu cannot use."""


class DataError(KfgpuError):
    """Input data cannot be used.

    Attributes:
        check: the anomaly name a validation report files this error under
            (``not_found``, ``binary_content``, ``encoding``, ``parse`` ...).
    """

    default_check = "unusable"

    def __init__(self, message: str, *, check: str | None = None) -> None:
        super().__init__(message)
        self.check = check or self.default_check


class DataNotFoundError(DataError, FileNotFoundError):
    """The data URI points at nothing."""

    default_check = "not_found"


class DataFormatError(DataError, ValueError):
    """The file is not a table in a format kfgpu reads (CSV, Parquet, JSON lines)."""

    default_check = "unreadable"


class EmptyDataError(DataError, ValueError):
    """The table has no rows or no usable columns."""

    default_check = "empty"


class SchemaError(DataError, ValueError):
    """A column is missing or has a type kfgpu cannot use."""

    default_check = "schema"


class ValidationError(KfgpuError):
    """Validation found error-level anomalies.

    Attributes:
        anomalies: every error-level anomaly, each a mapping with at least ``column``,
            ``check`` and ``message``.
    """

    def __init__(self, message: str, anomalies: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.anomalies = list(anomalies or [])


class DriftDetected(KfgpuError):
    """The current data drifted from the reference and the caller asked to fail on drift."""


class TrainingError(KfgpuError):
    """Training could not produce a model."""


class BundleError(KfgpuError):
    """A model bundle is missing, incomplete or corrupt."""


class ChecksumError(BundleError):
    """A bundle file does not match the checksum recorded when it was written."""


class RegistryError(KfgpuError):
    """A model registry operation cannot be done: no such model or version, nothing to
    promote or roll back to, or the champion changed under a compare-and-set."""


class ServingError(KfgpuError):
    """A model cannot be served or deployed."""


class RequestError(ServingError, ValueError):
    """A prediction request is malformed.

    Attributes:
        field: where in the request the problem is (``instances[3].amount``,
            ``inputs.country``), as the message names it.
        status: the HTTP status the server answers with (400, 413 or 415).
    """

    def __init__(self, message: str, *, field: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class DeployError(ServingError):
    """An InferenceService rollout failed: not Ready in time, a traffic split other than
    the one requested, or a failed smoke request. ``rolled_back`` tells whether the
    previous state was restored.

    Attributes:
        reason: ``not_ready``, ``traffic``, ``smoke`` or ``api``.
        rolled_back: whether the previous spec was restored (or the new service deleted).
    """

    def __init__(self, message: str, *, reason: str, rolled_back: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.rolled_back = rolled_back


class PipelineError(KfgpuError):
    """A local pipeline run failed."""


class OpsError(KfgpuError):
    """A Kubeflow operation failed: an upload, a run, a schedule apply or a preflight."""


class KfpApiError(OpsError):
    """The Kubeflow Pipelines API answered with an error or could not be reached.

    Attributes:
        status: the HTTP status (0 when the server could not be reached).
    """

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
