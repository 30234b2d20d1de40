"""Every place kfgpu leans on Lightning's private internals, each behind a guard.

Small tabular models are dominated by Lightning's per-step Python (FIELD-NOTES: about 1 ms
of extra work a step); the speed-ups below take work off each step that cannot change a
run's result. Each one relies on something Lightning does not promise, so each is checked
where it is used, and a Lightning without it fails loudly with a :class:`ConfigError` that
names the internal, never a silent fallback:

============================================  ===========================================
internal (pytorch-lightning)                  kfgpu's use
============================================  ===========================================
``LightningModule._current_fx_name``          :class:`PlainStepAttributes` sets it (and
                                              the task's own per-step sums) without
                                              ``nn.Module.__setattr__``'s registry checks
``_TrainingEpochLoop._build_kwargs``          :class:`CachedStepKwargs` replaces it on one
                                              trainer's loop (:func:`trim_step_overhead`)
``_TrainingEpochLoop._broadcast_sigterm_tensor``  replaced by a no-op on one trainer's loop
                                              where kfgpu handles SIGTERM itself
``Profiler.profile(action_name)``             :class:`QuietProfiler` overrides it
``ModelCheckpoint.state_key``,                :class:`StateKeyOnce` caches it
``EarlyStopping.state_key`` (properties)
``_MultiProcessingLauncher.procs``,           :func:`launched_pids`: SIGTERM is passed on
``_SubprocessScriptLauncher.procs``           to the processes Lightning launched
============================================  ===========================================

Version policy: the speed-ups were measured (``python -m bench training``) on the
pytorch-lightning releases in :data:`MEASURED_ON`. With an installed release of another
``major.minor`` series, :func:`check_lightning_version` warns once per process
(:class:`LightningVersionWarning`; kfgpu's test suite turns warnings into errors, so it
fails there until the speed-ups are re-measured and the release added to
:data:`MEASURED_ON`). Whatever the version, a missing internal raises.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from typing import Any, ClassVar

import pytorch_lightning as pl
from pytorch_lightning.profilers import PassThroughProfiler, Profiler

from kfgpu.errors import ConfigError

__all__ = [
    "MEASURED_ON",
    "CachedStepKwargs",
    "LightningVersionWarning",
    "PlainStepAttributes",
    "QuietProfiler",
    "StateKeyOnce",
    "check_launcher",
    "check_lightning_version",
    "launched_pids",
    "missing_internal",
    "trim_step_overhead",
]

#: The pytorch-lightning releases the speed-ups here were measured on.
MEASURED_ON: tuple[str, ...] = ("2.6.6",)


class LightningVersionWarning(UserWarning):
    """The installed pytorch-lightning is of a series the speed-ups were not measured on."""


def _series(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def check_lightning_version(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed one) is of a measured ``major.minor``
    series; warns (:class:`LightningVersionWarning`) when it is not."""
    if version is None:
        version = pl.__version__
    if _series(version) in {_series(v) for v in MEASURED_ON}:
        return True
    warnings.warn(
        f"pytorch-lightning {version} is installed; kfgpu's per-step speed-ups "
        f"(kfgpu.training.lightning_internals) were measured on {', '.join(MEASURED_ON)}. "
        "Each patched internal is checked and a missing one fails, but the speed-up is "
        "unmeasured: run `python -m bench training`, then add the release to MEASURED_ON, "
        f"or install pytorch-lightning=={MEASURED_ON[-1]}",
        LightningVersionWarning,
        stacklevel=2,
    )
    return False


@functools.lru_cache(maxsize=1)
def _check_installed_version_once() -> bool:
    return check_lightning_version()


def missing_internal(internal: str, problem: str) -> ConfigError:
    """The error for a Lightning internal kfgpu patches that this Lightning lacks."""
    return ConfigError(
        f"kfgpu patches Lightning's private {internal}, which pytorch-lightning "
        f"{pl.__version__} {problem}; install pytorch-lightning=={MEASURED_ON[-1]} (measured "
        "on " + ", ".join(MEASURED_ON) + "), or update kfgpu.training.lightning_internals"
    )


def _require_method(cls: type, name: str, params: tuple[str, ...]) -> None:
    """``cls.name`` is a method taking exactly ``params`` (after ``self``)."""
    internal = f"{cls.__name__}.{name}"
    fn = inspect.getattr_static(cls, name, None)
    if not callable(fn):
        raise missing_internal(internal, "does not have")
    got = tuple(inspect.signature(fn).parameters)[1:]
    if got != params:
        raise missing_internal(
            internal, f"defines with parameters {got}, not {params} as kfgpu's replacement"
        )


# -- LightningModule._current_fx_name ---------------------------------------------------


