"""Components of Kubeflow operations: the data fingerprint that keys the pipeline's cache."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects
# of component and pipeline signatures to build their interfaces.

from kfp import dsl

from kfgpu._image import BASE_IMAGE

__all__ = ["fingerprint_data"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def fingerprint_data(data_uri: str) -> str:
    """Fingerprint the data behind a URI, for the cache key of the steps that read it.

    Never cache this step: it must look at the data every run. Pass its output to
    validate_data's data_fingerprint, so a file replaced under the same URI misses the
    cache instead of serving results computed from the old data.

    Args:
        data_uri: the data's URI, as given to validate_data (a local path, any fsspec URI,
            or a built-in ``kfgpu://`` data set).

    Returns:
        Output: ``sha256:<hex>`` of the local bytes, of the object store's version identity
            (ETag, checksum, generation, size, modification time) of each object, or of the
            built-in data set's URI and the kfgpu version; ``absent`` when nothing is there
            (validate_data then fails with its report saying so).
    """
    from kfgpu.errors import DataNotFoundError
    from kfgpu.ops.fingerprint import source_fingerprint

    try:
        return source_fingerprint(data_uri)
    except DataNotFoundError as e:
        # Not this step's error to report: validate_data reads the URI next and fails with
        # its report; a missing source is a state of its own for the cache key.
        print(f"fingerprint: {e}", flush=True)
        return "absent"
