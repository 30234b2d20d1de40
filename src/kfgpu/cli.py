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
                f"  ✓ {step:<20} {event.get('seconds', 0):6.1f}s  {event.get('summary', '')}",
                file=stream,
                flush=True,
            )
        elif kind == "failure":
            print(f"  ✗ {step:<20} {event.get('seconds', 0):6.1f}s", file=stream, flush=True)

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
    shown = arguments.get("data_uri", defaults.get("data_uri")) or arguments.get("logs_uri")
    stream = sys.stderr
    where = f" on {shown}" if shown else ""
    print(f"kfgpu {__version__}: running pipeline {pipeline!r} locally{where}", file=stream)
    if "registered_model_name" in defaults and arguments.get("mlflow_tracking_uri"):
        from kfgpu.registry.identity import resolve_model_name

        given = str(arguments.get("registered_model_name", defaults["registered_model_name"]))
        name = resolve_model_name(
            given,
            data_uri=str(arguments.get("data_uri", defaults.get("data_uri", ""))),
            target=str(arguments.get("target", defaults.get("target", ""))),
        )
        how = (
            ""
            if given.strip()
            else " (from the data and target; --param registered_model_name=... overrides)"
        )
        print(f"registered model: {name}{how}", file=stream)
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
        if desc.lineage_value("mlflow_run_id"):
            click.echo(
                f"MLflow run:    {desc.lineage_value('mlflow_run_id')} in "
                f"{desc.lineage_value('mlflow_tracking_uri')}"
            )
    for step_name, label in (("check_gate", "gate:"), ("register_model", "registry:")):
        event = next(
            (e for e in result.events if e.get("step") == step_name and e["event"] == "success"),
            None,
        )
        if event and event.get("summary"):
            click.echo(f"{label:<14} {event['summary']}")
    # KFP keeps Metrics in artifact metadata (no file locally); the evaluation JSON is a file.
    for name, label in (
        ("evaluation", "metrics:"),
        ("report", "report:"),
        ("model_card", "model card:"),
        ("verdict", "verdict:"),
        ("predictions", "predictions:"),
    ):
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
@click.option(
    "--kfp-upgrade",
    is_flag=True,
    help="Recompile although the installed kfp differs from the one the files were made with "
    "(after moving kfp in requirements.lock on purpose).",
)
def compile_cmd(check: bool, output_dir: str, kfp_upgrade: bool) -> None:
    """Compile components/<name>/component.yaml (+ README) and pipelines/<name>.yaml."""
    from kfgpu import compile as kcompile

    if check:
        ok = kcompile.check(output_dir)
        click.echo(f"{len(ok)} compiled files are up to date")
        return
    for path in kcompile.compile_all(output_dir, kfp_upgrade=kfp_upgrade):
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
        reference_uri=_local_uri(reference),
        current_uri=_local_uri(current),
        result_path=str(result_path),
        report_path=str(report_path),
        config_json=config_json,
    )
    data = json.loads(result_path.read_text())
    rows = [*data["columns"], *([data["prediction"]] if data.get("prediction") else [])]
    for col in rows:
        mark = "DRIFT" if col["drifted"] else "ok"
        stat = "n/a" if col["statistic"] is None else f"{col['statistic']:.4g}"
        p = "n/a" if col["p_adjusted"] is None else f"{col['p_adjusted']:.2g}"
        imp = "" if col.get("importance") is None else f"  importance {col['importance']:.1%}"
        click.echo(
            f"  {mark:<5} {col['column']:<24} {col['method']:<14} {stat:>10} "
            f"(min {col['threshold']:.4g})  adjusted p {p:>8}{imp}"
        )
    click.echo(data["summary"])
    click.echo(f"result: {result_path}\nreport: {report_path}")
    if fail_on_drift and data["dataset_drift"]:
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


