"""The ``kfgpu`` command.

Errors print as one line (``error: ...``) and exit 1; ``--debug`` shows the traceback.
Imports are deferred to each command so ``kfgpu --help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from kfgpu._version import __version__
from kfgpu.errors import ConfigError, KfgpuError

__all__ = ["main"]


class _State:
    debug = False


def _err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kfgpu")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """kfgpu: Kubeflow Pipelines components for GPU clusters.

    Run the training pipeline locally, compile components and pipelines for Kubeflow,
    and list what the suite offers.
    """
    _State.debug = debug


def _local_uri(value: str) -> str:
    """Absolute path for a local file (steps run as subprocesses); URIs pass through."""
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


#: Pipeline parameters that may name a local file.
_PATH_PARAMS = ("data_uri", "schema_uri", "feature_spec")


def _parse_params(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--param {item!r} must look like NAME=VALUE, e.g. --param max_epochs=5"
            )
        out[key.strip()] = value
    return out


def tracking_uri(workdir: str, *, enabled: bool) -> str:
    """Where ``kfgpu run`` tracks: ``MLFLOW_TRACKING_URI``, else a store under the workdir."""
    from kfgpu.registry import local_tracking_uri

    if not enabled:
        return ""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(workdir)


def _progress_printer(stream: Any) -> Any:
    def report(event: dict[str, Any]) -> None:
        step, kind = event.get("step", "?"), event.get("event")
        if kind == "start":
            print(f"  … {step}", file=stream, flush=True)
        elif kind == "success":
            print(
                f"  ✓ {step:<18} {event.get('seconds', 0):6.1f}s  {event.get('summary', '')}",
                file=stream,
                flush=True,
            )
        elif kind == "failure":
            print(f"  ✗ {step:<18} {event.get('seconds', 0):6.1f}s", file=stream, flush=True)

    return report


@cli.command()
@click.argument("pipeline", default="training")
@click.option(
    "--data",
    "data",
    metavar="URI",
    help="CSV, Parquet or JSON-lines path or URI "
    "(s3://, gs://, ...), or kfgpu://fraud, kfgpu://breast_cancer, kfgpu://digits. "
    "Default: the embedded synthetic fraud data.",
)
@click.option("--target", metavar="COLUMN", help="The label column (required with --data).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a pipeline parameter; repeatable (see `kfgpu run --list-params`).",
)
@click.option(
    "--workdir",
    default="kfgpu-work",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where runs, logs and MLflow data go.",
)
@click.option("--no-tracking", is_flag=True, help="Do not track the run in MLflow.")
@click.option("--verbose", "-v", is_flag=True, help="Stream every step's own output.")
@click.option("--list-params", is_flag=True, help="List the pipeline's parameters and exit.")
def run(
    pipeline: str,
    data: str | None,
    target: str | None,
    params: tuple[str, ...],
    workdir: str,
    no_tracking: bool,
    verbose: bool,
    list_params: bool,
) -> None:
    """Run PIPELINE (default: training) locally with kfp.local.

    Every step runs as a subprocess of this Python, exactly the code a cluster runs in the
    kfgpu image. Prints where the model bundle, metrics, report and MLflow run are, and
    the held-out score.
    """
    from kfgpu import local

    if list_params:
        for name, (kind, default) in local.pipeline_parameters(pipeline).items():
            click.echo(f"{name:<26} {kind:<8} default {default!r}")
        return
    raw = _parse_params(params)
    for name in _PATH_PARAMS:
        # Steps run as subprocesses; a relative path the user typed must survive that.
        if name in raw and raw[name] and "://" not in raw[name] and Path(raw[name]).exists():
            raw[name] = _local_uri(raw[name])
    if data is not None:
        if not target:
            raise ConfigError("--data needs --target COLUMN naming the label column")
        raw["data_uri"] = _local_uri(data)
    if target:
        raw["target"] = target
    arguments = local.coerce_parameters(pipeline, raw)
    if "mlflow_tracking_uri" in local.pipeline_parameters(pipeline):
        arguments.setdefault("mlflow_tracking_uri", tracking_uri(workdir, enabled=not no_tracking))
    defaults = {k: d for k, (_, d) in local.pipeline_parameters(pipeline).items()}
    shown = arguments.get("data_uri", defaults.get("data_uri"))
    stream = sys.stderr
    print(f"kfgpu {__version__}: running pipeline {pipeline!r} locally on {shown}", file=stream)
    result = local.run_local(
        pipeline,
        arguments,
        workdir=workdir,
        verbose=verbose,
        on_event=_progress_printer(stream),
    )
    _print_summary(result)


def _print_summary(result: Any) -> None:
    from kfgpu.bundle import read_description

    evaluation = next(
        (e for e in result.events if e.get("step") == "evaluate_model" and e["event"] == "success"),
        None,
    )
    click.echo("")
    if evaluation:
        m = evaluation["metrics"]
        headline = next(
            (
                k.removeprefix("test_")
                for k in ("test_roc_auc", "test_r2", "test_accuracy")
                if k in m
            ),
            None,
        )
        if headline:
            click.echo(
                f"held-out {headline}: {m['test_' + headline]:.4f} "
                f"(constant predictor: {m.get('baseline_' + headline, float('nan')):.4f})"
            )
    model = result.output_path("model")
    if model is not None:
        click.echo(f"model bundle:  {model}")
        desc = read_description(model)
        lineage = desc.get("lineage", {})
        if lineage.get("mlflow_run_id"):
            click.echo(
                f"MLflow run:    {lineage['mlflow_run_id']} in {lineage['mlflow_tracking_uri']}"
            )
    # KFP keeps Metrics in artifact metadata (no file locally); the evaluation JSON is a file.
    for name, label in (("evaluation", "metrics:"), ("report", "report:")):
        path = result.output_path(name)
        if path is not None:
            click.echo(f"{label:<14} {path}")
    click.echo(f"{'log:':<14} {result.log_path}")
    click.echo(f"{'wall time:':<14} {result.wall_seconds:.1f}s")


@cli.command("compile")
@click.option("--check", is_flag=True, help="Fail if checked-in files differ from a fresh compile.")
@click.option(
    "--output-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Root under which components/ and pipelines/ are written.",
)
def compile_cmd(check: bool, output_dir: str) -> None:
    """Compile components/<name>/component.yaml (+ README) and pipelines/<name>.yaml."""
    from kfgpu import compile as kcompile

    if check:
        ok = kcompile.check(output_dir)
        click.echo(f"{len(ok)} compiled files are up to date")
        return
    for path in kcompile.compile_all(output_dir):
        click.echo(f"wrote {path}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def components(as_json: bool) -> None:
    """List the components with their inputs and outputs."""
    from kfgpu.components import COMPONENTS

    listing = {}
    for name, comp in COMPONENTS.items():
        spec = comp.component_spec
        listing[name] = {
            "description": (spec.description or "").strip().splitlines()[0],
            "inputs": {k: str(v.type) for k, v in (spec.inputs or {}).items()},
            "outputs": {k: str(v.type) for k, v in (spec.outputs or {}).items()},
            "image": spec.implementation.container.image,
        }
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    for name, info in listing.items():
        click.echo(f"{name}: {info['description']}")
        click.echo(f"  image:   {info['image']}")
        click.echo(
            "  inputs:  " + ", ".join(f"{k} ({_short(t)})" for k, t in info["inputs"].items())
        )
        click.echo(
            "  outputs: " + ", ".join(f"{k} ({_short(t)})" for k, t in info["outputs"].items())
        )


def _short(t: str) -> str:
    return t.split("@")[0].removeprefix("system.")


@cli.command()
@click.argument("reference")
@click.argument("current")
@click.option(
    "--config",
    "config_json",
    metavar="JSON",
    default="",
    help='Drift settings, e.g. \'{"numeric_method": "psi", "drift_share": 0.3}\'.',
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

    REFERENCE is a model bundle (its training profile), a reference profile directory, or
    a dataset; CURRENT is any data URI. Every row is counted, in bounded memory. Writes
    drift.json and an HTML report (kfgpu's verdict plus Evidently's views on samples).
    """
    from kfgpu.validation.step import detect_drift_step

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result_path, report_path = out / "drift.json", out / "drift.html"
    outcome = detect_drift_step(
        reference_uri=_local_uri(reference),
        current_uri=_local_uri(current),
        result_path=str(result_path),
        report_path=str(report_path),
        config_json=config_json,
    )
    data = json.loads(result_path.read_text())
    for col in data["columns"]:
        mark = "DRIFT" if col["drifted"] else "ok"
        stat = "n/a" if col["statistic"] is None else f"{col['statistic']:.4g}"
        click.echo(
            f"  {mark:<5} {col['column']:<24} {col['method']:<14} "
            f"{stat:>10}  (threshold {col['threshold']:.4g})"
        )
    click.echo(outcome.summary)
    click.echo(f"result: {result_path}\nreport: {report_path}")
    if fail_on_drift and outcome.extra["dataset_drift"]:
        raise SystemExit(3)


