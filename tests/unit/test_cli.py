"""CLI plumbing that needs no pipeline run."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfgpu.cli.common import local_uri as _local_uri
from kfgpu.cli.common import parse_params as _parse_params
from kfgpu.cli.common import tracking_uri
from kfgpu.compile import pipeline_parameters
from kfgpu.errors import ConfigError
from kfgpu.ops.submit import coerce_parameters as coerce


def coerce_parameters(pipeline: str, raw: dict[str, str]) -> dict[str, object]:
    """``kfgpu run``'s typing: the one coercer, against the pipeline kfgpu knows."""
    return coerce(pipeline_parameters(pipeline), raw)


def test_tracking_defaults_to_a_store_under_the_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking_uri(str(tmp_path / "work"), enabled=True)
    assert uri == f"sqlite:///{(tmp_path / 'work' / 'mlflow.db').resolve()}"


def test_mlflow_tracking_uri_overrides_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(str(tmp_path), enabled=True) == "http://127.0.0.1:5000"
    assert tracking_uri(str(tmp_path), enabled=False) == ""


def test_params_are_typed_by_the_pipeline_signature() -> None:
    typed = coerce_parameters(
        "training",
        _parse_params(("max_epochs=7", "learning_rate=0.01", "hidden_sizes=64,32", "seed=3")),
    )
    assert typed == {"max_epochs": 7, "learning_rate": 0.01, "hidden_sizes": "64,32", "seed": 3}


def test_dict_params_take_json_objects() -> None:
    gpu = '{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}'
    typed = coerce_parameters("training", _parse_params((f"gpu_nodes={gpu}", "gpus=8")))
    assert typed == {"gpu_nodes": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "gpus": 8}
    for bad in ("[1, 2]", "{nope"):
        with pytest.raises(
            ConfigError, match=r"^--param: parameter gpu_nodes=.* must be JSON object"
        ):
            coerce_parameters("training", {"gpu_nodes": bad})


def test_a_value_may_contain_equals_signs() -> None:
    assert _parse_params(("data_uri=kfgpu://fraud?rows=10&seed=2",)) == {
        "data_uri": "kfgpu://fraud?rows=10&seed=2"
    }


@pytest.mark.parametrize("bad", ["max_epochs", "=3", ""])
def test_malformed_params_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        _parse_params((bad,))


def test_local_paths_become_absolute_and_uris_pass_through(tmp_path: Path) -> None:
    assert _local_uri("s3://bucket/x.csv") == "s3://bucket/x.csv"
    assert _local_uri("kfgpu://fraud") == "kfgpu://fraud"
    assert Path(_local_uri("data.csv")).is_absolute()


def test_run_refuses_a_model_name_mlflow_cannot_hold_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfgpu.cli import main

    work = tmp_path / "work"
    argv = ["run", "--param", "registered_model_name=team/fraud", "--workdir", str(work)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "registered_model_name='team/fraud' contains '/'" in err
    assert not (work / "runs").exists()  # refused before any step ran


def test_run_list_params_says_what_each_parameter_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kfgpu.cli import main

    assert main(["run", "--list-params"]) == 0
    out = capsys.readouterr().out
    # Each parameter's line, then the docstring of the component input it feeds.
    assert "max_epochs                 Integer  default 20\n    upper bound on epochs." in out
    assert "\n    AdamW learning rate.\n" in out
    assert "tune_trials" in out and "the study's budget" in out
    assert main(["run", "tuning", "--list-params"]) == 0
    assert "an existing study of that name is resumed" in capsys.readouterr().out


def test_model_list_outside_a_workdir_creates_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kfgpu.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    for argv in (["model", "list"], ["model", "rollback", "fraud"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: no model store: ") and "--tracking-uri" in err
    assert list(tmp_path.iterdir()) == []  # no kfgpu-work/mlflow.db made on the way


def test_debug_lives_in_the_click_context(capsys: pytest.CaptureFixture[str]) -> None:
    from kfgpu.cli import main

    argv = ["run", "--param", "nope=1"]
    assert main(argv) == 1
    assert "has no parameter 'nope'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="has no parameter 'nope'"):
        main(["--debug", *argv])
    assert main(argv) == 1  # --debug did not outlive its invocation


def test_run_summary_comes_from_the_pipelines_outputs(tmp_path: Path) -> None:
    from kfp import dsl

    from kfgpu.cli.output import run_summary
    from kfgpu.local import LocalRun

    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    metrics.metadata.update({"test_r2": 0.8125, "baseline_r2": 0.0})
    scores = dsl.Dataset(name="scores", uri=str(tmp_path / "scores.parquet"))
    (tmp_path / "scores.parquet").write_bytes(b"PAR1")
    missing = dsl.Artifact(name="never_written", uri=str(tmp_path / "absent"))
    run = LocalRun(
        pipeline="any",
        run_dir=tmp_path,
        log_path=tmp_path / "run.log",
        outputs={"metrics": metrics, "scores": scores, "never_written": missing},
        events=[
            {"step": "score_things", "event": "success", "summary": "scored 10 rows"},
            {"step": "trigger_retraining", "event": "success", "summary": "started run r-1"},
        ],
        wall_seconds=1.25,
    )
    lines = run_summary(run)
    # Whatever the pipeline and its step names: the Metrics output gives the headline, each
    # output with a file its line, each step with side effects what it did.
    assert lines[1] == "held-out r2: 0.8125 (constant predictor: 0.0000)"
    assert f"scores:        {tmp_path / 'scores.parquet'}" in lines
    assert "trigger retraining: started run r-1" in lines
    assert not any("scored 10 rows" in line or "never_written" in line for line in lines)
    assert lines[-1] == "wall time:     1.2s"