@cli.command("tune")
@click.argument("data")
@click.option("--target", required=True, metavar="COLUMN", help="The label column.")
@click.option(
    "--space",
    "search_space",
    required=True,
    metavar="FILE|JSON",
    help="The search space: a .json/.yaml file or JSON/YAML text (see README, Tuning).",
)
@click.option("--n-trials", default=20, show_default=True, type=int, help="The study's budget.")
@click.option("--timeout", default=0.0, show_default=True, type=float, help="Seconds; 0: none.")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option(
    "--storage",
    default="",
    metavar="URL|PATH",
    help="postgresql://..., sqlite:///study.db or a journal file; empty: in memory "
    "(one worker) or a temporary journal file.",
)
@click.option("--study-name", default="kfgpu-tune", show_default=True, help="Resumed if stored.")
@click.option(
    "--sampler",
    default="tpe",
    show_default=True,
    type=click.Choice(["tpe", "random", "cmaes", "grid"]),
)
@click.option(
    "--pruner",
    default="median",
    show_default=True,
    type=click.Choice(["median", "hyperband", "none"]),
)
@click.option(
    "--objectives",
    default="val_metric",
    show_default=True,
    help="val_metric (the gate's metric on validation rows) or val_loss; add ,n_params "
    "or ,latency_ms for a multi-objective study.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A training setting every trial starts from, e.g. --param max_epochs=10.",
)
@click.option(
    "--output-dir",
    default="tuning",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where best_params.json, summary.json and report.html go.",
)
def tune_cmd(
    data: str,
    target: str,
    search_space: str,
    n_trials: int,
    timeout: float,
    workers: int,
    storage: str,
    study_name: str,
    sampler: str,
    pruner: str,
    objectives: str,
    seed: int,
    params: tuple[str, ...],
    output_dir: str,
) -> None:
    """Tune the model's hyperparameters on DATA with Optuna.

    Validates DATA and engineers its features as the pipeline does, then runs the study
    (resumed when --storage holds one named --study-name) and writes best_params.json,
    summary.json and report.html (optimisation history, parameter importances).
    """
    import tempfile

    import yaml

    from kfgpu.features.step import engineer_features_step
    from kfgpu.tuning.step import tune_hyperparameters_step
    from kfgpu.validation.step import validate_data_step

    base: dict[str, Any] = {}
    for key, value in _parse_params(params).items():
        base[key] = yaml.safe_load(value) if value.strip() else value
    if isinstance(base.get("hidden_sizes"), int | list):
        base["hidden_sizes"] = str(base["hidden_sizes"]).strip("[]")
    space_arg = search_space
    if Path(search_space).expanduser().is_file():
        space_arg = Path(search_space).expanduser().read_text(encoding="utf-8")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if storage and "://" not in storage:
        storage = _local_uri(storage.removeprefix("journal:"))
    with tempfile.TemporaryDirectory(prefix="kfgpu-tune-") as tmp:
        t = Path(tmp)
        validated = validate_data_step(
            data_uri=_local_uri(data),
            target=target,
            dataset_path=str(t / "dataset.parquet"),
            schema_path=str(t / "schema.json"),
            report_path=str(t / "validation.md"),
            anomalies_path=str(t / "anomalies.json"),
        )
        task = validated.output.task
        engineer_features_step(
            dataset_path=str(t / "dataset.parquet"),
            target=target,
            task=task,
            train_path=str(t / "train.parquet"),
            val_path=str(t / "val.parquet"),
            test_path=str(t / "test.parquet"),
            transform_path=str(t / "transform.json"),
            seed=seed,
        )
        result = tune_hyperparameters_step(
            train_path=str(t / "train.parquet"),
            val_path=str(t / "val.parquet"),
            transform_path=str(t / "transform.json"),
            target=target,
            task=task,
            search_space=space_arg,
            config={
                "study_name": study_name,
                "storage": storage,
                "n_trials": n_trials,
                "timeout": timeout,
                "sampler": sampler,
                "pruner": pruner,
                "objectives": objectives,
                "n_workers": workers,
                "seed": seed,
            },
            base_config=base,
            best_params_path=str(out / "best_params.json"),
            summary_path=str(out / "summary.json"),
            report_path=str(out / "report.html"),
        )
    click.echo(result.summary)
    click.echo(f"best parameters: {json.dumps(result.output.best_params, sort_keys=True)}")
    for name in ("best_params.json", "summary.json", "report.html"):
        click.echo(f"{name + ':':<18} {out / name}")


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


