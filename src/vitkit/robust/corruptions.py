"""The 15 common corruptions of CIFAR-10-C (Hendrycks & Dietterich 2019) at 5 severities, generated on the fly in
torch from batches of [0, 1] pixels.

The severity constants are those of the authors' CIFAR-10 generation script (they are tuned for 32 x 32 images;
larger images get the same pixel-sized blurs and shifts). Where the script calls a library, the operation is
rewritten here from what that library computes: scikit-image's and scipy's Gaussian filters, OpenCV's disk kernel,
ImageMagick's one-sided motion blur, scipy's bilinear zoom, Pillow's box resize. JPEG goes through Pillow's encoder
itself. Frost blends photographs of frost that cannot be had offline; a procedural ice texture replaces them
(frost_texture). Every random draw comes from the generator passed in, so a batch is a function of its seed;
outputs are 8-bit images like the published files (rounded to multiples of 1/255).
"""
from __future__ import annotations

import functools
import io
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SEVERITIES = (1, 2, 3, 4, 5)
GROUPS = {"noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
          "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
          "weather": ("snow", "frost", "fog", "brightness"),
          "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression")}
CORRUPTIONS = tuple(name for names in GROUPS.values() for name in names)
FROST_NOTE = ("frost: the frost photographs CIFAR-10-C blends in cannot be had offline; a procedural ice texture "
              "(fractal haze plus blurred bright needles, tinted pale blue; vitkit.robust.corruptions.frost_texture) "
              "is blended with the script's weights instead")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as OpenCV's RGB -> gray

# The script's constants, one entry per severity 1..5.
GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_PHOTONS = (500, 250, 100, 75, 50)
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, anti-alias sigma
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, max shift, iterations
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick radius, sigma
ZOOM_STOPS = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors np.arange(1, stop, 0.01)
SNOW = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # image weight, frost weight
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # fog strength, fractal roughness decay
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))  # x 32 px
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
JPEG_QUALITY = (80, 65, 58, 50, 40)
CIFAR_SIZE = 32


def corrupt(images: torch.Tensor, name: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """A batch [B, C, H, W] of [0, 1] pixels (C = 1 or 3) corrupted as CIFAR-10-C's `name` at `severity` 1-5."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity={severity} must be one of {SEVERITIES}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"corruptions take [B, 1 or 3, H, W] pixels; got {tuple(images.shape)}")
    out = FUNCTIONS[name](images.float(), severity - 1, generator)
    return (out.clamp(0, 1) * 255).round() / 255


def parse_corruptions(text: str) -> list[str]:
    """'all', a group (noise, blur, weather, digital) or comma-separated names -> corruption names."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            names += CORRUPTIONS
        elif part in GROUPS:
            names += GROUPS[part]
        elif part in CORRUPTIONS:
            names.append(part)
        else:
            raise ValueError(f"unknown corruption {part!r}; use all, a group ({', '.join(GROUPS)}) or names from "
                             f"{', '.join(CORRUPTIONS)}")
    return list(dict.fromkeys(names))


# ----- the operations the script borrows from libraries ------------------------------------------------------------

def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def pad_index(size: int, pad: int, mode: str) -> torch.Tensor:
    """Indices that extend an axis by `pad` on each side: 'nearest' repeats the edge, 'reflect' mirrors about it
    (d c b a | a b c d, scipy's reflect), 'mirror' mirrors about the edge pixel (d c b | a b c d, OpenCV's default)."""
    index = torch.arange(-pad, size + pad)
    if mode == "nearest" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "reflect":
        index = index % (2 * size)
        return torch.where(index < size, index, 2 * size - 1 - index)
    index = index % (2 * size - 2)
    return torch.where(index < size, index, 2 * size - 2 - index)


def correlate(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Each channel correlated with a 2-D kernel of odd size, the borders extended as `mode` says."""
    kh, kw = kernel.shape
    x = x.index_select(-2, pad_index(x.shape[-2], kh // 2, mode).to(x.device))
    x = x.index_select(-1, pad_index(x.shape[-1], kw // 2, mode).to(x.device))
    channels = x.shape[1]
    weight = kernel.to(x).expand(channels, 1, kh, kw)
    return F.conv2d(x, weight, groups=channels)


def gaussian_kernel1d(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's sampled Gaussian: radius int(truncate * sigma + 0.5), weights summing to 1."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scikit-image's gaussian filter (per channel, spatial axes only; 'nearest' borders by default)."""
    kernel = gaussian_kernel1d(sigma, truncate)
    return correlate(correlate(x, kernel[:, None], mode), kernel[None, :], mode)


def bilinear_sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] read bilinearly at pixel coordinates rows/cols [B, H', W'], reflecting beyond the border
    about the image edge (scipy's map_coordinates(order=1, mode='reflect'))."""
    height, width = x.shape[-2:]
    grid = torch.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], dim=-1)
    return F.grid_sample(x, grid.to(x), mode="bilinear", padding_mode="reflection", align_corners=False)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The centre of the image magnified by `factor` back to full size: the central ceil(size / factor) pixels
    resampled as scipy.ndimage.zoom(order=1) does (corner-aligned bilinear to round(crop * factor)), then the
    centre cut out."""
    height, width = x.shape[-2:]
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = x[..., top:top + crop_h, left:left + crop_w]
    size = (round(crop_h * factor), round(crop_w * factor))
    zoomed = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    trim_h, trim_w = (size[0] - height) // 2, (size[1] - width) // 2
    return zoomed[..., trim_h:trim_h + height, trim_w:trim_w + width]


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur: each pixel a one-sided Gaussian-weighted average (width 2 ceil(radius) + 1) of the
    pixels behind it along `angles` (degrees, one per image), offsets rounded to whole pixels, edges repeated."""
    batch, channels, height, width = x.shape
    taps = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    weights = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    weights = weights / weights.sum()
    theta = torch.deg2rad(angles.double())[:, None]
    shift_x = torch.ceil(taps * torch.cos(theta) - 0.5).long()  # [B, taps]
    shift_y = torch.ceil(taps * torch.sin(theta) - 0.5).long()
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]
    flat = x.flatten(2)
    out = torch.zeros_like(flat)
    for tap, weight in enumerate(weights.tolist()):
        r = (rows[None] + shift_y[:, tap, None, None]).clamp(0, height - 1)
        c = (cols[None] + shift_x[:, tap, None, None]).clamp(0, width - 1)
        index = (r * width + c).flatten(1).to(x.device)
        out += weight * flat.gather(2, index[:, None].expand(-1, channels, -1))
    return out.view_as(x)


