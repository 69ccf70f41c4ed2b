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


# Rows longer than CHUNK tokens run the attention blocks in overlapping chunks of CHUNK
# tokens, CONTEXT tokens of context on each side, each token answered by the chunk where
# it is most central: memory and time grow linearly with a segment's length, not with
# its square (a text without sentence punctuation is one segment; 20k tokens asked for
# a 6.4 GB attention tensor). Rows of at most CHUNK tokens, every normal sentence, run
# whole, exactly as before. 512 keeps pipelines saved earlier answering as they did on
# any doc of up to 512 tokens.
CHUNK = 512
CONTEXT = 128
# chunks per group through the blocks: bounds the chunks' activations at once
CHUNK_GROUP_TOKENS = 8192


def chunk_count(length: int, chunk: int = CHUNK, context: int = CONTEXT) -> int:
    """How many chunks cover ``length`` positions: chunk k starts at ``k * stride``
    (``stride = chunk - 2 * context``) and owns ``[k * stride + context, (k + 1) *
    stride + context)``; the first owns from 0, the last to the end."""
    stride = chunk - 2 * context
    return max(1, -(-(length - chunk + context) // stride) + 1)


def run_blocks(blocks, x: torch.Tensor, mask: torch.Tensor, chunk: int = CHUNK, context: int = CONTEXT) -> torch.Tensor:
    """``x`` (B, T, W) through ``blocks`` (each ``block(x, mask)``); in overlapping
    chunks when ``T > chunk``. A chunk's positions are fixed from the row's start, so
    a token's answer does not depend on how far its row was padded."""
    B, T, W = x.shape
    if T <= chunk:
        for block in blocks:
            x = block(x, mask)
        return x
    stride = chunk - 2 * context
    n = chunk_count(T, chunk, context)
    padded = (n - 1) * stride + chunk
    xp = torch.nn.functional.pad(x, (0, 0, 0, padded - T))
    mp = torch.nn.functional.pad(mask, (0, padded - T), value=False)
    xs = xp.unfold(1, chunk, stride).permute(0, 1, 3, 2).reshape(B * n, chunk, W)  # (B*n, chunk, W)
    ms = mp.unfold(1, chunk, stride).reshape(B * n, chunk)
    group = max(1, CHUNK_GROUP_TOKENS // chunk)
    outs = []
    for g in range(0, B * n, group):
        h, m = xs[g : g + group], ms[g : g + group]
        for block in blocks:
            h = block(h, m)
        outs.append(h)
    out = torch.cat(outs).view(B, n, chunk, W)
    t = torch.arange(T, device=x.device)
    k = ((t - context).clamp(min=0) // stride).clamp(max=n - 1)
    return out[:, k, t - k * stride]