@cli.command("evaluate")
@click.argument("bundle")
@click.argument("test")
@click.option(
    "--slice-columns",
    default="auto",
    show_default=True,
    help="Comma-separated columns to slice metrics by; 'auto': categorical features with "
    "2-20 values; '': none.",
)
@click.option("--sensitive-column", default="", help="Measure fairness across this column.")
@click.option("--bootstrap", default=200, show_default=True, type=int, help="0: no intervals.")
@click.option("--importance-repeats", default=3, show_default=True, type=int, help="0: none.")
@click.option(
    "--gate",
    "gate_spec",
    default="",
    metavar="FILE|JSON",
    help="A gate spec (JSON/YAML text or file); empty: the default gate.",
)
@click.option(
    "--registered-model", default="", metavar="NAME", help="Compare with this model's champion."
)
@click.option("--tracking-uri", default="", help="MLflow URI; default MLFLOW_TRACKING_URI.")
@click.option(
    "--output-dir",
    default="evaluation",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where evaluation.json, report.html, verdict.json and the model card go.",
)
@click.option("--fail-on-block", is_flag=True, help="Exit 3 when the gate blocks the model.")
def evaluate_cmd(
    bundle: str,
    test: str,
    slice_columns: str,
    sensitive_column: str,
    bootstrap: int,
    importance_repeats: int,
    gate_spec: str,
    registered_model: str,
    tracking_uri: str,
    output_dir: str,
    fail_on_block: bool,
) -> None:
    """Evaluate BUNDLE on the held-out TEST data, apply the gate, write the model card."""
    from kfgpu.evaluation.release import check_gate_step
    from kfgpu.evaluation.step import evaluate_model_step

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_model_step(
        bundle_path=_local_uri(bundle),
        test_path=_local_uri(test),
        report_path=str(out / "report.html"),
        evaluation_path=str(out / "evaluation.json"),
        track=False,  # the CLI does not write into the bundle's training run
        slice_columns=slice_columns,
        sensitive_column=sensitive_column,
        bootstrap=bootstrap,
        importance_repeats=importance_repeats,
    )
    click.echo(result.summary)
    verdict = check_gate_step(
        evaluation_path=str(out / "evaluation.json"),
        verdict_path=str(out / "verdict.json"),
        card_path=str(out / "model_card.md"),
        card_html_path=str(out / "model_card.html"),
        gate_spec=gate_spec,
        registered_model_name=registered_model,
        mlflow_tracking_uri=tracking_uri,
    )
    click.echo(f"gate: {verdict.summary}")
    for name in ("evaluation.json", "report.html", "verdict.json", "model_card.md"):
        click.echo(f"{name + ':':<17} {out / name}")
    if fail_on_block and not verdict.output.blessed:
        raise SystemExit(3)


def _registry_uri(explicit: str, workdir: str) -> str:
    from kfgpu.registry import local_tracking_uri

    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(workdir)


_URI_OPTION = click.option(
    "--tracking-uri",
    default="",
    help="MLflow tracking/registry URI; default MLFLOW_TRACKING_URI, else the local store "
    "of --workdir.",
)
_WORKDIR_OPTION = click.option(
    "--workdir",
    default="kfgpu-work",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The `kfgpu run` workdir whose local MLflow store to use.",
)

_ALLOW_OPTION = click.option(
    "--allow-signature-change",
    is_flag=True,
    help="Let a version of another task, target or input signature replace the champion.",
)


@cli.group()
def model() -> None:
    """The MLflow model registry: list, register, promote, roll back."""


@model.command("list")
@click.argument("name", required=False)
@_URI_OPTION
@_WORKDIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def model_list(name: str | None, tracking_uri: str, workdir: str, as_json: bool) -> None:
    """List registered models, or NAME's versions with aliases and key metrics."""
    from kfgpu.registry import models

    uri = _registry_uri(tracking_uri, workdir)
    if not name:
        names = models.list_models(tracking_uri=uri)
        click.echo(json.dumps(names) if as_json else "\n".join(names) or "(no models)")
        return
    rows = models.list_versions(name, tracking_uri=uri)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        head = r["headline"]
        score = f"{head} {r['metrics'][head]:.4f}" if head in r["metrics"] else ""
        # The status is what the version is now; other aliases it holds follow it.
        extra = [a for a in r["aliases"] if a != r["status"]]
        flags = r["status"] + (f" ({','.join(extra)})" if extra else "")
        click.echo(
            f"v{r['version']:<4} {flags:<32} {score:<18} {r['task'] or '?'}/{r['target'] or '?'}"
            f"  data {str(r['data_fingerprint'])[:12]}  run {r['pipeline_run'] or '-'}"
        )


