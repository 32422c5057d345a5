"""Using a trained model: resolve a run or checkpoint, evaluate it on a dataset, predict classes for image files;
for a segmentation model, mIoU on a segmentation set and a mask plus an overlay per image file."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from .data import AugmentConfig, BadImageError, build_dataset, build_loader  # noqa: E402
from .data.decode import is_image_file, load_rgb  # noqa: E402
from .data.loader import cover_and_center  # noqa: E402
from .data.segmentation import (build_segmentation_dataset, build_segmentation_loader,  # noqa: E402
                                whole_image_input)
from .data.transforms import EvalTransform, scale_size  # noqa: E402
from .models import SegmentationConfig  # noqa: E402
from .preprocess import Preprocess  # noqa: E402

if TYPE_CHECKING:
    from .export import InferenceBackend


def load_model(source: str | Path, device: str | torch.device = "cpu", int8: bool = False,
               token_merging: int | Sequence[int] = 0) -> torch.nn.Module:
    """A model from a run folder (its best checkpoint), a checkpoint folder or file, or anything from_pretrained reads;
    int8: with the transformer's linear layers quantized for faster CPU inference (see vitkit.export); token_merging:
    r tokens merged per block (ToMe, docs/efficiency.md; 0 leaves the model as saved)."""
    from .checkpoints import from_pretrained, resolve_checkpoint
    from .export import quantize_int8

    from .models.vision_transformer import apply_token_merging

    model = from_pretrained(resolve_checkpoint(source)).to(device).eval()
    if token_merging:
        apply_token_merging(model, token_merging)
    return quantize_int8(model) if int8 else model  # on the device: it picks attention's dtype for that hardware


def load_backend(source: str | Path, backend: str = "auto", allow_int8: bool = False,
                 device: str | torch.device = "cpu", token_merging: int | Sequence[int] = 0) -> InferenceBackend:
    """load_model behind optimize_for_inference's backend, its ONNX files cached beside the checkpoint (else in the
    user's cache), so a second predict or eval starts at once."""
    from .checkpoints import resolve_checkpoint

    checkpoint = resolve_checkpoint(source)
    return backend_for(load_model(checkpoint, device, token_merging=token_merging), checkpoint, backend, allow_int8)


def backend_for(model: torch.nn.Module, checkpoint: str | Path, backend: str = "auto",
                allow_int8: bool = False, spin_wait: bool = True) -> InferenceBackend:
    """optimize_for_inference of a model loaded from checkpoint, for callers that keep the float model too (the
    server explains with it)."""
    from .export import cache_dir_for, optimize_for_inference

    if is_segmentation(model) and (backend == "torch-int8" or (backend == "auto" and allow_int8)):
        raise ValueError("PyTorch int8 (torch-int8) quantizes a plain ViT's blocks only; run a segmentation model in "
                         "int8 through ONNX Runtime (--backend ort-int8) or on a float backend")
    device = next(model.parameters()).device
    example = torch.zeros(2, *model.cfg.input_size, device=device)
    return optimize_for_inference(model, example, allow_int8, backend, cache_dir_for(checkpoint), spin_wait)


def class_names(model: torch.nn.Module | InferenceBackend) -> list[str]:
    return list(model.class_names or [str(i) for i in range(model.cfg.num_classes)])


def evaluate_on(model: torch.nn.Module | InferenceBackend, spec: str, split: str = "test", batch_size: int = 256,
                device: str | torch.device = "cpu", limit: int | None = None) -> dict[str, Any]:
    """Top-1/top-5/per-class accuracy and confusion on a dataset, with the model's own preprocessing (a model or an
    InferenceBackend); limit: only the split's first images (quick checks)."""
    from .evaluation import evaluate

    dataset = build_dataset(spec, split=split)
    if limit is not None:
        if not dataclasses.is_dataclass(dataset):
            raise ValueError(f"limit takes the first images of an in-memory dataset; {spec} is read from files")
        dataset = dataclasses.replace(dataset, images=dataset.images[:limit], labels=dataset.labels[:limit])
    if len(dataset.classes) != model.cfg.num_classes:
        raise ValueError(f"{spec} has {len(dataset.classes)} classes but the model predicts {model.cfg.num_classes}")
    loader = build_loader(dataset, batch_size=batch_size, train=False, img_size=model.cfg.img_size, device=device,
                          in_chans=model.cfg.in_chans, preprocess=model.preprocess, num_workers=0,
                          num_frames=getattr(model.cfg, "num_frames", None))
    scores = evaluate(model, loader, model.cfg.num_classes, torch.device(device))
    scores["classes"] = list(dataset.classes)
    return scores


