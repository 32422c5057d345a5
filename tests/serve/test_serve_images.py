"""Upload decoding: the same pixels as predict's file decoding, and refusals from the header for images too large,
before a single pixel is decoded (decompression bombs)."""
import io

import numpy as np
import pytest
from PIL import Image

from vitkit.data.decode import load_rgb
from vitkit.serve import UploadRejected, decode_upload

from serve_helpers import image_bytes, png_bomb, smooth_image

DEFAULT_MAX = 40_000_000


@pytest.mark.parametrize("name", ["rgb.png", "photo.jpg", "rgba.png", "grey.png", "wide.jpg"])
def test_uploads_decode_to_the_pixels_predict_reads_from_the_file(photos, name):
    path = next(p for p in photos if p.name == name)
    decoded = decode_upload(path.read_bytes(), DEFAULT_MAX)
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(load_rgb(path)))


def test_a_plain_rgb_png_decodes_to_its_own_pixels():
    array = smooth_image(7)
    np.testing.assert_array_equal(np.asarray(decode_upload(image_bytes(array), DEFAULT_MAX)), array)


def test_the_exif_orientation_is_applied_as_predict_does(tmp_path):
    array = smooth_image(8, 20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    data = image_bytes(array, "JPEG", exif=exif, quality=95)
    (tmp_path / "turned.jpg").write_bytes(data)
    decoded = decode_upload(data, DEFAULT_MAX)
    assert decoded.size == (20, 30)  # width and height swapped by the rotation
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(load_rgb(tmp_path / "turned.jpg")))


def test_the_pixel_limit_is_inclusive():
    data = image_bytes(smooth_image(9, 100, 100))
    assert decode_upload(data, 10_000).size == (100, 100)
    with pytest.raises(UploadRejected, match=r"100 x 100 = 0.0 megapixels.*--max-pixels") as refused:
        decode_upload(data, 9_999)
    assert refused.value.status == 413


@pytest.mark.parametrize("width, height, message", [
    (8000, 8000, r"8000 x 8000 = 64.0 megapixels, over this server's limit of 40"),  # under Pillow's own limit
    (20000, 20000, r"far too large"),  # the bomb; Pillow's own header check fires first
])
def test_a_decompression_bomb_is_refused_from_its_header(decoded_pixels, width, height, message):
    bomb = png_bomb(width, height)
    assert len(bomb) < 60_000  # a few KB...
    assert Image.open(io.BytesIO(png_bomb(64, 64))).size == (64, 64)  # ...of a PNG Pillow reads
    with pytest.raises(UploadRejected, match=message) as refused:
        decode_upload(bomb, DEFAULT_MAX)
    assert refused.value.status == 413
    assert decoded_pixels == []


def test_the_size_comes_from_the_header_alone(decoded_pixels):
    """With no pixel data at all, the refusal names the size: it cannot have come from decoding."""
    with pytest.raises(UploadRejected, match="64.0 megapixels"):
        decode_upload(png_bomb(8000, 8000, header_only=True), DEFAULT_MAX)
    assert decoded_pixels == []


JPEG = image_bytes(smooth_image(10, 64, 64), "JPEG")


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is text, not a picture", "not an image"),
    (JPEG[:len(JPEG) * 2 // 3], "truncated or corrupt"),  # the header is whole, the pixels stop short
    (JPEG[:200], "not a readable image"),  # the header itself stops short
], ids=["empty", "text", "truncated-jpeg", "cut-header"])
def test_unreadable_uploads_are_400_with_the_reason(data, message):
    with pytest.raises(UploadRejected, match=message) as refused:
        decode_upload(data, DEFAULT_MAX)
    assert refused.value.status == 400
