"""The human drift report: kfgpu's full-data verdict on top of Evidently's report.

The verdict table comes from :func:`kfgpu.validation.drift.detect_drift` over every row
(sketches). Evidently's DataDriftPreset and DataSummaryPreset need raw rows, so they run on
the reference profile's reservoir sample and a sample of the current data; the page says
so, and how large each sample was.
"""

from __future__ import annotations

import html
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["render_drift_html"]

_STYLE = (
    "#kfgpu-drift{font-family:system-ui,sans-serif;margin:16px 24px;color:#222}"
    "#kfgpu-drift table{border-collapse:collapse;margin:8px 0}"
    "#kfgpu-drift th,#kfgpu-drift td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "#kfgpu-drift td:first-child,#kfgpu-drift th:first-child{text-align:left}"
    "#kfgpu-drift .drift{color:#b3261e;font-weight:bold}#kfgpu-drift .ok{color:#0a7d2c}"
    "#kfgpu-drift .warn{color:#8a5a00;font-weight:bold}"
)


def _num(value: float | None) -> str:
    """A statistic for the table; JSON null (not finite: e.g. an empty side) shows as such."""
    return "n/a" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


_VERDICT = {"drift": ("DRIFT", "drift"), "no_drift": ("no drift", "ok")}


def _row(col: dict[str, Any]) -> str:
    e = html.escape
    mark = "drift" if col["drifted"] else "ok"
    return (
        f"<tr><td>{e(str(col['column']))}</td><td>{e(col['kind'])}</td>"
        f"<td>{e(col['method'])}</td><td>{_num(col['statistic'])}</td>"
        f"<td>{col['threshold']:.4g}</td><td>{e(col['test'])}</td>"
        f"<td>{_num(col['p_value'])}</td><td>{_num(col['p_adjusted'])}</td>"
        f"<td>{_pct(col.get('importance'))}</td>"
        f"<td class='{mark}'>{'yes' if col['drifted'] else 'no'}</td></tr>"
    )


def _verdict_section(result: dict[str, Any], sample_note: str) -> str:
    """The verdict of drift.json, as drift.json states it (status, rules, reasons)."""
    e = html.escape
    verdict, cls = _VERDICT.get(result["status"], ("insufficient data", "warn"))
    head = (
        "<tr><th>column</th><th>kind</th><th>effect</th><th>effect size</th><th>minimum</th>"
        "<th>test</th><th>p-value</th><th>adjusted p</th><th>importance</th><th>drifted</th></tr>"
    )
    rules = ", ".join(result["rules"]) or "none"
    reasons = "".join(f"<li>{e(r)}</li>" for r in result["reasons"])
    prediction = ""
    if result.get("prediction") is not None:
        model = result.get("model") or {}
        what = e(str(model.get("output", "model output")))
        prediction = (
            f"<h2>Prediction drift ({what})</h2><table>{head}{_row(result['prediction'])}</table>"
        )
    notes = "".join(f"<li>{e(n)}</li>" for n in [*result.get("notes", []), sample_note] if n)
    config = result.get("config", {})
    return (
        f"<section id='kfgpu-drift'><style>{_STYLE}</style>"
        f"<h1>Drift: <span class='{cls}' id='kfgpu-verdict'>{verdict}</span></h1>"
        f"<p>Rule(s) fired: <b id='kfgpu-rules'>{e(rules)}</b>. {result['n_drifted']} of "
        f"{result['n_columns']} columns drifted. Reference rows: {result['reference_rows']}, "
        f"current rows: {result['current_rows']}; every row counted. A column drifts when "
        f"its test is significant after the {e(str(config.get('correction', '')))} "
        f"correction (alpha {config.get('alpha', '')}) and its effect reaches the minimum."
        f"</p><ul>{reasons}</ul>{prediction}<h2>Columns</h2>"
        f"<table>{head}{''.join(_row(c) for c in result['columns'])}</table>"
        f"<ul>{notes}</ul></section>"
    )


def render_drift_html(
    result: dict[str, Any],
    *,
    reference_sample: pd.DataFrame | None,
    current_sample: pd.DataFrame | None,
) -> str:
    """One page: the kfgpu verdict, then Evidently's drift and summary report on samples.

    Args:
        result: drift.json: :meth:`DriftResult.to_dict` of the full-data check (with the
            ``model`` entry of a model-aware check); the page states its verdict.
        reference_sample: rows sampled from the reference (the profile's reservoir).
        current_sample: rows sampled from the current data.
    """
    if (
        reference_sample is None
        or current_sample is None
        or not len(reference_sample)
        or not len(current_sample)
    ):
        note = "Evidently's report is absent: the reference profile holds no row sample."
        return f"<!doctype html><html><head><meta charset='utf-8'></head><body>{_verdict_section(result, note)}</body></html>\n"
    columns = [c for c in reference_sample.columns if c in current_sample.columns]
    note = (
        f"The Evidently report below is computed on samples: {len(reference_sample)} "
        f"reference rows (the profile's uniform reservoir sample) and {len(current_sample)} "
        "current rows (a uniform reservoir sample); the verdict above counts all rows. "
        "Evidently picks its own test per column and sees only the samples, so its counts "
        "can differ from kfgpu's; the verdict above is the one the pipeline acts on."
    )
    with warnings.catch_warnings():
        # Evidently 0.7 and its web stack (litestar, numpy.core) emit deprecation notices
        # about their own internals on import and run; they say nothing about this report.
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        from evidently import Report
        from evidently.presets import DataDriftPreset, DataSummaryPreset

        snapshot = Report([DataDriftPreset(), DataSummaryPreset()]).run(
            current_data=current_sample[columns].reset_index(drop=True),
            reference_data=reference_sample[columns].reset_index(drop=True),
        )
        page = _snapshot_html(snapshot)
    section = _verdict_section(result, note)
    if "<body>" in page:
        return page.replace("<body>", "<body>" + section, 1)
    return section + page


def _snapshot_html(snapshot: Any) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="kfgpu-evidently-") as tmp:
        path = Path(tmp) / "report.html"
        snapshot.save_html(str(path))
        return path.read_text(encoding="utf-8")
