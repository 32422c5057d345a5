"""'hf-hub:org/name' sources: downloaded with huggingface_hub when it is installed and online."""
from __future__ import annotations

from pathlib import Path

from .io import CheckpointError

HUB_PREFIX = "hf-hub:"
PATTERNS = (["*.json", "*.safetensors"], ["*.bin", "*.pth"])


def download(source: str) -> Path:
    """The local snapshot folder of a Hub repository, or an error telling the user to pass a local path."""
    repo = source[len(HUB_PREFIX):].strip("/")
    local_hint = (f"download the repository yourself (e.g. `git clone https://huggingface.co/{repo}`) and pass its "
                  f"local folder: vitkit.from_pretrained('/path/to/{repo.split('/')[-1]}')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{source!r} needs the huggingface_hub package, which is not installed: "
                              f"`pip install huggingface_hub`, or {local_hint}") from None
    try:
        folder = Path(snapshot_download(repo, allow_patterns=PATTERNS[0]))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(repo, allow_patterns=PATTERNS[1]))
    except Exception as error:  # offline, unknown repo, gated repo, interrupted transfer: all end the same way
        raise CheckpointError(f"could not download {repo!r} from the Hugging Face Hub "
                              f"({type(error).__name__}: {error}); if this machine is offline, {local_hint}") from None
    return folder
