"""`analyze`: measure everything over a set of images in one pass, draw the pictures, write report.html."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..models import SwinTransformer
from ..models.vision_transformer import VisionTransformer
from ..report import write_json
from . import attention as attn
from .distance import distance_table, mean_attention_distance, plot_attention_distance
from .eigencam import eigen_cam
from .filters import filter_components, filters_message, plot_filter_components
from .gradcam import grad_cam
from .images import ImageSet, to_model_input
from .position import plot_position_similarity, position_message, position_similarity, position_table
from .report import Section, write_report
from .tokens import NO_CLASS_TOKEN_MESSAGE, TokenLayout, token_layout
from .windows import NOT_DEFINED_MESSAGE, collect_window_attention, window_maps


@dataclass
class Measurements:
    """Numbers gathered over the images: distances for all, maps for the first `show` images."""

    distances: list[torch.Tensor] = field(default_factory=list)
    head_maps: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    rollout: list[torch.Tensor] = field(default_factory=list)
    gradcam: list[torch.Tensor] = field(default_factory=list)
    eigencam: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    registers: list[torch.Tensor] = field(default_factory=list)
    register_share: list[torch.Tensor] = field(default_factory=list)


@dataclass
class AnalysisResult:
    """What `analyze` wrote, the messages it had for the reader, and the [layers, heads] distance table."""

    files: dict[str, Path]
    messages: list[str]
    distances: np.ndarray


def resolve_layers(layers: Sequence[int], depth: int) -> list[int]:
    """Layer indices made non-negative (-1 is the last block), each checked against the model's depth."""
    resolved = []
    for layer in layers:
        if not -depth <= layer < depth:
            raise ValueError(f"layer {layer} does not exist: this model has {depth} blocks (0..{depth - 1}, "
                             "or negative indices from the end such as -1)")
        resolved.append(layer % depth)
    return sorted(set(resolved))


def measure(model: VisionTransformer, images: ImageSet, layers: Sequence[int], show: int,
            batch_size: int = 16, device: str | torch.device = "cpu") -> Measurements:
    """One pass over the images: attention distances of every image, attention and Grad-CAM maps of the first few."""
    found = Measurements(head_maps={layer: [] for layer in layers})
    with tqdm(total=len(images.names), desc="analyzing images", unit="image") as progress:
        for start in range(0, len(images.names), batch_size):
            batch = to_model_input(images.pixels[start:start + batch_size], model.preprocess).to(device)
            maps = attn.collect_attention(model, batch)
            layout = token_layout(model.cfg, maps[0].shape[-1])
            found.distances.append(torch.stack([mean_attention_distance(p, layout) for p in maps], 1).cpu())
            keep = max(0, min(show - start, len(batch)))
            if keep:
                _keep_maps(model, batch[:keep], [p[:keep] for p in maps], layout, layers, found)
            progress.update(len(batch))
    return found


def _keep_maps(model: VisionTransformer, batch: torch.Tensor, maps: list[torch.Tensor], layout: TokenLayout,
               layers: Sequence[int], found: Measurements) -> None:
    for layer in layers:
        found.head_maps[layer].append(attn.class_attention(maps[layer], layout).cpu())
    found.rollout.append(attn.rollout_map(attn.attention_rollout(maps), layout).cpu())
    if model.cfg.num_classes:
        cam, targets = grad_cam(model, batch)
        found.gradcam.append(cam.cpu())
        found.targets.append(targets.cpu())
    found.eigencam.append(eigen_cam(model, batch).cpu())
    if layout.num_registers:
        found.registers.append(attn.register_attention(maps[-1], layout).cpu())
        found.register_share.append(torch.stack([attn.register_share(p, layout) for p in maps], 1).cpu())


