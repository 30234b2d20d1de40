"""kfgpu._redact and its call sites: credentials in URIs leave the process as ``***``."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from kfgpu._redact import (
    RedactingFilter,
    RedactingStream,
    redact,
    redact_obj,
    without_masked,
)
from kfgpu._step import EVENTS_ENV, StepResult, read_events, step

SECRET = "S3CRETPASS3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:S3CRET@mlflow:5000", "http://alice:***@mlflow:5000"),
        # A raw @ in a password: everything up to the host's @ is the password.
        ("postgresql://optuna:p@ss@db:5432/optuna", "postgresql://optuna:***@db:5432/optuna"),
        (
            "postgresql+psycopg://u:pw@127.0.0.1/t and http://a:b@h/x",
            "postgresql+psycopg://u:***@127.0.0.1/t and http://a:***@h/x",
        ),
        ("https://h/p?token=abc&rows=10", "https://h/p?token=***&rows=10"),
        (
            "s3://b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&X-Amz-Date=2",
            "s3://b/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=2",
        ),
        (
            "https://a.blob.core.windows.net/c?sv=1&sig=zz%3D&se=3",
            "https://a.blob.core.windows.net/c?sv=1&sig=***&se=3",
        ),
        ("gs://b/o?X-Goog-Signature=00", "gs://b/o?X-Goog-Signature=***"),
        ("http://h/?access_token=t1&api_key=k2", "http://h/?access_token=***&api_key=***"),
        ('{"uri": "http://a:b@h:1"}', '{"uri": "http://a:***@h:1"}'),
        ("uri='http://a:b@h:1'", "uri='http://a:***@h:1'"),
    ],
)
def test_redact_masks_passwords_and_credential_parameters(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "kfgpu://fraud?rows=100000&seed=0",
        "http://user@host:5000/path",  # a user name alone is not a secret
        "sqlite:////tmp/mlflow.db",
        "learning_rate=0.001 hidden_sizes=256,256",
        "held-out roc_auc 0.9812 on 6000 rows",
    ],
)
def test_redact_leaves_other_text_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_obj_walks_nested_values_and_keeps_types() -> None:
    value = {
        "lineage": {"mlflow_tracking_uri": f"http://a:{SECRET}@h", "run": None, "n": 3},
        "uris": [f"s3://b/k?token={SECRET}", ("x", 1.5)],
    }
    out = redact_obj(value)
    assert SECRET not in json.dumps(out)
    assert out["lineage"] == {"mlflow_tracking_uri": "http://a:***@h", "run": None, "n": 3}
    assert out["uris"][1] == ("x", 1.5)
    assert SECRET in json.dumps(value)  # a copy: the original still connects


def test_without_masked_drops_masked_credentials_only() -> None:
    assert without_masked("http://alice:***@h:5000/x?token=***&rows=1") == "http://h:5000/x?rows=1"
    assert without_masked("http://h:5000") == "http://h:5000"
    assert without_masked("") == ""


def test_stream_redacts_a_uri_split_across_writes_and_carriage_returns() -> None:
    target = io.StringIO()
    stream = RedactingStream(target)
    stream.write("run at http://alice:")
    assert target.getvalue() == ""  # held until the line ends
    stream.write(f"{SECRET}@h:5000\repoch 1")
    assert target.getvalue() == "run at http://alice:***@h:5000\r"
    stream.write(f" http://b:{SECRET}@h")
    stream.flush()
    assert target.getvalue().endswith("epoch 1 http://b:***@h")


def test_filter_redacts_arguments_and_tracebacks() -> None:
    target = io.StringIO()
    handler = logging.StreamHandler(target)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("kfgpu.test_redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting to %s", f"postgresql://u:{SECRET}@db/x")
        try:
            raise RuntimeError(f"cannot reach http://a:{SECRET}@h")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = target.getvalue()
    assert SECRET not in text
    assert "postgresql://u:***@db/x" in text and "http://a:***@h" in text


def test_a_step_redacts_what_a_library_prints_and_what_it_publishes(tmp_path: Path) -> None:
    """In a fresh process, as a component runs: a library that prints or logs the URI (MLflow
    prints its tracking URI when a run ends), the events, the summary, artifact metadata."""
    events = tmp_path / "events.jsonl"
    script = textwrap.dedent(
        f"""
        import logging, sys
        from types import SimpleNamespace
        from kfgpu._step import StepResult, step

        logging.basicConfig(level=logging.INFO)  # a handler made before the step starts
        uri = "http://alice:{SECRET}@mlflow:5000"

        @step("demo")
        def demo():
            sys.stdout.write(f"View run at: {{uri}}/#/runs/1\\n")
            logging.getLogger("mlflow").info("tracking to %s", uri)
            return StepResult(summary=f"tracked in {{uri}}", metadata={{"model": {{"uri": uri}}}})

        model = SimpleNamespace(metadata={{}})
        demo().publish(model=model)
        print(model.metadata["uri"])

        @step("fails")
        def fails():
            raise ValueError(f"cannot open {{uri}}")

        fails()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, EVENTS_ENV: str(events)},
        timeout=60,
    )
    assert proc.returncode != 0 and "ValueError" in proc.stderr
    everything = proc.stdout + proc.stderr + events.read_text()
    assert SECRET not in everything, everything
    assert "View run at: http://alice:***@mlflow:5000/#/runs/1" in proc.stdout
    assert "tracking to http://alice:***@mlflow:5000" in proc.stderr
    assert proc.stdout.count("http://alice:***@mlflow:5000") == 3  # print, summary, metadata
    (failure,) = [e for e in read_events(events) if e["event"] == "failure"]
    assert failure["message"] == "cannot open http://alice:***@mlflow:5000"