class PlainStepAttributes:
    """Mixin for a LightningModule: per-step attributes set without ``nn.Module``'s checks.

    ``nn.Module.__setattr__`` checks every value against parameters, buffers and
    submodules; Lightning records the running hook's name in ``_current_fx_name`` around
    each of ~40 hook calls per step, which costs ~0.25 ms a step on CPU (40% of Lightning's
    whole per-step overhead, measured in bench/training.py's setting). Those names are never
    registered, so the plain setattr is the same operation. A subclass adds its own such
    names to :attr:`plain_attributes`.
    """

    #: Names set with ``object.__setattr__``; never parameters, buffers or submodules.
    plain_attributes: ClassVar[frozenset[str]] = frozenset({"_current_fx_name"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "_current_fx_name" not in vars(self):
            raise missing_internal(
                "LightningModule._current_fx_name",
                "no longer sets in LightningModule.__init__ (the hook name it records around "
                "each hook call)",
            )

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.plain_attributes:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


# -- _TrainingEpochLoop._build_kwargs / _broadcast_sigterm_tensor -------------------------


class CachedStepKwargs:
    """Lightning 2.x inspects ``training_step``'s signature on every step (does it take
    ``batch_idx``?), about 25 us a step of ``inspect`` work on CPU; the answer does not change
    during a fit, so it is looked up once per ``training_step`` function. Installed on one
    trainer's epoch loop (:func:`trim_step_overhead`), not on Lightning's class; a class,
    not a closure, so a ``ddp_spawn`` trainer still pickles."""

    def __init__(self, trainer: pl.Trainer) -> None:
        from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature

        self.trainer = trainer
        self.takes_batch_idx: dict[Any, bool] = {}
        self._inspect = is_param_in_hook_signature

    def __call__(self, kwargs: Any, batch: Any, batch_idx: int) -> Any:
        kwargs["batch"] = batch
        fx = self.trainer.lightning_module.training_step
        key = getattr(fx, "__func__", fx)
        takes = self.takes_batch_idx.get(key)
        if takes is None:
            takes = self.takes_batch_idx[key] = self._inspect(fx, "batch_idx", min_args=2)
        if takes:
            kwargs["batch_idx"] = batch_idx
        return kwargs


def _no_sigterm_broadcast() -> None:
    """Stands in for Lightning's per-step SIGTERM broadcast where kfgpu's
    :class:`~kfgpu.training.lightning.RunCheckpoint` handles SIGTERM itself."""


def trim_step_overhead(trainer: pl.Trainer, *, sigterm_handled: bool) -> None:
    """Take per-step work off ``trainer``'s epoch loop that cannot change its result.

    * :class:`CachedStepKwargs`: ``training_step``'s signature is inspected once, not per
      step (replaces ``_TrainingEpochLoop._build_kwargs``).
    * With ``sigterm_handled`` (a :class:`~kfgpu.training.lightning.RunCheckpoint` among the
      callbacks): Lightning broadcasts rank 0's SIGTERM flag before every step of a
      multi-process run, a collective and a host sync per step. Its flag is only set by
      Lightning's own handler, which RunCheckpoint replaces for the whole fit (and its
      :class:`~kfgpu.training.lightning.StopVote` shares its own flag), so that broadcast
      could only ever carry 0 (replaces ``_TrainingEpochLoop._broadcast_sigterm_tensor``).

    Installed on this trainer's loop object, never on Lightning's classes.

    Raises:
        ConfigError: this Lightning's epoch loop lacks one of those methods, or it takes
            other parameters.
    """
    _check_installed_version_once()
    loop = trainer.fit_loop.epoch_loop
    _require_method(type(loop), "_build_kwargs", ("kwargs", "batch", "batch_idx"))
    loop._build_kwargs = CachedStepKwargs(trainer)  # type: ignore[method-assign]
    if sigterm_handled:
        _require_method(type(loop), "_broadcast_sigterm_tensor", ())
        loop._broadcast_sigterm_tensor = _no_sigterm_broadcast  # type: ignore[method-assign]


# -- Profiler.profile ---------------------------------------------------------------------


class QuietProfiler(PassThroughProfiler):
    """Lightning's default profiler, minus its per-call cost.

    The default records nothing, but every hook call still builds and enters a fresh
    generator-based context manager, ~60 of them a training step: about 90 us a step on CPU,
    more than a small model's own step (bench/training.py). This one hands back one shared
    no-op context; a profiler that records something is passed to the Trainer instead.

    Raises:
        ConfigError: (on construction) Lightning's ``Profiler.profile`` is gone or takes
            other parameters than ``action_name``.
    """

    _NOTHING = contextlib.nullcontext()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _require_method(Profiler, "profile", ("action_name",))

    def profile(self, action_name: str) -> Any:
        return self._NOTHING


# -- Callback.state_key -------------------------------------------------------------------


class StateKeyOnce:
    """Mixin for a Lightning callback: its ``state_key`` computed once.

    Lightning formats every callback's ``state_key`` on every hook call, about six a
    training step; ModelCheckpoint's and EarlyStopping's are a ``repr`` of their settings,
    which do not change during a fit.

    Raises:
        ConfigError: (on construction) ``state_key`` is not a property of the Lightning
            callback class this is mixed into.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for cls in type(self).__mro__:
            if issubclass(cls, StateKeyOnce):
                continue  # this mixin and kfgpu's callbacks built on it
            found = cls.__dict__.get("state_key")
            if found is not None:
                if not isinstance(found, property):
                    raise missing_internal(
                        f"{cls.__name__}.state_key",
                        f"defines as a {type(found).__name__}, not a property",
                    )
                break
        else:
            raise missing_internal(f"{type(self).__name__}.state_key", "does not have")
        super().__init__(*args, **kwargs)

    @property
    def state_key(self) -> str:
        key: str | None = self.__dict__.get("_state_key_once")
        if key is None:
            key = self.__dict__["_state_key_once"] = super().state_key  # type: ignore[misc]
        return key


# -- _MultiProcessingLauncher.procs / _SubprocessScriptLauncher.procs ---------------------


def check_launcher(launcher: Any) -> None:
    """Refuse a Lightning launcher that does not list the processes it started.

    Raises:
        ConfigError: ``launcher`` (not None) has no ``procs`` list.
    """
    if launcher is not None and not isinstance(vars(launcher).get("procs"), list):
        raise missing_internal(
            f"{type(launcher).__name__}.procs",
            "does not keep as a list (the processes it launched, which kfgpu passes SIGTERM on to)",
        )


def launched_pids(launcher: Any) -> set[int]:
    """The ids of the processes ``launcher`` started (checked by :func:`check_launcher`)."""
    if launcher is None:
        return set()
    return {p.pid for p in launcher.procs if p.pid}
