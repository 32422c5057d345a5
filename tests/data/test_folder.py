"""Image folders built from real PNG/JPEG/GIF/WebP/BMP/TIFF files, including the bad ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data import AugmentConfig, BadImageError, build_dataset, build_loader
from vitkit.data.decode import load_rgb


def solid(color, size=(12, 10), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def test_scan_ignores_junk_and_reads_classes(folder):
    train = build_dataset(f"imagefolder:{folder}", "train")
    test = build_dataset(f"imagefolder:{folder}", "test")
    assert train.classes == ["cat", "dog", "fox"] and test.classes == train.classes
    assert (len(train), len(test)) == (15, 3)  # 6 images per class, round(6 * 0.2) = 1 held out
    names = {p.rsplit("/", 1)[-1] for p, _ in train.samples + test.samples}
    assert names == {"0.png", "1.png", "2.png", "3.png", "4.png", "extra.jpg"}
    assert not set(train.samples) & set(test.samples)
    assert train.num_channels == 3 and train.image_size is None
    again = build_dataset(f"imagefolder:{folder}", "test", seed=0)
    assert again.samples == test.samples
    assert build_dataset(f"imagefolder:{folder}", "test", seed=3).samples != test.samples


def test_train_and_val_subfolders(tmp_path, noise):
    for split, count in (("train", 3), ("val", 2)):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                noise(i).save(tmp_path / split / name / f"{i}.png")
    train, test = (build_dataset(f"imagefolder:{tmp_path}", s) for s in ("train", "test"))
    assert (len(train), len(test)) == (6, 4) and all("/val/" in p for p, _ in test.samples)


@pytest.mark.parametrize("make, expected", [
    (lambda: solid(77, mode="L"), (77, 77, 77)),
    (lambda: solid((10, 200, 30, 0), mode="RGBA"), (255, 255, 255)),  # transparent: composited on white
    (lambda: solid((10, 200, 30, 255), mode="RGBA"), (10, 200, 30)),
    (lambda: Image.fromarray(np.full((10, 12), 0x4C80, np.uint16)), (0x4C, 0x4C, 0x4C)),  # 16-bit: top byte
])
def test_modes_convert_to_rgb_the_same_way(tmp_path, make, expected):
    image = make()
    image.save(tmp_path / "x.png")
    rgb = load_rgb(tmp_path / "x.png")
    assert rgb.mode == "RGB" and rgb.getpixel((3, 3)) == expected


def test_palette_with_transparency_and_gif_first_frame(tmp_path):
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 0
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "p.png", transparency=0)
    rgb = load_rgb(tmp_path / "p.png")
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((5, 5)) == (0, 0, 255)
    frames = [solid((250, 0, 0), (8, 8)), solid((0, 250, 0), (8, 8))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_rgb(tmp_path / "a.gif").getpixel((4, 4))[0] > 200


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".tiff"])
def test_other_formats_decode(tmp_path, suffix):
    solid((40, 80, 120), (9, 7)).save(tmp_path / f"x{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    assert load_rgb(tmp_path / f"x{suffix}").getpixel((2, 2)) == (40, 80, 120)


def test_cmyk_jpeg_converts_like_pillow(tmp_path):
    solid((0, 255, 255, 0), (16, 16), "CMYK").save(tmp_path / "c.jpg", quality=100)
    red = load_rgb(tmp_path / "c.jpg").getpixel((8, 8))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90-degree clockwise turn
    image.save(tmp_path / "o.jpg", exif=exif, quality=100)
    upright = load_rgb(tmp_path / "o.jpg")
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 5))[0] > 200 and upright.getpixel((10, 35))[0] < 50  # white half on top


@pytest.mark.parametrize("content, workers", [(b"definitely not a jpeg", 0), ("truncated", 0), ("truncated", 1)])
def test_corrupt_image_stops_with_its_name(folder, content, workers):
    bad = folder / "dog" / "bad.png"
    data = (folder / "dog" / "0.png").read_bytes()
    bad.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    with pytest.raises(BadImageError, match="bad.png.*skip-bad-images"):
        load_rgb(bad)
    dataset = build_dataset(f"imagefolder:{folder}", "train", val_fraction=0.01)
    loader = build_loader(dataset, 4, train=False, img_size=8, num_workers=workers)
    with pytest.raises(BadImageError, match="bad.png"):
        list(loader)


def test_skip_bad_images_skips_and_counts(folder):
    (folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    dataset = build_dataset(f"imagefolder:{folder}", "train", val_fraction=0.01, skip_bad_images=True)
    loader = build_loader(dataset, 5, train=False, img_size=8, num_workers=0)
    seen = sum(len(targets) for _, targets in loader)
    assert seen == len(dataset) - 1
    assert list(loader.bad_images) == [str(folder / "cat" / "broken.jpg")]


def test_missing_path_empty_class_and_empty_split(tmp_path, folder, noise):
    with pytest.raises(ValueError, match="does not exist"):
        build_dataset(f"imagefolder:{tmp_path / 'nope'}", "train")
    (folder / "empty").mkdir()
    (folder / "empty" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(ValueError, match="empty hold no images.*add images or remove"):
        build_dataset(f"imagefolder:{folder}", "train")
    (folder / "empty" / ".DS_Store").unlink()
    (folder / "empty").rmdir()
    with pytest.raises(ValueError, match="test split holds no images"):
        build_dataset(f"imagefolder:{folder}", "test", val_fraction=0.01)
    flat = tmp_path / "flat"
    flat.mkdir()
    noise(0).save(flat / "a.png")
    with pytest.raises(ValueError, match="no class folders; it holds 1 images directly"):
        build_dataset(f"imagefolder:{flat}", "train")


def test_train_val_class_mismatch_names_the_classes(tmp_path, noise):
    for split, names in (("train", ["a", "b", "c"]), ("val", ["a", "b", "d"])):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
            noise(0).save(tmp_path / split / name / "0.png")
    with pytest.raises(ValueError, match=r"only in train/: \['c'\]; only in val/: \['d'\]"):
        build_dataset(f"imagefolder:{tmp_path}", "train")


def test_folder_loader_batches_are_worker_independent_and_resumable(folder):
    dataset = build_dataset(f"imagefolder:{folder}", "train")
    augment = AugmentConfig(hflip=0.5, three_augment=True)

    def batches(workers, resume_state=None):
        loader = build_loader(dataset, 4, train=True, augment=augment, img_size=16, num_workers=workers, seed=5)
        loader.set_epoch(2)
        if resume_state:
            loader.load_state_dict(resume_state)
        return [(x.clone(), y.clone()) for x, y in loader], loader

    serial, loader = batches(0)
    assert len(serial) == len(loader) == 3 and serial[0][0].shape == (4, 3, 16, 16)
    parallel, _ = batches(2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel, strict=True))
    resumed, _ = batches(0, {"epoch": 2, "batch": 1})
    assert all(torch.equal(a[0], b[0]) for a, b in zip(serial[1:], resumed, strict=True))


def test_folder_eval_is_resize_and_centre_crop(tmp_path, noise):
    (tmp_path / "a").mkdir()
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255  # a white centre band as wide as the image is tall
    Image.fromarray(image).save(tmp_path / "a" / "x.png")
    noise(1).save(tmp_path / "a" / "y.png")
    dataset = build_dataset(f"imagefolder:{tmp_path}", "train", val_fraction=0.01)
    loader = build_loader(dataset, 2, train=False, augment=AugmentConfig(crop_pct=1.0), img_size=20, num_workers=0)
    images, _ = next(iter(loader))
    white = (torch.tensor(1.0) - torch.tensor(dataset.mean)) / torch.tensor(dataset.std)
    index = [p for p, _ in dataset.samples].index(str(tmp_path / "a" / "x.png"))
    inside = images[index][:, :, 2:-2]  # the band's edges blend with black under the bicubic filter
    assert torch.allclose(inside, white.view(3, 1, 1).expand_as(inside), atol=0.05)
