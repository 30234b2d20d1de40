"""The container images every component and job runs in, pinned to the package version.

One constant per image, built from ``__version__``, so a compiled spec and its image can
never drift apart (the habit of Google Cloud Pipeline Components' ``_image.py``).
"""

from __future__ import annotations

import os

from kfgpu._version import __version__

__all__ = [
    "BASE_IMAGE",
    "HOROVOD_IMAGE",
    "IMAGE_REGISTRY",
    "SERVE_GPU_IMAGE",
    "SERVE_IMAGE",
    "TRAIN_IMAGE",
    "image",
]

#: Where the images built from ``images/`` are pushed. Override at compile time with
#: ``KFGPU_IMAGE_REGISTRY`` to point compiled specs at a private mirror.
IMAGE_REGISTRY = os.environ.get("KFGPU_IMAGE_REGISTRY", "ghcr.io/kfgpu")


def image(name: str) -> str:
    """The full reference of one kfgpu image at this package version."""
    return f"{IMAGE_REGISTRY}/{name}:{__version__}"


BASE_IMAGE = image("kfgpu-base")
TRAIN_IMAGE = image("kfgpu-train")
SERVE_IMAGE = image("kfgpu-serve")
#: The predictor on CUDA torch (``images/serve-gpu``): what an InferenceService with GPUs runs.
SERVE_GPU_IMAGE = image("kfgpu-serve-gpu")
HOROVOD_IMAGE = image("kfgpu-horovod")
