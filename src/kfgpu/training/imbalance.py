"""Class imbalance: loss weights per class and a class-balanced sampler.

Both act on training only; the validation loss that picks the best epoch uses the same
weighted loss as training, so early stopping watches the objective being fitted.

* ``class_weight``: ``none``; ``balanced`` (class ``c`` weighs ``rows / (k * rows_c)``,
  scikit-learn's rule); or a mapping from class label to weight.
* ``sampler="balanced"``: each epoch draws ``rows`` training rows with replacement, every
  class equally likely (rows of class ``c`` weigh ``1 / rows_c``); the draw is seeded by
  ``seed + epoch``, so a resumed run and every DDP/Horovod rank see the same order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "SAMPLERS",
    "BatchSampler",
    "class_weight_tensor",
    "parse_class_weight",
    "sample_weights",
]

BatchSampler = Literal["shuffle", "balanced"]
SAMPLERS: tuple[str, ...] = get_args(BatchSampler)


def parse_class_weight(value: str) -> str | dict[str, float]:
    """``none``/``balanced``, or ``"a=2,b=1"`` / ``'{"a": 2}'`` -> ``{"a": 2.0, "b": 1.0}``.

    Raises:
        ConfigError: not one of those forms, or a weight that is not a positive number.
    """
    text = str(value).strip()
    if text.lower() in ("none", "", "balanced"):
        return text.lower() or "none"
    fix = "use 'none', 'balanced' or a mapping like 'fraud=20,ok=1' or '{\"1\": 20}'"
    pairs: list[tuple[str, Any]]
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"class_weight={text!r} is not valid JSON ({e}); {fix}") from e
        if not isinstance(obj, dict) or not obj:
            raise ConfigError(f"class_weight={text!r} is not a mapping; {fix}")
        pairs = [(str(k), v) for k, v in obj.items()]
    else:
        pairs = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            label, sep, weight = part.rpartition("=")
            if not sep or not label.strip():
                raise ConfigError(f"class_weight={text!r}: {part!r} is not label=weight; {fix}")
            pairs.append((label.strip(), weight.strip()))
    out: dict[str, float] = {}
    for label, weight in pairs:
        try:
            w = float(weight)
        except (TypeError, ValueError):
            w = float("nan")
        if not (w > 0 and math.isfinite(w)):
            raise ConfigError(
                f"class_weight={text!r}: the weight of class {label!r} is {weight!r}; "
                "use a positive number"
            )
        out[label] = w
    return out


def _counts(y: torch.Tensor, k: int) -> torch.Tensor:
    import torch

    return torch.bincount(y.long(), minlength=k).to(torch.float64)


def class_weight_tensor(
    class_weight: str, classes: Sequence[Any], y: torch.Tensor
) -> torch.Tensor | None:
    """The loss weight of each class (in ``classes`` order), or ``None`` for ``none``.

    ``y``: the training rows' class indices.

    Raises:
        ConfigError: a mapping names a class the training split does not have.
    """
    import torch

    spec = parse_class_weight(class_weight)
    if spec == "none":
        return None
    k = len(classes)
    if spec == "balanced":
        counts = _counts(y, k)
        w = len(y) / (k * counts.clamp(min=1))
        return w.to(torch.float32)
    assert isinstance(spec, dict)
    names = {str(c): i for i, c in enumerate(classes)}
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ConfigError(
            f"class_weight names class(es) {unknown} that the training split does not have; "
            f"its classes are {sorted(names)}"
        )
    w = torch.ones(k, dtype=torch.float32)
    for label, weight in spec.items():
        w[names[label]] = weight
    return w


def sample_weights(sampler: str, y: torch.Tensor, k: int) -> torch.Tensor | None:
    """Per-row draw weights of a balanced sampler (every class equally likely), or ``None``."""
    if sampler != "balanced":
        return None
    counts = _counts(y, k)
    return (1.0 / counts.clamp(min=1))[y.long()]
