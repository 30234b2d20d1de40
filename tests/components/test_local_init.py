"""kfgpu.local.init: kfp.local set up so kfgpu's components run (kfp's default runner,
SubprocessRunner(use_venv=True), puts each task in a fresh virtualenv without kfp)."""

# No `from __future__ import annotations`: KFP reads the component's real annotations.

import warnings
from pathlib import Path

import pytest
from kfp import local

import kfgpu.local
from kfgpu.components import fingerprint_data
from kfgpu.errors import ConfigError


def test_the_default_runner_is_refused_with_the_fix(tmp_path: Path) -> None:
    assert local.SubprocessRunner().use_venv is True  # kfp's default: the trap
    with pytest.raises(ConfigError, match=r"use_venv=True.*No module named 'kfp'.*use_venv=False"):
        kfgpu.local.init(runner=local.SubprocessRunner(), pipeline_root=str(tmp_path))


def test_init_runs_a_kfgpu_component_in_this_interpreter(tmp_path: Path) -> None:
    kfgpu.local.init(pipeline_root=str(tmp_path / "root"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        task = fingerprint_data(data_uri="kfgpu://breast_cancer")
    assert task.output.startswith("sha256:")