def test_publish_redacts_metadata_in_process() -> None:
    artifact = SimpleNamespace(metadata={})
    result = StepResult(metadata={"model": {"uri": f"s3://b/m?X-Amz-Signature={SECRET}"}})
    result.publish(model=artifact)
    assert artifact.metadata == {"uri": "s3://b/m?X-Amz-Signature=***"}


def test_step_events_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENTS_ENV, str(tmp_path / "ev.jsonl"))

    @step("demo")
    def demo() -> StepResult:
        return StepResult(summary=f"study in postgresql://u:{SECRET}@db/x")

    demo()
    assert SECRET not in (tmp_path / "ev.jsonl").read_text()


def test_tracking_stores_params_and_tags_redacted(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from kfgpu.registry import local_tracking_uri
    from kfgpu.registry.tracking import start_run

    uri = local_tracking_uri(tmp_path)
    run_id = start_run(
        uri,
        params={"checkpoint_dir": f"s3://ckpt/run?token={SECRET}", "max_epochs": 3},
        tags={"kfgpu.source": f"http://a:{SECRET}@h/data.csv"},
    )
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.params == {"checkpoint_dir": "s3://ckpt/run?token=***", "max_epochs": "3"}
    assert run.data.tags["kfgpu.source"] == "http://a:***@h/data.csv"
    assert SECRET.encode() not in (tmp_path / "mlflow.db").read_bytes()


def test_bundle_json_records_the_tracking_uri_redacted(tmp_path: Path) -> None:
    import torch

    from kfgpu.bundle import DESCRIPTION_FILE, write_bundle
    from kfgpu.data.synthetic import LABEL_COLUMN, fraud
    from kfgpu.features.transform import fit_transform, infer_feature_spec

    df = fraud(60, seed=0)
    transform = fit_transform(df, infer_feature_spec(df, LABEL_COLUMN))
    lineage = {"mlflow_tracking_uri": f"http://alice:{SECRET}@mlflow:5000", "mlflow_run_id": "r1"}
    path = write_bundle(
        tmp_path / "b",
        state_dict={"w": torch.zeros(2)},
        transform=transform,
        description={"task": "classification", "lineage": lineage},
    )
    # Read raw: this minimal description is not a whole bundle.json (read_description checks).
    assert json.loads((path / DESCRIPTION_FILE).read_text())["lineage"] == {
        "mlflow_tracking_uri": "http://alice:***@mlflow:5000",
        "mlflow_run_id": "r1",
    }
    assert not [p for p in path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_a_step_redacts_the_text_files_it_wrote_even_when_it_fails(tmp_path: Path) -> None:
    import os

    uri = f"http://u:{SECRET}@h/data.csv?sig={SECRET}"
    given = tmp_path / "given.txt"
    given.write_text(f"an input the step only reads: {uri}\n")
    os.utime(given, (0, 0))
    binary = b"PAR1\0" + uri.encode()

    @step("writes")
    def writes(*, data_uri: str, input_path: str, report_path: str, table_path: str) -> StepResult:
        Path(report_path).write_text(f"# Report\nsource: {data_uri}\n")
        Path(table_path).write_bytes(binary)
        raise ValueError("the data is bad")

    with pytest.raises(ValueError):
        writes(
            data_uri=uri,
            input_path=str(given),
            report_path=str(tmp_path / "report.md"),
            table_path=str(tmp_path / "table.parquet"),
        )
    assert (tmp_path / "report.md").read_text() == (
        "# Report\nsource: http://u:***@h/data.csv?sig=***\n"
    )
    assert (tmp_path / "table.parquet").read_bytes() == binary  # data is not text
    assert SECRET in given.read_text()  # not written by the step: not touched
