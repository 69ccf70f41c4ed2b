"""The trainable head: layer mix + lexical features → positional attention → tag scores."""
from typing import Sequence

import torch
from torch import nn

from .attention import PositionalAttentionBlock
from .dropout import FastDropout
from .lexical import LexicalEmbed


class ScalarMix(nn.Module):
    """Softmax-weighted sums of the backbone's hidden states, each times a learned scale.

    One mix (``n_mixes = 1``, PosAttnTagger.v1 to v3) gives one vector per token. With
    several, each learns its own weighting and the head reads them side by side:
    feature-based BERT NER did better on the concatenated last four layers than on
    one weighted sum (Devlin et al. 2019, section 5.3), and the mixes can learn that
    or any other split of the layers.
    """

    def __init__(self, n_layers: int, n_mixes: int = 1):
        super().__init__()
        self.n_layers = n_layers
        self.n_mixes = n_mixes
        if n_mixes == 1:  # the v1-v3 parameters, whose saved shapes must not change
            self.logits = nn.Parameter(torch.zeros(n_layers))
            self.gamma = nn.Parameter(torch.ones(1))
        else:  # each mix starts focused on its own part of the layers, deepest first
            centres = torch.linspace(n_layers - 1, 0, n_mixes)[:, None]
            self.logits = nn.Parameter(-0.5 * (torch.arange(n_layers)[None, :] - centres) ** 2)
            self.gamma = nn.Parameter(torch.ones(n_mixes, 1))

    def weights(self) -> torch.Tensor:
        """Each layer's weight in the mix, scale included: ``(n_layers,)`` for one mix,
        ``(n_mixes, n_layers)`` for several."""
        return self.gamma * torch.softmax(self.logits, dim=-1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (B, n_layers, T, W) -> (B, T, W), or (B, T, n_mixes, W). One mix is a
        # broadcast multiply-and-sum (torch.einsum("l,bltw->btw") measured several
        # times slower on CPU); several are one matrix product over the layers.
        weights = self.weights()
        if self.n_mixes == 1:
            return (hidden * weights[None, :, None, None]).sum(dim=1)
        return torch.matmul(hidden.permute(0, 2, 3, 1), weights.t()).transpose(-1, -2)


class PosAttnHead(nn.Module):
    """Scores every BILUO tag for every token of a padded batch of docs."""

    def __init__(
        self,
        *,
        n_layers: int,
        hidden_width: int,
        n_tags: int,
        width: int,
        depth: int,
        n_heads: int,
        max_distance: int,
        lexical_rows: Sequence[int],
        lexical_width: int,
        dropout: float,
        n_mixes: int = 1,
    ):
        super().__init__()
        self.mix = ScalarMix(n_layers, n_mixes)
        self.hidden_norm = nn.LayerNorm(hidden_width)  # each mix normalized on its own
        self.lexical = LexicalEmbed(lexical_rows, lexical_width)
        self.project = nn.Linear(n_mixes * hidden_width + self.lexical.output_width, width)
        self.dropout = FastDropout(dropout)
        self.blocks = nn.ModuleList(
            PositionalAttentionBlock(width, n_heads, max_distance, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.tagger = nn.Linear(width, n_tags)

    def forward(self, hidden: torch.Tensor, lex_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, T, W) float; lex_ids (B, T, A, S) long; mask (B, T) bool → (B, T, n_tags)."""
        return self.from_mixed(self.mix(hidden.float()), lex_ids, mask)

    def from_mixed(self, mixed: torch.Tensor, lex_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``forward`` from the already mixed hidden states ``(B, T, W)``, or
        ``(B, T, n_mixes, W)`` (``mix.weights()`` applied): inference mixes while
        gathering, with no (B, L, T, W) copy."""
        normed = self.hidden_norm(mixed.float())
        if normed.dim() == 4:
            normed = normed.flatten(2)
        x = torch.cat([normed, self.lexical(lex_ids)], dim=-1)
        x = self.dropout(self.project(self.dropout(x)))
        for block in self.blocks:
            x = block(x, mask)
        return self.tagger(self.norm(x))
