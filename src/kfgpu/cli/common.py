"""What the command groups share: the context object, argument parsing, common options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from kfgpu.errors import ConfigError

__all__ = [
    "ALLOW_OPTION",
    "PATH_PARAMS",
    "URI_OPTION",
    "WORKDIR_OPTION",
    "CliState",
    "kfp_connection",
    "kfp_options",
    "local_uri",
    "parse_params",
    "registry_uri",
    "tracking_uri",
]


@dataclass
class CliState:
    """click's context object (``ctx.obj``) for one ``kfgpu`` invocation.

    :func:`kfgpu.cli.main` makes it and hands it to click; the ``kfgpu`` group's options
    fill it in; :func:`kfgpu.cli.main` reads it back when a command fails.
    """

    debug: bool = False


def local_uri(value: str) -> str:
    """Absolute path for a local file (steps run as subprocesses); URIs pass through."""
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


#: Pipeline parameters that may name a local file.
PATH_PARAMS = ("data_uri", "schema_uri", "feature_spec")


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE`` strings (``--param``, repeatable) as a dict; the value may hold ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--param {item!r} must look like NAME=VALUE, e.g. --param max_epochs=5"
            )
        out[key.strip()] = value
    return out


def tracking_uri(workdir: str, *, enabled: bool) -> str:
    """Where ``kfgpu run`` tracks: ``MLFLOW_TRACKING_URI``, else a store under the workdir."""
    from kfgpu.registry import local_tracking_uri

    if not enabled:
        return ""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(workdir)


def registry_uri(explicit: str, workdir: str, *, must_exist: bool = False) -> str:
    """The registry a ``kfgpu model`` command uses: ``--tracking-uri``, else
    ``MLFLOW_TRACKING_URI``, else the local store of ``--workdir``.

    Raises:
        ConfigError: ``must_exist`` and the workdir has no store (MLflow would create an
            empty one and answer as if the registry were empty).
    """
    from kfgpu.registry import local_tracking_uri

    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(workdir)
    if must_exist and uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ConfigError(
                f"no model store: {db} does not exist (--workdir {workdir!r} holds no "
                "`kfgpu run` yet); run from the workdir of a run, pass --workdir or "
                "--tracking-uri, or set MLFLOW_TRACKING_URI"
            )
    return uri


URI_OPTION = click.option(
    "--tracking-uri",
    default="",
    help="MLflow tracking/registry URI; default MLFLOW_TRACKING_URI, else the local store "
    "of --workdir.",
)
WORKDIR_OPTION = click.option(
    "--workdir",
    default="kfgpu-work",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The `kfgpu run` workdir whose local MLflow store to use.",
)
ALLOW_OPTION = click.option(
    "--allow-signature-change",
    is_flag=True,
    help="Let a version of another task, target or input signature replace the champion.",
)


def kfp_options(f: Any) -> Any:
    """--host, --namespace, --token, --token-path, --ca-cert; each defaults to KFGPU_KFP_*."""
    options = [
        click.option(
            "--host",
            envvar="KFGPU_KFP_HOST",
            default=None,
            help="The KFP API, e.g. https://kubeflow.example.com/pipeline [env KFGPU_KFP_HOST, "
            "then kfp's KF_PIPELINES_ENDPOINT]; "
            "empty inside a pod: the in-cluster service.",
        ),
        click.option(
            "--namespace",
            "-n",
            envvar="KFGPU_KFP_NAMESPACE",
            default=None,
            help="Profile namespace of a multi-user deployment [env KFGPU_KFP_NAMESPACE].",
        ),
        click.option(
            "--token",
            envvar="KFGPU_KFP_TOKEN",
            default=None,
            help="A bearer token made outside kfgpu [env KFGPU_KFP_TOKEN].",
        ),
        click.option(
            "--token-path",
            envvar="KFGPU_KFP_TOKEN_PATH",
            default=None,
            help="A projected service-account token file, re-read per request "
            "[env KFGPU_KFP_TOKEN_PATH; in a pod the KFP default path when present].",
        ),
        click.option(
            "--ca-cert",
            envvar="KFGPU_KFP_CA_CERT",
            default=None,
            help="CA bundle of a private TLS endpoint [env KFGPU_KFP_CA_CERT].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def kfp_connection(kw: dict[str, Any]) -> Any:
    """The :class:`~kfgpu.ops.client.Connection` that :func:`kfp_options` describe (popped
    from the command's keyword arguments)."""
    from kfgpu.ops.client import Connection

    return Connection.from_env(
        host=kw.pop("host"),
        token=kw.pop("token"),
        token_path=kw.pop("token_path"),
        namespace=kw.pop("namespace"),
        ssl_ca_cert=kw.pop("ca_cert"),
    )
