"""The LitServe peer of serve_load.py: the same ServedModel as `vitkit serve` (decode_upload, the checkpoint's
preprocessing, one forward per batch) behind LitServe's own HTTP server and batching, on loopback.

    python benchmarks/serve_litserve.py CHECKPOINT --port 8001 --backend ort-fp32 --max-batch-size 32 --max-wait-ms 5
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import litserve as ls
import numpy as np
import torch

from vitkit.serve import ServeConfig, decode_upload
from vitkit.serve.model import ServedModel


_parse = ls.server.BaseRequestHandler._prepare_request


async def _parse_uploads_to_bytes(self: Any, request: Any, request_type: Any) -> Any:
    """LitServe 0.2.19 hands starlette's parsed form to a multiprocessing queue, which here fails to pickle it
    (TypeError: Pickling an AuthenticationString object is disallowed); read the uploads to bytes in its API
    process instead, as vitkit serve reads them in its own."""
    payload = await _parse(self, request, request_type)
    if hasattr(payload, "multi_items"):
        return {key: await value.read() if hasattr(value, "read") else value for key, value in payload.multi_items()}
    return payload


ls.server.BaseRequestHandler._prepare_request = _parse_uploads_to_bytes  # module level: LitServe's processes import it


class VitkitAPI(ls.LitAPI):
    """Module level, so LitServe can pickle it into its inference worker."""

    def __init__(self, config: ServeConfig, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.config = config

    def setup(self, device: str) -> None:
        self.model = ServedModel.load(self.config)

    def decode_request(self, request) -> np.ndarray:  # unannotated: LitServe then passes the parsed body
        return self.model.pixels(decode_upload(request["file"], self.config.max_pixels))

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return self.model.classify(batch)

    def encode_response(self, probs: np.ndarray) -> dict[str, Any]:
        values, indices = torch.from_numpy(probs).topk(min(5, len(self.model.labels)))
        return {"predictions": [{"label": self.model.labels[i], "index": i, "probability": v}
                                for v, i in zip(values.tolist(), indices.tolist())]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    api = VitkitAPI(ServeConfig(source=args.checkpoint, backend=args.backend), args.max_batch_size,
                    args.max_wait_ms / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, access_log=False)  # as vitkit's run
    return 0


if __name__ == "__main__":
    sys.exit(main())
