"""The tune_hyperparameters and tune_worker steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfgpu._step import StepResult, step

__all__ = ["TuneOutput", "tune_hyperparameters_step", "tune_worker_step"]


@dataclass(frozen=True)
class TuneOutput:
    """What :func:`tune_hyperparameters_step` returns beside its files.

    Attributes:
        best_params: the best trial's configuration as train_model refits it (``{}``:
            tuning was skipped).
        summary: the study summary (``{"skipped": True}`` when skipped).
    """

    best_params: dict[str, Any]
    summary: dict[str, Any]


TABULAR = "kfgpu.tuning.objective:tabular_objective"


def _prepare(
    search_space: Any, config: dict[str, Any], base_config: dict[str, Any] | None
) -> tuple[Any, Any, dict[str, Any], int | str]:
    from kfgpu.training.config import TrainConfig
    from kfgpu.tuning.config import TuneConfig, check_tunable
    from kfgpu.tuning.space import SearchSpace

    space = SearchSpace.parse(search_space)
    check_tunable(space)
    cfg = TuneConfig.from_dict(config)
    base = dict(base_config or {})
    train_cfg = TrainConfig.from_dict(base)
    max_epochs: int | str = train_cfg.max_epochs
    if "max_epochs" in space.names:
        max_epochs = "auto"
    return space, cfg, base, max_epochs


def _run_tabular(
    space: Any, cfg: Any, base: dict[str, Any], max_epochs: int | str, **data: str
) -> Any:
    """The study on kfgpu's tabular objective; ``data``: the splits, transform, target, task."""
    from kfgpu.tuning.study import run_study

    return run_study(
        space,
        cfg,
        factory=TABULAR,
        kwargs={**data, "base_config": base},
        max_resource=max_epochs,
    )


@step("tune_hyperparameters")
def tune_hyperparameters_step(
    *,
    train_path: str,
    val_path: str,
    transform_path: str,
    target: str,
    task: str,
    search_space: Any,
    config: dict[str, Any],
    base_config: dict[str, Any] | None = None,
    best_params_path: str = "",
    summary_path: str = "",
    report_path: str = "",
) -> StepResult[TuneOutput]:
    """Run (or resume, or only collect) a study training kfgpu's tabular model, then write
    the best parameters (JSON), a summary (JSON) and an HTML report.

    ``config`` is a :class:`~kfgpu.tuning.config.TuneConfig` as a dict, ``base_config``
    a :class:`~kfgpu.training.config.TrainConfig` as a dict that every trial starts from.

    An empty ``search_space`` (``""``) runs no study and writes ``{}`` as the best
    parameters: a pipeline can always wire this step into train_model and leave tuning
    off by default.

    Raises:
        ConfigError: an invalid search space or setting (named).
        TrainingError: no trial completed, or every worker process failed.
    """
    from kfgpu.tuning.report import best_trial, shipped_config, write_outputs

    if isinstance(search_space, str) and not search_space.strip():
        return _skipped(best_params_path, summary_path, report_path)
    space, cfg, base, max_epochs = _prepare(search_space, config, base_config)
    outcome = _run_tabular(
        space,
        cfg,
        base,
        max_epochs,
        train_path=train_path,
        val_path=val_path,
        transform_path=transform_path,
        target=target,
        task=task,
    )
    summary = write_outputs(
        outcome,
        cfg,
        best_params_path=best_params_path,
        summary_path=summary_path,
        report_path=report_path,
    )
    best = best_trial(outcome.study, cfg)
    states = summary["trials_by_state"]
    metrics: dict[str, float] = {
        "best_" + name: float(value)
        for name, value in zip(cfg.objectives, best.values, strict=True)
    }
    metrics.update(
        best_trial=float(best.number),
        trials_complete=float(states["COMPLETE"]),
        trials_pruned=float(states["PRUNED"]),
        trials_failed=float(states["FAIL"]),
        epochs_spent=float(summary["epochs_spent"]),
        wall_seconds=float(summary["wall_seconds"]),
    )
    return StepResult(
        metrics=metrics,
        metadata={
            "best_params": {
                "study_name": cfg.study_name,
                "trial": best.number,
                "values": list(best.values),
                "objectives": list(cfg.objectives),
            }
        },
        summary=(
            f"study {cfg.study_name!r}: {states['COMPLETE']} complete, {states['PRUNED']} "
            f"pruned, {states['FAIL']} failed; best {cfg.objectives[0]} "
            f"{best.values[0]:.4f} (trial {best.number}) with {best.params}; train_model "
            "refits with that trial's exact configuration"
        ),
        output=TuneOutput(best_params=shipped_config(best), summary=summary),
    )


def _skipped(best_params_path: str, summary_path: str, report_path: str) -> StepResult[TuneOutput]:
    """An empty search space: no study; ``{}`` (no overrides) as the best parameters."""
    import json
    from pathlib import Path

    note = "tuning skipped: the search space is empty"
    for path, text in (
        (best_params_path, "{}\n"),
        (summary_path, json.dumps({"skipped": True, "reason": note}) + "\n"),
        (report_path, f"<!doctype html><html><body><p>{note}</p></body></html>\n"),
    ):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
    return StepResult(
        metrics={"trials_complete": 0.0},
        summary=note,
        output=TuneOutput(best_params={}, summary={"skipped": True}),
    )


@step("tune_worker")
def tune_worker_step(
    *,
    train_path: str,
    val_path: str,
    transform_path: str,
    target: str,
    task: str,
    search_space: Any,
    config: dict[str, Any],
    base_config: dict[str, Any] | None = None,
) -> StepResult:
    """Run ``config['n_workers']`` workers on a shared study until its budget is spent
    (one of many pods on one RDB storage); write nothing but metrics.

    Raises:
        ConfigError: invalid settings, or no shared storage (an in-memory study cannot
            be shared).
        TrainingError: every worker process failed.
    """
    from kfgpu.errors import ConfigError
    from kfgpu.tuning.study import STORAGE_ENV, resolve_storage

    space, cfg, base, max_epochs = _prepare(search_space, config, base_config)
    if not resolve_storage(cfg.storage, n_workers=1):
        raise ConfigError(
            f"storage='' is invalid for tune_worker: workers in several pods share a study "
            f"through an RDB; give a postgresql:// URL or set {STORAGE_ENV}"
        )
    outcome = _run_tabular(
        space,
        cfg,
        base,
        max_epochs,
        train_path=train_path,
        val_path=val_path,
        transform_path=transform_path,
        target=target,
        task=task,
    )
    ran = sorted(n for w in outcome.workers for n in w["trials"])
    by_number = {t.number: t for t in outcome.study.get_trials(deepcopy=False)}
    states = [by_number[n].state.name for n in ran if n in by_number]
    return StepResult(
        metrics={
            "trials_run": float(len(ran)),
            "trials_complete": float(states.count("COMPLETE")),
            "trials_pruned": float(states.count("PRUNED")),
            "trials_failed": float(states.count("FAIL")),
            "wall_seconds": outcome.wall_seconds,
        },
        summary=f"worker ran trials {ran} of study {cfg.study_name!r} in {outcome.storage}",
    )
