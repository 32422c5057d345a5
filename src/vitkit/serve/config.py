"""ServeConfig: what `vitkit serve` runs (model, backend), how it batches, and the limits that keep it safe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..hardware import usable_cores

API_KEY_VARIABLE = "VITKIT_API_KEY"


@dataclass
class ServeConfig:
    """Every knob of the server as plain data, so a worker process rebuilds the same server from JSON."""

    source: str = ""
    name: str | None = None
    backend: str = "auto"
    int8: bool = False
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    max_pixels: int = 40_000_000
    max_body_mb: float = 10.0
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None
    token_merging: int | list[int] = 0  # tokens merged per block by the serving model (explain uses the full one)
    access_log: bool = True

    def __post_init__(self) -> None:
        positive = {"max_batch_size": self.max_batch_size, "max_queue": self.max_queue, "timeout_s": self.timeout_s,
                    "max_pixels": self.max_pixels, "max_body_mb": self.max_body_mb, "workers": self.workers}
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"{key}={value}: must be positive")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms={self.max_wait_ms}: must be 0 (no waiting) or more")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads}: give at least 1, or leave it out to split the cores")
        if self.api_key == "":
            raise ValueError(f"an empty API key would let anyone in; give a real one or unset {API_KEY_VARIABLE}")

    @property
    def is_onnx(self) -> bool:
        return Path(self.source).suffix.lower() == ".onnx"

    @property
    def model_name(self) -> str:
        """--name, else the source's last path part (a file without its suffix): what responses call the model."""
        path = Path(self.source.rstrip("/"))
        return self.name or (path.stem if path.is_file() else path.name) or self.source

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def threads_per_worker(self) -> int:
        """--threads, else this machine's usable cores split evenly between the workers (at least one each)."""
        return self.threads or max(1, usable_cores() // self.workers)
