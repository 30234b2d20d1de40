"""Components of the release path: the gate, and registration in the MLflow registry."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Model, Output

from kfgpu._image import BASE_IMAGE

__all__ = ["check_gate", "register_model"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def check_gate(
    evaluation: Input[Artifact],
    verdict: Output[Artifact],
    model_card: Output[Markdown],
    model_card_html: Output[HTML],
    gate_spec: str = "",
    registered_model_name: str = "",
    mlflow_tracking_uri: str = "",
    data_uri: str = "",
    allow_signature_change: bool = False,
) -> bool:
    """Bless the evaluated model, or block it, against a declarative gate; write the card.

    Returns whether every check passed: branch on it with
    ``dsl.If(gate.outputs["Output"] == True)``
    (a single output: ``kfp.local`` 2.17 cannot resolve a named output in a condition).
    The verdict lists every check, passed or failed, the summary and the champion compared
    with, and is also logged to the model's MLflow training run when tracking is on.

    Args:
        evaluation: the evaluation JSON from evaluate_model.
        gate_spec: the gate as JSON or YAML text (or a .json/.yaml path), e.g.
            ``{"metrics": {"roc_auc": {"min": 0.8, "max_drop_vs_champion": 0.01}}}``;
            empty: beat the constant predictor and do not fall below the champion on the
            headline metric.
        registered_model_name: the registered model whose ``champion`` the relative checks
            compare with; empty: derived from ``data_uri`` and the model's target (e.g.
            ``fraud-is_fraud``), or, without ``data_uri``, no champion (relative checks pass).
            The champion is compared with only if it has the same task, target and input
            signature; another model under the name blocks, naming what differs.
        mlflow_tracking_uri: MLflow tracking (and registry) URI; empty uses
            ``MLFLOW_TRACKING_URI``.
        data_uri: the training data's URI, from which the default name is derived.
        allow_signature_change: let a model of another task, target or input signature
            than the champion pass (to replace it on purpose).

    Returns:
        verdict: the verdict as JSON (blessed, reasons, champion, spec).
        model_card: the model card as Markdown, with the gate's reasons.
        model_card_html: the same model card as HTML.
        Output: whether every check passed (blessed).
    """
    from kfgpu.evaluation.release import check_gate_step

    result = check_gate_step(
        evaluation_path=evaluation.path,
        verdict_path=verdict.path,
        card_path=model_card.path,
        card_html_path=model_card_html.path,
        gate_spec=gate_spec,
        registered_model_name=registered_model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        data_uri=data_uri,
        allow_signature_change=allow_signature_change,
    )
    result.publish()
    out = result.output
    verdict.metadata["registered_model_name"] = out.registered_model_name
    verdict.metadata["blessed"] = out.blessed
    verdict.metadata["champion_version"] = out.champion_version or "none"
    return out.blessed


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    verdict: Input[Artifact],
    model_card: Input[Markdown],
    registered_model_name: str = "",
    mlflow_tracking_uri: str = "",
    promote: bool = True,
    expect_champion: str = "verdict",
    allow_signature_change: bool = False,
) -> NamedTuple("Outputs", [("version", str), ("model_uri", str)]):
    """Register a blessed bundle in the MLflow registry (pyfunc wrapper, lineage tags,
    alias ``challenger``) and, by default, promote it to ``champion``.

    Refuses a model whose verdict did not bless it.

    Args:
        model: the model bundle.
        evaluation: the evaluation JSON (stored with the version; the next gate's champion).
        verdict: the gate's verdict JSON (stored with the version).
        model_card: the model card (stored with the version).
        registered_model_name: the registered model's name; empty: the name the gate
            compared under (in the verdict).
        mlflow_tracking_uri: MLflow tracking (and registry) URI; empty uses
            ``MLFLOW_TRACKING_URI``.
        promote: promote the new version to champion (the old one becomes
            ``previous-champion``); false leaves it as the challenger.
        expect_champion: with promote, the champion version expected: ``verdict`` (the
            one the gate compared with, ``none`` if none), a version, or empty for no
            check; the promotion fails if another run promoted meanwhile.
        allow_signature_change: with promote, let a model of another task, target or input
            signature than the champion replace it; false refuses it before registering.

    Returns:
        version: the new version number.
        model_uri: ``models:/<name>/<version>``, loadable with mlflow.pyfunc.load_model.
    """
    from collections import namedtuple

    from kfgpu.evaluation.release import register_model_step

    result = register_model_step(
        bundle_path=model.path,
        evaluation_path=evaluation.path,
        verdict_path=verdict.path,
        card_path=model_card.path,
        registered_model_name=registered_model_name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        promote=promote,
        expect_champion=expect_champion,
        allow_signature_change=allow_signature_change,
    )
    result.publish()
    return namedtuple("Outputs", ["version", "model_uri"])(
        result.output.version, result.output.model_uri
    )
