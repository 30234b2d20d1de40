"""The anchor of ``bench serving``: the KServe custom Model a user would write for a kfgpu
bundle, without kfgpu's server (``python -m bench._plain_kserve BUNDLE PORT``).

The textbook pattern: a ``kserve.Model`` whose ``predict`` builds a pandas frame from the
V1 ``instances``, applies the bundle's fitted transform (``raw_arrays``) and runs the same
served module, then answers the same ``predictions`` records as kfgpu. KServe's per-request
log lines (latency log, uvicorn access log) are off, as they are in kfgpu's server, so the
comparison is of the request paths alone.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


def main(bundle: str, port: int) -> None:
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv at import
    import kserve
    import pandas as pd
    import torch

    from kfgpu.bundle import load_bundle

    class PlainBundleModel(kserve.Model):  # type: ignore[misc]
        def __init__(self, name: str, path: str) -> None:
            super().__init__(name)
            self.bundle = load_bundle(path)
            self.classes = self.bundle.classes
            self.labels = [str(c) for c in self.classes]
            self.ready = True

        async def predict(
            self, payload: Any, headers: Any = None, response_headers: Any = None
        ) -> dict[str, Any]:
            df = pd.DataFrame(payload["instances"])
            num, codes = self.bundle.transform.raw_arrays(df)
            with torch.inference_mode():
                out = self.bundle.module(torch.from_numpy(num), torch.from_numpy(codes)).numpy()
            best = out.argmax(axis=1).tolist()
            return {
                "predictions": [
                    {
                        "label": self.classes[b],
                        "probabilities": dict(zip(self.labels, row, strict=True)),
                    }
                    for b, row in zip(best, out.tolist(), strict=True)
                ]
            }

    model = PlainBundleModel("plain", bundle)
    server = kserve.ModelServer(
        http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False
    )
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
