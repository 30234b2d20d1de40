"""Component specs: pinned image, nothing installed at run time, documented interfaces."""

from __future__ import annotations

import pytest

from kfgpu import __version__
from kfgpu._image import IMAGE_REGISTRY
from kfgpu.components import COMPONENTS

NAMES = sorted(COMPONENTS)


@pytest.mark.parametrize("name", NAMES)
def test_image_is_pinned_to_package_version(name: str) -> None:
    container = COMPONENTS[name].component_spec.implementation.container
    assert container.image.startswith(IMAGE_REGISTRY + "/kfgpu-")
    assert container.image.endswith(f":{__version__}")


@pytest.mark.parametrize("name", NAMES)
def test_nothing_is_installed_at_run_time(name: str) -> None:
    container = COMPONENTS[name].component_spec.implementation.container
    script = " ".join(container.command or []) + " ".join(container.args or [])
    assert "pip install" not in script, "components must run from the kfgpu image as built"


@pytest.mark.parametrize("name", NAMES)
def test_every_input_and_output_is_documented(name: str) -> None:
    spec = COMPONENTS[name].component_spec
    assert spec.description and spec.description.strip()
    undocumented = [
        k
        for k, v in {**(spec.inputs or {}), **(spec.outputs or {})}.items()
        if not (v.description or "").strip()
    ]
    assert undocumented == [], f"{name}: add these to the docstring's Args/Returns"


@pytest.mark.parametrize("name", NAMES)
def test_component_names_are_verb_phrases(name: str) -> None:
    verb = name.split("_")[0]
    assert verb in {
        "validate",
        "engineer",
        "train",
        "evaluate",
        "tune",
        "deploy",
        "detect",
        "check",
        "launch",
        "register",
        "batch",
        "predict",
        "promote",
        "rollback",
        "monitor",
        "fetch",
        "fingerprint",
        "trigger",
    }


def test_artifacts_are_typed_for_the_kubeflow_ui() -> None:
    def types(name: str) -> dict[str, str]:
        outs = COMPONENTS[name].component_spec.outputs or {}
        return {k: str(v.type).split("@")[0] for k, v in outs.items()}

    assert types("validate_data")["dataset"] == "system.Dataset"
    assert types("validate_data")["report"] == "system.Markdown"
    assert types("train_model")["model"] == "system.Model"
    evaluate = types("evaluate_model")
    assert evaluate["metrics"] == "system.Metrics"
    assert evaluate["classification_metrics"] == "system.ClassificationMetrics"
    assert evaluate["report"] == "system.HTML"
