"""What the run identity of a checkpointed run costs: hashing the tensors it trains on.

A run with ``checkpoint_dir`` digests its training and validation tensors (and its
settings) once, before training, to tell its own checkpoint from another run's
(:func:`kfgpu.training.resume.run_identity`). The baseline, measured in the same process
on the same rows, is what every run does anyway just before: encoding the raw splits with
the fitted transform (``FittedTransform.transform``).

Settings (environment): ``KFGPU_BENCH_IDENTITY_ROWS`` (default 1,000,000 rows of the
synthetic fraud data; 70% train, 15% validation).
"""

from __future__ import annotations

import os
import time

from bench._harness import benchmark, progress


@benchmark("resume_identity")
def resume_identity() -> dict[str, float]:
    """Run-identity digest of the training tensors vs encoding them with the transform."""
    import torch

    from kfgpu.data import fraud
    from kfgpu.features import fit_transform, infer_feature_spec
    from kfgpu.features.split import split_frame
    from kfgpu.training.config import TrainConfig
    from kfgpu.training.resume import run_identity
    from kfgpu.training.trainer import encode_labels

    rows = int(os.environ.get("KFGPU_BENCH_IDENTITY_ROWS", "1000000"))
    progress(f"resume_identity: {rows} rows")
    train, val, _ = split_frame(fraud(rows, seed=0), "is_fraud", task="classification")
    fitted = fit_transform(train, infer_feature_spec(train, "is_fraud"))
    labels, encode = encode_labels(train["is_fraud"], [val["is_fraud"]], task="classification")

    t0 = time.perf_counter()
    splits = []
    for df in (train, val):
        x, c = fitted.transform(df)
        splits.append(
            (torch.from_numpy(x), torch.from_numpy(c), torch.from_numpy(encode(df["is_fraud"])))
        )
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    identity = run_identity(
        config=TrainConfig(),
        task="classification",
        target="is_fraud",
        network_config={},
        labels=labels,
        train=splits[0],
        val=splits[1],
    )
    digest_s = time.perf_counter() - t0
    megabytes = sum(t.numel() * t.element_size() for s in splits for t in s) / 1e6
    assert identity["data"]["train_rows"] == len(train)
    return {
        "rows": float(rows),
        "tensor_mb": round(megabytes, 1),
        "encode_s": round(encode_s, 4),
        "digest_s": round(digest_s, 4),
        "digest_over_encode": round(digest_s / encode_s, 4),
        "digest_mb_per_s": round(megabytes / digest_s, 1),
    }
