"""Positional self-attention: multi-head attention with a learned relative-position bias.

Each head adds a learned scalar per clipped distance ``j - i`` to its attention
logits, so the head learns where to look (the previous word, the next two...)
independently of content: the light, position-aware module of Sun et al. (2025).
"""
import torch
from torch import nn

from .dropout import FastDropout


class RelativePositionBias(nn.Module):
    """A learned bias per head and clipped relative distance."""

    def __init__(self, n_heads: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Embedding(2 * max_distance + 1, n_heads)
        nn.init.zeros_(self.bias.weight)

    def forward(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, device=self.bias.weight.device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance)
        return self.bias(rel + self.max_distance).permute(2, 0, 1)  # (H, T, T)


class PositionalAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, max_distance: int, dropout: float):
        super().__init__()
        if width % n_heads:
            raise ValueError(f"width {width} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.position = RelativePositionBias(n_heads, max_distance)
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, W = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, W // self.n_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, d)
        bias = self.position(T)[None] + (~mask)[:, None, None, :] * torch.finfo(x.dtype).min
        bias = bias.to(q.dtype)
        if self.training and self.dropout.p > 0:  # dropout on the attention weights, with a cheap mask
            weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5 + bias, dim=-1)
            attn = self.dropout(weights) @ v
        else:
            attn = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(attn.transpose(1, 2).reshape(B, T, W))


class PositionalAttentionBlock(nn.Module):
    """Pre-norm transformer block: positional attention, then a GELU feed-forward."""

    def __init__(self, width: int, n_heads: int, max_distance: int, dropout: float, ff_mult: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = PositionalAttention(width, n_heads, max_distance, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(
            nn.Linear(width, ff_mult * width), nn.GELU(), FastDropout(dropout),
            nn.Linear(ff_mult * width, width),
        )
        self.dropout = FastDropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), mask))
        return x + self.dropout(self.ff(self.norm2(x)))
