"""Decoding one image file to RGB, the same way every time: EXIF orientation applied, transparency composited on
white, 16-bit scaled to 8-bit, every other mode (1, L, P, CMYK, YCbCr, ...) through Pillow's RGB conversion."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
BACKGROUND = (255, 255, 255, 255)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImageError(ValueError):
    """An image file that cannot be decoded; carries the path so errors and skip counts can name it.

    Built from one message, as DataLoader does when it re-raises a worker's error in the main process."""

    def __init__(self, message: str, path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.path, self.reason = path, reason

    @classmethod
    def for_file(cls, path: str | Path, reason: str) -> "BadImageError":
        """The error for one file, with the fix spelled out."""
        return cls(f"cannot read image {path}: {reason}. Fix or delete the file, or pass --skip-bad-images "
                   "(skip_bad_images=True) to skip and count unreadable files", str(path), reason)


def is_image_file(path: Path) -> bool:
    """True for image extensions; hidden files (.DS_Store, ._x.jpg macOS forks) and others are ignored."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def open_image(path: str | Path) -> Image.Image:
    """The first frame, fully decoded (so a truncated file fails here, not later), in its stored mode."""
    try:
        image = Image.open(path)
        image.seek(0)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise BadImageError.for_file(path, str(error) or type(error).__name__) from None
    return image


def to_rgb(image: Image.Image, upright: bool = True) -> Image.Image:
    """8-bit RGB from an image of any mode, turned upright by its EXIF orientation unless `upright` is False (pixels
    as stored, e.g. where a segmentation mask labels the stored pixels)."""
    if upright:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_MODES:
        wide = np.asarray(image).astype(np.int64)
        return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L").convert("RGB")
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND), rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path, upright: bool = True) -> Image.Image:
    """open_image + to_rgb, with conversion failures also reported against the file."""
    image = open_image(path)
    try:
        return to_rgb(image, upright)
    except (OSError, ValueError) as error:
        raise BadImageError.for_file(path, str(error)) from None
