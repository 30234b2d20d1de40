"""The search space of a study, declared as data (a dict, JSON or YAML), validated up front.

::

    learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    batch_size:    {type: int, low: 128, high: 1024, step: 128}
    hidden_sizes:  {type: categorical, choices: ["64", "128,64", "256,256"]}
    use_dropout:   {type: categorical, choices: [true, false]}
    dropout:       {type: float, low: 0.0, high: 0.5, condition: {param: use_dropout, equals: true}}

A parameter with a ``condition`` is only suggested in trials where the named parameter
(declared earlier) has the given value (``equals``) or one of the given values (``in``);
other trials run with the training default. Every error names the parameter, the value
and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["Param", "SearchSpace"]

_TYPES = ("int", "float", "categorical")
_KEYS = {
    "int": {"type", "low", "high", "step", "log", "condition"},
    "float": {"type", "low", "high", "step", "log", "condition"},
    "categorical": {"type", "choices", "condition"},
}
_CHOICE_TYPES = (str, int, float, bool, type(None))
_ABSENT = object()


@dataclass(frozen=True)
class Param:
    """One parameter of the space (see the module docstring for the fields)."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    condition_param: str | None = None
    condition_values: tuple[Any, ...] = ()

    @property
    def conditional(self) -> bool:
        return self.condition_param is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high)
            if self.step is not None:
                d["step"] = self.step
            if self.log:
                d["log"] = True
        if self.condition_param is not None:
            d["condition"] = {"param": self.condition_param, "in": list(self.condition_values)}
        return d


def _number(name: str, key: str, value: Any, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"search space parameter {name!r}: {key}={value!r} is invalid: use a finite number"
        )
    if integer and float(value) != int(value):
        raise ConfigError(
            f"search space parameter {name!r}: {key}={value!r} is invalid: an int parameter "
            "needs whole-number bounds and step"
        )
    return float(value)


def _parse_param(name: str, raw: Any, declared: Mapping[str, Param]) -> Param:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"search space parameter name {name!r} is invalid: use a non-empty name")
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"search space parameter {name!r}={raw!r} is invalid: give a mapping like "
            '{"type": "float", "low": 0.0, "high": 0.5}'
        )
    kind = raw.get("type")
    if kind not in _TYPES:
        raise ConfigError(
            f"search space parameter {name!r}: type={kind!r} is invalid: use one of {list(_TYPES)}"
        )
    unknown = sorted(set(raw) - _KEYS[kind])
    if unknown:
        raise ConfigError(
            f"search space parameter {name!r}: unknown key(s) {unknown} for type {kind!r}; "
            f"known: {sorted(_KEYS[kind])}"
        )
    cond_param: str | None = None
    cond_values: tuple[Any, ...] = ()
    if "condition" in raw:
        cond = raw["condition"]
        if (
            not isinstance(cond, Mapping)
            or "param" not in cond
            or len({"equals", "in"} & set(cond)) != 1
            or set(cond) - {"param", "equals", "in"}
        ):
            raise ConfigError(
                f"search space parameter {name!r}: condition={cond!r} is invalid: use "
                '{"param": "<earlier parameter>", "equals": <value>} or "in": [<values>]'
            )
        cond_param = cond["param"]
        if cond_param not in declared:
            raise ConfigError(
                f"search space parameter {name!r}: condition param={cond_param!r} is invalid: "
                f"it must name a parameter declared before {name!r} (declared: {list(declared)})"
            )
        parent = declared[cond_param]
        if "in" in cond:
            if not isinstance(cond["in"], list | tuple) or not cond["in"]:
                raise ConfigError(
                    f"search space parameter {name!r}: condition in={cond['in']!r} is invalid: "
                    "give a non-empty list of values"
                )
            cond_values = tuple(cond["in"])
        else:
            cond_values = (cond["equals"],)
        if parent.type == "categorical":
            missing = [v for v in cond_values if v not in parent.choices]
            if missing:
                raise ConfigError(
                    f"search space parameter {name!r}: condition values {missing} are not "
                    f"choices of {cond_param!r} {list(parent.choices)}: the condition could "
                    "never hold"
                )
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise ConfigError(
                f"search space parameter {name!r}: choices={choices!r} is invalid: give a "
                'non-empty list such as ["128", "256,256"]'
            )
        bad = [c for c in choices if not isinstance(c, _CHOICE_TYPES)]
        if bad:
            raise ConfigError(
                f"search space parameter {name!r}: choices {bad!r} are invalid: use strings, "
                'numbers, booleans or null (write a layer list as a string: "256,256")'
            )
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(
                f"search space parameter {name!r}: choices={list(choices)!r} has duplicates; "
                "list each choice once"
            )
        return Param(
            name,
            kind,
            choices=tuple(choices),
            condition_param=cond_param,
            condition_values=cond_values,
        )
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in raw:
            raise ConfigError(
                f"search space parameter {name!r}: {key} is missing: a {kind} parameter needs "
                "low and high"
            )
    low = _number(name, "low", raw["low"], integer=integer)
    high = _number(name, "high", raw["high"], integer=integer)
    if not low < high:
        raise ConfigError(
            f"search space parameter {name!r}: low={raw['low']!r}, high={raw['high']!r} is "
            "invalid: low must be below high"
        )
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(
            f"search space parameter {name!r}: log={log!r} is invalid: use true or false"
        )
    if log and low <= 0:
        raise ConfigError(
            f"search space parameter {name!r}: low={raw['low']!r} with log=true is invalid: "
            "a log-scaled range needs low > 0"
        )
    step: float | None = None
    if raw.get("step") is not None:
        step = _number(name, "step", raw["step"], integer=integer)
        if step <= 0:
            raise ConfigError(
                f"search space parameter {name!r}: step={raw['step']!r} is invalid: use a "
                "positive step"
            )
        if log:
            raise ConfigError(
                f"search space parameter {name!r}: step and log=true together are invalid: "
                "Optuna samples a log scale continuously; drop one of them"
            )
    return Param(
        name,
        kind,
        low=low,
        high=high,
        step=step,
        log=log,
        condition_param=cond_param,
        condition_values=cond_values,
    )


