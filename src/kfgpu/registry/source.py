"""Where a model bundle comes from: a local directory, or the MLflow model registry.

``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` name a registered version, which holds
the bundle under ``artifacts/bundle`` (:func:`kfgpu.registry.models.register_bundle`); it is
downloaded and then verified like any other bundle. The server, the monitor and batch
scoring all start here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kfgpu.errors import BundleError, ConfigError

__all__ = ["resolve_bundle", "resolve_source"]


def resolve_bundle(source: str, *, tracking_uri: str = "", download_dir: str = "") -> Path:
    """A local bundle directory for ``source`` (see :func:`resolve_source`)."""
    return resolve_source(source, tracking_uri=tracking_uri, download_dir=download_dir)[0]


def resolve_source(
    source: str, *, tracking_uri: str = "", download_dir: str = ""
) -> tuple[Path, str]:
    """A local bundle directory for ``source``: a path, or an MLflow ``models:/`` URI.

    ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` are resolved through the registry
    (``tracking_uri``, else ``MLFLOW_TRACKING_URI``) and the version's ``artifacts/bundle``
    is downloaded into ``download_dir`` (default: a new temporary directory).

    Raises:
        BundleError: the path does not exist, or the registry has no such version.

    Returns:
        The directory, and the registry version it is (``NAME/VERSION``, an alias resolved
        to its version) or, for a path, empty.
    """
    if not source.startswith("models:/"):
        path = Path(source[len("file://") :] if source.startswith("file://") else source)
        if not path.is_dir():
            raise BundleError(
                f"model bundle {source!r} does not exist or is not a directory; pass a bundle "
                "directory or a models:/NAME@ALIAS URI"
            )
        return path, ""
    import mlflow
    import mlflow.artifacts
    from mlflow import MlflowClient

    ref = source[len("models:/") :].strip("/")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    client = MlflowClient(tracking_uri=uri or None, registry_uri=uri or None)
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
        elif "/" in ref:
            name, version = ref.split("/", 1)
            client.get_model_version(name, version)
        else:
            raise ConfigError(
                f"model URI {source!r} names no version; use models:/NAME@ALIAS or "
                "models:/NAME/VERSION"
            )
    except ConfigError:
        raise
    except Exception as e:
        raise BundleError(
            f"cannot resolve {source!r} in the MLflow registry at {uri!r}: {e}"
        ) from e
    dst = download_dir or tempfile.mkdtemp(prefix="kfgpu-serve-")
    previous = mlflow.get_tracking_uri()
    if uri:
        mlflow.set_tracking_uri(uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}/artifacts/bundle", dst_path=dst
        )
    except Exception as e:
        raise BundleError(
            f"{source!r} (version {version}) holds no kfgpu bundle under artifacts/bundle: {e}"
        ) from e
    finally:
        mlflow.set_tracking_uri(previous)
    return Path(local), f"{name}/{version}"
