"""A video model's attention on a clip, drawn as a strip: the clip's tubelets (their first frames), where each
tubelet's query looks within its own frame (spatial attention), and where the middle tubelet draws from every
tubelet at each position (temporal attention)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import AugmentConfig, ClipDataset, build_dataset
from ..data.clip_loader import ClipTransform
from ..data.clips import read_clip
from ..models.video_transformer import VideoTransformer
from .images import round_robin_by_class
from .pipeline import resolve_layers
from .plots import as_rgb, overlay, panel_grid
from .report import Section, write_report


@dataclass
class ClipSet:
    """Clips ready for the model ([N, C, T, H, W], normalised) and to show ([N, T, H, W, C] in [0, 1]), named."""

    inputs: torch.Tensor
    pixels: np.ndarray
    names: list[str]


@dataclass
class ClipAttention:
    """One clip, one layer, heads averaged: spatial maps [T', rows, cols] of each tubelet's query (its class token,
    else the mean over its patches), and temporal maps [T', rows, cols]: the middle tubelet's attention to tubelet t
    at every position (factorised models: one value per tubelet; None for 'frames', which has no temporal step)."""

    space: np.ndarray
    time: np.ndarray | None


def prepare_clips(model: VideoTransformer, clips: torch.Tensor, names: list[str]) -> ClipSet:
    """uint8 clips [N, L, C, H, W] as the model evaluates them: the centred num_frames, resized, normalised."""
    cfg, pre = model.cfg, model.preprocess.for_channels(model.cfg.in_chans)
    transform = ClipTransform(AugmentConfig(), cfg.num_frames, cfg.img_size, pre, cfg.in_chans, train=False,
                              mirror=None, source_size=tuple(clips.shape[-2:]))
    x, _ = transform(clips, torch.zeros(len(clips), dtype=torch.int64), np.random.default_rng(0))
    mean, std = (torch.tensor(v).view(1, 1, -1, 1, 1) for v in (pre.mean, pre.std))
    pixels = (x * std + mean).clamp(0, 1).permute(0, 1, 3, 4, 2).numpy()
    return ClipSet(x.transpose(1, 2).contiguous(), pixels, names)


def dataset_clips(spec: str, count: int, model: VideoTransformer) -> ClipSet:
    """The first `count` test clips of a clip dataset, the classes in turn, named by class and index."""
    dataset = build_dataset(spec, split="test")
    if not isinstance(dataset, ClipDataset):
        raise ValueError(f"{spec} holds images; a video model is analysed on clips: pass --data with a clip dataset "
                         "(moving-fashion:PATH, clipfolder:PATH) or --images with clip folders")
    chosen = round_robin_by_class(dataset.labels.tolist(), count)
    names = [f"{dataset.classes[int(dataset.labels[i])]} (#{i})" for i in chosen]
    return prepare_clips(model, dataset.clips[chosen], names)


def folder_clips(folders: Sequence[str | Path], model: VideoTransformer) -> ClipSet:
    """Clip folders (each the frames of one clip), read as clipfolder: reads them; all must share one shape."""
    clips = []
    for folder in folders:
        frames, gray = read_clip(Path(folder), "--images")
        clips.append(torch.from_numpy(frames).permute(0, 3, 1, 2)[:, :1 if gray else 3])
    if len({clip.shape for clip in clips}) > 1:
        raise ValueError(f"--images: the clips differ in frames or size ({sorted({tuple(c.shape) for c in clips})}); "
                         "analyse clips of one shape together")
    return prepare_clips(model, torch.stack(clips), [Path(folder).name for folder in folders])


def clip_attention(model: VideoTransformer, clip: torch.Tensor, layer: int = -1) -> ClipAttention:
    """The maps of one clip [C, T, H, W] at one layer (a factorised model's temporal map: its temporal encoder's
    last block, the one the head reads)."""
    rows, cols = model.cfg.grid_size
    with torch.no_grad():
        space, time = model.get_attention_maps(clip[None])
    probs = space[resolve_layers([layer], len(space))[0]][0].double().mean(1)  # [T', S, S]
    prefix = probs.shape[-1] - rows * cols
    queries = probs[:, :prefix] if prefix else probs[:, prefix:]
    space_map = queries.mean(1)[:, prefix:].reshape(-1, rows, cols)
    if not time:
        return ClipAttention(space_map.numpy(), None)
    picked = -1 if model.cfg.attention == "factorised" else resolve_layers([layer], len(time))[0]
    probs = time[picked][0].double().mean(1)  # [P, T', T']
    from_middle = probs[:, probs.shape[1] // 2].T  # [T', P]
    time_map = from_middle.reshape(-1, rows, cols) if from_middle.shape[1] > 1 else \
        from_middle.reshape(-1, 1, 1).expand(-1, rows, cols)
    return ClipAttention(space_map.numpy(), time_map.numpy())


def plot_clip_attention(pixels: np.ndarray, found: ClipAttention, tubelet: int, heading: str, path: Path) -> Path:
    """Rows: the first frame of every tubelet, its spatial map, and its temporal map, each overlaid on the frame;
    the temporal row shares one scale, so that brighter tubelets are those the middle one draws more from."""
    frames = [pixels[t * tubelet] for t in range(len(found.space))]
    cells = [[as_rgb(frame) for frame in frames], [overlay(f, m) for f, m in zip(frames, found.space)]]
    titles = [[f"frame {t * tubelet}" for t in range(len(frames))], [f"space, tubelet {t}" for t in range(len(frames))]]
    if found.time is not None:
        middle, top = len(frames) // 2, float(found.time.max())
        cells.append([overlay(f, m, top=top) for f, m in zip(frames, found.time)])
        titles.append([f"time {middle}->{t}: {m.mean():.2f}" for t, m in enumerate(found.time)])
    return panel_grid(cells, titles, heading, path)


def analyze_clips(model: VideoTransformer, clips: ClipSet, out_dir: str | Path, layers: Sequence[int] = (-1,),
                  device: str | torch.device = "cpu", title: str = "vitkit analyze", notes: Sequence[str] = ()
                  ) -> dict[str, Path]:
    """One strip PNG per clip and layer (clip<i>_layer<l>.png) and a report.html holding them all; returns the files."""
    out = Path(out_dir)
    model = model.eval().to(device)
    cfg = model.cfg
    sections = []
    for layer in layers:
        section = Section(f"Layer {layer % cfg.depth}", _explanation(cfg.attention, cfg.class_token))
        for i, (clip, pixels, name) in enumerate(zip(clips.inputs, clips.pixels, clips.names)):
            found = clip_attention(model, clip.to(device), layer)
            heading = f"{name}: layer {layer % cfg.depth}, {cfg.attention} attention"
            section.images.append(plot_clip_attention(pixels, found, cfg.tubelet_size, heading,
                                                      out / f"clip{i}_layer{layer % cfg.depth}.png"))
        sections.append(section)
    summary = [f"model: {cfg.attention} space-time attention, {cfg.depth} blocks"
               + (f" + {cfg.temporal_depth} temporal" if cfg.temporal_depth else "")
               + f", {cfg.num_frames} frames in tubelets of {cfg.tubelet_size}, {len(clips.names)} clips", *notes]
    files = {path.name: path for section in sections for path in section.images}
    files["report.html"] = write_report(sections, out / "report.html", title, summary)
    return files


def _explanation(attention: str, class_token: bool) -> str:
    query = "class token" if class_token and attention != "joint" else "mean over its patches"  # joint maps: patches
    text = (f"Top: the first frame of each tubelet. Middle: where each tubelet's query ({query}) looks within its own "
            "frame, heads averaged. ")
    if attention == "frames":
        return text + "This model treats every frame alone and averages them: it has no temporal attention."
    what = {"joint": "joint attention restricted to the same position and renormalised",
            "divided": "the temporal attention step",
            "factorised": "the last block of the temporal encoder over the tubelets' pooled tokens, one value per "
                          "tubelet"}[attention]
    return text + (f"Bottom: how much the middle tubelet draws from each tubelet at every position ({what}), on one "
                   "scale for the row; the titles give the mean.")
