"""The gate: a declarative spec that blesses a model, or blocks it, with reasons.

A spec (JSON or YAML) names, per metric, absolute limits and limits relative to the
current champion's logged evaluation and to the constant baseline::

    metrics:
      roc_auc:  {min: 0.80, max_drop_vs_champion: 0.01}
      log_loss: {max: 0.30, max_increase_vs_champion: 0.05}
      f1:       {min_gain_vs_baseline: 0.05}
    slices:                      # every slice of a column evaluate_model sliced on
      merchant_category:
        min_rows: 100            # smaller slices are skipped (a reason says so)
        metrics:
          roc_auc: {min: 0.70, max_drop_vs_champion: 0.05}
    fairness:                    # across evaluate_model's sensitive column
      demographic_parity_difference: {max: 0.10}

Checks: ``min``, ``max`` (absolute); ``max_drop_vs_champion`` (value >= champion - x),
``max_increase_vs_champion`` (value <= champion + x), ``min_gain_vs_champion`` (better
than the champion by at least x, in the metric's better direction) and
``min_gain_vs_baseline`` (the same against the constant predictor). With no champion
every relative check passes with the reason "no champion". Every check, passed or failed,
is a reason in the verdict; a model is blessed when none failed.

A champion is compared with only when it is the same model: the same task, target and
input signature (:class:`~kfgpu.registry.identity.ModelIdentity`). Another model under
the same registered name blocks the challenger with the check ``champion.identity``,
naming what differs and the fix (another name, or ``allow_signature_change``); with
``allow_signature_change`` the difference is a passed, noted check, and the relative
checks still compare when task and target agree (the metrics mean the same).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfgpu.errors import ConfigError
from kfgpu.evaluation.metrics import LOWER_IS_BETTER
from kfgpu.evaluation.records import EvaluationRecord, GateReason, GateVerdict
from kfgpu.registry.identity import SIGNATURE_FIX, ModelIdentity

__all__ = ["CHECKS", "Verdict", "default_spec", "evaluate_gate", "load_gate_spec", "write_verdict"]

CHECKS = (
    "min",
    "max",
    "max_drop_vs_champion",
    "max_increase_vs_champion",
    "min_gain_vs_champion",
    "min_gain_vs_baseline",
)
_SECTIONS = ("metrics", "slices", "fairness")


#: The verdict record (:class:`kfgpu.evaluation.records.GateVerdict`) under its old name.
Verdict = GateVerdict


def default_spec(headline: str) -> dict[str, Any]:
    """Beat the constant predictor, and do not fall below the champion."""
    return {"metrics": {headline: {"min_gain_vs_baseline": 0.0, "max_drop_vs_champion": 0.0}}}


def _check_block(where: str, block: Any) -> None:
    if not isinstance(block, dict):
        raise ConfigError(f"gate spec {where} must be a mapping of metric -> checks")
    for metric, checks in block.items():
        if not isinstance(checks, dict):
            raise ConfigError(
                f"gate spec {where}.{metric} must be a mapping like {{min: 0.8}}, got {checks!r}"
            )
        for key, value in checks.items():
            if key not in CHECKS:
                raise ConfigError(
                    f"gate spec {where}.{metric} has unknown check {key!r}; use {list(CHECKS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"gate spec {where}.{metric}.{key} must be a number, got {value!r}"
                )


def load_gate_spec(text: str | dict[str, Any]) -> dict[str, Any]:
    """Parse and check a spec given as a dict, JSON or YAML text, or a .json/.yaml path."""
    import yaml

    if isinstance(text, dict):
        spec = text
    else:
        raw = text.strip()
        if raw and "\n" not in raw and raw.endswith((".json", ".yaml", ".yml")):
            path = Path(raw)
            if not path.is_file():
                raise ConfigError(f"gate spec file {raw!r} does not exist")
            raw = path.read_text()
        try:
            spec = yaml.safe_load(raw) if raw else {}
        except yaml.YAMLError as e:
            raise ConfigError(f"gate spec is neither JSON nor YAML: {e}") from e
    if not isinstance(spec, dict):
        raise ConfigError(f"gate spec must be a mapping with {list(_SECTIONS)}, got {spec!r}")
    unknown = sorted(set(spec) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"gate spec has unknown section(s) {unknown}; use {list(_SECTIONS)}")
    _check_block("metrics", spec.get("metrics", {}))
    _check_block("fairness", spec.get("fairness", {}))
    slices = spec.get("slices", {})
    if not isinstance(slices, dict):
        raise ConfigError("gate spec slices must map a column to {min_rows, metrics}")
    for col, block in slices.items():
        if not isinstance(block, dict) or set(block) - {"min_rows", "metrics"}:
            raise ConfigError(
                f"gate spec slices.{col} must be a mapping with 'metrics' (and 'min_rows'), "
                f"got {block!r}"
            )
        _check_block(f"slices.{col}.metrics", block.get("metrics", {}))
    return spec


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _apply(
    where: str,
    metric: str,
    checks: dict[str, float],
    value: float | None,
    available: list[str],
    champion: float | None,
    champion_note: str,
    baseline: float | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def reason(check: str, passed: bool, message: str, limit: float | None = None) -> None:
        out.append(
            {
                "check": f"{where}.{metric}.{check}",
                "passed": bool(passed),
                "value": value,
                "limit": limit,
                "message": f"{where} {metric}: {message}",
            }
        )

    if value is None:
        for check in checks:
            reason(check, False, f"not computed (available: {available})")
        return out
    lower = metric in LOWER_IS_BETTER
    for check, x in checks.items():
        x = float(x)
        if check == "min":
            reason(check, value >= x, f"{_fmt(value)} {'>=' if value >= x else '<'} min {x:g}", x)
        elif check == "max":
            reason(check, value <= x, f"{_fmt(value)} {'<=' if value <= x else '>'} max {x:g}", x)
        elif check == "min_gain_vs_baseline":
            if baseline is None:
                reason(check, True, "no baseline value; check skipped")
                continue
            gain = (baseline - value) if lower else (value - baseline)
            reason(
                check,
                gain >= x,
                f"{_fmt(value)} vs constant predictor {_fmt(baseline)}: gain {gain:+.4f} "
                f"{'>=' if gain >= x else '<'} {x:g}",
                x,
            )
        else:
            if champion is None:
                reason(check, True, f"{champion_note}; relative check passes")
                continue
            if check == "max_drop_vs_champion":
                ok, delta = value >= champion - x, champion - value
                msg = f"drop {delta:+.4f} vs champion {_fmt(champion)} {'<=' if ok else '>'} {x:g}"
            elif check == "max_increase_vs_champion":
                ok, delta = value <= champion + x, value - champion
                msg = f"increase {delta:+.4f} vs champion {_fmt(champion)} {'<=' if ok else '>'} {x:g}"
            else:  # min_gain_vs_champion
                delta = (champion - value) if lower else (value - champion)
                ok = delta >= x
                msg = f"gain {delta:+.4f} vs champion {_fmt(champion)} {'>=' if ok else '<'} {x:g}"
            reason(check, ok, f"{_fmt(value)}, {msg}", x)
    return out


def _champion_identity(champion: Mapping[str, Any], evaluation: EvaluationRecord) -> ModelIdentity:
    """The champion's identity: its registry tags (``identity``), else its evaluation."""
    from_eval = ModelIdentity.from_evaluation(evaluation)
    recorded = champion.get("identity")
    if not isinstance(recorded, dict):
        return from_eval
    inputs = recorded.get("inputs")
    return ModelIdentity(
        task=recorded.get("task"),
        target=recorded.get("target"),
        inputs=tuple(sorted((str(n), str(k)) for n, k in inputs)) if inputs else None,
    ).merged(from_eval)


