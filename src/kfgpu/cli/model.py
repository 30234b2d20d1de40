"""``kfgpu evaluate`` and ``kfgpu model``: judge a bundle, and the MLflow model registry."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kfgpu.cli.common import ALLOW_OPTION, URI_OPTION, WORKDIR_OPTION, local_uri, registry_uri

__all__ = ["evaluate_cmd", "model"]


@click.command("evaluate")
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
        bundle_path=local_uri(bundle),
        test_path=local_uri(test),
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


@click.group()
def model() -> None:
    """The MLflow model registry: list, register, promote, roll back."""


@model.command("list")
@click.argument("name", required=False)
@URI_OPTION
@WORKDIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def model_list(name: str | None, tracking_uri: str, workdir: str, as_json: bool) -> None:
    """List registered models, or NAME's versions with aliases and key metrics.

    Outside the workdir of a `kfgpu run` (no --tracking-uri, no MLFLOW_TRACKING_URI) there
    is no store to list: that is an error (exit 1), and no empty store is created.
    """
    from kfgpu.registry import models

    uri = registry_uri(tracking_uri, workdir, must_exist=True)
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
@URI_OPTION
@WORKDIR_OPTION
@ALLOW_OPTION
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

    uri = registry_uri(tracking_uri, workdir)
    if do_promote and not allow_signature_change:
        from kfgpu.bundle import read_description
        from kfgpu.registry.identity import ModelIdentity

        identity = ModelIdentity.from_description(read_description(local_uri(bundle)))
        models.check_same_model(name, identity, tracking_uri=uri)  # before registering
    info = models.register_bundle(
        local_uri(bundle),
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
@URI_OPTION
@WORKDIR_OPTION
@ALLOW_OPTION
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
        tracking_uri=registry_uri(tracking_uri, workdir, must_exist=True),
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
@URI_OPTION
@WORKDIR_OPTION
def model_rollback(name: str, tracking_uri: str, workdir: str) -> None:
    """Make NAME's previous-champion the champion again."""
    from kfgpu.registry import models

    event = models.rollback(name, tracking_uri=registry_uri(tracking_uri, workdir, must_exist=True))
    click.echo(f"champion of {name}: v{event['version']} (rolled back from v{event['previous']})")