@model.command("register")
@click.argument("bundle")
@click.option("--name", required=True, help="The registered model's name.")
@click.option("--evaluation", "evaluation_path", default="", help="evaluation.json to store.")
@click.option("--verdict", "verdict_path", default="", help="verdict.json to store.")
@click.option("--card", "card_path", default="", help="model_card.md to store.")
@click.option("--promote", "do_promote", is_flag=True, help="Also promote it to champion.")
@_URI_OPTION
@_WORKDIR_OPTION
@_ALLOW_OPTION
def model_register(
    bundle: str,
    name: str,
    evaluation_path: str,
    verdict_path: str,
    card_path: str,
    do_promote: bool,
    tracking_uri: str,
    workdir: str,
    allow_signature_change: bool,
) -> None:
    """Register BUNDLE as a new version of --name (alias challenger)."""
    from kfgpu.evaluation.records import read_evaluation, read_verdict
    from kfgpu.registry import models

    uri = _registry_uri(tracking_uri, workdir)
    if do_promote and not allow_signature_change:
        from kfgpu.bundle import read_description
        from kfgpu.registry.identity import ModelIdentity

        identity = ModelIdentity.from_description(read_description(_local_uri(bundle)))
        models.check_same_model(name, identity, tracking_uri=uri)  # before registering
    info = models.register_bundle(
        _local_uri(bundle),
        name=name,
        tracking_uri=uri,
        evaluation=read_evaluation(evaluation_path) if evaluation_path else None,
        verdict=read_verdict(verdict_path) if verdict_path else None,
        card=Path(card_path).read_text() if card_path else "",
    )
    click.echo(f"registered {name} v{info['version']} ({info['model_uri']}) as challenger")
    if do_promote:
        event = models.promote(
            name,
            tracking_uri=uri,
            version=info["version"],
            allow_signature_change=allow_signature_change,
        )
        click.echo(f"promoted v{event['version']} to champion")


@model.command("promote")
@click.argument("name")
@click.option("--version", default=None, help="The version to promote; default: the challenger.")
@click.option(
    "--expect-champion",
    default=None,
    help="Fail unless the champion is still this version ('none': no champion).",
)
@_URI_OPTION
@_WORKDIR_OPTION
@_ALLOW_OPTION
def model_promote(
    name: str,
    version: str | None,
    expect_champion: str | None,
    tracking_uri: str,
    workdir: str,
    allow_signature_change: bool,
) -> None:
    """Make a version of NAME the champion; the old champion becomes previous-champion.

    A version of another task, target or input signature than the champion is refused
    unless --allow-signature-change.
    """
    from kfgpu.registry import models

    event = models.promote(
        name,
        tracking_uri=_registry_uri(tracking_uri, workdir),
        version=version,
        expect_champion=expect_champion,
        allow_signature_change=allow_signature_change,
    )
    if event["action"] == "noop":
        click.echo(f"v{event['version']} is already the champion of {name}")
    else:
        click.echo(f"champion of {name}: v{event['version']} (was {event['previous'] or 'none'})")


@model.command("rollback")
@click.argument("name")
@_URI_OPTION
@_WORKDIR_OPTION
def model_rollback(name: str, tracking_uri: str, workdir: str) -> None:
    """Make NAME's previous-champion the champion again."""
    from kfgpu.registry import models

    event = models.rollback(name, tracking_uri=_registry_uri(tracking_uri, workdir))
    click.echo(f"champion of {name}: v{event['version']} (rolled back from v{event['previous']})")


# ---------------------------------------------------------------- serving (KServe)