@cli.command("validate")
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
                data_uri=_local_uri(data),
                target=target,
                dataset_path=str(Path(tmp) / "dataset.parquet"),
                schema_path=str(paths["schema.json"]),
                report_path=str(paths["report.md"]),
                anomalies_path=str(paths["anomalies.json"]),
                schema_uri=_local_uri(schema_uri) if schema_uri else "",
                reference_uri=_local_uri(reference_uri) if reference_uri else "",
                leakage_threshold=leakage_threshold,
            )
    finally:
        if paths["anomalies.json"].is_file():
            for a in json.loads(paths["anomalies.json"].read_text())["anomalies"]:
                where = a["column"] or "(table)"
                click.echo(f"  {a['severity']:<7} {a['check']:<26} {where}: {a['message']}")
    click.echo(outcome.summary)
    click.echo("\n".join(f"{k}: {v}" for k, v in paths.items()))


@cli.group()
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning kfgpu errors into one line and exit code 1."""
    try:
        cli.main(args=argv, prog_name="kfgpu", standalone_mode=False)
    except click.exceptions.Abort:
        _err("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KfgpuError as e:
        if _State.debug:
            raise
        _err(f"error: {' '.join(str(e).split())}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    return 0


def _console() -> None:
    """The console script: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    _console()