def judge_representation(model: torch.nn.Module, spec: str, knn: Sequence[int] = (), probe: bool = False,
                         probe_epochs: int = 100, probe_lr: float = 1e-3, batch_size: int = 256,
                         device: str | torch.device = "cpu") -> dict[str, Any]:
    """kNN top-1 for each k in `knn` and linear-probe top-1 (MAE's BatchNorm without affine before a new linear
    head) of a model's pooled features: the train split's features are the memory and the probe's training data,
    the test split's are judged. Any checkpoint, supervised or not; its own head is not used."""
    from .representation import cache_features, knn_accuracy, probe_head

    splits = [build_dataset(spec, split=split) for split in ("train", "test")]
    loaders = [build_loader(dataset, batch_size=batch_size, train=False, img_size=model.cfg.img_size, device=device,
                            in_chans=model.cfg.in_chans, preprocess=model.preprocess, num_workers=0)
               for dataset in splits]
    (train_x, train_y), (test_x, test_y) = (cache_features(model, loader) for loader in loaders)
    num_classes = len(splits[0].classes)
    scores: dict[str, Any] = {"train_images": len(train_x), "test_images": len(test_x), "features": train_x.shape[1]}
    if knn:
        scores.update(knn_accuracy(train_x, train_y, test_x, test_y, knn, num_classes=num_classes))
    if probe:
        torch.manual_seed(0)
        head = torch.nn.Linear(train_x.shape[1], num_classes)
        result = probe_head(head, train_x, train_y, test_x, test_y, probe_epochs, probe_lr, batch_norm=True)
        scores.update({"probe_train_top1": result["train_top1"], "probe_top1": result["test_top1"]})
    return scores


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix (true class by row) with counts, as a PNG."""
    counts = np.asarray(confusion, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = max(5.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true",
           title="confusion matrix (row-normalised)")
    ax.set_xticklabels(classes, rotation=90)
    ax.set_yticklabels(classes)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded (recursively) to the image files inside them, in sorted order."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
        elif item.is_file():
            paths.append(item)
        else:
            raise ValueError(f"{item}: no such file or folder")
    if not paths:
        raise ValueError(f"no image files found in {', '.join(map(str, inputs))}")
    return paths


@torch.no_grad()
def predict(model: torch.nn.Module | InferenceBackend, inputs: Sequence[str | Path], topk: int = 5,
            batch_size: int = 64, device: str | torch.device = "cpu") -> list[Prediction]:
    """Top-k (class name, probability) per image, preprocessed exactly as the checkpoint says."""
    prep, cfg = model.preprocess, model.cfg
    names, paths = class_names(model), image_paths(inputs)
    k = min(topk, len(names))
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        try:
            arrays = [eval_image(p, cfg.img_size, cfg.in_chans, prep) for p in chunk]
        except BadImageError as error:
            raise ValueError(str(error)) from None
        probs = model(model_input(arrays, model).to(device)).float().softmax(-1)
        values, indices = probs.topk(k, dim=-1)
        for path, vals, idxs in zip(chunk, values.tolist(), indices.tolist()):
            results.append(Prediction(str(path), [(names[i], v) for i, v in zip(idxs, vals)]))
    return results


def model_input(arrays: Sequence[np.ndarray], model: torch.nn.Module | InferenceBackend) -> torch.Tensor:
    """The normalised [B, C, H, W] batch of eval_pixels arrays: how predict and the server feed the model."""
    transform = EvalTransform(model.cfg.img_size, model.preprocess, model.cfg.in_chans, cropped=True)
    return transform(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))


def eval_image(path: str | Path, img_size: tuple[int, int], in_chans: int, preprocess: Preprocess) -> np.ndarray:
    """uint8 [H, W, C] of one file: upright RGB (L for 1-channel models), resized and centre-cropped as at evaluation."""
    return eval_pixels(load_rgb(path), img_size, in_chans, preprocess)


def eval_pixels(image: Image.Image, img_size: tuple[int, int], in_chans: int, preprocess: Preprocess) -> np.ndarray:
    """uint8 [H, W, C] of a PIL image in the model's channels (L or RGB), resized and centre-cropped as at evaluation."""
    if preprocess.interpolation.upper() not in Image.Resampling.__members__:
        raise ValueError(f"unknown interpolation {preprocess.interpolation!r}; use bicubic, bilinear, nearest or lanczos")
    resample = Image.Resampling[preprocess.interpolation.upper()]
    image = cover_and_center(image, scale_size(img_size, preprocess.crop_pct), img_size, resample)
    array = np.asarray(image.convert("L" if in_chans == 1 else "RGB"), dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


# ----- segmentation ------------------------------------------------------------------------------------------------
OVERLAY_ALPHA = 0.5


def is_segmentation(model: torch.nn.Module | InferenceBackend) -> bool:
    """True for a model (or a backend running one) that labels every pixel."""
    return isinstance(model.cfg, SegmentationConfig)


def evaluate_segmentation_on(model: torch.nn.Module | InferenceBackend, spec: str, split: str = "test",
                             batch_size: int = 64, device: str | torch.device = "cpu") -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and pixel confusion on a segmentation set ('segfolder:PATH', 'synthseg...'),
    each image and mask resized to the model's input as in training's evaluation."""
    from .evaluation import evaluate_segmentation

    dataset = build_segmentation_dataset(spec, split=split)
    classes = class_names(model)
    if len(dataset.classes) > len(classes):  # fewer is fine: a folder's masks need not show every class
        raise ValueError(f"{spec} has {len(dataset.classes)} classes but the model predicts {len(classes)}")
    loader = build_segmentation_loader(dataset, batch_size=batch_size, train=False, augment=AugmentConfig(),
                                       img_size=model.cfg.img_size, preprocess=model.preprocess,
                                       in_chans=model.cfg.in_chans, device=device, num_workers=0)
    scores = evaluate_segmentation(model, loader, len(classes), torch.device(device),
                                   ignore_index=dataset.ignore_index)
    scores["classes"] = classes
    return scores


def class_colours(num_classes: int) -> np.ndarray:
    """uint8 [K, 3]: matplotlib's tab20 colours, repeated past 20 classes."""
    table = plt.get_cmap("tab20").colors
    return (np.asarray([table[k % len(table)] for k in range(num_classes)]) * 255).round().astype(np.uint8)


def mask_image(mask: np.ndarray, colours: np.ndarray) -> Image.Image:
    """A palette PNG whose pixel values are the class indices (what segfolder reads) and whose palette colours them."""
    image = Image.fromarray(mask.astype(np.uint8), "P")
    image.putpalette(colours.flatten().tolist())
    return image


def overlay_image(image: Image.Image, mask: np.ndarray, colours: np.ndarray) -> Image.Image:
    """The image with each pixel's class colour blended in at OVERLAY_ALPHA."""
    pixels = np.asarray(image, dtype=np.float64)
    blended = (1 - OVERLAY_ALPHA) * pixels + OVERLAY_ALPHA * colours[mask]
    return Image.fromarray(blended.round().astype(np.uint8), "RGB")


@dataclass(frozen=True)
class MaskPrediction:
    path: str
    mask_file: Path
    overlay_file: Path
    shares: list[tuple[str, float]]  # the classes predicted, largest area first, with their share of the pixels


@torch.no_grad()
def predict_masks(model: torch.nn.Module | InferenceBackend, inputs: Sequence[str | Path], out_dir: str | Path,
                  batch_size: int = 16, device: str | torch.device = "cpu") -> list[MaskPrediction]:
    """Per image file: <stem>_mask.png (class indices, palette-coloured) and <stem>_overlay.png at the file's own
    size. Each image, as stored (as segfolder reads it), is resized to the model's input; the logits are resized
    back bilinearly before the argmax."""
    prep, cfg = model.preprocess, model.cfg
    names, paths, out = class_names(model), image_paths(inputs), Path(out_dir)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})
        raise ValueError(f"several inputs share a file name ({', '.join(twice)}), so their masks would overwrite each "
                         "other; predict them in separate runs (--out)")
    out.mkdir(parents=True, exist_ok=True)
    colours = class_colours(len(names))
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        try:
            images = [load_rgb(p, upright=False) for p in chunk]
        except BadImageError as error:
            raise ValueError(str(error)) from None
        batch = torch.cat([whole_image_input(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None],
                                             cfg.img_size, prep, cfg.in_chans) for image in images])
        logits = model(batch.to(device)).float().cpu()
        for path, image, scores in zip(chunk, images, logits):
            full = F.interpolate(scores[None], size=(image.height, image.width), mode="bilinear", align_corners=False)
            mask = full[0].argmax(0).numpy()
            mask_file, overlay_file = out / f"{path.stem}_mask.png", out / f"{path.stem}_overlay.png"
            mask_image(mask, colours).save(mask_file)
            overlay_image(image, mask, colours).save(overlay_file)
            counts = np.bincount(mask.ravel(), minlength=len(names)) / mask.size
            shares = [(names[k], float(counts[k])) for k in np.argsort(-counts) if counts[k] > 0]
            results.append(MaskPrediction(str(path), mask_file, overlay_file, shares))
    return results