def _identity_check(
    evaluation: EvaluationRecord,
    champion: Mapping[str, Any],
    champ_eval: EvaluationRecord,
    allow: bool,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The ``champion.identity`` reason, the verdict's identity record, and whether the
    relative checks may compare with this champion."""
    mine = ModelIdentity.from_evaluation(evaluation)
    theirs = _champion_identity(champion, champ_eval)
    differs = mine.differences(theirs)
    who = f"champion {champion.get('name')} v{champion.get('version')}"
    record = {
        "model": mine.to_dict(),
        "champion": theirs.to_dict(),
        "differences": differs,
        "allowed": bool(allow),
    }
    if not differs:
        unknown = [k for k in ("task", "target", "inputs") if getattr(theirs, k) is None]
        message = f"{who} is the same model (task, target and input signature)"
        if unknown:
            message += f"; the champion records no {'/'.join(unknown)}, not compared"
        passed, comparable = True, True
    elif allow:
        comparable = mine.same_task_and_target(theirs)
        message = (
            f"{who} is another model ({'; '.join(differs)}); allowed by "
            "allow_signature_change"
            + ("" if comparable else ", relative checks skipped (their metrics differ in meaning)")
        )
        passed = True
    else:
        message = f"{who} is another model ({'; '.join(differs)}); {SIGNATURE_FIX}"
        passed, comparable = False, False
    reason = {
        "check": "champion.identity",
        "passed": passed,
        "value": None,
        "limit": None,
        "message": message,
    }
    return reason, record, comparable


def evaluate_gate(
    evaluation: EvaluationRecord | Mapping[str, Any],
    spec: dict[str, Any] | str | None = None,
    *,
    champion: Mapping[str, Any] | None = None,
    allow_signature_change: bool = False,
) -> GateVerdict:
    """Apply ``spec`` to an evaluation (a record, or its JSON as a mapping).

    Args:
        evaluation: what evaluate_model measured; a mapping is parsed (and checked) first.
        spec: a gate spec (see the module docs); ``None`` or empty uses
            :func:`default_spec` for the evaluation's headline metric.
        champion: ``{"name", "version", "evaluation": {...}, "identity": {...}}`` of the
            current champion, or ``None`` when there is none (relative checks then pass
            with that reason).
        allow_signature_change: let a challenger of another task, target or input
            signature pass the identity check (to replace the champion on purpose).
    """
    if not isinstance(evaluation, EvaluationRecord):
        evaluation = EvaluationRecord.from_dict(evaluation)
    champion_record = EvaluationRecord.from_dict(
        (champion or {}).get("evaluation") or {}, source="the champion's evaluation"
    )
    parsed = load_gate_spec(spec) if spec else {}
    if not any(parsed.get(s) for s in _SECTIONS):
        parsed = default_spec(evaluation.headline or "roc_auc")
    reasons: list[dict[str, Any]] = []
    identity: dict[str, Any] | None = None
    comparable = True
    if champion:
        reason, identity, comparable = _identity_check(
            evaluation, champion, champion_record, allow_signature_change
        )
        reasons.append(reason)
    champ_eval = champion_record if comparable else EvaluationRecord()
    note = "no champion"
    if champion:
        who = f"champion {champion.get('name')} v{champion.get('version')}"
        note = f"{who} has no such value" if comparable else f"{who} is another model; skipped"
    metrics = evaluation.metrics
    baseline = evaluation.baseline
    for metric, checks in parsed.get("metrics", {}).items():
        reasons += _apply(
            "overall",
            metric,
            checks,
            metrics.get(metric),
            sorted(metrics),
            champ_eval.metrics.get(metric),
            note if champion else "no champion",
            baseline.get(metric),
        )
    fair = evaluation.fairness.get("metrics", {})
    champ_fair = champ_eval.fairness.get("metrics", {})
    for metric, checks in parsed.get("fairness", {}).items():
        reasons += _apply(
            f"fairness[{evaluation.fairness.get('column', '?')}]",
            metric,
            checks,
            fair.get(metric),
            sorted(fair) or ["(none: pass sensitive_column to evaluate_model)"],
            champ_fair.get(metric),
            note if champion else "no champion",
            None,
        )
    for col, block in parsed.get("slices", {}).items():
        slices = evaluation.slices.get(col)
        if slices is None:
            reasons.append(
                {
                    "check": f"slices.{col}",
                    "passed": False,
                    "value": None,
                    "limit": None,
                    "message": f"slice column {col!r} was not evaluated; add it to "
                    f"evaluate_model's slice_columns (evaluated: {sorted(evaluation.slices)})",
                }
            )
            continue
        min_rows = int(block.get("min_rows", 30))
        champ_slices = champ_eval.slices.get(col, {})
        for value, info in slices.items():
            where = f"slice {col}={value}"
            if info["rows"] < min_rows:
                reasons.append(
                    {
                        "check": f"slices.{col}={value}",
                        "passed": True,
                        "value": info["rows"],
                        "limit": min_rows,
                        "message": f"{where}: skipped, {info['rows']} rows < min_rows {min_rows}",
                    }
                )
                continue
            champ_slice = champ_slices.get(value, {}).get("metrics", {})
            for metric, checks in block.get("metrics", {}).items():
                reasons += _apply(
                    where,
                    metric,
                    checks,
                    info["metrics"].get(metric),
                    sorted(info["metrics"]),
                    champ_slice.get(metric),
                    (f"champion has no slice {col}={value}" if champion and comparable else note),
                    None,
                )
    champ_info = None
    if champion:
        champ_info = {k: v for k, v in champion.items() if k not in ("evaluation", "identity")}
        mine = evaluation.lineage.get("data_fingerprint")
        theirs = champ_eval.lineage.get("data_fingerprint")
        if mine and theirs and mine != theirs:
            reasons.append(
                {
                    "check": "champion.data",
                    "passed": True,
                    "value": None,
                    "limit": None,
                    "message": "note: the champion was evaluated on other data "
                    f"(fingerprint {theirs[:12]}… vs {mine[:12]}…); relative checks compare "
                    "logged evaluations",
                }
            )
    blessed = all(r["passed"] for r in reasons)
    return GateVerdict(
        blessed=blessed,
        reasons=tuple(GateReason.from_dict(r) for r in reasons),
        champion=champ_info,
        spec=parsed,
        identity=identity,
    )


def write_verdict(verdict: GateVerdict, path: str) -> None:
    """The verdict as JSON at ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        json.dumps(verdict.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
    )
