"""The check_gate and register_model steps: the gate's verdict, then the registry."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from kfgpu._step import StepResult, step

__all__ = ["GateOutput", "RegisterOutput", "check_gate_step", "register_model_step"]


@dataclass(frozen=True)
class GateOutput:
    """What :func:`check_gate_step` returns beside the verdict file.

    Attributes:
        blessed: whether the gate blessed the model.
        champion_version: the champion compared with (``""``: none).
        registered_model_name: the name the champion was looked up under (``""``: none).
    """

    blessed: bool
    champion_version: str
    registered_model_name: str


@dataclass(frozen=True)
class RegisterOutput:
    """What :func:`register_model_step` returns.

    Attributes:
        version: the registered model version.
        model_uri: the MLflow URI of the logged model.
    """

    version: str
    model_uri: str


@step("check_gate")
def check_gate_step(
    *,
    evaluation_path: str,
    verdict_path: str,
    card_path: str = "",
    card_html_path: str = "",
    gate_spec: str = "",
    registered_model_name: str = "",
    mlflow_tracking_uri: str = "",
    data_uri: str = "",
    allow_signature_change: bool = False,
) -> StepResult[GateOutput]:
    """Apply the gate to an evaluation (champion from the registry when named); write the
    verdict and the model card; log the verdict to the model's training run.

    ``registered_model_name`` empty with ``data_uri`` given: the name derived from the data
    source and the evaluated model's target (:func:`~kfgpu.registry.identity.default_model_name`);
    both empty: no champion. The verdict records the name it used.

    Raises:
        ConfigError: the gate spec or the model name is malformed.
    """
    from kfgpu.evaluation.card import render_card_html, render_card_markdown
    from kfgpu.evaluation.gate import evaluate_gate, write_verdict
    from kfgpu.evaluation.records import read_evaluation
    from kfgpu.registry import tracking
    from kfgpu.registry.identity import resolve_model_name

    evaluation = read_evaluation(evaluation_path)
    name = registered_model_name
    if name or data_uri:
        target = evaluation.target or ""
        name = resolve_model_name(name, data_uri=data_uri, target=target)
    uri = tracking.resolve_tracking_uri(mlflow_tracking_uri)
    champion = None
    if name and uri:
        from kfgpu.registry.models import champion_evaluation

        champion = champion_evaluation(name, tracking_uri=uri)
    verdict = evaluate_gate(
        evaluation,
        gate_spec or None,
        champion=champion,
        allow_signature_change=allow_signature_change,
    )
    verdict = replace(verdict, registered_model_name=name or None)
    write_verdict(verdict, verdict_path)
    data = verdict.to_dict()
    if card_path:
        Path(card_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_path).write_text(render_card_markdown(evaluation, verdict))
    if card_html_path:
        Path(card_html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_html_path).write_text(render_card_html(evaluation, verdict))
    run_id = evaluation.lineage.get("mlflow_run_id")
    if uri and run_id:
        client = tracking.client(uri)
        client.set_tag(run_id, "kfgpu.blessed", str(verdict.blessed).lower())
        client.log_text(run_id, json.dumps(data, indent=2, default=str), "gate/verdict.json")
    return StepResult(
        metrics={"blessed": float(verdict.blessed), "failed_checks": float(len(verdict.failures))},
        summary=verdict.summary(),
        output=GateOutput(
            blessed=verdict.blessed,
            champion_version=str((champion or {}).get("version", "")),
            registered_model_name=name,
        ),
    )


@step("register_model")
def register_model_step(
    *,
    bundle_path: str,
    evaluation_path: str,
    verdict_path: str,
    registered_model_name: str = "",
    mlflow_tracking_uri: str = "",
    card_path: str = "",
    promote: bool = True,
    expect_champion: str = "",
    allow_signature_change: bool = False,
) -> StepResult[RegisterOutput]:
    """Register the bundle (alias challenger) and optionally promote it to champion.

    ``registered_model_name`` empty: the name the gate compared under (the verdict's).

    Raises:
        RegistryError: the verdict did not bless the model, no tracking URI, the name
            differs from the one the gate compared under, the champion changed since the
            gate read it (``expect_champion``: a version, ``none``, ``verdict`` for the
            champion the verdict compared with, or ``""`` for no check), or the champion is
            another model (task, target, input signature) and ``allow_signature_change``
            is false.
    """
    from kfgpu.errors import RegistryError
    from kfgpu.evaluation.records import read_evaluation, read_verdict
    from kfgpu.registry import models, tracking
    from kfgpu.registry.identity import check_model_name

    verdict = read_verdict(verdict_path)
    if not verdict.blessed:
        raise RegistryError(
            f"refusing to register a model the gate blocked: {verdict.summary()}; "
            "branch on check_gate's blessed output with dsl.If"
        )
    gated = verdict.registered_model_name or ""
    if not registered_model_name.strip():
        if not gated:
            raise RegistryError(
                "registered_model_name is empty and the verdict names no model; pass "
                "registered_model_name (or data_uri to check_gate, which derives it)"
            )
        registered_model_name = gated
    registered_model_name = check_model_name(registered_model_name)
    if gated and gated != registered_model_name:
        raise RegistryError(
            f"registered_model_name={registered_model_name!r} but the gate compared with the "
            f"champion of {gated!r}; give check_gate and register_model the same name"
        )
    if expect_champion == "verdict":
        # The champion the gate compared with ("none" when there was none).
        expect_champion = verdict.champion_version or "none"
    uri = tracking.resolve_tracking_uri(mlflow_tracking_uri)
    if promote and not allow_signature_change:
        # Refused before a version is registered, not after.
        from kfgpu.bundle import read_description
        from kfgpu.registry.identity import ModelIdentity

        models.check_same_model(
            registered_model_name,
            ModelIdentity.from_description(read_description(bundle_path)),
            tracking_uri=uri,
        )
    evaluation = read_evaluation(evaluation_path)
    card = Path(card_path).read_text() if card_path and Path(card_path).is_file() else ""
    info = models.register_bundle(
        bundle_path,
        name=registered_model_name,
        tracking_uri=uri,
        evaluation=evaluation,
        verdict=verdict,
        card=card,
    )
    summary = f"registered {registered_model_name} v{info['version']} as challenger"
    if promote:
        event = models.promote(
            registered_model_name,
            tracking_uri=uri,
            version=info["version"],
            expect_champion=expect_champion if expect_champion else None,
            allow_signature_change=allow_signature_change,
        )
        summary = (
            f"registered {registered_model_name} v{info['version']} and promoted it to champion"
            f" (previous champion: {event.get('previous') or 'none'})"
        )
    return StepResult(
        summary=summary,
        output=RegisterOutput(version=str(info["version"]), model_uri=str(info["model_uri"])),
    )
