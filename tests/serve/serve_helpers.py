"""Helpers of the server tests: images made by the test (including a hand-built PNG bomb), the reference
comparisons, Prometheus parsing."""
import io
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

LABELS = ["apple", "bee", "cat", "dog", "eel"]
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=len(LABELS))


def require_serve_extra() -> None:
    """Skips the calling test module without the serve extra and httpx (CI installs them: it runs everything)."""
    for module in ("fastapi", "uvicorn", "prometheus_client", "python_multipart", "httpx"):
        pytest.importorskip(module)


def image_bytes(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def smooth_image(seed: int, height: int = 48, width: int = 40, channels: int = 3) -> np.ndarray:
    """A smooth random picture (uint8), distinct per seed, so different files get different answers."""
    coarse = torch.rand(1, channels, 3, 3, generator=torch.Generator().manual_seed(seed))
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    array = (fine.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return array[..., 0] if channels == 1 else array


def png_bomb(width: int, height: int, header_only: bool = False) -> bytes:
    """A valid all-black 1-bit PNG of width x height, built by hand: kilobytes that inflate to width*height/8
    bytes (and to width*height pixels once converted)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    signature = b"\x89PNG\r\n\x1a\n"
    if header_only:  # an IDAT chunk with no data: Pillow's header reading stops at IDAT
        return signature + header + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    row, compressor = b"\0" * (1 + (width + 7) // 8), zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return signature + header + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def assert_same_predictions(served: list[dict], predicted: dict) -> None:
    """A served top-k equals predict's: same labels in the same order, same probabilities to float rounding."""
    assert [p["label"] for p in served] == [p["class"] for p in predicted["top"]]
    assert [p["index"] for p in served] == [LABELS.index(p["class"]) for p in predicted["top"]]
    np.testing.assert_allclose([p["probability"] for p in served], [p["probability"] for p in predicted["top"]],
                               rtol=1e-5, atol=1e-7)


def metric_samples(text: str) -> list:
    """Every sample of a Prometheus text exposition, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called name whose labels include `labels` (0 when there are none)."""
    return sum(s.value for s in metric_samples(text) if s.name == name and labels.items() <= s.labels.items())


def wait_until(condition, timeout: float = 60.0, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
