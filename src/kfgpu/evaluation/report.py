"""The evaluation report: a self-contained HTML page the Kubeflow UI renders."""

from __future__ import annotations

import html
from typing import Any

from kfgpu.evaluation.metrics import Evaluation

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.better{color:#0a7d2c}.worse{color:#b3261e}
"""

_LOWER_IS_BETTER = {"log_loss", "mse", "rmse", "mae"}


def render_html(ev: Evaluation, description: dict[str, Any]) -> str:
    """One page: headline, metrics against the constant baseline, confusion matrix."""
    e = html.escape
    rows = []
    for name in sorted(ev.metrics):
        model, base = ev.metrics[name], ev.baseline.get(name)
        if base is None:
            rows.append(f"<tr><td>{e(name)}</td><td>{model:.4f}</td><td>–</td><td>–</td></tr>")
            continue
        better = model < base if name in _LOWER_IS_BETTER else model > base
        cls = "better" if better else "worse"
        rows.append(
            f"<tr><td>{e(name)}</td><td class='{cls}'>{model:.4f}</td><td>{base:.4f}</td>"
            f"<td class='{cls}'>{model - base:+.4f}</td></tr>"
        )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kfgpu evaluation</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation: {e(str(description.get('target', '')))} ({e(ev.task)})</h1>",
        f"<p>Held-out rows: {ev.rows}. Headline metric <b>{e(ev.headline)}</b> = "
        f"<b>{ev.metrics.get(ev.headline, float('nan')):.4f}</b> "
        f"(constant predictor: {ev.baseline.get(ev.headline, float('nan')):.4f}).</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>model</th>"
        "<th>constant predictor</th><th>margin</th></tr>",
        *rows,
        "</table>",
    ]
    if ev.confusion_matrix:
        header = "".join(f"<th>pred {e(str(c))}</th>" for c in ev.classes)
        body = "".join(
            f"<tr><td>true {e(str(c))}</td>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
            for c, row in zip(ev.classes, ev.confusion_matrix, strict=True)
        )
        parts += [
            "<h2>Confusion matrix</h2><table><tr><th></th>",
            header,
            "</tr>",
            body,
            "</table>",
        ]
    lineage = description.get("lineage", {})
    parts += [
        "<h2>Model</h2><table>",
        f"<tr><td>family</td><td>{e(str(description.get('model', {}).get('family')))}</td></tr>",
        f"<tr><td>kfgpu</td><td>{e(str(description.get('kfgpu_version')))}</td></tr>",
        f"<tr><td>MLflow run</td><td>{e(str(lineage.get('mlflow_run_id')))}</td></tr>",
        "</table></body></html>",
    ]
    return "\n".join(parts) + "\n"
