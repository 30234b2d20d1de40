"""The MLflow model registry: register bundles, promote a challenger, roll back.

Each registered version holds the kfgpu bundle behind a pyfunc wrapper
(``mlflow.pyfunc.load_model("models:/NAME@champion")`` serves it), the evaluation JSON,
the gate verdict and the model card, and carries lineage tags (``kfgpu.data_fingerprint``,
``kfgpu.pipeline_run``, ``kfgpu.code_version``, ...) and its key metrics
(``metric.<name>``). Aliases, not the deprecated stages, say what it is:

* ``challenger``: set on registration;
* ``champion``: set by :func:`promote` (from the challenger, or a version named);
* ``previous-champion``: the champion a promotion replaced; :func:`rollback` goes back
  to it.

A name holds one model: every version records its task, target and input signature
(:class:`~kfgpu.registry.identity.ModelIdentity`, tags ``kfgpu.task``, ``kfgpu.target``,
``kfgpu.inputs``, ``kfgpu.signature``), and :func:`promote` refuses a version that
differs from the champion in any of them unless ``allow_signature_change`` is given.

Promotions and rollbacks are serialised: each runs under a lock, a registered model named
``<NAME>.kfgpu-lock`` whose creation the registry's unique names make atomic (the loser
of a race gets "already exists" and waits). Under the lock the sequence reads the
aliases, checks them (``expect_champion`` makes it a compare-and-set), sets them, appends
an event to the ``kfgpu.history`` tag of the model and re-reads to confirm. A lock older
than ``stale_after`` seconds (a crashed holder) is broken.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu._redact import redact_obj
from kfgpu.errors import RegistryError
from kfgpu.registry.identity import SIGNATURE_FIX, ModelIdentity

if TYPE_CHECKING:
    from kfgpu.evaluation.records import EvaluationRecord, GateVerdict

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "champion_evaluation",
    "check_same_model",
    "history",
    "list_models",
    "list_versions",
    "promote",
    "register_bundle",
    "rollback",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous-champion"
LOCK_SUFFIX = ".kfgpu-lock"
HISTORY_TAG = "kfgpu.history"
#: Events kept in the history tag (older ones drop off; the registry keeps the versions).
HISTORY_KEEP = 30


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if not uri:
        raise RegistryError(
            "no MLflow tracking URI: pass --tracking-uri / mlflow_tracking_uri or set "
            "MLFLOW_TRACKING_URI"
        )
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _code(e: Exception) -> str:
    return str(getattr(e, "error_code", ""))


def _aliases(client: Any, name: str) -> dict[str, str]:
    try:
        rm = client.get_registered_model(name)
    except Exception as e:
        if "RESOURCE_DOES_NOT_EXIST" in _code(e):
            raise RegistryError(
                f"registered model {name!r} does not exist; register a bundle first "
                "(kfgpu model register, or the register_model component)"
            ) from e
        raise
    return {str(k): str(v) for k, v in (rm.aliases or {}).items()}


def _history(client: Any, name: str) -> list[dict[str, Any]]:
    tags = client.get_registered_model(name).tags or {}
    try:
        return list(json.loads(tags.get(HISTORY_TAG, "[]")))
    except json.JSONDecodeError:
        return []


# ---------------------------------------------------------------- the lock


@contextlib.contextmanager
def _locked(
    client: Any, name: str, *, timeout: float = 60.0, stale_after: float = 120.0
) -> Iterator[str]:
    """Hold ``<name>.kfgpu-lock`` (an atomic create) for the body; yield the owner id."""
    lock = name + LOCK_SUFFIX
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={
                    "kfgpu.lock": "true",
                    "kfgpu.lock.owner": owner,
                    "kfgpu.lock.at": f"{time.time():.3f}",
                },
                description=f"kfgpu promotion lock for {name!r}; safe to delete if stale",
            )
            break
        except Exception as e:
            if "RESOURCE_ALREADY_EXISTS" not in _code(e):
                raise
        try:  # held: break it if its holder is long gone
            tags = client.get_registered_model(lock).tags or {}
            if time.time() - float(tags.get("kfgpu.lock.at", "inf")) > stale_after:
                client.delete_registered_model(lock)
                continue
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" not in _code(e):
                raise
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"could not take the promotion lock {lock!r} within {timeout:g}s; another "
                "promotion is running (or delete the lock model if its holder crashed)"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    try:
        yield owner
    finally:
        with contextlib.suppress(Exception):
            client.delete_registered_model(lock)


def _record(client: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    events = _history(client, name)
    event = {
        "seq": (events[-1]["seq"] + 1) if events else 1,
        "time": round(time.time(), 3),
        **event,
    }
    events = [*events, event][-HISTORY_KEEP:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(events, separators=(",", ":")))
    return event


# ---------------------------------------------------------------- register


def _metric_tags(evaluation: EvaluationRecord | None) -> dict[str, str]:
    if evaluation is None:
        return {}
    tags = {f"metric.{k}": f"{v:.6g}" for k, v in evaluation.metrics.items()}
    if evaluation.headline:
        tags["kfgpu.headline"] = evaluation.headline
    return tags


def register_bundle(
    bundle_path: str,
    *,
    name: str,
    tracking_uri: str,
    evaluation: EvaluationRecord | Mapping[str, Any] | None = None,
    verdict: GateVerdict | Mapping[str, Any] | None = None,
    card: str = "",
    alias: str = CHALLENGER,
    tags: Mapping[str, str] | None = None,
    experiment: str = "",
) -> dict[str, Any]:
    """Register the bundle as a new version of ``name`` with a pyfunc wrapper.

    Logs a run (``register-<name>``) holding the model, creates the version with lineage
    and metric tags, and points ``alias`` (default ``challenger``; empty: none) at it.

    ``evaluation`` and ``verdict``: records, or their JSON as mappings (parsed and checked
    here, before anything is registered).

    Returns:
        ``{"name", "version", "model_uri", "run_id", "aliases"}``.
    """
    import logging

    from kfgpu.evaluation.records import EvaluationRecord, GateVerdict

    if evaluation is not None and not isinstance(evaluation, EvaluationRecord):
        evaluation = EvaluationRecord.from_dict(evaluation)
    if verdict is not None and not isinstance(verdict, GateVerdict):
        verdict = GateVerdict.from_dict(verdict)

    import mlflow

    from kfgpu._version import __version__
    from kfgpu.bundle import read_description, verify_bundle
    from kfgpu.registry import tracking

    verify_bundle(bundle_path)
    desc = read_description(bundle_path)
    lineage = desc.lineage or {}
    client = _client(tracking_uri)
    version_tags = {
        **ModelIdentity.from_description(desc).to_tags(),
        "kfgpu.family": desc.model_family,
        "kfgpu.code_version": str(lineage.get("code_version") or desc.kfgpu_version or __version__),
        "kfgpu.data_fingerprint": str(lineage.get("data_fingerprint") or ""),
        "kfgpu.train_fingerprint": str(lineage.get("train_fingerprint") or ""),
        "kfgpu.pipeline_run": str(lineage.get("pipeline_run") or ""),
        "kfgpu.training_run_id": str(lineage.get("mlflow_run_id") or ""),
        **_metric_tags(evaluation),
    }
    if verdict is not None:
        version_tags["kfgpu.blessed"] = str(verdict.blessed).lower()
        version_tags["kfgpu.gate"] = verdict.summary()[:4000]
    version_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    version_tags = redact_obj(version_tags)
    run_id = tracking.start_run(
        tracking_uri,
        experiment=experiment or tracking.DEFAULT_EXPERIMENT,
        run_name=f"register-{name}",
        tags={k: v for k, v in version_tags.items() if not k.startswith("metric.")},
    )
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    staging = Path(tempfile.mkdtemp(prefix="kfgpu-register-"))
    try:
        shutil.copytree(bundle_path, staging / "bundle")
        artifacts = {"bundle": str(staging / "bundle")}
        for key, record, fname in (
            ("evaluation", evaluation, "evaluation.json"),
            ("gate", verdict, "gate.json"),
        ):
            if record is not None:
                (staging / fname).write_text(
                    json.dumps(redact_obj(record.to_dict()), indent=2, sort_keys=True, default=str)
                )
                artifacts[key] = str(staging / fname)
        if card:
            (staging / "model_card.md").write_text(card)
            artifacts["model_card"] = str(staging / "model_card.md")
        previous_uri = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri)
        quiet = logging.getLogger("mlflow")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "no signature inferred" for a DataFrame-in model
        try:
            with mlflow.start_run(run_id=run_id, log_system_metrics=False):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(Path(__file__).with_name("_pyfunc_entry.py")),
                    artifacts=artifacts,
                    pip_requirements=[f"kfgpu=={__version__}"],
                )
                if evaluation is not None and evaluation.metrics:
                    mlflow.log_metrics(
                        {f"test_{k}": float(v) for k, v in evaluation.metrics.items()}
                    )
            try:
                client.create_registered_model(
                    name, description="kfgpu model bundles; aliases champion / challenger"
                )
            except Exception as e:
                if "RESOURCE_ALREADY_EXISTS" not in _code(e):
                    raise
            # Still under this tracking URI: a local (SQLite) registry resolves the
            # version's ``models:/m-...`` source through the process's tracking URI.
            mv = client.create_model_version(
                name, info.model_uri, run_id=run_id, tags=version_tags, model_id=info.model_id
            )
        finally:
            quiet.setLevel(level)
            mlflow.set_tracking_uri(previous_uri)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return {
        "name": name,
        "version": str(mv.version),
        "model_uri": f"models:/{name}/{mv.version}",
        "run_id": run_id,
        "aliases": [alias] if alias else [],
    }


# ---------------------------------------------------------------- promote, rollback


def _refusal(name: str, what: str, current: str, changed: list[str]) -> RegistryError:
    return RegistryError(
        f"refusing to promote {what} of {name!r} over champion v{current}: it is another "
        f"model ({'; '.join(changed)}); {SIGNATURE_FIX}"
    )


def check_same_model(name: str, identity: ModelIdentity, *, tracking_uri: str) -> None:
    """Refuse, before registering, a model that :func:`promote` would refuse: one whose
    task, target or input signature differs from ``name``'s champion (none: nothing to
    refuse).

    Raises:
        RegistryError: the champion is another model; the message names what differs.
    """
    client = _client(tracking_uri)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except Exception as e:
        if "RESOURCE_DOES_NOT_EXIST" in _code(e) or "INVALID_PARAMETER_VALUE" in _code(e):
            return
        raise
    changed = identity.differences(ModelIdentity.from_tags(champion.tags or {}))
    if changed:
        raise _refusal(name, "this model", str(champion.version), changed)


def promote(
    name: str,
    *,
    tracking_uri: str,
    version: str | int | None = None,
    expect_champion: str | int | None = None,
    lock_timeout: float = 60.0,
    allow_signature_change: bool = False,
) -> dict[str, Any]:
    """Make ``version`` (default: the challenger) the champion.

    The replaced champion becomes ``previous-champion``; the challenger alias is removed
    when it pointed at the promoted version. With ``expect_champion`` (a version, or
    ``""``/``"none"`` for "no champion yet") the promotion fails unless the champion is
    still that one: a compare-and-set for callers that decided on what they read.
    A version of another task, target or input signature than the champion is refused
    unless ``allow_signature_change`` (the event then lists what changed).

    Returns:
        The history event: ``{"seq", "time", "action", "version", "previous"}`` (and
        ``signature_change`` when one was allowed).

    Raises:
        RegistryError: no such model or version, no challenger, the champion changed, or
            the version is another model than the champion.
    """
    client = _client(tracking_uri)
    _aliases(client, name)  # a clear error when the model does not exist
    with _locked(client, name, timeout=lock_timeout):
        aliases = _aliases(client, name)
        target = str(version) if version is not None else aliases.get(CHALLENGER)
        if not target:
            raise RegistryError(
                f"model {name!r} has no {CHALLENGER!r} alias; register a new version or name "
                "one with --version"
            )
        try:
            promoted = client.get_model_version(name, target)
        except Exception as e:
            raise RegistryError(f"model {name!r} has no version {target!r}") from e
        current = aliases.get(CHAMPION)
        if expect_champion is not None:
            want = str(expect_champion)
            want_none = want.lower() in {"", "none"}
            if (want_none and current is not None) or (not want_none and current != want):
                raise RegistryError(
                    f"champion of {name!r} is {current or 'none'}, not {want or 'none'} as "
                    "expected: someone promoted meanwhile; re-read and decide again"
                )
        if current == target:
            return {"action": "noop", "version": target, "previous": aliases.get(PREVIOUS)}
        changed: list[str] = []
        if current is not None:
            champion = client.get_model_version(name, current)
            changed = ModelIdentity.from_tags(promoted.tags or {}).differences(
                ModelIdentity.from_tags(champion.tags or {})
            )
            if changed and not allow_signature_change:
                raise _refusal(name, f"v{target}", current, changed)
        client.set_registered_model_alias(name, CHAMPION, target)
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current)
            client.set_model_version_tag(name, current, "kfgpu.demoted_at", f"{time.time():.3f}")
        if aliases.get(CHALLENGER) == target:
            client.delete_registered_model_alias(name, CHALLENGER)
        client.set_model_version_tag(name, target, "kfgpu.promoted_at", f"{time.time():.3f}")
        if "kfgpu.rolled_back" in (promoted.tags or {}):
            # Champion again: no longer a rolled-back version.
            client.delete_model_version_tag(name, target, "kfgpu.rolled_back")
        record: dict[str, Any] = {"action": "promote", "version": target, "previous": current}
        if changed:
            record["signature_change"] = changed
        event = _record(client, name, record)
        if _aliases(client, name).get(CHAMPION) != target:  # the lock was broken under us
            raise RegistryError(f"champion of {name!r} changed during promotion; retry")
        return event


def rollback(name: str, *, tracking_uri: str, lock_timeout: float = 60.0) -> dict[str, Any]:
    """Make ``previous-champion`` the champion again.

    The rolled-back version is tagged ``kfgpu.rolled_back``; ``previous-champion`` moves
    to the champion that the restored version had replaced (skipping rolled-back ones), or
    is removed.

    Raises:
        RegistryError: no champion, or no previous champion to go back to.
    """
    client = _client(tracking_uri)
    _aliases(client, name)
    with _locked(client, name, timeout=lock_timeout):
        aliases = _aliases(client, name)
        current, target = aliases.get(CHAMPION), aliases.get(PREVIOUS)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back")
        if target is None:
            raise RegistryError(
                f"model {name!r} has no {PREVIOUS!r}: nothing to roll back to; promote a "
                "version with `kfgpu model promote NAME --version V` instead"
            )
        client.set_registered_model_alias(name, CHAMPION, target)
        client.set_model_version_tag(name, current, "kfgpu.rolled_back", f"{time.time():.3f}")
        events = _history(client, name)
        rolled = {current} | {str(e["previous"]) for e in events if e.get("action") == "rollback"}
        before = None
        for e in reversed(events):
            if e.get("action") == "promote" and str(e.get("version")) == target:
                before = e.get("previous")
                break
        if before is not None and str(before) not in rolled:
            client.set_registered_model_alias(name, PREVIOUS, str(before))
        else:
            client.delete_registered_model_alias(name, PREVIOUS)
            before = None
        return _record(
            client,
            name,
            {"action": "rollback", "version": target, "previous": current, "next_previous": before},
        )


# ---------------------------------------------------------------- read


def history(name: str, *, tracking_uri: str) -> list[dict[str, Any]]:
    """The promotion and rollback events of ``name``, oldest first."""
    return _history(_client(tracking_uri), name)


def list_models(*, tracking_uri: str) -> list[str]:
    """Registered model names (promotion locks excluded)."""
    client = _client(tracking_uri)
    return sorted(
        m.name for m in client.search_registered_models() if not m.name.endswith(LOCK_SUFFIX)
    )


def _status(aliases: list[str], tags: Mapping[str, str]) -> str:
    """What a version is now: its alias, else what last happened to it."""
    for alias in (CHAMPION, PREVIOUS, CHALLENGER):
        if alias in aliases:
            return alias

    def at(key: str) -> float | None:
        try:
            return float(tags[key]) if key in tags else None
        except ValueError:
            return 0.0

    rolled, promoted = at("kfgpu.rolled_back"), at("kfgpu.promoted_at")
    if rolled is not None and (promoted is None or rolled >= promoted):
        return "rolled back"
    if promoted is not None:
        return "retired"  # was champion, replaced by a later promotion
    if tags.get("kfgpu.blessed") == "false":
        return "blocked"
    return "registered"


def list_versions(name: str, *, tracking_uri: str) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first, with aliases, status, key metrics and lineage.

    ``status`` is what the version is now: ``champion``, ``previous-champion``,
    ``challenger``, ``rolled back`` (rolled back and not promoted since), ``retired``
    (a champion a later promotion replaced), ``blocked`` (the gate did not bless it) or
    ``registered``.
    """
    client = _client(tracking_uri)
    aliases = _aliases(client, name)
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(v, []).append(alias)
    out = []
    for mv in client.search_model_versions(f"name='{name}'"):
        tags = dict(mv.tags or {})
        held = sorted(by_version.get(str(mv.version), []))
        status = _status(held, tags)
        identity = ModelIdentity.from_tags(tags)
        out.append(
            {
                "version": str(mv.version),
                "aliases": held,
                "status": status,
                "created": int(mv.creation_timestamp or 0),
                "run_id": mv.run_id,
                "headline": tags.get("kfgpu.headline"),
                "metrics": {
                    k.removeprefix("metric."): float(v)
                    for k, v in tags.items()
                    if k.startswith("metric.")
                },
                "blessed": tags.get("kfgpu.blessed"),
                "task": identity.task,
                "target": identity.target,
                "signature": identity.signature_digest,
                "data_fingerprint": tags.get("kfgpu.data_fingerprint"),
                "pipeline_run": tags.get("kfgpu.pipeline_run"),
                "code_version": tags.get("kfgpu.code_version"),
                "rolled_back": status == "rolled back",
            }
        )
    return sorted(out, key=lambda r: -int(r["version"]))


