"""A finished study's outputs: best parameters, a summary, and an HTML report."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.data._atomic import atomic_write_text
from kfgpu.errors import TrainingError
from kfgpu.tuning.config import TuneConfig
from kfgpu.tuning.study import SECONDS_ATTR, SURPLUS_ATTR, WORKER_ATTR, StudyOutcome

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CONFIG_ATTR",
    "best_trial",
    "shipped_config",
    "study_summary",
    "write_html",
    "write_outputs",
]


def _real_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]


def best_trial(study: optuna.Study, config: TuneConfig) -> optuna.trial.FrozenTrial:
    """The best complete trial on the first objective (in its direction); multi-objective,
    the Pareto-optimal one best on the first objective.

    Raises:
        TrainingError: no trial completed.
    """
    import optuna

    complete = [t for t in _real_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        states: dict[str, int] = {}
        for t in _real_trials(study):
            states[t.state.name] = states.get(t.state.name, 0) + 1
        raise TrainingError(
            f"study {config.study_name!r} has no complete trial (trials by state: {states}); "
            "raise n_trials or timeout, loosen the pruner (pruner='none'), or check the "
            "workers' errors"
        )
    sign = -1.0 if config.directions[0] == "maximize" else 1.0
    pool = study.best_trials if config.multi_objective else complete
    # Ties go to the earliest trial.
    return min(pool, key=lambda t: (sign * float(t.values[0]), t.number))


#: The trial user attribute holding the training configuration the trial ran with.
CONFIG_ATTR = "kfgpu_train_config"


def shipped_config(best: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The configuration train_model refits with: the best trial's own, every setting that
    shapes the model (epochs, schedule, seed...), placement settings left out.

    A trial stored without it (an objective other than kfgpu's tabular one): its
    parameters only.
    """
    config = best.user_attrs.get(CONFIG_ATTR)
    return dict(config) if isinstance(config, dict) else dict(best.params)


def _trial_row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "values": t.values,
        "params": t.params,
        "epochs_run": t.user_attrs.get("epochs_run"),
        "worker": t.user_attrs.get(WORKER_ATTR),
        "objective_seconds": t.user_attrs.get(SECONDS_ATTR),
        "retried_from": t.system_attrs.get("failed_trial"),
    }


def study_summary(outcome: StudyOutcome, config: TuneConfig) -> dict[str, Any]:
    """Everything about the study as JSON-able data."""
    study = outcome.study
    trials = _real_trials(study)
    states: dict[str, int] = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = best_trial(study, config)
    summary: dict[str, Any] = {
        "study_name": config.study_name,
        "storage": outcome.storage,
        "objectives": list(config.objectives),
        "directions": config.directions,
        "sampler": config.sampler,
        "pruner": config.pruner,
        "budget": outcome.budget,
        "trials_by_state": states,
        "surplus_trials": sum(1 for t in study.get_trials(deepcopy=False)) - len(trials),
        "epochs_spent": sum(int(t.user_attrs.get("epochs_run") or 0) for t in trials),
        "wall_seconds": round(outcome.wall_seconds, 3),
        "workers": outcome.workers,
        "best": {"number": best.number, "values": best.values, "params": best.params},
        "shipped": {
            "how": "refit",
            "trial": best.number,
            "compared_on": f"{config.objectives[0]} on the validation rows"
            + (
                f" ({best.user_attrs['val_metric_name']})"
                if "val_metric_name" in best.user_attrs
                else ""
            ),
            "config": shipped_config(best),
            "note": (
                "train_model refits the model with exactly this configuration (epochs, "
                "learning-rate schedule, seed and every other model setting) on the same "
                "splits; its validation metric is recorded in the bundle (metrics) beside "
                "this trial's value"
            ),
        },
        "search_space": study.user_attrs.get("kfgpu_search_space"),
        "trials": [_trial_row(t) for t in trials],
    }
    if config.multi_objective:
        summary["pareto_front"] = [
            {"number": t.number, "values": t.values, "params": t.params}
            for t in sorted(study.best_trials, key=lambda t: t.values[0])
        ]
    return summary


