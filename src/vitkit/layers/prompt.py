"""Visual prompt tuning (Jia et al. 2022): learnable tokens placed right after the prefix tokens.

Shallow prompts enter block 0 only; deep prompts are replaced by a fresh set before every block. The prompts are
taken out again after the last block, so pooling and heads see the usual sequence.
"""
from __future__ import annotations

import torch
from torch import nn


class PromptTokens(nn.Module):
    """[prefix | prompts | patches | suffix]: prompts get no rotation (RoPE) and no ALiBi bias."""

    def __init__(self, num_tokens: int, dim: int, depth: int, deep: bool, at: int) -> None:
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f"prompt_tokens must be at least 1, got {num_tokens}")
        self.num_tokens, self.deep, self.at = num_tokens, deep, at
        self.tokens = nn.Parameter(torch.empty(depth if deep else 1, num_tokens, dim))
        nn.init.trunc_normal_(self.tokens, std=0.02)

    def insert(self, x: torch.Tensor, rope: tuple | None, bias: torch.Tensor | None):
        """Adds block 0's prompts to the sequence and widens the RoPE tables and attention bias to match."""
        prompts = self.tokens[0].expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([x[:, :self.at], prompts, x[:, self.at:]], dim=1)
        if rope is not None:
            rope = tuple(self.widen_rows(t, fill) for t, fill in zip(rope, (1.0, 0.0)))  # cos 1, sin 0: unrotated
        if bias is not None:
            bias = self.widen_rows(self.widen_rows(bias, 0.0).transpose(-1, -2), 0.0).transpose(-1, -2)
        return x, rope, bias

    def refresh(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Deep prompts: block `layer` sees its own prompts in place of the previous block's prompt outputs."""
        if not self.deep or layer == 0:
            return x
        prompts = self.tokens[layer].expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat([x[:, :self.at], prompts, x[:, self.at + self.num_tokens:]], dim=1)

    def remove(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :self.at], x[:, self.at + self.num_tokens:]], dim=1)

    def widen_rows(self, table: torch.Tensor, fill: float) -> torch.Tensor:
        """Inserts num_tokens rows of `fill` at position `at` of a table's second-to-last axis."""
        shape = list(table.shape)
        shape[-2] = self.num_tokens
        rows = table.new_full(shape, fill)
        return torch.cat([table[..., :self.at, :], rows, table[..., self.at:, :]], dim=-2)

    def extra_repr(self) -> str:
        return f"num_tokens={self.num_tokens}, deep={self.deep}, after={self.at} prefix tokens"
