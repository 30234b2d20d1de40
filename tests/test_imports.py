"""`import kfgpu` and compiling pipelines must not pull in the heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "mlflow",
    "evidently",
    "horovod",
    "optuna",
    "kserve",
)


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_kfgpu_is_light() -> None:
    assert (
        _loaded_after(
            "import kfgpu, kfgpu.data, kfgpu.validation, kfgpu.features, kfgpu.training, "
            "kfgpu.evaluation, kfgpu.registry, kfgpu.bundle, kfgpu.local, kfgpu.tuning, "
            "kfgpu.tuning.study, kfgpu.tuning.step, kfgpu.tuning.report, kfgpu.monitoring, "
            "kfgpu.monitoring.logger, kfgpu.monitoring.monitor, kfgpu.monitoring.sink, "
            "kfgpu.monitoring.step"
        )
        == []
    )


def test_compile_is_light(tmp_path) -> None:
    code = f"from kfgpu.compile import compile_all; compile_all({str(tmp_path)!r})"
    assert _loaded_after(code) == []
    assert (tmp_path / "pipelines" / "training.yaml").is_file()


def test_cli_help_is_light() -> None:
    code = (
        "from kfgpu.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['components'])"
    )
    assert _loaded_after(code) == []


def test_probe_detects_heavy_imports() -> None:
    # The probe itself must be able to fail: importing the trainer loads torch.
    assert "torch" in _loaded_after("import kfgpu.training.trainer, kfgpu.training.network")


def test_import_serving_is_light() -> None:
    # The predictor itself (kfgpu.serving.predictor) imports kserve; everything else defers it.
    assert (
        _loaded_after(
            "import kfgpu.serving, kfgpu.serving.schema, kfgpu.serving.isvc, "
            "kfgpu.serving.deploy, kfgpu.serving.batch, kfgpu.serving.step, "
            "kfgpu.serving.server, kfgpu.serving.batcher, kfgpu.serving.metrics, "
            "kfgpu.components.serving"
        )
        == []
    )
