"""`vitkit serve`: an HTTP inference server with dynamic batching, Prometheus metrics and a demo page. The app
(vitkit.serve.app) and the runner (vitkit.serve.server) need the `serve` extra; what is here does not."""
import importlib.util

from .batcher import DynamicBatcher, QueueFull, ShuttingDown
from .config import ServeConfig
from .images import UploadRejected, decode_upload

PACKAGES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client",
            "python_multipart": "python-multipart"}
INSTALL_HINT = "pip install 'vitkit[serve]'"

__all__ = ["DynamicBatcher", "INSTALL_HINT", "QueueFull", "ServeConfig", "ShuttingDown", "UploadRejected",
           "decode_upload", "require_serve_extra"]


def require_serve_extra() -> None:
    """Fails with what to install when the serve extra is missing, before anything imports it."""
    missing = [name for module, name in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"vitkit serve needs {', '.join(missing)}: {INSTALL_HINT}")
