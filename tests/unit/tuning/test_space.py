"""Search space and tuning config: parsing, suggestion, and errors that name the field."""

from __future__ import annotations

import json

import optuna
import pytest

from kfgpu.errors import ConfigError
from kfgpu.tuning import SearchSpace, TuneConfig
from kfgpu.tuning.config import check_tunable

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"type": "int", "low": 64, "high": 512, "step": 64},
    "hidden_sizes": {"type": "categorical", "choices": ["128", "256,256"]},
    "use_dropout": {"type": "categorical", "choices": [True, False]},
    "dropout": {
        "type": "float",
        "low": 0.0,
        "high": 0.5,
        "condition": {"param": "use_dropout", "equals": True},
    },
}


def test_parses_json_yaml_and_files(tmp_path) -> None:
    assert SearchSpace.parse(SPACE).names == list(SPACE)
    assert SearchSpace.parse(json.dumps(SPACE)) == SearchSpace.parse(SPACE)
    yaml_text = (
        "lr: {type: float, low: 0.001, high: 0.1, log: true}\nn: {type: int, low: 1, high: 3}\n"
    )
    assert SearchSpace.parse(yaml_text).names == ["lr", "n"]
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    assert SearchSpace.parse(str(path)).names == list(SPACE)
    # The dict form round-trips.
    space = SearchSpace.parse(SPACE)
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_conditional_parameter_follows_its_parent() -> None:
    space = SearchSpace.parse(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(30):
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.0)
        seen.append(params)
        assert ("dropout" in params) == params["use_dropout"]
        assert 1e-4 <= params["learning_rate"] <= 1e-2
        assert params["batch_size"] % 64 == 0
    assert any("dropout" in p for p in seen) and any("dropout" not in p for p in seen)


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({}, "search_space=.* give at least one parameter"),
        ({"lr": {"type": "double", "low": 0, "high": 1}}, r"'lr': type='double' is invalid"),
        (
            {"lr": {"type": "float", "low": 1, "high": 1}},
            r"'lr': low=1, high=1 .* low must be below high",
        ),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, r"'lr': low=0 with log=true"),
        ({"lr": {"type": "float", "high": 1}}, r"'lr': low is missing"),
        ({"n": {"type": "int", "low": 0.5, "high": 4}}, r"'n': low=0.5 .* whole-number"),
        ({"n": {"type": "int", "low": 1, "high": 4, "step": -1}}, r"'n': step=-1 is invalid"),
        ({"h": {"type": "categorical", "choices": []}}, r"'h': choices=\[\] is invalid"),
        (
            {"h": {"type": "categorical", "choices": [[128]]}},
            r"'h': choices \[\[128\]\] are invalid: .* as a string",
        ),
        (
            {"h": {"type": "categorical", "choices": ["a"], "low": 1}},
            r"'h': unknown key\(s\) \['low'\]",
        ),
        (
            {"d": {"type": "float", "low": 0, "high": 1, "condition": {"param": "x", "equals": 1}}},
            r"'d': condition param='x' is invalid: it must name a parameter declared before",
        ),
        (
            {
                "u": {"type": "categorical", "choices": ["a", "b"]},
                "d": {
                    "type": "float",
                    "low": 0,
                    "high": 1,
                    "condition": {"param": "u", "equals": "c"},
                },
            },
            r"'d': condition values \['c'\] are not choices of 'u'",
        ),
    ],
)
def test_invalid_spaces_name_the_parameter(space: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SearchSpace.parse(space)


def test_unparsable_text_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="neither JSON nor YAML"):
        SearchSpace.parse("{lr: [")
    with pytest.raises(ConfigError, match="no such file"):
        SearchSpace.parse("/nonexistent/space.yaml")


def test_grid_axes_and_refusals() -> None:
    grid = SearchSpace.parse(
        {
            "n": {"type": "int", "low": 1, "high": 3},
            "h": {"type": "categorical", "choices": ["a", "b"]},
            "f": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1},
        }
    ).grid()
    assert grid == {"n": [1, 2, 3], "h": ["a", "b"], "f": [0.0, 0.1, 0.2]}
    with pytest.raises(ConfigError, match="'learning_rate' is continuous"):
        SearchSpace.parse({"learning_rate": SPACE["learning_rate"]}).grid()
    with pytest.raises(ConfigError, match="'dropout' is conditional"):
        SearchSpace.parse({k: SPACE[k] for k in ("use_dropout", "dropout")}).grid()


def test_only_training_settings_are_tunable() -> None:
    check_tunable(SearchSpace.parse({"learning_rate": SPACE["learning_rate"]}))
    with pytest.raises(ConfigError, match="'use_dropout' is not a tunable training setting"):
        check_tunable(SearchSpace.parse(SPACE))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"n_trials": -1}, r"n_trials=-1 is invalid: use a positive count"),
        ({"sampler": "bayes"}, r"sampler='bayes' is invalid: use one of \['tpe'"),
        ({"pruner": "asha"}, r"pruner='asha' is invalid"),
        ({"objectives": "accuracy"}, r"objectives=\('accuracy',\) is invalid"),
        (
            {"objectives": "val_loss,n_params"},
            r"pruner='median' is invalid: Optuna cannot prune a multi-objective",
        ),
        ({"timeout": -5}, r"timeout=-5 is invalid"),
        ({"heartbeat_interval": 10, "grace_period": 5}, r"grace_period=5 is invalid"),
        ({"study_name": "a b"}, r"study_name='a b' is invalid"),
        ({"n_workers": 2.5}, r"n_workers=2.5 is invalid"),
        ({"bogus": 1}, r"unknown tuning setting\(s\) \['bogus'\]"),
    ],
)
def test_invalid_settings_name_the_field(settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TuneConfig.from_dict(settings)


def test_config_from_kfp_json() -> None:
    cfg = TuneConfig.from_dict(
        {"n_trials": 5.0, "objectives": "val_loss,n_params", "pruner": "none"}
    )
    assert cfg.n_trials == 5 and cfg.objectives == ("val_loss", "n_params") and cfg.multi_objective


def test_readme_search_space_example_parses() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    (text,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "log: true" in b]
    space = SearchSpace.parse(text)
    check_tunable(space)
    assert space.params[-1].condition_param == "early_stopping_patience"
