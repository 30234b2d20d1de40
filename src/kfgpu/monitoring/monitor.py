"""Watch a deployed model: drift, data checks and live quality against its reference.

:func:`monitor` compares what an endpoint saw (the inference logs) with the reference
profile the champion bundle carries (its training data), and decides by a declarative
:class:`MonitorPolicy`:

* ``data_drift``: the drift verdict of :func:`kfgpu.validation.drift.decide` on the logged
  features and the model's output (model-aware: drifted columns weighed by the model's
  feature importance, and drift of the model's output; see
  :mod:`kfgpu.monitoring.drift_check`). A drifted column the model does not depend on is
  reported but raises no alarm by itself;
* ``data_quality``: columns missing from the logs, a null share well above training's,
  categories training never saw, numbers outside training's range;
* ``concept_drift``: with labels (joined on the request id), the live accuracy (or RMSE)
  against the bundle's validation figure.

Drift of either kind asks for retraining (``retrain``); a data-quality failure does not
(retraining on broken inputs trains the breakage in): it is reported and notified. Fewer
rows than ``min_rows`` give no verdict at all (``insufficient_data``), so a quiet hour
never raises an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from kfgpu.description import BundleDescription
    from kfgpu.monitoring.drift_check import ModelView
    from kfgpu.validation.drift import DriftResult
    from kfgpu.validation.profile import ReferenceProfile

__all__ = ["MonitorPolicy", "MonitorVerdict", "monitor", "quality_issues", "read_logs"]

_TRIGGERS = ("data_drift", "concept_drift", "data_quality")


@dataclass(frozen=True)
class MonitorPolicy:
    """When the monitor raises an alarm, and which alarms ask for retraining.

    Attributes:
        min_rows: fewer logged rows in the window give no verdict (``insufficient_data``).
        drift: a :class:`~kfgpu.validation.drift.DriftConfig` as a dict (``alpha``,
            ``correction``, effect sizes, ``importance_share``, ``drift_share``, ``ignore``);
            empty: its defaults.
        max_null_increase: a column whose null share exceeds training's by more is a
            data-quality failure.
        max_unseen_fraction: a categorical column with a larger share of values training
            never saw is a data-quality failure.
        max_out_of_range_fraction: a numeric column with a larger share of values outside
            training's [min, max] is a data-quality failure.
        max_accuracy_drop: live accuracy this far below the bundle's validation accuracy
            (absolute) is concept drift (classification).
        max_rmse_increase: live RMSE this much above the validation RMSE (relative) is
            concept drift (regression).
        min_labelled_rows: fewer labelled rows skip the concept-drift check.
        retrain_on: the alarms that ask for retraining.
    """

    min_rows: int = 500
    drift: Mapping[str, Any] = field(default_factory=dict)
    max_null_increase: float = 0.1
    max_unseen_fraction: float = 0.05
    max_out_of_range_fraction: float = 0.05
    max_accuracy_drop: float = 0.05
    max_rmse_increase: float = 0.2
    min_labelled_rows: int = 200
    retrain_on: tuple[str, ...] = ("data_drift", "concept_drift")

    def __post_init__(self) -> None:
        from kfgpu.validation.drift import DriftConfig

        if (
            isinstance(self.min_rows, bool)
            or not isinstance(self.min_rows, int)
            or self.min_rows < 1
        ):
            raise ConfigError(f"min_rows={self.min_rows!r} is invalid: use a positive count")
        for name in (
            "max_null_increase",
            "max_unseen_fraction",
            "max_out_of_range_fraction",
            "max_accuracy_drop",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name}={value!r} is invalid: use a share in [0, 1]")
        if not (isinstance(self.max_rmse_increase, (int, float)) and self.max_rmse_increase >= 0):
            raise ConfigError(
                f"max_rmse_increase={self.max_rmse_increase!r} is invalid: use 0 or more"
            )
        unknown = [t for t in self.retrain_on if t not in _TRIGGERS]
        if unknown:
            raise ConfigError(
                f"retrain_on={list(self.retrain_on)!r} names {unknown}; use some of {list(_TRIGGERS)}"
            )
        DriftConfig.from_dict(dict(self.drift))  # refuse a bad drift config now

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorPolicy:
        from kfgpu.validation.drift import reject_unknown_keys

        reject_unknown_keys(data, list(cls.__dataclass_fields__), "the monitoring policy")
        d = dict(data)
        if "retrain_on" in d:
            d["retrain_on"] = tuple(d["retrain_on"])
        return cls(**d)

    @classmethod
    def parse(cls, text: str) -> MonitorPolicy:
        """A policy from JSON or YAML text, or from the file at a path or URI holding it
        (empty: the defaults).

        Raises:
            ConfigError: the text is not a mapping, the file cannot be read, or a field is
                invalid.
        """
        if not text.strip():
            return cls()
        import yaml

        source = "the monitoring policy"
        if _looks_like_location(text):
            source = f"the monitoring policy file {text.strip()!r}"
            text = _read_policy_file(text.strip())
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source} is not JSON or YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source} must be a mapping such as {{min_rows: 500}}, or the path of a "
                f"YAML/JSON file holding one; got {text.strip()[:80]!r}"
            )
        return cls.from_dict(data)


_POLICY_SUFFIXES = (".yaml", ".yml", ".json")


def _looks_like_location(text: str) -> bool:
    """A one-line value naming a file: a URI, a YAML/JSON file name, or an existing path."""
    import os

    value = text.strip()
    if "\n" in value or value.startswith(("{", "[")):
        return False
    if "://" in value or value.lower().endswith(_POLICY_SUFFIXES):
        return True
    return ": " not in value and os.path.isfile(value)


def _read_policy_file(location: str) -> str:
    import fsspec

    try:
        with fsspec.open(location, "r", encoding="utf-8") as f:
            return str(f.read())
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(
            f"policy={location!r} names a file that cannot be read ({type(e).__name__}: {e}); "
            "pass an existing YAML/JSON file path or URI, or the policy itself inline"
        ) from e


@dataclass
class MonitorVerdict:
    """What :func:`monitor` found. ``status`` is ``ok``, ``alarm`` or ``insufficient_data``."""

    status: str
    retrain: bool
    alarms: list[str]
    reasons: list[str]
    rows: int
    drift: dict[str, Any] | None = None
    quality: list[dict[str, Any]] = field(default_factory=list)
    concept: dict[str, Any] | None = None
    model_versions: list[str] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        if self.status == "insufficient_data":
            return self.reasons[0]
        head = "retrain" if self.retrain else ("alarm" if self.alarms else "ok")
        return f"{head}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary}


def _drift_reason(result: DriftResult) -> str:
    """The drift verdict as one reason: ``data drift: ...``, ``no data drift: ...`` or
    ``data drift: insufficient data: ...``, then the verdict's own reasons."""
    head = {
        "drift": "data drift",
        "no_drift": "no data drift",
        "insufficient_data": "data drift: insufficient data",
    }[result.status]
    return f"{head}: " + "; ".join(result.reasons)