def analyze(model: VisionTransformer, images: ImageSet, out_dir: str | Path, layers: Sequence[int] = (-1,),
            show: int = 8, batch_size: int = 16, device: str | torch.device = "cpu",
            title: str = "vitkit analysis", notes: Sequence[str] = (), pictures: Sequence[Path] = ()) -> AnalysisResult:
    """Writes every picture of the analysis, attention_distance.json and a self-contained report.html into out_dir;
    `pictures` (those a pre-training run drew, see run_pictures) get a section of their own. A Swin gets its
    per-window attention, filters, Grad-CAM and EigenCAM (no distances)."""
    if not isinstance(model, (VisionTransformer, SwinTransformer)):
        raise ValueError(f"analyze explains classifiers (a VisionTransformer or a SwinTransformer), not a "
                         f"{type(model).__name__}; for a segmentation model, analyse the classifier its backbone "
                         "started from, or look at `vitkit predict`'s overlays")
    if not images.names:
        raise ValueError("no readable images to analyse; pass --images with at least one image file or folder")
    if tuple(images.pixels.shape[1:3]) != model.cfg.img_size:
        raise ValueError(f"images are {images.pixels.shape[1]}x{images.pixels.shape[2]} but the model takes "
                         f"{model.cfg.img_size[0]}x{model.cfg.img_size[1]}; read them with "
                         "load_images(paths, model.cfg.img_size, model.cfg.in_chans, model.preprocess)")
    if show < 1:
        raise ValueError(f"show={show}: at least one image must be drawn; pass a positive number")
    out = Path(out_dir)
    model = model.eval().to(device)
    if isinstance(model, SwinTransformer):
        return _analyze_swin(model, images, out, layers, show, batch_size, device, title, notes)
    layers = resolve_layers(layers, len(model.blocks))
    layout = token_layout(model.cfg)
    found = measure(model, images, layers, show, batch_size, device)
    distances = torch.cat(found.distances).mean(0).numpy()
    messages = _messages(model, images, layout)
    sections = [_filters_section(model, out), _position_section(model, out),
                _distance_section(distances, layout, len(images.names), out)]
    sections += _map_sections(model, images, layout, layers, found, out)
    if pictures:
        sections.append(Section("Self-supervised pre-training",
                                "What the pre-training objective predicted at the run's last evaluation, on 8 test "
                                "images: MAE's hidden patches (reconstruction beside the masked input), or masked "
                                "patch prediction's mean colours of the corrupted patches beside the true ones.",
                                list(pictures)))
    summary = [f"model: {model.cfg.depth} blocks, {model.cfg.num_heads} heads, width {model.cfg.embed_dim}, "
               f"input {model.cfg.img_size[0]}x{model.cfg.img_size[1]}, {len(images.names)} images", *notes]
    summary += [f"unreadable image skipped: {name} ({reason})" for name, reason in images.unreadable] + messages
    files = {path.name: path for section in sections for path in section.images}
    files["attention_distance.json"] = out / "attention_distance.json"
    files["report.html"] = write_report(sections, out / "report.html", title, summary)
    return AnalysisResult(files, messages, distances)


SYNTHETIC_MESSAGE = ("no images given and no dataset known for this source (it is no training run): distances are "
                     "measured on smooth synthetic images and the maps show them; pass --data SPEC or --images for "
                     "meaningful maps")


def _messages(model: VisionTransformer, images: ImageSet, layout: TokenLayout) -> list[str]:
    messages = [SYNTHETIC_MESSAGE] if images.synthetic else []
    if not layout.has_class_token:
        messages.append(NO_CLASS_TOKEN_MESSAGE)
    return messages + [m for m in (filters_message(model), position_message(model)) if m]


def _filters_section(model: VisionTransformer, out: Path) -> Section:
    section = Section("Patch-embedding filters (Fig. 7, left)",
                      "Top principal components of the linear patch-embedding filters. Trained ViTs show smooth, "
                      "low-frequency basis functions, like the first layer of a CNN.")
    message = filters_message(model)
    if message:
        section.notes.append(message)
        return section
    components, ratio = filter_components(model.patch_embed.proj.weight.cpu())
    section.images.append(plot_filter_components(components, ratio, out / "filters.png"))
    return section


def _position_section(model: VisionTransformer, out: Path) -> Section:
    section = Section("Position-embedding similarity (Fig. 7, centre)",
                      "Tile (row, column) shows the cosine similarity of that patch's position embedding with every "
                      "other patch's. A learned embedding that has found the 2D layout is most similar to itself, "
                      "then to patches in the same row and column.")
    message = position_message(model)
    if message:
        section.notes.append(message)
    table = position_table(model)
    if table is not None:
        similarity = position_similarity(table.cpu(), model.cfg.grid_size)
        section.images.append(plot_position_similarity(similarity, out / "position_similarity.png"))
    return section


