"""The ``kfgpu`` command, one module per command group (as ``kfp.cli`` is):

* :mod:`kfgpu.cli.run`: ``run``, ``tune`` (a pipeline run locally with ``kfp.local``)
* :mod:`kfgpu.cli.data`: ``data``, ``validate``, ``drift``
* :mod:`kfgpu.cli.model`: ``evaluate``, ``model`` (the MLflow registry)
* :mod:`kfgpu.cli.serve`: ``serve``, ``predict``, ``deploy``, ``canary``
* :mod:`kfgpu.cli.kubeflow`: ``compile``, ``components``, ``upload``, ``submit``,
  ``schedule``, ``doctor``
* :mod:`kfgpu.cli.output`: how results print; :mod:`kfgpu.cli.common`: the context object
  (:class:`~kfgpu.cli.common.CliState`) and what the groups share.

Errors print as one line (``error: ...``) and exit 1; ``--debug`` shows the traceback.
Commands with their own verdicts exit 3 (``drift --fail-on-drift``, ``evaluate
--fail-on-block``). Imports are deferred to each command so ``kfgpu --help`` answers at once.
"""

from __future__ import annotations

import sys

import click

from kfgpu._version import __version__
from kfgpu.cli.common import CliState
from kfgpu.cli.data import data, drift, validate_cmd
from kfgpu.cli.kubeflow import (
    compile_cmd,
    components,
    doctor_cmd,
    schedule,
    submit_cmd,
    upload_cmd,
)
from kfgpu.cli.model import evaluate_cmd, model
from kfgpu.cli.output import err
from kfgpu.cli.run import run, tune_cmd
from kfgpu.cli.serve import canary, deploy_cmd, predict_cmd, serve_cmd
from kfgpu.errors import KfgpuError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kfgpu")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """kfgpu: Kubeflow Pipelines components for GPU clusters.

    Run the training pipeline locally, compile components and pipelines for Kubeflow,
    and list what the suite offers.
    """
    ctx.ensure_object(CliState).debug = debug


for _command in (
    run,
    tune_cmd,
    data,
    validate_cmd,
    drift,
    evaluate_cmd,
    model,
    serve_cmd,
    predict_cmd,
    deploy_cmd,
    canary,
    compile_cmd,
    components,
    upload_cmd,
    submit_cmd,
    schedule,
    doctor_cmd,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning kfgpu errors into one line and exit code 1.

    Everything the command prints and logs is redacted: a password or token in a URI shows
    as ``***`` (:mod:`kfgpu._redact`).
    """
    from kfgpu._redact import install

    install()
    state = CliState()
    try:
        cli.main(args=argv, prog_name="kfgpu", standalone_mode=False, obj=state)
    except click.exceptions.Abort:
        err("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KfgpuError as e:
        if state.debug:
            raise
        err(f"error: {' '.join(str(e).split())}")
        return 1
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    return 0


def _console() -> None:
    """The console script: exit with :func:`main`'s status."""
    sys.exit(main())