@dataclass(frozen=True)
class SearchSpace:
    """An ordered, validated set of :class:`Param`."""

    params: tuple[Param, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(
                f"search_space={raw!r} is invalid: give at least one parameter, e.g. "
                '{"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true}}'
            )
        declared: dict[str, Param] = {}
        for name, spec in raw.items():
            declared[name] = _parse_param(name, spec, declared)
        return cls(tuple(declared.values()))

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | SearchSpace) -> SearchSpace:
        """From a mapping, JSON or YAML text, or a path to a ``.json``/``.yaml`` file."""
        if isinstance(value, SearchSpace):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"search_space={value!r} is invalid: give JSON or YAML text, or a path to a "
                ".json/.yaml file"
            )
        text = value
        stripped = value.strip()
        if stripped.endswith((".json", ".yaml", ".yml")) and "\n" not in stripped:
            path = Path(stripped).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"search_space={value!r} is invalid: no such file; give an existing path "
                    "or the space itself as JSON/YAML text"
                )
            text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ConfigError(
                    f"search_space is neither JSON nor YAML ({' '.join(str(e).split())[:200]})"
                ) from e
        return cls.from_dict(data)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every parameter whose condition holds; return them by name."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.condition_param is not None and (
                out.get(p.condition_param, _ABSENT) not in p.condition_values
            ):
                continue
            if p.type == "categorical":
                out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.type == "int":
                assert p.low is not None and p.high is not None
                out[p.name] = trial.suggest_int(
                    p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
                )
            else:
                assert p.low is not None and p.high is not None
                out[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return out

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values for the grid sampler.

        Raises:
            ConfigError: a parameter is continuous (a float without ``step``, or
                log-scaled) or conditional: a grid needs finite, unconditional axes.
        """
        axes: dict[str, list[Any]] = {}
        for p in self.params:
            if p.conditional:
                raise ConfigError(
                    f"search space parameter {p.name!r} is conditional, which sampler='grid' "
                    "cannot enumerate: drop the condition or use sampler='tpe'"
                )
            if p.type == "categorical":
                axes[p.name] = list(p.choices)
                continue
            assert p.low is not None and p.high is not None
            if p.log or (p.type == "float" and p.step is None):
                raise ConfigError(
                    f"search space parameter {p.name!r} is continuous, which sampler='grid' "
                    "cannot enumerate: give it a step (and no log) or make it categorical"
                )
            step = p.step or 1.0
            count = math.floor((p.high - p.low) / step + 1e-9) + 1
            values = [p.low + i * step for i in range(count)]
            axes[p.name] = (
                [int(v) for v in values] if p.type == "int" else [round(v, 12) for v in values]
            )
        return axes
