"""Wordpiece states → spaCy token vectors, layer by layer, on the encoder's device.

A token's vector is the mean over its wordpieces within a window, then the mean over
the windows that cover it; tokens with no wordpieces stay zero. A layer's buffer is
made when that layer is first added, so layers that early exit never reaches cost
nothing.
"""
from typing import List, Optional, Sequence, Tuple

import numpy
import torch

from .windows import Window

# (rows of a flattened (B * T, width) batch, their global token index, their weight)
PoolPlan = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TokenPooler:
    """Per-layer sums over the tokens of a list of docs, laid end to end."""

    def __init__(self, lengths: Sequence[int], windows: Sequence[Window], n_layers: int, width: int, device: torch.device):
        self.offsets = numpy.concatenate([[0], numpy.cumsum(lengths)]).astype("int64")
        self.total = int(self.offsets[-1])
        self.width = width
        self.device = device
        self.sums: List[Optional[torch.Tensor]] = [None] * n_layers
        # states of windows that stopped while their doc went on, held for every deeper layer
        self.carried: Optional[torch.Tensor] = None
        # how many windows cover each token (a token split across chunks of one
        # window counts once): the second mean's denominator
        owner = [numpy.full(int((w.token_index >= 0).sum()), k) for k, w in enumerate(windows)]
        targets = [self.offsets[w.doc_index] + w.token_index[w.token_index >= 0] for w in windows]
        counts = numpy.zeros((self.total,))
        if targets and self.total:
            pairs = numpy.unique(numpy.concatenate(owner) * self.total + numpy.concatenate(targets))
            counts = numpy.bincount(pairs % self.total, minlength=self.total)
        self.scale = torch.from_numpy(1.0 / numpy.maximum(counts, 1.0)).float().to(device)

    def plan(self, batch: Sequence[Window], length: int) -> PoolPlan:
        """Which rows of a padded ``(B, length)`` batch go to which tokens, with what
        weight (1 / the token's wordpieces in that window)."""
        rows, targets, owner = [], [], []
        for b, win in enumerate(batch):
            pos = numpy.flatnonzero(win.token_index >= 0)
            rows.append(b * length + pos)
            targets.append(self.offsets[win.doc_index] + win.token_index[pos])
            owner.append(numpy.full(len(pos), b))
        rows_a, targets_a = numpy.concatenate(rows), numpy.concatenate(targets)
        key = numpy.concatenate(owner) * max(self.total, 1) + targets_a
        _, inverse, n_pieces = numpy.unique(key, return_inverse=True, return_counts=True)
        weights = (1.0 / n_pieces[inverse]).astype("float32")
        return tuple(torch.from_numpy(a).to(self.device) for a in (rows_a, targets_a, weights))  # type: ignore[return-value]

    def add(self, plan: PoolPlan, hidden: torch.Tensor, layer: int) -> None:
        """Add one layer of a batch (``(B, T, width)``, any float dtype) by its plan."""
        rows, targets, weights = plan
        B, T, width = hidden.shape
        if self.sums[layer] is None:
            carried = self.carried
            self.sums[layer] = torch.zeros((self.total, width), device=self.device) if carried is None else carried.clone()
        if len(rows):
            picked = hidden.reshape(B * T, width)[rows].float()
            self.sums[layer].index_add_(0, targets, picked * weights[:, None])

    def carry(self, plan: PoolPlan, hidden: torch.Tensor) -> None:
        """Windows that stop while their doc goes on: their last states (``hidden``,
        ``(B, T, width)`` by ``plan``) stand in for them in every layer not pooled yet,
        so the deeper exits still see their tokens as context (the copy of exited
        states of Li et al. 2021). Call before those layers are added."""
        rows, targets, weights = plan
        B, T, width = hidden.shape
        if self.carried is None:
            self.carried = torch.zeros((self.total, width), device=self.device)
        if len(rows):
            self.carried.index_add_(0, targets, hidden.reshape(B * T, width)[rows].float() * weights[:, None])

    def _layer(self, layer: int) -> torch.Tensor:
        sums = self.sums[layer]
        return torch.zeros((self.total, self.width), device=self.device) if sums is None else sums

    def pooled(self) -> torch.Tensor:
        """float16 ``(layers, total_tokens, width)``: every layer (training features)."""
        return (torch.stack([self._layer(k) for k in range(len(self.sums))]) * self.scale[None, :, None]).half()

    def gather_mixed(self, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """float32 ``(B, T, width)``: layers ``0..len(weights)-1`` at a ``(B, T)`` matrix
        of global token indices, summed with ``weights`` (a head's scalar mix), with
        no ``(B, layers, T, width)`` intermediate."""
        mixed = self._layer(0)[index] * weights[0]
        for k in range(1, len(weights)):
            mixed.add_(self._layer(k)[index] * weights[k])
        return mixed.mul_(self.scale[index][..., None])
