"""Pooling the token sequence into one vector per image."""
from __future__ import annotations

import torch
from torch import nn

POOLS = ("token", "avg", "none")


class TokenPool(nn.Module):
    """'token': the class token (mean of them when there are several); 'avg': mean of patch tokens; 'none': all tokens."""

    def __init__(self, kind: str, num_class_tokens: int, num_prefix_tokens: int, num_suffix_tokens: int) -> None:
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"unknown global_pool {kind!r}; choose one of {POOLS}")
        if kind == "token" and num_class_tokens == 0:
            raise ValueError("global_pool='token' needs a class token; set class_token=True or global_pool='avg'")
        self.kind = kind
        self.num_class_tokens = num_class_tokens
        self.num_prefix_tokens = num_prefix_tokens
        self.num_suffix_tokens = num_suffix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "token":
            return x[:, 0] if self.num_class_tokens == 1 else x[:, :self.num_class_tokens].mean(dim=1)
        if self.kind == "avg":
            return x[:, self.num_prefix_tokens:x.shape[1] - self.num_suffix_tokens].mean(dim=1)
        return x

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