def _distance_section(distances: np.ndarray, layout: TokenLayout, num_images: int, out: Path) -> Section:
    table = distance_table(distances, layout, num_images)
    write_json(out / "attention_distance.json", table)
    rows = [[row["layer"]] + [f"{d:.2f}" for d in [row["mean"], *row["heads"]]] for row in table["layers"]]
    headers = ["layer", "mean"] + [f"head {h}" for h in range(distances.shape[1])]
    return Section("Mean attention distance (Fig. 7, right)",
                   f"For each layer and head: the attention-weighted pixel distance between query and key patches, "
                   f"averaged over {num_images} images (patch-to-patch attention, renormalised). The dashed line is "
                   f"what uniform attention would give ({table['uniform_attention_reference']:.1f} px). "
                   "The paper finds some heads attending globally already in the lowest layers, and the distance "
                   "growing with depth. Also in attention_distance.json.",
                   [plot_attention_distance(distances, layout, out / "attention_distance.png")],
                   table=(headers, rows))


def _map_sections(model: VisionTransformer, images: ImageSet, layout: TokenLayout, layers: Sequence[int],
                  found: Measurements, out: Path) -> list[Section]:
    shown = len(torch.cat(found.rollout))
    pixels, names = images.pixels[:shown], images.names[:shown]
    notes = [] if layout.has_class_token else [NO_CLASS_TOKEN_MESSAGE]
    heads = Section("Per-head attention", f"Attention of the {layout.query_name} onto the patches, one map per head, "
                                          "brightest where the head looks.", notes=list(notes))
    for layer in layers:
        maps = torch.cat(found.head_maps[layer]).numpy()
        heads.images.append(attn.plot_head_maps(pixels, maps, names, layer, layout.query_name,
                                                out / f"attention_layer{layer}.png"))
    rollout = torch.cat(found.rollout).numpy()
    sections = [heads, Section(
        "Attention rollout", "Attention rolled out through all blocks (heads averaged, residual connections as an "
                             f"identity mixed in at 0.5): what the {layout.query_name} ends up drawing from.",
        [attn.plot_overlays(pixels, rollout, names, ["rollout"] * shown, "attention rollout", out / "rollout.png")],
        notes=list(notes))]
    sections += [_gradcam_section(model, pixels, names, found, out), _eigencam_section(pixels, names, found, out)]
    if layout.num_registers:
        sections.append(_register_section(pixels, names, found, len(model.blocks), out))
    return sections


def _eigencam_section(pixels: np.ndarray, names: list[str], found: Measurements, out: Path) -> Section:
    return Section(
        "EigenCAM", "The patch tokens entering the last block, projected on their first principal component: the "
                    "dominant pattern the block sees, with no gradient and no class chosen (the component's sign is "
                    "set so that its strongest patch is positive).",
        [attn.plot_overlays(pixels, torch.cat(found.eigencam).numpy(), names, ["first component"] * len(names),
                            "EigenCAM (first principal component)", out / "eigencam.png")])


def _gradcam_section(model: VisionTransformer, pixels: np.ndarray, names: list[str], found: Measurements,
                     out: Path) -> Section:
    if not found.gradcam:
        return Section("Grad-CAM class evidence", "Grad-CAM weighs the patch tokens by a class score's gradient.",
                       notes=["this model has no classifier head (num_classes=0, e.g. a self-supervised encoder), so "
                              "there is no class score to explain; fine-tune it or probe it first"])
    classes = getattr(model, "class_names", None)
    targets = torch.cat(found.targets).tolist()
    titles = [f"class {classes[t] if classes else t}" for t in targets]
    cams = torch.cat(found.gradcam).numpy()
    section = Section("Grad-CAM class evidence",
                      "Gradient of the predicted class's score with respect to the patch tokens entering the last "
                      "block, weighted Grad-CAM style: bright patches push the score up.",
                      [attn.plot_overlays(pixels, cams, names, titles, "Grad-CAM (predicted class)",
                                          out / "gradcam.png")])
    empty = [name for name, cam in zip(names, cams) if not cam.any()]
    if empty:
        section.notes.append(f"no positive class evidence found for: {', '.join(empty)} (all-zero maps)")
    return section


