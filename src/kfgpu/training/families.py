"""Model families: the seam where a new network type plugs in.

A family turns a JSON-able config into a ``torch.nn.Module`` whose ``forward(numeric,
codes)`` returns one row of outputs per input row (class logits, or one standardised value
for regression). The bundle records the family name and config, so serving rebuilds the
exact network without pickle. Register a new family with :func:`register_family`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["build_network", "default_embedding_dim", "register_family", "tabular_mlp_config"]

_FAMILIES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}


def register_family(name: str, builder: Callable[[dict[str, Any]], nn.Module]) -> None:
    """Make ``builder(config) -> nn.Module`` available under ``name``."""
    _FAMILIES[name] = builder


def build_network(family: str, config: dict[str, Any]) -> nn.Module:
    """Build a network of a registered family from its recorded config."""
    if not _FAMILIES:
        _register_builtin()
    try:
        builder = _FAMILIES[family]
    except KeyError as e:
        raise ConfigError(
            f"model family {family!r} is not registered; known: {sorted(_FAMILIES)}"
        ) from e
    return builder(config)


def default_embedding_dim(cardinality: int) -> int:
    """fastai's rule of thumb, capped: enough width for the vocabulary, no more."""
    return int(min(32, max(2, round(1.6 * cardinality**0.56))))


def tabular_mlp_config(
    *,
    n_numeric: int,
    cardinalities: tuple[int, ...],
    hidden_sizes: tuple[int, ...],
    dropout: float,
    n_outputs: int,
) -> dict[str, Any]:
    """The recorded config of a :class:`~kfgpu.training.network.TabularMLP`."""
    if any(h < 1 for h in hidden_sizes):
        raise ConfigError(f"hidden_sizes must all be >= 1, got {list(hidden_sizes)}")
    if not (0.0 <= dropout < 1.0) or math.isnan(dropout):
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return {
        "n_numeric": int(n_numeric),
        "cardinalities": [int(c) for c in cardinalities],
        "embedding_dims": [default_embedding_dim(c) for c in cardinalities],
        "hidden_sizes": [int(h) for h in hidden_sizes],
        "dropout": float(dropout),
        "n_outputs": int(n_outputs),
    }


def _register_builtin() -> None:
    from kfgpu.training.network import TabularMLP

    register_family("tabular_mlp", lambda cfg: TabularMLP(**cfg))
