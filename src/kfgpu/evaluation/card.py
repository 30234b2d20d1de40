"""The model card: why this model, on what data, how good, for whom, and what it cannot do.

Built from the evaluation JSON (which carries the bundle's description and lineage) and,
when there is one, the gate's verdict; rendered as Markdown and as HTML from the same
sections, so the two never disagree.
"""

from __future__ import annotations

import html
from typing import Any

from kfgpu.evaluation.metrics import LOWER_IS_BETTER
from kfgpu.evaluation.records import EvaluationRecord, GateVerdict

__all__ = ["card_sections", "render_card_html", "render_card_markdown"]

Table = tuple[list[str], list[list[str]]]
Section = tuple[str, list[str | Table]]


def _f(x: Any) -> str:
    return "–" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def card_sections(
    evaluation: EvaluationRecord, verdict: GateVerdict | None = None
) -> list[Section]:
    """The card as (heading, [paragraph or (header, rows) table]) sections."""
    model = evaluation.model
    lineage = evaluation.lineage
    task = evaluation.task or "?"
    target = model.get("target", "?")
    settings = evaluation.settings
    conf = settings.get("confidence", 0.95)
    sections: list[Section] = []

    purpose: list[str | Table] = [
        f"A `{model.get('family', '?')}` PyTorch model ({task}) that predicts `{target}` from "
        f"{len(model.get('features', []))} raw tabular features, served as a kfgpu bundle "
        "(the fitted feature transform and the network in one module).",
    ]
    if evaluation.classes:
        purpose.append(
            f"Classes: {', '.join(f'`{c}`' for c in evaluation.classes)}"
            + (
                f"; positive class `{evaluation.threshold.get('positive_class')}`."
                if evaluation.threshold.get("positive_class") is not None
                else "."
            )
        )
    sections.append(("Purpose", purpose))

    data_rows = [
        ["held-out rows", str(evaluation.rows)],
        ["training rows", _f(model.get("train_rows"))],
        ["data fingerprint", f"`{lineage.get('data_fingerprint') or '–'}`"],
        ["training split fingerprint", f"`{lineage.get('train_fingerprint') or '–'}`"],
        ["pipeline run", f"`{lineage.get('pipeline_run') or '–'}`"],
        [
            "code version",
            f"kfgpu {lineage.get('code_version') or model.get('kfgpu_version') or '–'}",
        ],
        ["MLflow training run", f"`{lineage.get('mlflow_run_id') or '–'}`"],
    ]
    dist = model.get("train_distribution")
    if dist:
        total = sum(dist.values()) or 1
        data_rows.append(
            [
                "training label distribution",
                ", ".join(f"{k}: {v / total:.1%}" for k, v in dist.items()),
            ]
        )
    sections.append(("Data", [(["", ""], data_rows)]))

    intervals = evaluation.intervals
    baseline = evaluation.baseline
    rows = []
    for name, value in sorted(evaluation.metrics.items()):
        iv = intervals.get(name)
        rows.append(
            [
                name + (" ↓" if name in LOWER_IS_BETTER else ""),
                _f(value),
                f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "–",
                _f(baseline.get(name)),
            ]
        )
    metric_parts: list[str | Table] = [
        f"Headline: **{evaluation.headline} = {_f(evaluation.metric(evaluation.headline))}**. "
        f"Intervals: {settings.get('bootstrap', 0)} bootstrap resamples, {conf:.0%} percentile"
        + ("" if settings.get("bootstrap") else " (bootstrap off)")
        + ". ↓ marks lower-is-better.",
        (["metric", "value", f"{conf:.0%} interval", "constant predictor"], rows),
    ]
    thr = evaluation.threshold
    if thr.get("value") is not None:
        metric_parts.append(
            f"Decision threshold {thr['value']:.4f} on P(`{thr.get('positive_class')}`) "
            f"(policy `{thr.get('policy')}`"
            + (
                f", chosen on {thr.get('validation_rows')} validation rows at training time and "
                "stored in the bundle, which serving applies"
                if thr.get("chosen_on") == "validation"
                else ""
            )
            + "); accuracy, precision, recall, F1 and the confusion matrix are on the test "
            "rows at this threshold."
            + (
                " At argmax (0.5) instead: "
                + ", ".join(f"{k} {v:.4f}" for k, v in sorted(thr["argmax_metrics"].items()))
                + "."
                if thr.get("argmax_metrics")
                else ""
            )
        )
    cm = evaluation.confusion_matrix
    if cm:
        classes = [str(c) for c in evaluation.classes]
        metric_parts.append(
            (
                ["true \\ predicted", *classes],
                [[c, *(str(v) for v in row)] for c, row in zip(classes, cm, strict=False)],
            )
        )
    sections.append(("Metrics", metric_parts))

    slices = evaluation.slices
    if slices:
        parts: list[str | Table] = []
        head = evaluation.headline
        for col, values in slices.items():
            keys = [k for k in (head, "accuracy", "f1", "calibration_error", "rmse", "mae") if k]
            keys = list(
                dict.fromkeys(k for k in keys if any(k in v["metrics"] for v in values.values()))
            )
            parts.append(f"By `{col}`:")
            parts.append(
                (
                    ["slice", "rows", *keys],
                    [
                        [v, str(info["rows"]), *(_f(info["metrics"].get(k)) for k in keys)]
                        for v, info in values.items()
                    ],
                )
            )
        sections.append(("Slices", parts))

    fair = evaluation.fairness
    if fair:
        parts = [f"Sensitive column: `{fair.get('column')}`."]
        if fair.get("note"):
            parts.append(fair["note"])
        if fair.get("metrics"):
            parts.append((["measure", "value"], [[k, _f(v)] for k, v in fair["metrics"].items()]))
        if fair.get("groups"):
            parts.append(
                (
                    ["group", "rows", "positives", "selection rate", "TPR", "FPR"],
                    [
                        [
                            g,
                            str(i["rows"]),
                            str(i["positives"]),
                            _f(i["selection_rate"]),
                            _f(i["true_positive_rate"]),
                            _f(i["false_positive_rate"]),
                        ]
                        for g, i in fair["groups"].items()
                    ],
                )
            )
        sections.append(("Fairness", parts))

    imp = evaluation.importance
    if imp:
        sections.append(
            (
                "Feature importance",
                [
                    f"Permutation importance: the drop in {evaluation.headline} when one raw "
                    "column is shuffled (mean ± std over repeats).",
                    (
                        ["feature", "importance", "std"],
                        [[r["feature"], _f(r["importance"]), _f(r["std"])] for r in imp],
                    ),
                ],
            )
        )

    if verdict is not None:
        parts = [
            f"**{'Blessed' if verdict.blessed else 'Blocked'}**: {verdict.summary()}",
        ]
        champ = verdict.champion
        parts.append(
            f"Compared with champion `{champ.get('name')}` v{champ.get('version')}."
            if champ
            else "No champion in the registry: relative checks passed by default."
        )
        parts.append(
            (
                ["check", "result", "reason"],
                [[r.check, "pass" if r.passed else "**FAIL**", r.message] for r in verdict.reasons],
            )
        )
        sections.append(("Gate", parts))

    limits: list[str | Table] = [
        "Metrics are measured on one held-out split of the same data the model was trained "
        "on; they say nothing about data that drifts away from it (run `kfgpu drift`).",
    ]
    if thr.get("chosen_on") is None and thr.get("policy") in {"f1", "cost"}:
        limits.append(
            "The decision threshold was chosen on the held-out split itself, so the metrics "
            "at that threshold are optimistic."
        )
    if settings.get("bootstrap"):
        limits.append(
            "Bootstrap intervals resample held-out rows only: they cover the sampling of the "
            "test set, not the randomness of training, and hold the threshold fixed."
        )
    small = [
        f"{col}={v} ({info['rows']} rows)"
        for col, values in slices.items()
        for v, info in values.items()
        if info["rows"] < 100
    ]
    if small:
        limits.append(
            "Slices with fewer than 100 rows have unreliable metrics: "
            + ", ".join(small[:10])
            + "."
        )
    if not fair:
        limits.append("No sensitive column was named, so no fairness measure was computed.")
    dist_vals = list((dist or {}).values())
    if dist_vals and min(dist_vals) / max(sum(dist_vals), 1) < 0.05:
        limits.append(
            "The label is imbalanced; prefer PR AUC, recall and F1 at the chosen threshold "
            "over accuracy."
        )
    sections.append(("Limitations", limits))
    return sections