def read_logs(
    uri: str,
    *,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Every inference-log row under ``uri`` (see :mod:`kfgpu.monitoring.logger`) in the
    time window ``[since, until)``; an empty frame when there is none.

    Day partitions that cannot hold a row of the window are not read: a file under
    ``date=D/`` was written on day D, after every row it holds, so its rows are from D or,
    near midnight, the day before.
    """
    import datetime
    import re

    import fsspec
    import pandas as pd

    def may_hold_window(path: str) -> bool:
        m = re.search(r"/date=(\d{4}-\d{2}-\d{2})/", path)
        if m is None:
            return True
        day = datetime.date.fromisoformat(m.group(1))
        if since is not None and day < since.date():
            return False
        return until is None or day - datetime.timedelta(days=1) <= until.date()

    fs, root = fsspec.core.url_to_fs(uri)
    files = sorted(
        p
        for p in fs.glob(f"{root.rstrip('/')}/**/*.parquet")
        if not p.rsplit("/", 1)[-1].startswith(".") and may_hold_window(p)
    )
    if not files:
        return pd.DataFrame()
    frames = []
    for path in files:
        with fs.open(path, "rb") as f:
            frames.append(pd.read_parquet(f))
    df = pd.concat(frames, ignore_index=True)
    if "_ts" in df.columns:
        if since is not None:
            df = df[df["_ts"] >= since]
        if until is not None:
            df = df[df["_ts"] < until]
    return df.reset_index(drop=True)


def quality_issues(
    df: pd.DataFrame, reference: ReferenceProfile, features: Sequence[str], policy: MonitorPolicy
) -> list[dict[str, Any]]:
    """Data-quality failures of the logged features against the training profile."""
    import numpy as np
    import pandas as pd

    issues: list[dict[str, Any]] = []
    missing = [c for c in features if c not in df.columns]
    if missing:
        issues.append(
            {
                "column": None,
                "check": "missing_columns",
                "value": missing,
                "message": f"feature column(s) {missing} are not in the logs",
            }
        )
    n = len(df)
    for name in features:
        if name not in df.columns or name not in reference.columns or n == 0:
            continue
        col = reference.columns[name]
        series = df[name]
        ref_total = max(1, col.stats.total)
        null_now = float(series.isna().mean())
        null_ref = col.stats.null_count / ref_total
        if null_now - null_ref > policy.max_null_increase:
            issues.append(
                {
                    "column": name,
                    "check": "null_increase",
                    "value": round(null_now, 4),
                    "message": f"{name}: {null_now:.1%} missing vs {null_ref:.1%} in training",
                }
            )
        if col.kind == "categorical":
            counts = col.categorical
            if counts.truncated:
                continue  # training's domain is not fully known: no unseen check
            present = series.dropna().astype(str)
            if len(present):
                unseen = float((~present.isin(set(counts.counts))).mean())
                if unseen > policy.max_unseen_fraction:
                    issues.append(
                        {
                            "column": name,
                            "check": "unseen_categories",
                            "value": round(unseen, 4),
                            "message": f"{name}: {unseen:.1%} of values never seen in training",
                        }
                    )
        else:
            sketch = col.numeric
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values) and math.isfinite(sketch.min) and math.isfinite(sketch.max):
                outside = float(((values < sketch.min) | (values > sketch.max)).mean())
                if outside > policy.max_out_of_range_fraction:
                    issues.append(
                        {
                            "column": name,
                            "check": "out_of_range",
                            "value": round(outside, 4),
                            "message": f"{name}: {outside:.1%} of values outside training's "
                            f"[{sketch.min:.4g}, {sketch.max:.4g}]",
                        }
                    )
    return issues


def _concept(
    df: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    target: str,
    description: BundleDescription,
    policy: MonitorPolicy,
) -> dict[str, Any]:
    """Live quality on the labelled rows against the bundle's validation figure."""
    import numpy as np

    if target not in labels.columns or "_request_id" not in labels.columns:
        raise ConfigError(
            f"labels need columns '_request_id' and {target!r} (the target); they have "
            f"{list(labels.columns)[:10]}"
        )
    joined = df.merge(labels[["_request_id", target]], on="_request_id", how="inner")
    # A request of several rows is labelled row by row: keep rows in request order.
    out: dict[str, Any] = {"labelled_rows": len(joined)}
    if len(joined) < policy.min_labelled_rows:
        out["skipped"] = (
            f"{len(joined)} labelled rows < min_labelled_rows {policy.min_labelled_rows}"
        )
        return out
    metrics = description.metrics or {}
    if description.task == "classification":
        live = float((joined["prediction"].astype(str) == joined[target].astype(str)).mean())
        # Served labels follow the bundle's stored decision (a threshold chosen on the
        # validation rows): compare with the validation accuracy at that same decision.
        # Bundles without one (argmax) fall back to the trainer's val_accuracy.
        at_decision = (description.decision or {}).get("validation", {}).get("accuracy")
        ref = at_decision if at_decision is not None else metrics.get("val_accuracy")
        out |= {"metric": "accuracy", "live": live, "reference": ref}
        out["drifted"] = ref is not None and (float(ref) - live) > policy.max_accuracy_drop
    else:
        scale = description.target_scale
        err = joined["value"].to_numpy(dtype=np.float64) - joined[target].to_numpy(dtype=np.float64)
        live = float(np.sqrt(np.mean(err**2)))
        val_loss = metrics.get("val_loss")
        ref = math.sqrt(float(val_loss)) * scale if val_loss is not None else None
        out |= {"metric": "rmse", "live": live, "reference": ref}
        out["drifted"] = ref is not None and live > ref * (1.0 + policy.max_rmse_increase)
    return out


def monitor(
    logs: pd.DataFrame,
    reference: ReferenceProfile,
    *,
    description: BundleDescription,
    policy: MonitorPolicy | None = None,
    labels: pd.DataFrame | None = None,
    model: ModelView | None = None,
) -> MonitorVerdict:
    """Judge logged traffic against the champion's reference profile (see the module doc).

    Args:
        logs: inference-log rows (raw features, outputs, ``_request_id``...).
        reference: the training data's profile (the bundle's ``reference/``).
        description: the bundle's description (signature, task, target, metrics).
        policy: thresholds and triggers; None: :class:`MonitorPolicy` defaults.
        labels: ground truth that arrived later: ``_request_id`` and the target column.
        model: the served model's view (importance and output) for a model-aware drift
            verdict; None: the share-of-columns rule.
    """
    from kfgpu.monitoring.drift_check import check_frame
    from kfgpu.validation.drift import DriftConfig

    policy = policy or MonitorPolicy()
    target = description.target
    features = description.input_names
    versions = sorted({str(v) for v in logs.get("_model_version", [])}) if len(logs) else []
    if len(logs) < policy.min_rows:
        return MonitorVerdict(
            status="insufficient_data",
            retrain=False,
            alarms=[],
            reasons=[f"insufficient data: {len(logs)} logged rows < min_rows {policy.min_rows}"],
            rows=len(logs),
            model_versions=versions,
        )
    alarms: list[str] = []
    reasons: list[str] = []
    quality = quality_issues(logs, reference, features, policy)
    if quality:
        alarms.append("data_quality")
        reasons.append(
            f"data quality: {len(quality)} issue(s): "
            + "; ".join(q["message"] for q in quality[:3])
        )
    result = check_frame(
        reference,
        logs,
        DriftConfig.from_dict(dict(policy.drift)),
        model=model,
        exclude=[target],
    )
    if result is None:
        raise ConfigError(
            f"no column of the model's reference profile {list(reference.columns)[:10]} is in "
            "the logs; they are not this model's inference logs"
        )
    drift = result.to_dict()
    if model is not None:
        drift["model"] = model.to_dict()
    if result.dataset_drift:
        alarms.append("data_drift")
    reasons.append(_drift_reason(result))
    concept: dict[str, Any] | None = None
    if labels is not None and len(labels):
        concept = _concept(logs, labels, target=target, description=description, policy=policy)
        if concept.get("drifted"):
            alarms.append("concept_drift")
            reasons.append(
                f"concept drift: live {concept['metric']} {concept['live']:.4f} vs "
                f"{concept['reference']:.4f} at validation"
            )
        elif "live" in concept:
            reasons.append(f"live {concept['metric']} {concept['live']:.4f} (no concept drift)")
    retrain = any(a in policy.retrain_on for a in alarms)
    return MonitorVerdict(
        status="alarm" if alarms else "ok",
        retrain=retrain,
        alarms=alarms,
        reasons=reasons,
        rows=len(logs),
        drift=drift,
        quality=quality,
        concept=concept,
        model_versions=versions,
    )
