"""Uploaded images, decoded as `vitkit predict` decodes files, but only after the header has shown a size the server
accepts: a decompression bomb (a few KB that inflate to gigabytes) is refused before any pixel is decoded."""
from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from ..data.decode import to_rgb

READABLE = "PNG, JPEG, WebP, GIF, BMP, TIFF"


class UploadRejected(ValueError):
    """An upload the server refuses, with the HTTP status that says why (400 unreadable, 413 too large, 415 not an
    image upload)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Upright RGB of an uploaded image (EXIF orientation, transparency on white: data.decode's rules), once its
    header shows at most max_pixels."""
    if not data:
        raise UploadRejected(400, "the image is empty (0 bytes); send the file's contents")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the server applies its own limit below
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as error:
        raise UploadRejected(413, f"the image is far too large ({error}); send a smaller image") from None
    except UnidentifiedImageError:
        raise UploadRejected(400, f"not an image: no format this server reads ({READABLE}) recognises these "
                                  f"{len(data)} bytes") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UploadRejected(400, f"not a readable image ({READABLE}): {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise UploadRejected(413, f"the image is {width} x {height} = {width * height / 1e6:.1f} megapixels, over this "
                                 f"server's limit of {max_pixels / 1e6:g} (--max-pixels); send a smaller image")
    try:
        image.seek(0)
        image.load()
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadRejected(400, f"the image cannot be decoded, it is truncated or corrupt: {error}") from None
