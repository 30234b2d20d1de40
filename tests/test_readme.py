"""The README's examples are real: its feature spec parses, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_feature_spec_example_parses() -> None:
    from kfgpu.features import FeatureSpec

    (spec_text,) = [b for b in _blocks("yaml") if "crosses:" in b]
    spec = FeatureSpec.from_yaml(spec_text)
    assert spec.columns["country"].encode == "hashing"
    assert len(spec.crosses) == 1


def test_two_setup_commands_and_ci_agree() -> None:
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    test_command = (
        "pip install torch==2.13.0 && pip install -c requirements.lock -e '.[dev]' && scripts/check"
    )
    assert test_command in README and test_command in ci
    assert (
        "pip install torch==2.13.0 && pip install -c requirements.lock -e . && kfgpu run" in README
    )


def test_cli_commands_in_the_table_exist() -> None:
    from kfgpu.cli import cli

    for name in re.findall(r"^\| `kfgpu (\w+)", README, flags=re.M):
        assert name in cli.commands, name
