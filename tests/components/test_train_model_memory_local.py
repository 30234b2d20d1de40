"""train_model under kfp.local in bounded memory: the streamed split (issue 19, acceptance 2).

What is bounded: the step's peak RSS *growth* over a baseline, not its absolute RSS.
RLIMIT_AS cannot cap a torch process usefully (torch and its allocators reserve far more
virtual address space than they touch), and a table whose decoded size dwarfs torch's own
resident set (~400 MB for torch + Lightning + kfgpu) would take minutes to write and train
on two cores. So each run is a fresh driver process whose only child is the kfp.local step
subprocess, and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the run is that step's peak
RSS. The baseline is the same step on a 2,000-row table (imports, model, Lightning,
bundle writing); the growth of a 4,000,000-row table (288 MB decoded as training tensors)
over it must stay under a quarter of the decoded size when streamed
(``stream_threshold_mb=0``), and exceeds that bound with the same data in memory
(``stream_threshold_mb`` above its size), which shows the bound can fail.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's real annotations.

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

FEATURES = 16
ROWS = 4_000_000
DECODED_MB = ROWS * (4 * FEATURES + 8) / 1e6  # float32 features + int64 target, as tensors

DRIVER = """
import json, resource, sys, warnings
from kfp import dsl, local
from kfgpu.components import train_model

@dsl.pipeline(name="train-memory")
def train_only(train_uri: str, val_uri: str, transform_uri: str, profile_uri: str, hp: str):
    tr = dsl.importer(artifact_uri=train_uri, artifact_class=dsl.Dataset)
    va = dsl.importer(artifact_uri=val_uri, artifact_class=dsl.Dataset)
    tf = dsl.importer(artifact_uri=transform_uri, artifact_class=dsl.Artifact)
    pr = dsl.importer(artifact_uri=profile_uri, artifact_class=dsl.Artifact)
    train_model(
        train=tr.output, validation=va.output, transform=tf.output, profile=pr.output,
        target="label", task="classification", max_epochs=1, batch_size=16384,
        hidden_sizes="8", accelerator="cpu", early_stopping_patience=0, hyperparameters=hp,
    )

if __name__ == "__main__":
    root, train_uri, hp = sys.argv[1], sys.argv[2], sys.argv[3]
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root + "/kfp")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        train_only(
            train_uri=train_uri, val_uri=root + "/val.parquet",
            transform_uri=root + "/transform.json", profile_uri=root + "/profile", hp=hp,
        )
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _write(root: Path) -> None:
    from kfgpu.features import infer_feature_spec
    from kfgpu.features.transform import fit_transform

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(FEATURES)]
    raw = pd.DataFrame(rng.normal(size=(500, FEATURES)), columns=names)
    raw["label"] = rng.integers(0, 2, 500)
    transform = fit_transform(raw, infer_feature_spec(raw, "label"))
    assert transform.dense_names == tuple(names) and not transform.emb_names
    transform.save(root / "transform.json")
    (root / "profile").mkdir()
    (root / "profile" / "profile.json").write_text('{"rows": 1}\n')

    def table(n: int, seed: int) -> pa.Table:
        x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)
        cols = {name: x[:, i] for i, name in enumerate(names)}
        return pa.table({**cols, "label": (x[:, 0] + x[:, 1] > 0).astype(np.int64)})

    pq.write_table(table(5000, 1), root / "val.parquet")
    (root / "small").mkdir()
    pq.write_table(table(2000, 2), root / "small" / "part-0.parquet")
    (root / "big").mkdir()
    per_file = 500_000
    for i in range(ROWS // per_file):
        pq.write_table(
            table(per_file, 10 + i),
            root / "big" / f"part-{i}.parquet",
            row_group_size=65_536,
            compression="none",
        )


def _peak_mb(root: Path, train: str, settings: dict[str, float]) -> float:
    script = root / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.run(
        [sys.executable, str(script), str(root), str(root / train), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"])


def test_streamed_training_step_stays_within_a_fraction_of_the_data(tmp_path: Path) -> None:
    _write(tmp_path)
    baseline = _peak_mb(tmp_path, "small", {"stream_threshold_mb": 0})
    streamed = _peak_mb(tmp_path, "big", {"stream_threshold_mb": 0})
    in_memory = _peak_mb(tmp_path, "big", {"stream_threshold_mb": 10 * DECODED_MB})
    bound = DECODED_MB / 4
    report = (
        f"baseline {baseline:.0f} MB, streamed {streamed:.0f} MB, in memory {in_memory:.0f} MB, "
        f"decoded {DECODED_MB:.0f} MB, bound on growth {bound:.0f} MB"
    )
    assert streamed - baseline < bound, report
    assert in_memory - baseline > bound, report  # the same data in memory breaks the bound
    # Both trained one epoch on every row (the bundles say so).
    bundles = [json.loads(p.read_text()) for p in tmp_path.rglob("bundle.json")]
    rows = sorted(b["training"]["train_rows"] for b in bundles)
    assert rows == [2000, ROWS, ROWS], report
