"""The registry against a real MLflow tracking server on 127.0.0.1: register, promote,
roll back, the pyfunc wrapper, the gate's champion, and two concurrent promotions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kfgpu.bundle import load_bundle, write_bundle
from kfgpu.cli import main
from kfgpu.data.synthetic import LABEL_COLUMN, fraud
from kfgpu.errors import RegistryError
from kfgpu.evaluation.release import check_gate_step, register_model_step
from kfgpu.registry import models
from tests.services import mlflow_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def _bundle(path: Path, seed: int, *, task: str = "classification", target: str = "") -> Path:
    """A fraud bundle; with ``target`` another column is the label (another model)."""
    import torch

    from kfgpu.features.transform import fit_transform, infer_feature_spec
    from kfgpu.training.families import build_network, tabular_mlp_config

    target = target or LABEL_COLUMN
    df = fraud(400, seed=1)
    ft = fit_transform(df, infer_feature_spec(df, target))
    config = tabular_mlp_config(
        n_numeric=ft.n_dense,
        cardinalities=ft.cardinalities,
        hidden_sizes=(8,),
        dropout=0.0,
        n_outputs=2 if task == "classification" else 1,
    )
    torch.manual_seed(seed)
    network = build_network("tabular_mlp", config)
    desc = {
        "task": task,
        "target": target,
        "model": {"family": "tabular_mlp", "config": config},
        "signature": {"inputs": ft.input_signature()},
        "labels": {"classes": [0, 1], "positive_class": 1},
        **({} if task == "classification" else {"target_scaling": {"mean": 0.0, "scale": 1.0}}),
        "kfgpu_version": "0.1.0",
        "lineage": {
            "data_fingerprint": f"fp{seed}",
            "pipeline_run": f"run-{seed}",
            "code_version": "0.1.0",
        },
    }
    return write_bundle(path, state_dict=network.state_dict(), transform=ft, description=desc)


def _evaluation(roc_auc: float) -> dict[str, Any]:
    return {
        "task": "classification",
        "headline": "roc_auc",
        "metrics": {"roc_auc": roc_auc, "log_loss": 0.2},
        "baseline": {"roc_auc": 0.5, "log_loss": 0.3},
        "threshold": {"policy": "f1", "value": 0.3, "positive_class": 1},
        "model": {"lineage": {"data_fingerprint": "fp"}},
    }


def _write(tmp: Path, name: str, payload: dict[str, Any]) -> str:
    (tmp / name).write_text(json.dumps(payload))
    return str(tmp / name)


def test_register_promote_rollback_round_trip(server: str, tmp_path: Path) -> None:
    import mlflow.pyfunc

    name = "roundtrip"
    bundles = [_bundle(tmp_path / f"b{i}", seed=i) for i in range(3)]
    v1 = models.register_bundle(
        str(bundles[0]), name=name, tracking_uri=server, evaluation=_evaluation(0.8)
    )
    assert v1["version"] == "1" and v1["aliases"] == ["challenger"]
    rows = models.list_versions(name, tracking_uri=server)
    assert rows[0]["aliases"] == ["challenger"] and rows[0]["metrics"]["roc_auc"] == 0.8
    assert rows[0]["data_fingerprint"] == "fp0" and rows[0]["pipeline_run"] == "run-0"
    assert models.promote(name, tracking_uri=server)["previous"] is None  # the challenger
    for i in (1, 2):
        models.register_bundle(
            str(bundles[i]), name=name, tracking_uri=server, evaluation=_evaluation(0.8 + i / 100)
        )
        models.promote(name, tracking_uri=server)
    aliases = {r["version"]: r["aliases"] for r in models.list_versions(name, tracking_uri=server)}
    assert aliases == {"3": ["champion"], "2": ["previous-champion"], "1": []}
    # The pyfunc wrapper predicts what the bundle predicts, under its stored decision rule.
    mlflow.pyfunc.get_model_dependencies  # noqa: B018  (the module is importable)
    import mlflow

    mlflow.set_tracking_uri(server)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    rows_in = fraud(50, seed=9).drop(columns=[LABEL_COLUMN])
    got = loaded.predict(rows_in)
    want = load_bundle(bundles[2]).predict(rows_in)
    np.testing.assert_allclose(got["proba_1"], want["proba_1"], rtol=1e-6)
    assert (got["prediction"] == want["prediction"]).all()
    # Roll back twice: 3 -> 2 -> 1, then nothing is left to go back to.
    assert models.rollback(name, tracking_uri=server)["version"] == "2"
    aliases = {r["version"]: r["aliases"] for r in models.list_versions(name, tracking_uri=server)}
    assert aliases == {"3": [], "2": ["champion"], "1": ["previous-champion"]}
    assert models.rollback(name, tracking_uri=server)["version"] == "1"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        models.rollback(name, tracking_uri=server)
    champ = models.champion_evaluation(name, tracking_uri=server)
    assert champ is not None and champ["version"] == "1"
    assert champ["evaluation"]["metrics"]["roc_auc"] == 0.8
    assert [e["action"] for e in models.history(name, tracking_uri=server)] == [
        "promote",
        "promote",
        "promote",
        "rollback",
        "rollback",
    ]
    # Compare-and-set: a stale expectation is refused.
    with pytest.raises(RegistryError, match="someone promoted meanwhile"):
        models.promote(name, tracking_uri=server, version="3", expect_champion="2")
    with pytest.raises(RegistryError, match="does not exist"):
        models.promote("no-such-model", tracking_uri=server)
    assert name + models.LOCK_SUFFIX not in models.list_models(tracking_uri=server)


def test_cli_list_promote_rollback(server: str, tmp_path: Path, capsys: Any) -> None:
    name = "cli-model"
    for i in range(2):
        b = _bundle(tmp_path / f"b{i}", seed=10 + i)
        ev = _write(tmp_path, f"ev{i}.json", _evaluation(0.7 + i / 10))
        assert (
            main(
                [
                    "model",
                    "register",
                    str(b),
                    "--name",
                    name,
                    "--evaluation",
                    ev,
                    "--tracking-uri",
                    server,
                ]
            )
            == 0
        )
        assert main(["model", "promote", name, "--tracking-uri", server]) == 0
    assert main(["model", "list", name, "--tracking-uri", server]) == 0
    out = capsys.readouterr().out
    assert "champion of cli-model: v2 (was 1)" in out
    assert "v2    champion" in out and "roc_auc 0.8000" in out and "previous-champion" in out
    assert main(["model", "rollback", name, "--tracking-uri", server]) == 0
    assert "champion of cli-model: v1 (rolled back from v2)" in capsys.readouterr().out
    assert main(["model", "rollback", name, "--tracking-uri", server]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err


def test_gate_uses_the_registry_champion(server: str, tmp_path: Path) -> None:
    name = "gated"
    b = _bundle(tmp_path / "b", seed=20)
    card = tmp_path / "card.md"
    paths = {
        "evaluation_path": _write(tmp_path, "first.json", _evaluation(0.85)),
        "verdict_path": str(tmp_path / "v0.json"),
        "registered_model_name": name,
        "mlflow_tracking_uri": server,
    }
    first = check_gate_step(**paths, card_path=str(card))
    assert first.output.blessed and first.output.champion_version == ""
    assert "no champion" in (tmp_path / "v0.json").read_text()
    register_model_step(
        bundle_path=str(b),
        evaluation_path=paths["evaluation_path"],
        verdict_path=paths["verdict_path"],
        registered_model_name=name,
        mlflow_tracking_uri=server,
        card_path=str(card),
        promote=True,
        expect_champion="none",
    )
    spec = '{"metrics": {"roc_auc": {"min": 0.6, "max_drop_vs_champion": 0.01}}}'
    worse = check_gate_step(
        **{
            **paths,
            "evaluation_path": _write(tmp_path, "w.json", _evaluation(0.80)),
            "verdict_path": str(tmp_path / "worse.json"),
        },
        gate_spec=spec,
    )
    better = check_gate_step(
        **{
            **paths,
            "evaluation_path": _write(tmp_path, "b.json", _evaluation(0.90)),
            "verdict_path": str(tmp_path / "better.json"),
        },
        gate_spec=spec,
    )
    assert not worse.output.blessed and better.output.blessed
    assert worse.output.champion_version == "1"
    blocked = json.loads((tmp_path / "worse.json").read_text())
    assert blocked["champion"] == {"name": name, "version": "1"}
    assert any(not r["passed"] and "vs champion 0.8500" in r["message"] for r in blocked["reasons"])
    passed = json.loads((tmp_path / "better.json").read_text())
    assert all(r["passed"] for r in passed["reasons"])
    with pytest.raises(RegistryError, match="refusing to register a model the gate blocked"):
        register_model_step(
            bundle_path=str(b),
            evaluation_path=str(tmp_path / "w.json"),
            verdict_path=str(tmp_path / "worse.json"),
            registered_model_name=name,
            mlflow_tracking_uri=server,
        )


_PROMOTER = """
import sys, time
from pathlib import Path
import mlflow.tracking
from kfgpu.registry import models
uri, name, version, barrier = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
(barrier / f"ready-{version}").touch()
while not (barrier / "go").exists():
    time.sleep(0.01)
