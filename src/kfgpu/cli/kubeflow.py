"""``kfgpu compile``, ``components``, ``upload``, ``submit``, ``schedule`` and ``doctor``:
what a Kubeflow cluster consumes, and operations on one."""

from __future__ import annotations

import json
from typing import Any

import click

from kfgpu.cli.common import kfp_connection, kfp_options, parse_params
from kfgpu.cli.output import short_type

__all__ = ["compile_cmd", "components", "doctor_cmd", "schedule", "submit_cmd", "upload_cmd"]


@click.command("compile")
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


@click.command()
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
            "  inputs:  " + ", ".join(f"{k} ({short_type(t)})" for k, t in info["inputs"].items())
        )
        click.echo(
            "  outputs: " + ", ".join(f"{k} ({short_type(t)})" for k, t in info["outputs"].items())
        )


@click.command("upload")
@click.argument("pipeline", default="training")
@kfp_options
def upload_cmd(pipeline: str, **kw: Any) -> None:
    """Upload PIPELINE (a name kfgpu knows, or a compiled .yaml) and a content-named version.

    The version is named <kfgpu version>-<sha256 of the package>[:12]; uploading unchanged
    code again creates nothing.
    """
    from kfgpu.compile import compiled
    from kfgpu.ops import client as kclient
    from kfgpu.ops.upload import upload

    conn = kfp_connection(kw)
    with compiled(pipeline) as package:
        result = upload(kclient.connect(conn), package, namespace=conn.namespace)
    click.echo(result.summary())


@click.command("submit")
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
@kfp_options
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
    from kfgpu.compile import compiled
    from kfgpu.errors import OpsError
    from kfgpu.ops import client as kclient
    from kfgpu.ops import submit as ksubmit

    conn = kfp_connection(kw)
    raw = parse_params(params)
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


@click.group()
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
@kfp_options
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

    conn = kfp_connection(kw)
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
@kfp_options
def schedule_list(as_json: bool, **kw: Any) -> None:
    """List the recurring runs kfgpu manages."""
    from kfgpu.ops import client as kclient
    from kfgpu.ops import schedule as ksched

    conn = kfp_connection(kw)
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


@click.command("doctor")
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
@kfp_options
def doctor_cmd(gpus: int, gpu_type: str, **kw: Any) -> None:
    """Check what a run will need: KFP, KServe and Trainer CRDs, GPUs, storage, RBAC."""
    from kfgpu.errors import ConfigError, OpsError
    from kfgpu.ops import client as kclient
    from kfgpu.ops.doctor import run_checks

    conn = kfp_connection(kw)
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
