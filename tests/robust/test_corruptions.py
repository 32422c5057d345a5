"""Each corruption checked for what defines it, against Pillow, scipy, colorsys or the statistics it must have."""
import colorsys

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

from vitkit.robust import CORRUPTIONS, SEVERITIES, corrupt
from vitkit.robust import corruptions as C

from robust_helpers import smooth_images


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def as_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def from_pil(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(i) for i in images])).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def images():
    return smooth_images(3, size=32, dtype=torch.float32)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_is_an_8_bit_image_fixed_by_its_seed(images, name):
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, seeded(3))
        assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out * 255, (out * 255).round())
        assert torch.equal(out, corrupt(images, name, severity, seeded(3)))
        assert not torch.equal(out, images), f"{name} {severity} changed nothing"
    if name not in ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"):
        assert not torch.equal(corrupt(images, name, 3, seeded(3)), corrupt(images, name, 3, seeded(4)))


ORDERED = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "zoom_blur", "fog", "brightness",
           "contrast", "jpeg_compression")


@pytest.mark.parametrize("name", ORDERED)
def test_a_higher_severity_distorts_more(images, name):
    """Only where the script's constants all grow: glass blur, motion blur, snow, frost and elastic trade one constant
    against another between severities (snow's flake threshold rises with its noise), and pixelate's 30-of-32 resize
    misaligns more pixels than 28-of-32, so their distortion is not monotone (each is checked for its own defining
    property)."""
    distortion = [(corrupt(images, name, s, seeded(1)) - images).abs().mean().item() for s in SEVERITIES]
    assert distortion == sorted(distortion) and distortion[0] < distortion[-1], distortion


def test_gaussian_noise_has_the_scripts_spread():
    grey = torch.full((64, 3, 32, 32), 0.5)
    for severity, sigma in zip(SEVERITIES, C.GAUSSIAN_SIGMA):
        noise = corrupt(grey, "gaussian_noise", severity, seeded()) - 0.5
        assert abs(noise.mean().item()) < 2e-3 and noise.std().item() == pytest.approx(sigma, rel=0.03)


def test_shot_noise_is_poisson_counts_of_the_scripts_photons():
    level = torch.full((64, 3, 32, 32), 0.4)
    for severity, photons in zip(SEVERITIES, C.SHOT_PHOTONS):
        noisy = corrupt(level, "shot_noise", severity, seeded())
        assert noisy.mean().item() == pytest.approx(0.4, abs=3e-3)
        assert noisy.var().item() == pytest.approx(0.4 / photons, rel=0.05)  # Poisson: variance = mean


def test_impulse_noise_sets_the_scripts_share_to_black_or_white_half_each():
    grey = torch.full((64, 3, 32, 32), 0.5)
    for severity, amount in zip(SEVERITIES, C.IMPULSE_AMOUNT):
        out = corrupt(grey, "impulse_noise", severity, seeded())
        salt, pepper = (out == 1).double().mean().item(), (out == 0).double().mean().item()
        assert salt + pepper == pytest.approx(amount, rel=0.05) and salt == pytest.approx(pepper, rel=0.15)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_jpeg_is_pillows_encoder_at_the_scripts_quality(images, severity):
    expected = []
    for image in images:
        buffer = __import__("io").BytesIO()
        as_pil(image).save(buffer, "JPEG", quality=C.JPEG_QUALITY[severity - 1])
        expected.append(Image.open(buffer))
    assert torch.equal(corrupt(images, "jpeg_compression", severity, seeded()), from_pil(expected))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_pixelate_is_pillows_box_resize_down_then_up(images, severity):
    side = int(32 * C.PIXELATE[severity - 1])
    expected = [as_pil(i).resize((side, side), Image.BOX).resize((32, 32), Image.BOX) for i in images]
    assert torch.equal(corrupt(images, "pixelate", severity, seeded()), from_pil(expected))