print(models.promote(name, tracking_uri=uri, version=version))
"""


def test_two_concurrent_promotions_leave_one_champion_and_a_consistent_history(
    server: str, tmp_path: Path
) -> None:
    name = "race"
    for i in range(3):
        models.register_bundle(
            str(_bundle(tmp_path / f"b{i}", seed=30 + i)),
            name=name,
            tracking_uri=server,
            evaluation=_evaluation(0.8),
        )
    models.promote(name, tracking_uri=server, version="1")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROMOTER, server, name, v, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for v in ("2", "3")
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    (barrier / "go").touch()  # both have imported everything: they race from here
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    rows = models.list_versions(name, tracking_uri=server)
    champions = [r["version"] for r in rows if "champion" in r["aliases"]]
    assert len(champions) == 1
    events = models.history(name, tracking_uri=server)
    assert [e["seq"] for e in events] == [1, 2, 3]
    # Serialised: each promotion replaced the champion the one before it installed.
    assert events[0] == {**events[0], "version": "1", "previous": None}
    assert events[2]["previous"] == events[1]["version"]
    assert events[1]["previous"] == "1"
    assert champions == [events[2]["version"]]
    previous = [r["version"] for r in rows if "previous-champion" in r["aliases"]]
    assert previous == [events[1]["version"]]


def test_promotion_across_signatures_is_refused_unless_allowed(
    server: str, tmp_path: Path, capsys: Any
) -> None:
    name = "identity"
    models.register_bundle(str(_bundle(tmp_path / "b0", seed=40)), name=name, tracking_uri=server)
    models.promote(name, tracking_uri=server)
    other = _bundle(tmp_path / "b1", seed=41, task="regression", target="amount")
    models.register_bundle(str(other), name=name, tracking_uri=server)
    rows = models.list_versions(name, tracking_uri=server)
    assert [(r["version"], r["task"], r["target"]) for r in rows] == [
        ("2", "regression", "amount"),
        ("1", "classification", LABEL_COLUMN),
    ]
    assert rows[0]["signature"] != rows[1]["signature"]  # is_fraud is an input of v2
    with pytest.raises(RegistryError) as refused:
        models.promote(name, tracking_uri=server)
    message = str(refused.value)
    assert message.startswith("refusing to promote v2 of 'identity' over champion v1")
    assert "task regression vs the champion's classification" in message
    assert "target 'amount' vs the champion's 'is_fraud'" in message
    assert "new column(s) is_fraud" in message and "missing column(s) amount" in message
    assert "allow_signature_change=true" in message
    # The CLI says the same in one line; nothing changed.
    assert main(["model", "promote", name, "--version", "2", "--tracking-uri", server]) == 1
    assert "error: refusing to promote v2 of 'identity'" in capsys.readouterr().err
    assert models.champion_evaluation(name, tracking_uri=server)["version"] == "1"  # type: ignore[index]
    assert [e["action"] for e in models.history(name, tracking_uri=server)] == ["promote"]
    # On purpose: allowed, and the history says what changed.
    assert (
        main(
            [
                "model",
                "promote",
                name,
                "--version",
                "2",
                "--allow-signature-change",
                "--tracking-uri",
                server,
            ]
        )
        == 0
    )
    event = models.history(name, tracking_uri=server)[-1]
    assert event["version"] == "2" and event["signature_change"][0].startswith("task regression")


def test_pipeline_registration_refuses_another_model_before_registering(
    server: str, tmp_path: Path
) -> None:
    name = "identity-step"
    models.register_bundle(str(_bundle(tmp_path / "b0", seed=50)), name=name, tracking_uri=server)
    models.promote(name, tracking_uri=server)
    verdict = _write(
        tmp_path, "v.json", {"blessed": True, "summary": "ok", "registered_model_name": name}
    )
    evaluation = _write(tmp_path, "e.json", _evaluation(0.9))
    step = {
        "bundle_path": str(_bundle(tmp_path / "b1", seed=51, task="regression", target="amount")),
        "evaluation_path": evaluation,
        "verdict_path": verdict,
        "mlflow_tracking_uri": server,
    }
    with pytest.raises(RegistryError, match="refusing to promote this model of 'identity-step'"):
        register_model_step(**step)  # the name comes from the verdict
    assert [r["version"] for r in models.list_versions(name, tracking_uri=server)] == ["1"]
    with pytest.raises(RegistryError, match="the gate compared with the champion of"):
        register_model_step(**step, registered_model_name="elsewhere")


def test_list_shows_each_versions_current_status(server: str, tmp_path: Path, capsys: Any) -> None:
    """A version promoted again after a rollback is the champion, not 'rolled back'."""
    name = "status"
    for i in range(3):
        models.register_bundle(
            str(_bundle(tmp_path / f"b{i}", seed=60 + i)),
            name=name,
            tracking_uri=server,
            evaluation=_evaluation(0.8),
        )
    models.promote(name, tracking_uri=server, version="1")
    models.promote(name, tracking_uri=server, version="2")
    models.rollback(name, tracking_uri=server)

    def status() -> dict[str, str]:
        return {r["version"]: r["status"] for r in models.list_versions(name, tracking_uri=server)}

    assert status() == {"3": "challenger", "2": "rolled back", "1": "champion"}
    models.promote(name, tracking_uri=server, version="2")
    assert status() == {"3": "challenger", "2": "champion", "1": "previous-champion"}
    rows = models.list_versions(name, tracking_uri=server)
    assert not any(r["rolled_back"] for r in rows)
    models.promote(name, tracking_uri=server, version="3")
    assert status() == {"3": "champion", "2": "previous-champion", "1": "retired"}
    assert main(["model", "list", name, "--tracking-uri", server]) == 0
    out = capsys.readouterr().out
    assert "rolled back" not in out
    assert "v3    champion" in out and "v2    previous-champion" in out and "v1    retired" in out
    assert "classification/is_fraud" in out
