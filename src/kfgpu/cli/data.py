"""``kfgpu data``, ``kfgpu validate`` and ``kfgpu drift``: data sets and data checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kfgpu.cli.common import local_uri
from kfgpu.cli.output import drift_rows

__all__ = ["data", "drift", "validate_cmd"]


@click.group()
def data() -> None:
    """Built-in data sets."""


@data.command("synth")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--rows", default=1_000_000, show_default=True, type=int, help="Rows to write.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--drift", default=0.0, show_default=True, type=float, help="0 = reference; up to 1.")
@click.option("--chunk-rows", default=100_000, show_default=True, type=int)
def synth(output: str, rows: int, seed: int, drift: float, chunk_rows: int) -> None:
    """Write the seeded synthetic fraud table to OUTPUT (Parquet), streaming in chunks."""
    from kfgpu.data import iter_fraud, write_fraud_parquet

    iter_fraud(rows, seed=seed, drift=drift, chunk_rows=chunk_rows)  # validates arguments
    with click.progressbar(length=rows, label="writing", file=sys.stderr) as bar:
        info = write_fraud_parquet(output, rows, seed=seed, drift=drift, chunk_rows=chunk_rows)
        bar.update(rows)
    click.echo(f"wrote {info['rows']} rows to {info['path']}")


@click.command("validate")
@click.argument("data")
@click.option("--target", required=True, metavar="COLUMN", help="The label column.")
@click.option(
    "--schema",
    "schema_uri",
    default="",
    metavar="JSON",
    help="A pinned schema to check against (from an earlier run).",
)
@click.option(
    "--reference",
    "reference_uri",
    default="",
    metavar="URI",
    help="A bundle, profile or dataset to compare with for train/serving skew.",
)
@click.option(
    "--leakage-threshold",
    default=0.99,
    show_default=True,
    type=float,
    help="Held-out balanced accuracy (R² for regression) of one feature alone that counts "
    "as label leakage; 1.0 turns the check off.",
)
@click.option(
    "--output-dir",
    default="validation",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where schema, report and anomalies go.",
)
def validate_cmd(
    data: str,
    target: str,
    schema_uri: str,
    reference_uri: str,
    leakage_threshold: float,
    output_dir: str,
) -> None:
    """Validate DATA: infer (or check a pinned) schema and list every anomaly.

    Writes schema.json (edit it and pin it with --schema or the pipeline's schema_uri),
    anomalies.json and report.md. Exits 1 on error-level anomalies.
    """
    import tempfile

    from kfgpu.validation.step import validate_data_step

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {n: out / n for n in ("schema.json", "anomalies.json", "report.md")}
    try:
        with tempfile.TemporaryDirectory(prefix="kfgpu-validate-") as tmp:
            outcome = validate_data_step(
                data_uri=local_uri(data),
                target=target,
                dataset_path=str(Path(tmp) / "dataset.parquet"),
                schema_path=str(paths["schema.json"]),
                report_path=str(paths["report.md"]),
                anomalies_path=str(paths["anomalies.json"]),
                schema_uri=local_uri(schema_uri) if schema_uri else "",
                reference_uri=local_uri(reference_uri) if reference_uri else "",
                leakage_threshold=leakage_threshold,
            )
    finally:
        if paths["anomalies.json"].is_file():
            for a in json.loads(paths["anomalies.json"].read_text())["anomalies"]:
                where = a["column"] or "(table)"
                click.echo(f"  {a['severity']:<7} {a['check']:<26} {where}: {a['message']}")
    click.echo(outcome.summary)
    click.echo("\n".join(f"{k}: {v}" for k, v in paths.items()))


@click.command()
@click.argument("reference")
@click.argument("current")
@click.option(
    "--config",
    "config_json",
    metavar="JSON",
    default="",
    help='Drift settings, e.g. \'{"alpha": 0.01, "min_rows": 500, "correction": "bh"}\'.',
)
@click.option(
    "--output-dir",
    default="drift-report",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where drift.json and drift.html go.",
)
@click.option("--fail-on-drift", is_flag=True, help="Exit 3 when the dataset drifted.")
def drift(
    reference: str, current: str, config_json: str, output_dir: str, fail_on_drift: bool
) -> None:
    """Check CURRENT data for drift against REFERENCE.

    REFERENCE is a model bundle (model-aware verdict: the model's feature importance and
    its output distribution), a reference profile directory, or a dataset (share of
    drifted columns); CURRENT is any data URI. A column drifts when its test is
    significant after Holm's correction and its effect is large enough; fewer rows than
    min_rows give "insufficient data". Every row is counted, in bounded memory. Writes
    drift.json and an HTML report with the same verdict (plus Evidently's views on
    samples). Exit 3 with --fail-on-drift when the verdict is drift.
    """
    from kfgpu.monitoring.step import detect_drift_step

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result_path, report_path = out / "drift.json", out / "drift.html"
    detect_drift_step(
        reference_uri=local_uri(reference),
        current_uri=local_uri(current),
        result_path=str(result_path),
        report_path=str(report_path),
        config_json=config_json,
    )
    lines, data = drift_rows(result_path)
    for line in lines:
        click.echo(line)
    click.echo(data["summary"])
    click.echo(f"result: {result_path}\nreport: {report_path}")
    if fail_on_drift and data["dataset_drift"]:
        raise SystemExit(3)
