"""Model families: the seam where a new network type plugs in.

A family turns a JSON-able config into a ``torch.nn.Module`` whose ``forward(numeric,
codes)`` returns one row of outputs per input row (class logits, or one standardised value
for regression). The bundle records the family name and config, so serving rebuilds the
exact network without pickle. Register a new family with :func:`register_family`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kfgpu.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FAMILIES",
    "build_network",
    "check_own_training_logic",
    "default_embedding_dim",
    "family_config",
    "import_class",
    "is_import_path",
    "own_training_logic",
    "register_family",
    "registered_families",
    "small_cnn_config",
    "tabular_mlp_config",
]

#: The families kfgpu ships; :func:`register_family` adds more at run time.
FAMILIES = ("small_cnn", "tabular_mlp")

_FAMILIES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}


def register_family(name: str, builder: Callable[[dict[str, Any]], nn.Module]) -> None:
    """Make ``builder(config) -> nn.Module`` available under ``name``."""
    _FAMILIES[name] = builder


def registered_families() -> frozenset[str]:
    """The names :func:`build_network` builds without an import: kfgpu's own families and
    those added with :func:`register_family`."""
    if not _FAMILIES:
        _register_builtin()
    return frozenset(_FAMILIES)


def is_import_path(family: str) -> bool:
    """``package.module:Class``: a user's own network, imported by path."""
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", family) is not None


def import_class(path: str, *, field: str, base: type, what: str) -> type:
    """The class at ``package.module:Class``, checked to subclass ``base``.

    Raises:
        ConfigError: naming ``field``, when the class cannot be imported or is not a
            ``base`` (described to the user as ``what``).
    """
    import importlib

    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"{field}={path!r} cannot be imported ({e}); install the package that "
            "defines it in this environment (and in the training and serving images)"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(
            f"{field}={path!r} is a {type(cls).__name__}, not a {what} subclass; "
            f"point it at the {what} class"
        )
    return cls


def _import_network(path: str) -> Callable[..., nn.Module]:
    from torch import nn

    return import_class(path, field="model_family", base=nn.Module, what="torch.nn.Module")


def own_training_logic(family: str) -> bool:
    """Whether ``family`` is a user's ``LightningModule`` that defines its own ``training_step``.

    kfgpu then fits that module as it is (its loss, ``configure_optimizers`` and
    ``validation_step``) instead of wrapping the network in
    :class:`~kfgpu.training.lightning.TabularTask`. The contract, checked before training
    by :func:`check_own_training_logic`: it is built from the recorded config like any
    network (so serving rebuilds it), ``forward(numeric, codes)`` gives the outputs,
    batches are ``(numeric, codes, y)``, ``validation_step`` logs ``val_loss``, and it
    defines ``configure_optimizers``. The run's settings are on ``module.kfgpu``
    (:class:`~kfgpu.training.config.TrainConfig`) when fit starts.
    """
    if not is_import_path(family):
        return False
    import pytorch_lightning as pl

    cls: Any = _import_network(family)
    return issubclass(cls, pl.LightningModule) and (
        cls.training_step is not pl.LightningModule.training_step
    )


def check_own_training_logic(family: str) -> None:
    """Refuse a user's LightningModule that lacks what a kfgpu run needs (see above)."""
    import pytorch_lightning as pl

    cls = _import_network(family)
    for hook, why in (
        ("validation_step", "log 'val_loss' there: early stopping and best weights need it"),
        ("configure_optimizers", "return its optimiser (and scheduler) there"),
    ):
        if getattr(cls, hook) is getattr(pl.LightningModule, hook):
            raise ConfigError(
                f"model_family={family!r} defines training_step but not {hook}; {why} "
                "(or drop training_step to let kfgpu train it as a plain network)"
            )


def build_network(family: str, config: dict[str, Any]) -> nn.Module:
    """Build a network of a registered family, or of a user's class given as
    ``package.module:Class``, from its recorded config.

    A user's class is called with the tabular MLP's config as keyword arguments
    (``n_numeric``, ``cardinalities``, ``embedding_dims``, ``hidden_sizes``, ``dropout``,
    ``n_outputs``) and its ``forward(numeric, codes)`` returns one row of outputs per input
    (class logits, or one value for regression). kfgpu trains it with its own loss,
    optimiser and strategies, and records the import path in the bundle, so serving
    imports the same class.
    """
    if is_import_path(family):
        try:
            return _import_network(family)(**config)
        except TypeError as e:
            raise ConfigError(
                f"model_family={family!r} could not be built from the config "
                f"{sorted(config)} ({e}); accept those keyword arguments (**kwargs is fine)"
            ) from e
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


def small_cnn_config(
    *,
    dense_names: tuple[str, ...],
    cardinalities: tuple[int, ...],
    hidden_sizes: tuple[int, ...],
    dropout: float,
    n_outputs: int,
    pixel_prefix: str = "pixel_",
    channels: int = 1,
) -> dict[str, Any]:
    """The recorded config of a :class:`~kfgpu.training.network.SmallCNN`.

    Pixels are the dense features named ``<pixel_prefix><i>`` (``i`` the flat position in
    a ``channels x side x side`` image, row-major); the image side is the smallest square
    holding the largest ``i``.

    Raises:
        ConfigError: no dense feature is named like a pixel.
    """
    base = tabular_mlp_config(
        n_numeric=len(dense_names),
        cardinalities=cardinalities,
        hidden_sizes=hidden_sizes,
        dropout=dropout,
        n_outputs=n_outputs,
    )
    index = []
    for name in dense_names:
        rest = name[len(pixel_prefix) :] if name.startswith(pixel_prefix) else ""
        index.append(int(rest) if rest.isdigit() else -1)
    top = max(index, default=-1)
    if top < 0:
        raise ConfigError(
            f"model_family='small_cnn' needs pixel features named '{pixel_prefix}<i>' (e.g. "
            f"kfgpu://digits); got {list(dense_names)[:5]}; use model_family='tabular_mlp'"
        )
    side = math.isqrt(top // channels) + 1 if top else 1
    while side * side * channels <= top:
        side += 1
    base.pop("n_numeric")
    return {
        "n_numeric": len(dense_names),
        **base,
        "image_shape": [channels, side, side],
        "pixel_index": index,
        "conv_channels": [16, 32],
    }


def family_config(
    family: str,
    *,
    dense_names: tuple[str, ...],
    cardinalities: tuple[int, ...],
    hidden_sizes: tuple[int, ...],
    dropout: float,
    n_outputs: int,
) -> dict[str, Any]:
    """The config of ``family`` for a fitted transform's outputs (one place for every trainer)."""
    if family == "small_cnn":
        return small_cnn_config(
            dense_names=dense_names,
            cardinalities=cardinalities,
            hidden_sizes=hidden_sizes,
            dropout=dropout,
            n_outputs=n_outputs,
        )
    return tabular_mlp_config(
        n_numeric=len(dense_names),
        cardinalities=cardinalities,
        hidden_sizes=hidden_sizes,
        dropout=dropout,
        n_outputs=n_outputs,
    )


def _register_builtin() -> None:
    from kfgpu.training.network import SmallCNN, TabularMLP

    register_family("tabular_mlp", lambda cfg: TabularMLP(**cfg))
    register_family("small_cnn", lambda cfg: SmallCNN(**cfg))
