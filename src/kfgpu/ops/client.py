"""Build a ``kfp.Client`` from flags or environment, the ways ``kfp.Client`` authenticates.

Settings, each a flag of the ``kfgpu`` command or an environment variable:

========================  ==========================  =============================================
setting                   environment                 meaning
========================  ==========================  =============================================
``host``                  ``KFGPU_KFP_HOST``, then    the KFP API endpoint (``https://.../pipeline``);
                          kfp's ``KF_PIPELINES_       empty inside a pod: the in-cluster service
                          ENDPOINT``
``token``                 ``KFGPU_KFP_TOKEN``         a bearer token made outside kfgpu
                                                      (``kfp.Client(existing_token=...)``)
``token_path``            ``KFGPU_KFP_TOKEN_PATH``,   a projected service-account token file, re-read
                          then kfp's ``KF_PIPELINES_
                          SA_TOKEN_PATH``
                                                      on every request (``ServiceAccountTokenVolume
                                                      Credentials``); inside a pod the KFP default
                                                      ``/var/run/secrets/kubeflow/pipelines/token``
                                                      is used when it exists
``namespace``             ``KFGPU_KFP_NAMESPACE``     the profile namespace of a multi-user
                                                      deployment; empty for single-user
``ssl_ca_cert``           ``KFGPU_KFP_CA_CERT``       a CA bundle for a private TLS endpoint
========================  ==========================  =============================================

Every KFP API error becomes a one-line :class:`~kfgpu.errors.KfpApiError` naming what was being
done, the status and the server's message.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kfgpu.errors import ConfigError, KfpApiError

__all__ = [
    "DEFAULT_SA_TOKEN_PATH",
    "ENV_CA_CERT",
    "ENV_HOST",
    "ENV_NAMESPACE",
    "ENV_TOKEN",
    "ENV_TOKEN_PATH",
    "KFP_ENV_HOST",
    "KFP_ENV_TOKEN_PATH",
    "Connection",
    "api_call",
    "connect",
    "default_host",
    "in_cluster",
]

ENV_HOST = "KFGPU_KFP_HOST"
#: kfp's own variables (``kfp.client.client.KF_PIPELINES_ENDPOINT_ENV``,
#: ``kfp.client.KF_PIPELINES_SA_TOKEN_ENV``), read after kfgpu's.
KFP_ENV_HOST = "KF_PIPELINES_ENDPOINT"
KFP_ENV_TOKEN_PATH = "KF_PIPELINES_SA_TOKEN_PATH"
ENV_TOKEN = "KFGPU_KFP_TOKEN"
ENV_TOKEN_PATH = "KFGPU_KFP_TOKEN_PATH"
ENV_NAMESPACE = "KFGPU_KFP_NAMESPACE"
ENV_CA_CERT = "KFGPU_KFP_CA_CERT"

#: Where Kubeflow projects the pipelines-audience service-account token into a pod
#: (``kfp.client.KF_PIPELINES_SA_TOKEN_PATH``).
DEFAULT_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"

T = TypeVar("T")


def in_cluster() -> bool:
    """Whether this process runs in a Kubernetes pod (the service environment is set)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


