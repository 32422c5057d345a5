"""Feed-forward blocks: the paper's fc1 -> act -> fc2, and gated variants (SwiGLU, GeGLU)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .norm import make_norm

PLAIN_ACTS = {"gelu": nn.GELU, "gelu_tanh": partial(nn.GELU, approximate="tanh"), "silu": nn.SiLU, "relu": nn.ReLU}
GATED_ACTS = {"swiglu": nn.SiLU, "geglu": nn.GELU}
MLPS = tuple(PLAIN_ACTS) + tuple(GATED_ACTS)


class Mlp(nn.Module):
    """fc1 -> activation -> dropout -> (norm) -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu", bias: bool = True, drop: float = 0.0,
                 norm: str | None = None, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = PLAIN_ACTS[act]()
        self.drop1 = nn.Dropout(drop)
        self.norm = make_norm(norm, hidden_dim, norm_eps) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class GluMlp(nn.Module):
    """Gated FFN: one fused fc1 gives [value | gate]; act(gate) * value -> (norm) -> fc2."""

    def __init__(self, dim: int, hidden_dim: int, act: str = "swiglu", bias: bool = True, drop: float = 0.0,
                 norm: str | None = None, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fc1 = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.act = GATED_ACTS[act]()
        self.drop1 = nn.Dropout(drop)
        self.norm = make_norm(norm, hidden_dim, norm_eps) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(gate) * value))))


def make_mlp(kind: str, dim: int, hidden_dim: int, **kwargs) -> nn.Module:
    """Builds the FFN named by the config's `mlp` field."""
    if kind in PLAIN_ACTS:
        return Mlp(dim, hidden_dim, act=kind, **kwargs)
    if kind in GATED_ACTS:
        return GluMlp(dim, hidden_dim, act=kind, **kwargs)
    raise ValueError(f"unknown mlp {kind!r}; choose one of {MLPS}")