def _figures(study: optuna.Study, config: TuneConfig) -> list[tuple[str, Any, str]]:
    """(title, figure or None, note) for each plot of the report."""
    import optuna
    from optuna import visualization as vis

    target = (lambda t: t.values[0]) if config.multi_objective else None
    name = config.objectives[0]
    figs: list[tuple[str, Any, str]] = []
    try:
        figs.append(
            (
                "Optimisation history",
                vis.plot_optimization_history(study, target=target, target_name=name),
                "",
            )
        )
    except Exception as e:  # plots must never fail the study
        figs.append(("Optimisation history", None, f"not drawn: {e}"))
    complete = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    distinct = {json.dumps(t.params, sort_keys=True, default=str) for t in complete}
    if len(complete) < 2 or len(distinct) < 2:
        figs.append(
            ("Parameter importances", None, "not drawn: fewer than 2 distinct complete trials")
        )
    else:
        try:
            figs.append(
                (
                    "Parameter importances",
                    vis.plot_param_importances(study, target=target, target_name=name),
                    "fANOVA importance of each parameter for the objective",
                )
            )
        except Exception as e:
            figs.append(("Parameter importances", None, f"not drawn: {e}"))
    if config.multi_objective:
        try:
            figs.append(
                (
                    "Pareto front",
                    vis.plot_pareto_front(study, target_names=list(config.objectives)),
                    "",
                )
            )
        except Exception as e:
            figs.append(("Pareto front", None, f"not drawn: {e}"))
    elif config.pruner != "none":
        try:
            figs.append(
                ("Learning curves (intermediate values)", vis.plot_intermediate_values(study), "")
            )
        except Exception as e:
            figs.append(("Learning curves", None, f"not drawn: {e}"))
    return figs


def write_html(
    path: str | os.PathLike[str], summary: dict[str, Any], study: optuna.Study, config: TuneConfig
) -> None:
    """A self-contained HTML report (plotly's JavaScript inline: it opens offline)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>kfgpu-tune {html.escape(config.study_name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style>",
        "</head><body class='kfgpu-tune'>",
        f"<h1>Study {html.escape(config.study_name)}</h1>",
        "<table>",
    ]
    states = summary["trials_by_state"]
    rows = [
        ("storage", summary["storage"]),
        (
            "objectives",
            ", ".join(
                f"{o} ({'maximised' if d == 'maximize' else 'minimised'})"
                for o, d in zip(summary["objectives"], summary["directions"], strict=True)
            ),
        ),
        ("sampler / pruner", f"{config.sampler} / {config.pruner}"),
        ("budget", summary["budget"]),
        ("trials", ", ".join(f"{k.lower()} {v}" for k, v in states.items() if v)),
        ("epochs spent", summary["epochs_spent"]),
        ("best trial", f"#{summary['best']['number']}: {summary['best']['values']}"),
        ("best parameters", json.dumps(summary["best"]["params"], default=str)),
        ("compared on", summary["shipped"]["compared_on"]),
        (
            "shipped model",
            f"a refit with trial #{summary['shipped']['trial']}'s exact configuration: "
            + json.dumps(summary["shipped"]["config"], sort_keys=True, default=str),
        ),
    ]
    for k, v in rows:
        parts.append(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>")
    parts.append("</table>")
    first = True
    for title, fig, note in _figures(study, config):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if note:
            parts.append(f"<p>{html.escape(note)}</p>")
        if fig is not None:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=first))
            first = False
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))


def write_outputs(
    outcome: StudyOutcome,
    config: TuneConfig,
    *,
    best_params_path: str | os.PathLike[str] | None = None,
    summary_path: str | os.PathLike[str] | None = None,
    report_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write whichever outputs have a path; return the summary."""
    summary = study_summary(outcome, config)
    if best_params_path:
        Path(best_params_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            best_params_path,
            json.dumps(summary["shipped"]["config"], indent=2, sort_keys=True, default=str) + "\n",
        )
    if summary_path:
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(summary_path, json.dumps(summary, indent=2, default=str) + "\n")
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        write_html(report_path, summary, outcome.study, config)
    return summary