def test_defocus_is_a_softened_disk_as_opencv_filters():
    """The kernel: a 17 x 17 disk convolved with a 3-tap Gaussian (scipy, truncated at one pixel); the image filtered
    with OpenCV's default border (scipy's 'mirror')."""
    image = smooth_images(1, size=32, dtype=torch.float64)
    for severity, (radius, sigma) in zip(SEVERITIES, C.DEFOCUS):
        grid = np.arange(-8, 9)
        disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2).astype(np.float64)
        kernel = scipy.ndimage.gaussian_filter(disk / disk.sum(), sigma, truncate=1 / sigma, mode="constant")
        expected = np.stack([scipy.ndimage.correlate(channel, kernel, mode="mirror") for channel in image[0].numpy()])
        out = corrupt(image, "defocus_blur", severity, seeded())[0].numpy()
        assert np.abs(out - np.clip(expected, 0, 1)).max() <= 0.5 / 255 + 1e-9


def test_gaussian_blur_matches_scipy():
    image = smooth_images(2, size=32, dtype=torch.float64)
    for sigma, mode, truncate in [(0.4, "nearest", 4.0), (1.5, "reflect", 3.0), (0.05, "nearest", 4.0)]:
        expected = scipy.ndimage.gaussian_filter(image.numpy(), (0, 0, sigma, sigma), mode=mode, truncate=truncate)
        np.testing.assert_allclose(C.gaussian_blur(image, sigma, mode, truncate).numpy(), expected, atol=1e-12)


def test_glass_blurs_shuffle_only_moves_pixels_locally():
    image = smooth_images(3, size=32)
    shuffled = C.local_shuffle(image, 1, 2, seeded())
    for before, after in zip(image, shuffled):  # a permutation of whole pixels
        assert sorted(map(tuple, before.flatten(1).T.tolist())) == sorted(map(tuple, after.flatten(1).T.tolist()))
    assert not torch.equal(shuffled, image)
    assert torch.equal(shuffled[..., 0], image[..., 0]) and torch.equal(shuffled[..., 0, :], image[..., 0, :])


def test_zoom_blur_averages_scipy_zooms_of_the_centre():
    image = smooth_images(1, size=32, dtype=torch.float64)[0].permute(1, 2, 0).numpy()

    def clipped_zoom(x, factor):
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        zoomed = scipy.ndimage.zoom(x[top:top + crop, top:top + crop], (factor, factor, 1), order=1)
        trim = (zoomed.shape[0] - 32) // 2
        return zoomed[trim:trim + 32, trim:trim + 32]

    for severity, stop in zip(SEVERITIES, C.ZOOM_STOPS):
        factors = np.arange(1, stop, 0.01)
        expected = (image + sum(clipped_zoom(image, f) for f in factors)) / (len(factors) + 1)
        out = corrupt(torch.from_numpy(image).permute(2, 0, 1)[None], "zoom_blur", severity, seeded())
        assert np.abs(out[0].permute(1, 2, 0).numpy() - expected).max() <= 0.5 / 255 + 1e-6


def test_brightness_raises_hsv_value_keeping_hue_and_saturation():
    image = smooth_images(1, size=8, dtype=torch.float64)
    image[0, :, 0, 0] = 0  # black: hue undefined, becomes grey
    for severity, shift in zip(SEVERITIES, C.BRIGHTNESS):
        out = corrupt(image, "brightness", severity, seeded())[0]
        for r in range(8):
            for c in range(8):
                h, s, v = colorsys.rgb_to_hsv(*image[0, :, r, c].tolist())
                expected = colorsys.hsv_to_rgb(h, s, min(v + shift, 1.0))
                assert np.abs(out[:, r, c].numpy() - expected).max() <= 0.5 / 255 + 1e-6


def test_contrast_scales_deviation_from_the_mean():
    image = 0.3 + 0.4 * smooth_images(4, size=32, dtype=torch.float64)  # away from 0 and 1: nothing clips
    for severity, factor in zip(SEVERITIES, C.CONTRAST):
        out = corrupt(image, "contrast", severity, seeded()).double()
        torch.testing.assert_close(out.mean((2, 3)), image.mean((2, 3)), atol=1 / 255, rtol=0)
        torch.testing.assert_close(out.std((2, 3)), factor * image.std((2, 3)), atol=1 / 255, rtol=0)