def plasma_fractal(batch: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """Diamond-square height maps [B, size, size] in [0, 1] (size a power of two), wrapping at the borders; each
    level's random offsets are uniform in +-wibble^2, wibble starting at 100 and divided by `decay` per level."""
    if size & (size - 1):
        raise ValueError(f"plasma_fractal needs a power-of-two size, got {size}")
    grid = torch.zeros(batch, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def jitter(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * _uniform(total.shape, -wibble, wibble, generator).double()

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        around = corners + corners.roll(-1, 1)
        grid[:, half::step, half::step] = jitter(around + around.roll(-1, 2))
        centres, corners = grid[:, half::step, half::step], grid[:, ::step, ::step]
        grid[:, ::step, half::step] = jitter(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        grid[:, half::step, ::step] = jitter(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / decay
    grid -= grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def box_resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """[size_out, size_in] weights of Pillow's BOX filter: each output pixel the area-weighted mean of the input
    pixels whose centres its (scale-wide) box covers; on enlargement, the input pixel under its centre."""
    scale = size_in / size_out
    support = 0.5 * max(scale, 1.0)
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        centre = (i + 0.5) * scale
        low, high = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size_in)
        for j in range(low, high):
            offset = (j - centre + 0.5) / max(scale, 1.0)
            matrix[i, j] = 1.0 if -0.5 <= offset < 0.5 else 0.0
        matrix[i] /= matrix[i].sum()
    return matrix


def box_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A batch resized with Pillow's BOX filter: horizontally, then vertically, each pass stored as 8 bits (halves
    rounded up) like the PIL image it stands for."""
    rows = box_resize_matrix(x.shape[-2], size[0]).to(x)
    cols = box_resize_matrix(x.shape[-1], size[1]).to(x)
    wide = torch.floor(x @ cols.T * 255 + 0.5) / 255
    return torch.floor(rows @ wide * 255 + 0.5) / 255


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luma [B, 1, H, W] of RGB (a gray batch is its own)."""
    if x.shape[1] == 1:
        return x
    return sum(w * x[:, i:i + 1] for i, w in enumerate(GRAY_WEIGHTS))


def to_uint8_floor(x: torch.Tensor) -> torch.Tensor:
    """The script's np.uint8 of a [0, 1] float times 255: truncation, not rounding."""
    return torch.floor(x.clamp(0, 1) * 255) / 255


# ----- frost's stand-in for the photographs -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def frost_texture(index: int, size: int = 160) -> torch.Tensor:
    """A fixed [3, size, size] ice texture in [0, 1] (index 0-4, like the script's five photographs): a rough
    fractal haze, 300 short bright needles at random angles blurred to soft streaks, tinted pale blue. Procedural so
    that it needs no download; it matches the photographs' role (bright, blue-white, locally oriented structure)
    but not their statistics, so frost results compare within vitkit only."""
    generator = torch.Generator().manual_seed(1000 + index)
    haze = plasma_fractal(1, 1 << math.ceil(math.log2(size)), 1.6, generator)[0, :size, :size]
    needles = torch.zeros(size * size, dtype=torch.float64)
    count = 300
    starts = torch.rand(count, 2, generator=generator, dtype=torch.float64) * size
    angles = torch.rand(count, generator=generator, dtype=torch.float64) * math.pi
    lengths = 4 + torch.rand(count, generator=generator, dtype=torch.float64) * 20
    brightness = 0.4 + 0.6 * torch.rand(count, generator=generator, dtype=torch.float64)
    along = torch.linspace(0, 1, 48, dtype=torch.float64)
    rows = (starts[:, :1] + along * lengths[:, None] * torch.sin(angles)[:, None]).round().long() % size
    cols = (starts[:, 1:] + along * lengths[:, None] * torch.cos(angles)[:, None]).round().long() % size
    needles.index_put_(((rows * size + cols).flatten(),), brightness[:, None].expand(-1, len(along)).flatten(),
                       accumulate=True)
    needles = gaussian_blur(needles.view(1, 1, size, size).clamp(max=1.5), 0.8, "reflect")[0, 0]
    ice = (0.45 * haze + 0.9 * needles).clamp(0, 1)
    tint = torch.tensor([0.82, 0.9, 1.0], dtype=torch.float64)[:, None, None]
    return (ice * tint + 0.08 * (1 - ice)).float()


# ----- the corruptions (x: [B, C, H, W] in [0, 1]; s: severity index 0-4) -------------------------------------------

def gaussian_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return x + GAUSSIAN_SIGMA[s] * torch.randn(x.shape, generator=g).to(x.device)


def shot_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    photons = SHOT_PHOTONS[s]
    return torch.poisson(x.cpu() * photons, generator=g).to(x.device) / photons


def impulse_noise(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Salt and pepper per value: a share IMPULSE_AMOUNT set to 0 or 1, half each."""
    flipped = torch.rand(x.shape, generator=g) < IMPULSE_AMOUNT[s]
    salt = torch.rand(x.shape, generator=g) < 0.5
    out = x.clone()
    out[flipped.to(x.device)] = salt[flipped].to(x)
    return out


def disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """The script's defocus kernel: a 17 x 17 disk of the given radius, normalised, softened by a 3 x 3 Gaussian."""
    offsets = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius ** 2).double()
    disk /= disk.sum()
    soften = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / (2 * alias_sigma ** 2))
    soften /= soften.sum()
    return F.conv2d(disk[None, None], (soften[:, None] * soften[None, :])[None, None], padding=1)[0, 0]


def defocus_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    return correlate(x, disk_kernel(*DEFOCUS[s]), "mirror")


def local_shuffle(x: torch.Tensor, max_shift: int, iterations: int, g: torch.Generator) -> torch.Tensor:
    """Glass blur's pixel shuffle: scanning from the bottom-right, each pixel swaps with one up to `max_shift` above
    and to the left (offsets drawn in [-max_shift, max_shift - 1], as the script's randint). Sequential swaps, done
    on a NumPy copy, whose small-index operations are cheaper than torch's."""
    batch, _, height, width = x.shape
    rows = range(height - max_shift, max_shift, -1)
    cols = range(width - max_shift, max_shift, -1)
    shifts = torch.randint(-max_shift, max_shift, (iterations, len(rows), len(cols), 2, batch), generator=g).numpy()
    pixels = x.permute(0, 2, 3, 1).cpu().numpy().copy()
    images = np.arange(batch)
    for it in range(iterations):
        for i, h in enumerate(rows):
            for j, w in enumerate(cols):
                dx, dy = shifts[it, i, j]
                here = pixels[images, h, w].copy()
                pixels[images, h, w] = pixels[images, h + dy, w + dx]
                pixels[images, h + dy, w + dx] = here
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).to(x)


def glass_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    sigma, shift, iterations = GLASS[s]
    x = to_uint8_floor(gaussian_blur(x, sigma))
    return gaussian_blur(local_shuffle(x, shift, iterations, g), sigma)


def motion_blur_corruption(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    radius, sigma = MOTION[s]
    return motion_blur(x, radius, sigma, _uniform((len(x),), -45, 45, g))


def zoom_blur(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    factors = np.arange(1, ZOOM_STOPS[s], 0.01)
    return (x + sum(clipped_zoom(x, float(f)) for f in factors)) / (len(factors) + 1)


def snow(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Flakes: thresholded zoomed Gaussian noise, motion-blurred downwards, added twice (once turned by 180
    degrees) over the image slightly whitened towards its brightened luma."""
    loc, scale, zoom, threshold, radius, sigma, keep = SNOW[s]
    batch, _, height, width = x.shape
    layer = (loc + scale * torch.randn(batch, 1, height, width, generator=g)).to(x.device)
    layer = clipped_zoom(layer, zoom)
    layer = to_uint8_floor(torch.where(layer < threshold, torch.zeros_like(layer), layer))
    layer = motion_blur(layer, radius, sigma, _uniform((batch,), -135, -45, g))
    layer = (layer * 255).round() / 255
    x = keep * x + (1 - keep) * torch.maximum(x, gray(x) * 1.5 + 0.5)
    return x + layer + layer.flip(-1, -2)


def frost(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    image_weight, frost_weight = FROST[s]
    batch, channels, height, width = x.shape
    picks = torch.randint(0, 5, (batch,), generator=g).tolist()
    crops = []
    for pick in picks:
        texture = frost_texture(pick)
        if texture.shape[-2] < height or texture.shape[-1] < width:
            texture = frost_texture(pick, max(height, width) + 1)
        top = int(torch.randint(0, texture.shape[-2] - height, (1,), generator=g))
        left = int(torch.randint(0, texture.shape[-1] - width, (1,), generator=g))
        crop = texture[:, top:top + height, left:left + width]
        crops.append(crop.mean(0, keepdim=True) if channels == 1 else crop)
    return image_weight * x + frost_weight * torch.stack(crops).to(x)


def fog(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    strength, decay = FOG[s]
    height, width = x.shape[-2:]
    size = 1 << max(5, math.ceil(math.log2(max(height, width))))
    haze = plasma_fractal(len(x), size, decay, g)[:, None, :height, :width].to(x)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * peak / (peak + strength)


def brightness(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """HSV value + c with hue and saturation kept: every channel scales by V'/V (black becomes gray V')."""
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + BRIGHTNESS[s]).clamp(max=1)
    return torch.where(value > 0, x * brighter / value.clamp(min=1e-12), brighter.expand_as(x))


def contrast(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * CONTRAST[s] + means


def elastic_transform(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """A random affine warp (three control points moved by up to c2 pixels), then a smooth random displacement
    field (uniform noise blurred with sigma c1, scaled by c0 pixels); constants in units of 32 pixels."""
    alpha, sigma, affine = (CIFAR_SIZE * c for c in ELASTIC[s])
    batch, _, height, width = x.shape
    centre = torch.tensor([width // 2, height // 2], dtype=torch.float64)
    side = min(height, width) // 3
    source = torch.stack([centre + side, centre + torch.tensor([side, -side]), centre - side])  # (x, y) points
    moved = source + _uniform((batch, 3, 2), -affine, affine, g).double()
    ones = torch.ones(3, 1, dtype=torch.float64)
    # dst = A src + t through the three point pairs; the output pixel p reads the input at A^-1 (p - t)
    solution = torch.linalg.solve(torch.cat([source, ones], 1).expand(batch, 3, 3), moved)  # [B, 3, 2]
    matrix, shift = solution[:, :2].transpose(1, 2), solution[:, 2]
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    points = torch.stack([cols, rows], -1).view(1, -1, 2) - shift[:, None]
    read = torch.linalg.solve(matrix, points.transpose(1, 2)).transpose(1, 2).view(batch, height, width, 2)
    x = bilinear_sample(x, read[..., 1], read[..., 0])
    fields = gaussian_blur(_uniform((batch, 2, height, width), -1, 1, g), sigma, "reflect", 3.0) * alpha
    return bilinear_sample(x, rows + fields[:, 1], cols + fields[:, 0])


def pixelate(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    height, width = x.shape[-2:]
    small = box_resize(x, (int(height * PIXELATE[s]), int(width * PIXELATE[s])))
    return box_resize(small, (height, width))


def jpeg_compression(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    """Each image through Pillow's JPEG encoder and decoder at the severity's quality."""
    arrays = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, "JPEG",
                                                                             quality=JPEG_QUALITY[s])
        decoded = np.asarray(Image.open(buffer))
        out.append(decoded[..., None] if decoded.ndim == 2 else decoded)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x) / 255


FUNCTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur_corruption,
    "zoom_blur": zoom_blur, "snow": snow, "frost": frost, "fog": fog, "brightness": brightness,
    "contrast": contrast, "elastic_transform": elastic_transform, "pixelate": pixelate,
    "jpeg_compression": jpeg_compression}
