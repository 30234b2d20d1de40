"""``kfgpu run`` and ``kfgpu tune``: run a pipeline locally with ``kfp.local``."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import click

from kfgpu._version import __version__
from kfgpu.cli.common import PATH_PARAMS, local_uri, parse_params, tracking_uri
from kfgpu.cli.output import progress_printer, run_summary
from kfgpu.errors import ConfigError, PipelineError

__all__ = ["run", "tune_cmd"]


@click.command()
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
@click.option(
    "--list-params",
    is_flag=True,
    help="List the pipeline's parameters (type, default, what each does) and exit.",
)
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
    from kfgpu.compile import pipeline_parameters
    from kfgpu.ops.submit import coerce_parameters

    declared = pipeline_parameters(pipeline)
    if list_params:
        for line in _parameter_lines(declared.parameters):
            click.echo(line)
        return
    raw = parse_params(params)
    for name in PATH_PARAMS:
        # Steps run as subprocesses; a relative path the user typed must survive that.
        if name in raw and raw[name] and "://" not in raw[name] and Path(raw[name]).exists():
            raw[name] = local_uri(raw[name])
    if data is not None:
        if not target:
            raise ConfigError("--data needs --target COLUMN naming the label column")
        raw["data_uri"] = local_uri(data)
    if target:
        raw["target"] = target
    arguments = coerce_parameters(declared, raw)
    defaults = {k: v.get("defaultValue") for k, v in declared.parameters.items()}
    if "mlflow_tracking_uri" in defaults:
        arguments.setdefault("mlflow_tracking_uri", tracking_uri(workdir, enabled=not no_tracking))
    shown = arguments.get("data_uri", defaults.get("data_uri")) or arguments.get("logs_uri")
    stream = sys.stderr
    where = f" on {shown}" if shown else ""
    print(f"kfgpu {__version__}: running pipeline {pipeline!r} locally{where}", file=stream)
    if "registered_model_name" in defaults and arguments.get("mlflow_tracking_uri"):
        from kfgpu.registry.identity import resolve_model_name

        given = str(arguments.get("registered_model_name", defaults["registered_model_name"]))
        name = resolve_model_name(
            given,
            data_uri=str(arguments.get("data_uri", defaults.get("data_uri") or "")),
            target=str(arguments.get("target", defaults.get("target") or "")),
        )
        how = (
            ""
            if given.strip()
            else " (from the data and target; --param registered_model_name=... overrides)"
        )
        print(f"registered model: {name}{how}", file=stream)
    result = local.run_local(
        pipeline, arguments, workdir=workdir, verbose=verbose, on_event=progress_printer(stream)
    )
    for line in run_summary(result):
        click.echo(line)


_KINDS = {
    "STRING": "String",
    "NUMBER_INTEGER": "Integer",
    "NUMBER_DOUBLE": "Float",
    "BOOLEAN": "Boolean",
    "STRUCT": "Dict",
    "LIST": "List",
}


def _parameter_lines(parameters: dict[str, dict[str, Any]]) -> list[str]:
    """``NAME TYPE default VALUE`` per parameter, then what it does (wrapped, indented)."""
    lines = []
    for name, spec in parameters.items():
        kind = _KINDS.get(spec.get("parameterType", ""), spec.get("parameterType", ""))
        default = spec.get("defaultValue")
        if kind == "Integer" and isinstance(default, float) and default.is_integer():
            default = int(default)  # the spec keeps every number as a double
        lines.append(f"{name:<26} {kind:<8} default {default!r}")
        text = spec.get("description") or "(sets the pipeline's resources or platform)"
        lines += textwrap.wrap(text, width=96, initial_indent="    ", subsequent_indent="    ")
    return lines


@click.command("tune")
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
    help="postgresql://..., sqlite:///study.db or a journal file; empty: a journal file "
    "under --output-dir.",
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

    Runs the tuning pipeline locally (validate, engineer features, one worker with
    --workers processes on the study, collect), the study resumed when --storage holds
    one named --study-name, and writes best_params.json, summary.json and report.html
    (optimisation history, parameter importances). Each step's own output goes to the
    run's log under --output-dir; the terminal shows one line per step.
    """
    import yaml

    from kfgpu import local

    base: dict[str, Any] = {}
    for key, value in parse_params(params).items():
        base[key] = yaml.safe_load(value) if value.strip() else value
    if isinstance(base.get("hidden_sizes"), int | list):
        base["hidden_sizes"] = str(base["hidden_sizes"]).strip("[]")
    space_arg = search_space
    if Path(search_space).expanduser().is_file():
        space_arg = Path(search_space).expanduser().read_text(encoding="utf-8")
    config = {
        "study_name": study_name,
        "n_trials": n_trials,
        "timeout": timeout,
        "sampler": sampler,
        "pruner": pruner,
        "objectives": objectives,
        "n_workers": workers,
        "seed": seed,
    }
    _check_tuning(space_arg, config, base)  # before any step runs
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if storage and "://" not in storage:
        storage = "journal:" + local_uri(storage.removeprefix("journal:"))
    # The worker and the collecting step are two processes: they share the study through
    # a file (an in-memory study would die with the worker).
    storage = storage or "journal:" + str(out / f"{study_name}.journal")
    arguments = {
        "data_uri": local_uri(data),
        "target": target,
        "search_space": space_arg,
        "study_name": study_name,
        "storage": storage,
        "n_trials": n_trials,
        "timeout": timeout,
        "sampler": sampler,
        "pruner": pruner,
        "objectives": objectives,
        "workers": 1,
        "processes_per_worker": workers,
        "base_config": json.dumps(base),
        "seed": seed,
    }
    result = local.run_local(
        "tuning", arguments, workdir=out / "runs", on_event=progress_printer(sys.stderr)
    )
    written = {}
    for name, filename in (
        ("best_params", "best_params.json"),
        ("summary", "summary.json"),
        ("report", "report.html"),
    ):
        path = result.output_path(name)
        if path is None or not path.is_file():
            raise PipelineError(f"the tuning pipeline handed back no {name} output")
        written[filename] = Path(shutil.copyfile(path, out / filename))
    last = next(e for e in reversed(result.events) if e.get("event") == "success")
    click.echo(last.get("summary", ""))
    best = json.loads(written["best_params.json"].read_text())
    click.echo(f"best parameters: {json.dumps(best, sort_keys=True)}")
    for filename, path in written.items():
        click.echo(f"{filename + ':':<18} {path}")
    click.echo(f"{'log:':<18} {result.log_path}")


def _check_tuning(space: str, config: dict[str, Any], base: dict[str, Any]) -> None:
    """What the tuning steps would refuse (the space, the study settings, the training
    settings every trial starts from), refused before the pipeline starts."""
    from kfgpu.training.config import TrainConfig
    from kfgpu.tuning.config import TuneConfig, check_tunable
    from kfgpu.tuning.space import SearchSpace

    check_tunable(SearchSpace.parse(space))
    TuneConfig.from_dict(config)
    TrainConfig.from_dict(base)