@cli.command("serve")
@click.argument("source", metavar="BUNDLE_OR_MODEL_URI")
@click.option("--port", default=8080, show_default=True, type=int, envvar="KFGPU_PORT")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="KFGPU_HOST",
    help="Address to bind; 0.0.0.0 in a container.",
)
@click.option("--model-name", default="", help="Name in the URLs; default the bundle's name.")
@click.option(
    "--max-batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="KFGPU_MAX_BATCH_SIZE",
    help="Rows per forward pass; 1 turns micro-batching off.",
)
@click.option(
    "--max-wait-ms",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    envvar="KFGPU_MAX_WAIT_MS",
    help="How long a batch may wait to fill under concurrent load.",
)
@click.option("--max-rows", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-request-bytes",
    default=8 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    envvar="KFGPU_DEVICE",
    help="auto, cpu, cuda or cuda:N.",
)
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    envvar="KFGPU_PRECISION",
    type=click.Choice(["auto", "32", "16"]),
    help="auto: float16 autocast on CUDA.",
)
@click.option("--tracking-uri", default="", help="MLflow registry for models:/ URIs.")
@click.option(
    "--log-uri",
    default="",
    envvar="KFGPU_LOG_URI",
    help="Write sampled requests and predictions there as Parquet (for monitoring).",
)
@click.option(
    "--log-sample-rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True, max=1),
    envvar="KFGPU_LOG_SAMPLE_RATE",
)
@click.option(
    "--auth-token-file",
    default="",
    envvar="KFGPU_AUTH_TOKEN_FILE",
    help="File holding the bearer token that inference, metadata and repository routes "
    "need (else $KFGPU_AUTH_TOKEN; neither: no auth). Health and /metrics stay open.",
)
@click.option(
    "--enable-repository",
    is_flag=True,
    envvar="KFGPU_ENABLE_REPOSITORY",
    help="Serve KServe's model repository routes (load/unload); off by default.",
)
@click.option(
    "--allow-module",
    "allow_modules",
    multiple=True,
    metavar="PREFIX",
    help="Let a bundle's model.family import a class from modules under PREFIX (repeatable).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="KFGPU_WORKERS",
    help="Server processes (KServe's multi-process server), for CPU serving.",
)
@click.option(
    "--header-timeout",
    "header_timeout_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's headers may take to arrive (then 408 and close).",
)
@click.option(
    "--body-timeout",
    "body_timeout_s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request's body may take after its headers (then 408 and close).",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most open connections per worker; the next gets 503 and is closed.",
)
def serve_cmd(
    source: str,
    port: int,
    host: str,
    model_name: str,
    max_batch_size: int,
    max_wait_ms: float,
    max_rows: int,
    max_request_bytes: int,
    device: str,
    precision: str,
    tracking_uri: str,
    log_uri: str,
    log_sample_rate: float,
    auth_token_file: str,
    enable_repository: bool,
    allow_modules: tuple[str, ...],
    workers: int,
    header_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
) -> None:
    """Serve a bundle (path, or models:/NAME@ALIAS) with the KServe model server.

    The URL is printed at start; a bundle path is served under its directory's name
    (--model-name to choose).
    """
    from kfgpu.serving.server import serve

    serve(
        source if source.startswith("models:/") else _local_uri(source),
        port=port,
        host=host,
        model_name=model_name,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_rows=max_rows,
        max_request_bytes=max_request_bytes,
        device=device,
        precision=precision,
        tracking_uri=tracking_uri,
        log_uri=log_uri,
        log_sample_rate=log_sample_rate,
        auth_token_file=auth_token_file,
        enable_repository=enable_repository,
        allow_modules=allow_modules,
        workers=workers,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_connections=max_connections,
    )


@cli.command("predict")
@click.argument("bundle")
@click.argument("data")
@click.argument("output")
@click.option("--chunk-rows", default=65_536, show_default=True, type=click.IntRange(min=1))
@click.option("--keep", "keep", multiple=True, help="Input column to copy to the output.")
def predict_cmd(
    bundle: str, data: str, output: str, chunk_rows: int, keep: tuple[str, ...]
) -> None:
    """Batch-predict DATA (Parquet) with BUNDLE into OUTPUT (Parquet), in chunks."""
    from kfgpu.serving.batch import batch_predict_step

    result = batch_predict_step(
        bundle_path=_local_uri(bundle),
        data_uri=_local_uri(data),
        output_path=output,
        chunk_rows=chunk_rows,
        keep_columns=list(keep),
    )
    click.echo(result.summary)