def _register_section(pixels: np.ndarray, names: list[str], found: Measurements, depth: int, out: Path) -> Section:
    share = torch.cat(found.register_share).mean(0).tolist()
    per_layer = ", ".join(f"{i}: {100 * s:.1f}%" for i, s in enumerate(share))
    maps = torch.cat(found.registers).numpy()
    return Section("Register tokens", "Where each register token looks in the last layer (heads averaged), shown "
                                      "apart from the class-token maps. Share of the image query's attention "
                                      f"that goes to the registers, per layer: {per_layer}.",
                   [attn.plot_register_maps(pixels, maps, names, depth - 1, out / "registers.png")])


# ----- Swin ---------------------------------------------------------------------------------------------------------
SWIN_POSITION_NOTE = ("a Swin has no absolute position embedding: each window attention adds a learned bias per head "
                      "for every relative offset within the window, so there is no per-patch table to compare")
SWIN_DISTANCE_NOTE = ("not measured for a Swin: its attention stays inside windows, so the distance is bounded by "
                      "the window at each stage rather than learned")
WINDOW_QUERY = "mean query of each window, within its window"


def _analyze_swin(model: SwinTransformer, images: ImageSet, out: Path, layers: Sequence[int], show: int,
                  batch_size: int, device: str | torch.device, title: str, notes: Sequence[str]) -> AnalysisResult:
    """Per-window attention of the chosen blocks, Grad-CAM and EigenCAM on the last stage, the patch filters; what
    is not defined for shifted windows without a class token is said, not drawn."""
    blocks = model.block_windows()
    layers = resolve_layers(layers, len(blocks))
    found = Measurements(head_maps={layer: [] for layer in layers})
    count = min(show, len(images.names))
    for start in range(0, count, batch_size):
        batch = to_model_input(images.pixels[start:min(start + batch_size, count)], model.preprocess).to(device)
        maps = collect_window_attention(model, batch)
        for layer in layers:
            _, grid, shift = blocks[layer]
            found.head_maps[layer].append(window_maps(maps[layer], grid, model.cfg.window_size, shift).cpu())
        if model.cfg.num_classes:
            cam, targets = grad_cam(model, batch)
            found.gradcam.append(cam.cpu())
            found.targets.append(targets.cpu())
        found.eigencam.append(eigen_cam(model, batch).cpu())
    pixels, names = images.pixels[:count], images.names[:count]
    window = "x".join(map(str, model.cfg.window_size))
    where = "; ".join(f"block {layer}: stage {blocks[layer][0]}, {blocks[layer][1][0]}x{blocks[layer][1][1]} map, "
                      + (f"shifted by {blocks[layer][2][0]}x{blocks[layer][2][1]}" if any(blocks[layer][2])
                         else "unshifted") for layer in layers)
    heads = Section("Per-window attention", f"For each head, each window's queries' attention onto the keys of their "
                                            f"{window} window, averaged over the window's queries and laid back on "
                                            f"the map (so every window's tiles sum to 1); {where}.")
    for layer in layers:
        heads.images.append(attn.plot_head_maps(pixels, torch.cat(found.head_maps[layer]).numpy(), names, layer,
                                                WINDOW_QUERY, out / f"attention_layer{layer}.png"))
    sections = [_filters_section(model, out),
                Section("Position-embedding similarity (Fig. 7, centre)", "", notes=[SWIN_POSITION_NOTE]),
                Section("Mean attention distance (Fig. 7, right)", "", notes=[SWIN_DISTANCE_NOTE]), heads,
                Section("Attention rollout", "", notes=[NOT_DEFINED_MESSAGE]),
                _gradcam_section(model, pixels, names, found, out), _eigencam_section(pixels, names, found, out)]
    messages = ([SYNTHETIC_MESSAGE] if images.synthetic else []) + [NOT_DEFINED_MESSAGE]
    cfg = model.cfg
    summary = [f"model: Swin, {sum(cfg.depths)} blocks in {cfg.num_stages} stages (depths {list(cfg.depths)}, heads "
               f"{list(cfg.num_heads)}, widths {list(cfg.stage_dims)}), {window} windows, input "
               f"{cfg.img_size[0]}x{cfg.img_size[1]}, {count} images", *notes]
    summary += [f"unreadable image skipped: {name} ({reason})" for name, reason in images.unreadable] + messages
    files = {path.name: path for section in sections for path in section.images}
    files["report.html"] = write_report(sections, out / "report.html", title, summary)
    return AnalysisResult(files, messages, np.zeros((0, 0)))