def render_card_markdown(evaluation: EvaluationRecord, verdict: GateVerdict | None = None) -> str:
    """The card as Markdown."""
    target = evaluation.model.get("target", "?")
    lines = [f"# Model card: {target} ({evaluation.task or '?'})", ""]
    for heading, parts in card_sections(evaluation, verdict):
        lines += [f"## {heading}", ""]
        for part in parts:
            if isinstance(part, tuple):
                header, rows = part
                cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
                lines.append("| " + " | ".join(cell(h) for h in header) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
            else:
                lines.append(part)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape, then turn Markdown's `code` and **bold** into tags."""
    import re

    out = html.escape(text)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]*)\*\*", r"<b>\1</b>", out)


def render_card_html(evaluation: EvaluationRecord, verdict: GateVerdict | None = None) -> str:
    """The card as one self-contained HTML page."""
    target = evaluation.model.get("target", "?")
    title = f"Model card: {target} ({evaluation.task or '?'})"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}"
        "table{border-collapse:collapse;margin:8px 0 16px}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, parts in card_sections(evaluation, verdict):
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for part in parts:
            if isinstance(part, tuple):
                header, rows = part
                out.append(
                    "<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>"
                )
                out += [
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                    for row in rows
                ]
                out.append("</table>")
            else:
                out.append(f"<p>{_inline(part)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