@cli.command("deploy")
@click.argument("bundle")
@click.option("--name", required=True, help="The InferenceService name.")
@click.option("--namespace", "-n", default="kubeflow", show_default=True)
@click.option("--storage-uri", default="", help="Where KServe fetches the bundle (s3://...).")
@click.option(
    "--runtime", default="kfgpu", show_default=True, type=click.Choice(["kfgpu", "triton"])
)
@click.option(
    "--mode",
    "deployment_mode",
    default="Serverless",
    show_default=True,
    type=click.Choice(["Serverless", "RawDeployment", "Standard"]),
)
@click.option("--gpus", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--gpu-type", default="", help="GPU product for the node selector.")
@click.option("--min-replicas", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--max-replicas", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--scale-metric", default="", help="concurrency/rps (Serverless), cpu/memory (Raw).")
@click.option("--scale-target", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--canary", "canary", default=None, type=click.IntRange(0, 100), help="Canary %.")
@click.option("--kserve-version", default="0.21", show_default=True)
@click.option(
    "--service-account",
    default="",
    help="The predictor's service account; it carries the storage Secret (manifests/serving).",
)
@click.option(
    "--auth-token-secret",
    default="",
    help="Secret (key 'token') whose bearer token the predictor requires; the smoke request "
    "sends $KFGPU_AUTH_TOKEN.",
)
@click.option("--cluster-local", is_flag=True, help="No route from outside the cluster.")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float)
@click.option("--dry-run", is_flag=True, help="Print the InferenceService YAML; apply nothing.")
def deploy_cmd(
    bundle: str,
    name: str,
    namespace: str,
    storage_uri: str,
    runtime: str,
    deployment_mode: str,
    gpus: int,
    gpu_type: str,
    min_replicas: int,
    max_replicas: int,
    scale_metric: str,
    scale_target: int,
    canary: int | None,
    kserve_version: str,
    service_account: str,
    auth_token_secret: str,
    cluster_local: bool,
    timeout_s: float,
    dry_run: bool,
) -> None:
    """Deploy BUNDLE as a KServe InferenceService: wait, verify traffic, smoke, or roll back."""
    settings: dict[str, Any] = dict(
        name=name,
        namespace=namespace,
        runtime=runtime,
        deployment_mode=deployment_mode,
        gpus=gpus,
        gpu_type=gpu_type,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_metric=scale_metric,
        scale_target=scale_target,
        canary_traffic_percent=canary,
        kserve_version=kserve_version,
        service_account=service_account,
        auth_token_secret=auth_token_secret,
        cluster_local=cluster_local,
    )
    uri = storage_uri or _local_uri(bundle)
    if dry_run:
        import yaml

        from kfgpu.serving.isvc import ServiceConfig, build_inference_service

        stable = {"name": "stable", "model": {"storageUri": "<running>"}}
        obj = build_inference_service(
            ServiceConfig(storage_uri=uri, **settings), stable_predictor=stable
        )
        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)
        return
    from kfgpu.serving.step import deploy_model_step

    result = deploy_model_step(
        bundle_path=_local_uri(bundle), storage_uri=uri, timeout_s=timeout_s, **settings
    )
    click.echo(result.summary)


@cli.group()
def canary() -> None:
    """End an InferenceService canary: promote it, or roll it back (verified)."""


@canary.command("promote")
@click.argument("name")
@click.option("--namespace", "-n", default="kubeflow", show_default=True)
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float)
def canary_promote(name: str, namespace: str, timeout_s: float) -> None:
    """Give NAME's canary all traffic."""
    from kfgpu.serving.step import canary_step

    click.echo(
        canary_step(action="promote", name=name, namespace=namespace, timeout_s=timeout_s).summary
    )


@canary.command("rollback")
@click.argument("name")
@click.option("--namespace", "-n", default="kubeflow", show_default=True)
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, type=float)
def canary_rollback(name: str, namespace: str, timeout_s: float) -> None:
    """Take all traffic off NAME's canary."""
    from kfgpu.serving.step import canary_step

    click.echo(
        canary_step(action="rollback", name=name, namespace=namespace, timeout_s=timeout_s).summary
    )


# ---------------------------------------------------------------- Kubeflow operations