def test_motion_blur_is_a_one_sided_gaussian_along_its_angle():
    """Angle 0 averages each pixel with those to its right, weights exp(-i^2 / 2 sigma^2) over 2 ceil(r) + 1 taps,
    edges repeated: horizontal stripes (constant along the blur) come through unchanged."""
    radius, sigma = 6, 1.5
    spike = torch.zeros(1, 1, 5, 20)
    spike[0, 0, 2, 10] = 1
    out = C.motion_blur(spike, radius, sigma, torch.zeros(1))[0, 0, 2]
    taps = np.exp(-np.arange(13) ** 2 / (2 * sigma ** 2))
    expected = np.zeros(20)
    expected[10 - np.arange(11)] = (taps / taps.sum())[:11]  # pixel x reads x + i: the spike reaches x = 10 - i
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-7)
    stripes = smooth_images(1, size=16).float().mean(-1, keepdim=True).expand(1, 3, 16, 16).contiguous()
    torch.testing.assert_close(C.motion_blur(stripes, radius, sigma, torch.zeros(1)), stripes)


def test_fog_adds_a_normalised_fractal_and_rescales_by_the_peak():
    haze = C.plasma_fractal(4, 32, 2.0, seeded())
    assert torch.allclose(haze.amin((1, 2)), torch.zeros(4).double())
    assert torch.allclose(haze.amax((1, 2)), torch.ones(4).double())
    neighbours = np.corrcoef(haze[:, :, :-1].flatten().numpy(), haze[:, :, 1:].flatten().numpy())[0, 1]
    assert neighbours > 0.8  # a smooth cloud, not white noise
    image = smooth_images(4, size=32, dtype=torch.float64)
    strength, decay = C.FOG[2]
    peak = image.amax((1, 2, 3), keepdim=True)
    expected = (image + strength * C.plasma_fractal(4, 32, decay, seeded(5))[:, None]) * peak / (peak + strength)
    expected = ((expected.clamp(0, 1) * 255).round() / 255).float()
    torch.testing.assert_close(corrupt(image, "fog", 3, seeded(5)), expected)


def test_elastic_warps_only_resample():
    """Both warps resample: a flat image stays flat and no value leaves the image's range."""
    flat = torch.full((2, 3, 32, 32), 0.6)
    image = smooth_images(2, size=32)
    for severity in SEVERITIES:
        torch.testing.assert_close(corrupt(flat, "elastic_transform", severity, seeded()), flat, atol=0.5 / 255, rtol=0)
        out = corrupt(image, "elastic_transform", severity, seeded())
        assert out.min() >= image.min() - 1 / 255 and out.max() <= image.max() + 1 / 255


def test_snow_only_whitens_and_frost_blends_a_fixed_texture(images):
    loc, scale, zoom, threshold, radius, sigma, keep = C.SNOW[4]
    base = keep * images + (1 - keep) * torch.maximum(images, C.gray(images) * 1.5 + 0.5)
    assert (corrupt(images, "snow", 5, seeded()) >= base.clamp(0, 1) - 1 / 255).all()
    texture = C.frost_texture(0)
    assert torch.equal(texture, C.frost_texture(0)) and 0 <= texture.min() and texture.max() <= 1
    black = corrupt(torch.zeros(2, 3, 32, 32), "frost", 5, seeded())  # only the frost's share of the texture
    assert 0 < black.max() <= C.FROST[4][1] + 1 / 255


def test_bad_names_and_severities_are_refused(images):
    with pytest.raises(ValueError, match="unknown corruption 'fogg'"):
        corrupt(images, "fogg", 1, seeded())
    with pytest.raises(ValueError, match="severity=6"):
        corrupt(images, "fog", 6, seeded())
    assert C.parse_corruptions("noise,fog,fog") == ["gaussian_noise", "shot_noise", "impulse_noise", "fog"]
    assert C.parse_corruptions("all") == list(CORRUPTIONS)