def champion_evaluation(name: str, *, tracking_uri: str) -> dict[str, Any] | None:
    """``{"name", "version", "evaluation", "identity"}`` of the champion, or ``None``
    without one. ``identity`` (task, target, inputs, signature) comes from the version's
    tags, completed from its evaluation."""
    import mlflow.artifacts

    client = _client(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except Exception as e:
        if "RESOURCE_DOES_NOT_EXIST" in _code(e) or "INVALID_PARAMETER_VALUE" in _code(e):
            return None
        raise
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with tempfile.TemporaryDirectory(prefix="kfgpu-champion-") as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{mv.version}/artifacts/evaluation.json",
                    dst_path=tmp,
                )
                evaluation = json.loads(Path(path).read_text())
            except Exception:
                evaluation = {}
    finally:
        mlflow.set_tracking_uri(previous_uri)
    if not evaluation:  # fall back to the metric tags
        tags = dict(mv.tags or {})
        evaluation = {
            "metrics": {
                k.removeprefix("metric."): float(v)
                for k, v in tags.items()
                if k.startswith("metric.")
            }
        }
    from kfgpu.evaluation.records import EvaluationRecord

    record = EvaluationRecord.from_dict(
        evaluation, source=f"the evaluation of {name} v{mv.version}"
    )
    identity = ModelIdentity.from_tags(dict(mv.tags or {})).merged(
        ModelIdentity.from_evaluation(record)
    )
    return {
        "name": name,
        "version": str(mv.version),
        "evaluation": evaluation,
        "identity": identity.to_dict(),
    }