@dataclass(frozen=True)
class Connection:
    """How to reach and authenticate to the KFP API. Empty strings mean "not set".

    Build one with :meth:`from_env` (flags win over environment variables).
    """

    host: str = ""
    token: str = ""
    token_path: str = ""
    namespace: str = ""
    ssl_ca_cert: str = ""

    @classmethod
    def from_env(
        cls,
        *,
        host: str | None = None,
        token: str | None = None,
        token_path: str | None = None,
        namespace: str | None = None,
        ssl_ca_cert: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> Connection:
        """Flags first (``None``: not given), then ``KFGPU_KFP_*`` variables, then kfp's own
        ``KF_PIPELINES_ENDPOINT`` and ``KF_PIPELINES_SA_TOKEN_PATH``."""
        env = os.environ if environ is None else environ

        def pick(flag: str | None, *names: str) -> str:
            if flag is not None:
                return flag.strip()
            return next((env[n].strip() for n in names if env.get(n, "").strip()), "")

        return cls(
            host=pick(host, ENV_HOST, KFP_ENV_HOST).rstrip("/"),
            token=pick(token, ENV_TOKEN),
            token_path=pick(token_path, ENV_TOKEN_PATH, KFP_ENV_TOKEN_PATH),
            namespace=pick(namespace, ENV_NAMESPACE),
            ssl_ca_cert=pick(ssl_ca_cert, ENV_CA_CERT),
        )

    def _token_file(self) -> str:
        if self.token_path:
            return self.token_path
        if in_cluster() and Path(DEFAULT_SA_TOKEN_PATH).is_file():
            return DEFAULT_SA_TOKEN_PATH
        return ""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for settings that cannot work, naming the fix."""
        if not self.host and not in_cluster():
            raise ConfigError(
                f"no KFP endpoint: pass --host URL or set {ENV_HOST} or {KFP_ENV_HOST} (e.g. "
                "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                "svc/ml-pipeline-ui 8080:80`); only inside a pod is the in-cluster service found "
                "on its own"
            )
        if self.host and not self.host.startswith(("http://", "https://")):
            raise ConfigError(f"--host {self.host!r} must start with http:// or https://")
        if self.token and self.token_path:
            raise ConfigError(
                "both a token (--token / KFGPU_KFP_TOKEN) and a token file (--token-path / "
                "KFGPU_KFP_TOKEN_PATH) are set; keep one"
            )
        if self.token_path and not Path(self.token_path).is_file():
            raise ConfigError(
                f"token file {self.token_path!r} (--token-path / {ENV_TOKEN_PATH}) does not "
                "exist; mount a projected service-account token with audience "
                "pipelines.kubeflow.org there"
            )
        if self.ssl_ca_cert and not Path(self.ssl_ca_cert).is_file():
            raise ConfigError(f"CA certificate {self.ssl_ca_cert!r} does not exist")


def default_host(environ: dict[str, str] | None = None) -> str:
    """The KFP endpoint the environment names (``KFGPU_KFP_HOST``, else ``KF_PIPELINES_ENDPOINT``),
    or ``""``."""
    return Connection.from_env(environ=environ).host


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """kfp.Client prints UI links to stdout and warns that it needs a KFP >= 2.0 backend;
    the kfgpu command prints its own lines."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"kfp\.")
        yield


def _server_message(body: Any) -> str:
    if not body:
        return ""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:300]
    return str(data)[:300]


def api_call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a kfp.Client method; turn its API and connection errors into :class:`KfpApiError`.

    Args:
        what: what is being done, for the message ("list recurring runs").
        fn: the bound client method.
    """
    import kfp_server_api
    import urllib3

    try:
        with _quiet():
            return fn(*args, **kwargs)
    except kfp_server_api.ApiException as e:
        hint = ""
        if e.status in (401, 403):
            hint = (
                "; check the credentials (--token, --token-path) and, on a multi-user "
                "deployment, --namespace"
            )
        raise KfpApiError(
            f"KFP API refused to {what}: HTTP {e.status} {e.reason or ''}: "
            f"{_server_message(e.body)}{hint}",
            status=int(e.status or 0),
        ) from e
    except urllib3.exceptions.HTTPError as e:
        raise KfpApiError(f"cannot reach the KFP API to {what}: {e}", status=0) from e


def connect(conn: Connection) -> Any:
    """A ``kfp.Client`` for ``conn`` (validated first).

    Raises:
        ConfigError: the settings cannot work (no host outside a pod, a missing token file).
        KfpApiError: the endpoint did not answer the client's first call (healthz).
    """
    conn.validate()
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    kwargs: dict[str, Any] = {"host": conn.host or None}
    if conn.namespace:
        kwargs["namespace"] = conn.namespace
    if conn.ssl_ca_cert:
        kwargs["ssl_ca_cert"] = conn.ssl_ca_cert
    if conn.token:
        kwargs["existing_token"] = conn.token
    elif token_file := conn._token_file():
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=token_file)
    return api_call("connect (healthz)", kfp.Client, **kwargs)
