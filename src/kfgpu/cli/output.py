"""How the commands print: progress lines, the run summary, listings.

The run summary is built from what the pipeline hands back (its outputs: a Metrics output
gives the headline, a Model output the bundle, every other output its path) and from the
steps that changed something outside the run (:data:`kfgpu.ops.platform.SIDE_EFFECTS`:
the gate's verdict, the registry); no step of a particular pipeline is named here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = [
    "HEADLINES",
    "drift_rows",
    "err",
    "progress_printer",
    "run_summary",
    "short_type",
]

#: The headline metric, first found, of a Metrics output (``test_<name>`` beside
#: ``baseline_<name>``, the constant predictor's score).
HEADLINES = ("roc_auc", "r2", "accuracy")

#: Labels of the lines for outputs and steps whose name alone reads badly.
_LABELS = {
    "evaluation": "metrics:",
    "model_card": "model card:",
    "check_gate": "gate:",
    "register_model": "registry:",
}


def err(msg: str) -> None:
    """One line on stderr."""
    click.echo(msg, err=True)


def progress_printer(stream: Any) -> Callable[[dict[str, Any]], None]:
    """A ``run_local`` event callback printing one line as each step starts and ends."""

    def report(event: dict[str, Any]) -> None:
        step, kind = event.get("step", "?"), event.get("event")
        if kind == "start":
            print(f"  … {step}", file=stream, flush=True)
        elif kind == "success":
            print(
                f"  ✓ {step:<20} {event.get('seconds', 0):6.1f}s  {event.get('summary', '')}",
                file=stream,
                flush=True,
            )
        elif kind == "failure":
            print(f"  ✗ {step:<20} {event.get('seconds', 0):6.1f}s", file=stream, flush=True)

    return report


def _kind(artifact: Any) -> str:
    return str(getattr(artifact, "schema_title", "") or "")


def _label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " ") + ":")


def run_summary(result: Any) -> list[str]:
    """The lines ``kfgpu run`` prints after a local run (:class:`kfgpu.local.LocalRun`)."""
    from kfgpu.bundle import read_description
    from kfgpu.ops.platform import SIDE_EFFECTS

    lines = [""]
    for artifact in result.outputs.values():
        metrics = dict(getattr(artifact, "metadata", None) or {})
        if _kind(artifact) != "system.Metrics" or not metrics:
            continue
        headline = next((h for h in HEADLINES if f"test_{h}" in metrics), None)
        if headline:
            lines.append(
                f"held-out {headline}: {metrics['test_' + headline]:.4f} "
                f"(constant predictor: {metrics.get('baseline_' + headline, float('nan')):.4f})"
            )
        break
    shown: set[str] = set()
    for name, artifact in result.outputs.items():
        if _kind(artifact) != "system.Model" or result.output_path(name) is None:
            continue
        model = result.output_path(name)
        shown.add(name)
        lines.append(f"model bundle:  {model}")
        desc = read_description(model)
        if desc.lineage_value("mlflow_run_id"):
            lines.append(
                f"MLflow run:    {desc.lineage_value('mlflow_run_id')} in "
                f"{desc.lineage_value('mlflow_tracking_uri')}"
            )
    # What the run changed outside itself, in the order it happened.
    for event in result.events:
        done = event.get("event") == "success" and event.get("summary")
        if done and event.get("step") in SIDE_EFFECTS:
            lines.append(f"{_label(event['step']):<14} {event['summary']}")
    # KFP keeps Metrics in artifact metadata (no file locally): only outputs with a file show.
    for name in result.outputs:
        path = result.output_path(name)
        if name not in shown and path is not None and path.exists():
            lines.append(f"{_label(name):<14} {path}")
    lines.append(f"{'log:':<14} {result.log_path}")
    lines.append(f"{'wall time:':<14} {result.wall_seconds:.1f}s")
    return lines


def short_type(t: str) -> str:
    """``system.Dataset@0.0.1`` -> ``Dataset``."""
    return t.split("@")[0].removeprefix("system.")


def drift_rows(result_path: Path) -> tuple[list[str], dict[str, Any]]:
    """The per-column lines of a drift result (drift.json), and the result."""
    data = json.loads(result_path.read_text())
    rows = [*data["columns"], *([data["prediction"]] if data.get("prediction") else [])]
    lines = []
    for col in rows:
        mark = "DRIFT" if col["drifted"] else "ok"
        stat = "n/a" if col["statistic"] is None else f"{col['statistic']:.4g}"
        p = "n/a" if col["p_adjusted"] is None else f"{col['p_adjusted']:.2g}"
        imp = "" if col.get("importance") is None else f"  importance {col['importance']:.1%}"
        lines.append(
            f"  {mark:<5} {col['column']:<24} {col['method']:<14} {stat:>10} "
            f"(min {col['threshold']:.4g})  adjusted p {p:>8}{imp}"
        )
    return lines, data