def _kfp_options(f: Any) -> Any:
    """--host, --namespace, --token, --token-path, --ca-cert; each defaults to KFGPU_KFP_*."""
    options = [
        click.option(
            "--host",
            envvar="KFGPU_KFP_HOST",
            default=None,
            help="The KFP API, e.g. https://kubeflow.example.com/pipeline [env KFGPU_KFP_HOST, "
            "then kfp's KF_PIPELINES_ENDPOINT]; "
            "empty inside a pod: the in-cluster service.",
        ),
        click.option(
            "--namespace",
            "-n",
            envvar="KFGPU_KFP_NAMESPACE",
            default=None,
            help="Profile namespace of a multi-user deployment [env KFGPU_KFP_NAMESPACE].",
        ),
        click.option(
            "--token",
            envvar="KFGPU_KFP_TOKEN",
            default=None,
            help="A bearer token made outside kfgpu [env KFGPU_KFP_TOKEN].",
        ),
        click.option(
            "--token-path",
            envvar="KFGPU_KFP_TOKEN_PATH",
            default=None,
            help="A projected service-account token file, re-read per request "
            "[env KFGPU_KFP_TOKEN_PATH; in a pod the KFP default path when present].",
        ),
        click.option(
            "--ca-cert",
            envvar="KFGPU_KFP_CA_CERT",
            default=None,
            help="CA bundle of a private TLS endpoint [env KFGPU_KFP_CA_CERT].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _kfp_connection(kw: dict[str, Any]) -> Any:
    from kfgpu.ops.client import Connection

    return Connection.from_env(
        host=kw.pop("host"),
        token=kw.pop("token"),
        token_path=kw.pop("token_path"),
        namespace=kw.pop("namespace"),
        ssl_ca_cert=kw.pop("ca_cert"),
    )


@cli.command("upload")
@click.argument("pipeline", default="training")
@_kfp_options
def upload_cmd(pipeline: str, **kw: Any) -> None:
    """Upload PIPELINE (a name kfgpu knows, or a compiled .yaml) and a content-named version.

    The version is named <kfgpu version>-<sha256 of the package>[:12]; uploading unchanged
    code again creates nothing.
    """
    from kfgpu.ops import client as kclient
    from kfgpu.ops.upload import compiled, upload

    conn = _kfp_connection(kw)
    with compiled(pipeline) as package:
        result = upload(kclient.connect(conn), package, namespace=conn.namespace)
    click.echo(result.summary())


@cli.command("submit")
@click.argument("pipeline", default="training")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A pipeline parameter, typed by the pipeline's declaration; repeatable.",
)
@click.option("--experiment", default="Default", show_default=True, help="Created when missing.")
@click.option("--run-name", default="", help="Default: '<pipeline> <UTC time>'.")
@click.option(
    "--from-package",
    is_flag=True,
    help="Send the compiled package with the run instead of uploading a version first.",
)
@click.option("--service-account", default="", help="Service account of the run's pods.")
@click.option("--wait", is_flag=True, help="Follow the run; exit 1 unless it SUCCEEDED.")
@click.option("--timeout", "timeout_s", default=24 * 3600.0, show_default=True, type=float)
@click.option("--poll", "poll_s", default=10.0, show_default=True, type=float)
@_kfp_options
def submit_cmd(
    pipeline: str,
    params: tuple[str, ...],
    experiment: str,
    run_name: str,
    from_package: bool,
    service_account: str,
    wait: bool,
    timeout_s: float,
    poll_s: float,
    **kw: Any,
) -> None:
    """Start a run of PIPELINE on Kubeflow; with --wait, print each state change."""
    from kfgpu.errors import OpsError
    from kfgpu.ops import client as kclient
    from kfgpu.ops import submit as ksubmit
    from kfgpu.ops.upload import compiled

    conn = _kfp_connection(kw)
    raw = _parse_params(params)
    with compiled(pipeline) as package:
        arguments = ksubmit.coerce_parameters(package, raw)
        kfp = kclient.connect(conn)
        started = ksubmit.submit(
            kfp,
            package,
            arguments,
            experiment=experiment,
            run_name=run_name,
            namespace=conn.namespace,
            from_package=from_package,
            service_account=service_account,
            on_line=click.echo,
        )
    if not wait:
        return
    state = ksubmit.wait(
        kfp, started.run_id, timeout_s=timeout_s, poll_s=poll_s, on_line=click.echo
    )
    if state != "SUCCEEDED":
        raise OpsError(f"run {started.run_id} ({started.run_name!r}) ended {state}")


@cli.group()
def schedule() -> None:
    """Recurring runs as code: apply a schedule file, list what kfgpu manages."""


@schedule.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Delete kfgpu-managed recurring runs that the file no longer lists.",
)
@click.option(
    "--scheduler-timezone",
    envvar="KFGPU_KFP_SCHEDULER_TIMEZONE",
    default="UTC",
    show_default=True,
    help="The zone KFP's scheduler evaluates crons in (CRON_SCHEDULE_TIMEZONE of "
    "ml-pipeline-scheduledworkflow) [env KFGPU_KFP_SCHEDULER_TIMEZONE].",
)
@_kfp_options
def schedule_apply(
    file: str, dry_run: bool, prune: bool, scheduler_timezone: str, **kw: Any
) -> None:
    """Make the cluster's recurring runs match FILE: create, replace, delete; print the diff.

    With --dry-run the file is checked offline first (pipelines compile, crons convert,
    parameters type); the diff against the cluster follows only when one is reachable.
    """
    from kfgpu.errors import KfpApiError
    from kfgpu.ops import client as kclient
    from kfgpu.ops import schedule as ksched

    conn = _kfp_connection(kw)
    spec = ksched.load(file)
    if dry_run:
        for line in ksched.check_offline(spec, scheduler_timezone=scheduler_timezone):
            click.echo(line)
        click.echo(f"{file}: {len(spec.schedules)} schedule(s) valid offline")
        reason = ""
        if not conn.host and not kclient.in_cluster():
            reason = "no KFP endpoint set: --host, KFGPU_KFP_HOST or KF_PIPELINES_ENDPOINT"
        else:
            try:
                client = kclient.connect(conn)
            except KfpApiError as e:
                if e.status:
                    raise  # reachable, but refused: the credentials or namespace are wrong
                reason = " ".join(str(e).split())
        if reason:
            click.echo(f"not compared with a cluster ({reason})")
            click.echo("dry run: nothing was changed")
            return
    else:
        client = kclient.connect(conn)
    result = ksched.apply(
        client,
        spec,
        namespace=conn.namespace,
        scheduler_timezone=scheduler_timezone,
        prune=prune,
        dry_run=dry_run,
    )
    for line in result.lines():
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing was changed")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@_kfp_options
def schedule_list(as_json: bool, **kw: Any) -> None:
    """List the recurring runs kfgpu manages."""
    from kfgpu.ops import client as kclient
    from kfgpu.ops import schedule as ksched

    conn = _kfp_connection(kw)
    rows = []
    for r in ksched.list_managed(kclient.connect(conn), conn.namespace):
        cron = r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else ""
        rows.append(
            {
                "name": r.display_name,
                "id": r.recurring_run_id,
                "kfp_cron": cron,
                "declared": (r.description or "").removeprefix(ksched.MARKER).strip(),
                "enabled": str(r.mode) == "ENABLE",
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows or [{"name": "(no kfgpu-managed recurring runs)"}]:
        if "id" not in row:
            click.echo(row["name"])
            continue
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(
            f"{row['name']:<28} {row['kfp_cron']:<20} {state:<9} {row['declared']}  ({row['id']})"
        )


@cli.command("doctor")
@click.option(
    "--gpus",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="GPUs one task asks for on one node; 0 skips the GPU check.",
)
@click.option(
    "--gpu-type",
    default="",
    help="GPU product (nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3.",
)
@_kfp_options
def doctor_cmd(gpus: int, gpu_type: str, **kw: Any) -> None:
    """Check what a run will need: KFP, KServe and Trainer CRDs, GPUs, storage, RBAC."""
    from kfgpu.errors import ConfigError, OpsError
    from kfgpu.ops import client as kclient
    from kfgpu.ops.doctor import run_checks

    conn = _kfp_connection(kw)
    try:
        conn.validate()
        factory = lambda: kclient.connect(conn)  # noqa: E731
    except ConfigError:
        factory = None
    checks = run_checks(
        kfp_client=factory, host=conn.host, namespace=conn.namespace, gpus=gpus, gpu_type=gpu_type
    )
    for c in checks:
        click.echo(c.line())
    failed = [c.name for c in checks if c.status == "FAIL"]
    if failed:
        raise OpsError(f"{len(failed)} required check(s) failed: {', '.join(failed)}")
    click.echo("ready: every required check passed")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning kfgpu errors into one line and exit code 1.

    Everything the command prints and logs is redacted: a password or token in a URI shows
    as ``***`` (:mod:`kfgpu._redact`).
    """
    from kfgpu._redact import install

    install()
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
