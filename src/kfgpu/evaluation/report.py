"""The evaluation report: a self-contained HTML page the Kubeflow UI renders."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from kfgpu.evaluation.metrics import Evaluation

if TYPE_CHECKING:
    from kfgpu.description import BundleDescription

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.better{color:#0a7d2c}.worse{color:#b3261e}
"""

_LOWER_IS_BETTER = {"log_loss", "mse", "rmse", "mae"}


def render_html(ev: Evaluation, description: BundleDescription) -> str:
    """One page: headline, metrics against the constant baseline, confusion matrix."""
    e = html.escape
    rows = []
    for name in sorted(ev.metrics):
        model, base = ev.metrics[name], ev.baseline.get(name)
        if base is None:
            rows.append(
                f"<tr><td>{e(name)}</td><td>{model:.4f}</td><td>–</td><td>–</td>{_iv(ev, name)}</tr>"
            )
            continue
        better = model < base if name in _LOWER_IS_BETTER else model > base
        cls = "better" if better else "worse"
        rows.append(
            f"<tr><td>{e(name)}</td><td class='{cls}'>{model:.4f}</td><td>{base:.4f}</td>"
            f"<td class='{cls}'>{model - base:+.4f}</td>{_iv(ev, name)}</tr>"
        )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kfgpu evaluation</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation: {e(description.target)} ({e(ev.task)})</h1>",
        f"<p>Held-out rows: {ev.rows}. Headline metric <b>{e(ev.headline)}</b> = "
        f"<b>{ev.metrics.get(ev.headline, float('nan')):.4f}</b> "
        f"(constant predictor: {ev.baseline.get(ev.headline, float('nan')):.4f}).</p>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>model</th>"
        "<th>constant predictor</th><th>margin</th><th>interval</th></tr>",
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
    parts += [
        "<h2>Model</h2><table>",
        f"<tr><td>family</td><td>{e(description.model_family)}</td></tr>",
        f"<tr><td>kfgpu</td><td>{e(str(description.kfgpu_version))}</td></tr>",
        f"<tr><td>MLflow run</td><td>{e(str(description.lineage_value('mlflow_run_id')))}</td></tr>",
        "</table>",
        *_extras(ev),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _iv(ev: Evaluation, name: str) -> str:
    iv = ev.intervals.get(name)
    return f"<td>[{iv[0]:.4f}, {iv[1]:.4f}]</td>" if iv else "<td>–</td>"


def _svg_curve(xs: list[float], ys: list[float], xlabel: str, ylabel: str) -> str:
    """A 260x260 line plot of a curve in the unit square."""
    pts = " ".join(f"{30 + 220 * x:.1f},{250 - 220 * y:.1f}" for x, y in zip(xs, ys, strict=True))
    return (
        "<svg width='280' height='280' xmlns='http://www.w3.org/2000/svg'>"
        "<rect x='30' y='30' width='220' height='220' fill='none' stroke='#999'/>"
        f"<polyline points='{pts}' fill='none' stroke='#1a73e8' stroke-width='2'/>"
        f"<text x='140' y='272' text-anchor='middle' font-size='12'>{xlabel}</text>"
        f"<text x='12' y='140' font-size='12' transform='rotate(-90 12 140)' "
        f"text-anchor='middle'>{ylabel}</text></svg>"
    )


def _extras(ev: Evaluation) -> list[str]:
    """Threshold, curves, slices, fairness and feature importance, where computed."""
    e = html.escape
    out: list[str] = []
    thr = ev.threshold
    if thr.get("value") is not None:
        out.append(
            f"<h2>Decision threshold</h2><p>{thr['value']:.4f} on P({e(str(thr.get('positive_class')))}) "
            f"by policy <b>{e(str(thr.get('policy')))}</b>; hard-label metrics are at it.</p>"
        )
    if ev.roc_curve or ev.pr_curve:
        out.append("<h2>Curves</h2><div>")
        if ev.roc_curve:
            out.append(_svg_curve(ev.roc_curve["fpr"], ev.roc_curve["tpr"], "FPR", "TPR"))
        if ev.pr_curve:
            out.append(
                _svg_curve(ev.pr_curve["recall"], ev.pr_curve["precision"], "recall", "precision")
            )
        out.append("</div>")
    for col, values in ev.slices.items():
        keys = sorted({k for v in values.values() for k in v["metrics"]})
        out.append(f"<h2>Slices by {e(col)}</h2><table><tr><th>slice</th><th>rows</th>")
        out.append("".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>")
        for value, info in values.items():
            cells = "".join(
                f"<td>{info['metrics'][k]:.4f}</td>" if k in info["metrics"] else "<td>–</td>"
                for k in keys
            )
            out.append(f"<tr><td>{e(value)}</td><td>{info['rows']}</td>{cells}</tr>")
        out.append("</table>")
    if ev.fairness:
        out.append(f"<h2>Fairness across {e(str(ev.fairness.get('column')))}</h2>")
        if ev.fairness.get("note"):
            out.append(f"<p>{e(ev.fairness['note'])}</p>")
        metrics = ev.fairness.get("metrics", {})
        if metrics:
            out.append(
                "<table>"
                + "".join(f"<tr><td>{e(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
                + "</table>"
            )
    if ev.importance:
        out.append(
            "<h2>Permutation feature importance</h2><table><tr><th>feature</th>"
            "<th>importance</th><th>std</th></tr>"
        )
        out += [
            f"<tr><td>{e(r['feature'])}</td><td>{r['importance']:.4f}</td><td>{r['std']:.4f}</td></tr>"
            for r in ev.importance
        ]
        out.append("</table>")
    return out
