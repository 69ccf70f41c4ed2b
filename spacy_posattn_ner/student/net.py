"""The student's PyTorch network: static vectors + hashed lexical features →
a few window convolutions (maxout, residual, layer norm, as spaCy's
MaxoutWindowEncoder) → optionally one narrow BiLSTM → one score per BILUO tag.

It reads one row at a time (a sentence, or a doc without sentence starts), padded
positions zeroed before every convolution so a row's answer never depends on the
rows padded with it.
"""
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..layers.dropout import FastDropout
from ..layers.lexical import LexicalEmbed


class MaxoutWindow(nn.Module):
    """One encoder layer: each token reads ``window`` tokens either side (a 1-d
    convolution), maxout over ``pieces``, layer norm, residual."""

    def __init__(self, width: int, window: int, pieces: int, dropout: float):
        super().__init__()
        self.pieces = pieces
        self.conv = nn.Conv1d(width, width * pieces, kernel_size=2 * window + 1, padding=window)
        self.norm = nn.LayerNorm(width)
        self.dropout = FastDropout(dropout)
        self._matrix = None  # (weight version, the conv weight as an (out, k * in) matrix)

    def train(self, mode: bool = True) -> "MaxoutWindow":
        """Entering either mode drops the cached matrix. A training step puts the net in
        training mode, and thinc's optimizer writes the new weights into the same memory
        and assigns them back with ``.data =``, which changes neither the data pointer nor
        the version counter the cache is keyed by (an in-place edit or a state-dict load
        does change the version)."""
        self._matrix = None
        return super().train(mode)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, W = x.shape
        h = self._window_linear(x * mask[..., None])  # (B, T, W * pieces)
        if self.pieces > 1:
            h = h.view(B, T, W, self.pieces).amax(dim=-1)
        return x + self.dropout(self.norm(h))

    def _window_linear(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution as one matrix product over each token's window (the same numbers
        as ``self.conv``, which holds the weights): on a sentence-sized input it takes about
        half the time of ``conv1d``, and as much on large batches. The weight in matrix form
        is kept while the weights do not change: until the next ``train``/``eval`` call or
        in-place change of the weight (inference)."""
        k = self.conv.kernel_size[0]
        weight = self.conv.weight
        key = (weight.data_ptr(), weight._version)
        if torch.is_grad_enabled() or self._matrix is None or self._matrix[0] != key:
            matrix = weight.permute(0, 2, 1).reshape(weight.shape[0], -1)  # (out, k * in), window-major
            if torch.is_grad_enabled():
                return self._apply_matrix(x, matrix, k)
            self._matrix = (key, matrix.contiguous())
        return self._apply_matrix(x, self._matrix[1], k)

    def _apply_matrix(self, x: torch.Tensor, matrix: torch.Tensor, k: int) -> torch.Tensor:
        B, T, W = x.shape
        pad = k // 2
        windows = F.pad(x, (0, 0, pad, pad)).unfold(1, k, 1)  # (B, T, W, k)
        return F.linear(windows.transpose(2, 3).reshape(B, T, k * W), matrix, self.conv.bias)


class StudentNet(nn.Module):
    def __init__(
        self,
        *,
        vectors_width: int,
        n_tags: int,
        width: int,
        depth: int,
        window: int,
        maxout_pieces: int,
        lstm_width: int,
        lexical_rows: Sequence[int],
        lexical_width: int,
        dropout: float,
    ):
        super().__init__()
        self.oov = nn.Parameter(torch.zeros(vectors_width))
        self.lexical = LexicalEmbed(lexical_rows, lexical_width)
        self.project = nn.Linear(vectors_width + self.lexical.output_width, width)
        self.input_norm = nn.LayerNorm(width)
        self.dropout = FastDropout(dropout)
        self.blocks = nn.ModuleList(MaxoutWindow(width, window, maxout_pieces, dropout) for _ in range(depth))
        self.lstm = nn.LSTM(width, lstm_width, batch_first=True, bidirectional=True) if lstm_width else None
        self.tagger = nn.Linear(2 * lstm_width if lstm_width else width, n_tags)

    def forward(self, vecs: torch.Tensor, known: torch.Tensor, lex_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """vecs (B, T, D) float; known (B, T) bool (False: the OOV row); lex_ids
        (B, T, A, S) long; mask (B, T) bool → (B, T, n_tags) scores."""
        vecs = torch.where(known[..., None], vecs, self.oov)
        x = torch.cat([vecs, self.lexical(lex_ids)], dim=-1)
        x = self.dropout(self.input_norm(self.project(self.dropout(x))))
        for block in self.blocks:
            x = block(x, mask)
        if self.lstm is not None:
            lengths = mask.sum(dim=1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            x = self.dropout(x)
        return self.tagger(x)
