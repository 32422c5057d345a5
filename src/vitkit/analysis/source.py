"""What `vitkit analyze` may be pointed at: a training run, a checkpoint, or a preset name (random weights)."""
from __future__ import annotations

from pathlib import Path

from ..models.vision_transformer import VisionTransformer
from ..selfsup import MAE_PICTURE, MASKED_PATCH_PICTURE


def load_for_analysis(source: str) -> tuple[VisionTransformer, str]:
    """The model a source names, and a line saying where its weights came from."""
    from ..checkpoints import from_pretrained, resolve_checkpoint
    from ..models import create_model, is_preset

    path = Path(source)
    if path.exists():
        checkpoint = resolve_checkpoint(path)
        return from_pretrained(checkpoint), f"weights: {checkpoint}"
    if is_preset(source):
        return create_model(source), f"weights: none (preset {source} with random initialisation)"
    raise ValueError(f"{source!r} is neither a file or folder nor a preset name; pass a run folder "
                     "(runs/<name>), a checkpoint, or a preset from `vitkit models`")


def run_pictures(source: str) -> list[Path]:
    """The pictures a training run drew at its last evaluation (self-supervised objectives), for the report."""
    from ..checkpoints import run_folder

    run = run_folder(source)
    return [run / name for name in (MAE_PICTURE, MASKED_PATCH_PICTURE) if run and (run / name).is_file()]
