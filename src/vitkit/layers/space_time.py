"""Regrouping a clip's patch tokens [B, T*N, D] (time-major) for attention within one frame or along one position."""
from __future__ import annotations

import torch


def to_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T*N, D] -> [B*T, N, D]: each frame a sequence of its own (spatial attention)."""
    batch, tokens, dim = x.shape
    return x.reshape(batch * frames, tokens // frames, dim)


def from_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """The inverse of to_frames."""
    return x.reshape(x.shape[0] // frames, frames * x.shape[1], x.shape[2])


def to_tubes(x: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T*N, D] -> [B*N, T, D]: each position's tokens over time a sequence of their own (temporal attention)."""
    batch, tokens, dim = x.shape
    return x.reshape(batch, frames, tokens // frames, dim).transpose(1, 2).reshape(-1, frames, dim)


def from_tubes(x: torch.Tensor, batch: int) -> torch.Tensor:
    """The inverse of to_tubes, for a batch of `batch` clips."""
    positions, frames, dim = x.shape[0] // batch, x.shape[1], x.shape[2]
    return x.reshape(batch, positions, frames, dim).transpose(1, 2).reshape(batch, frames * positions, dim)
