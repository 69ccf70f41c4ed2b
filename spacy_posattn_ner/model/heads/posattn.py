"""The trainable head: layer mix + lexical features → positional attention → tag scores."""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...layers.attention import PositionalAttentionBlock, run_blocks
from ...layers.dropout import FastDropout
from ...layers.lexical import LexicalEmbed


class ScalarMix(nn.Module):
    """Softmax-weighted sum of the backbone's hidden states, times a learned scale."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def weights(self) -> torch.Tensor:
        """Each layer's weight in the mix, scale included: ``(n_layers,)``."""
        return self.gamma * torch.softmax(self.logits, dim=0)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (B, n_layers, T, W) -> (B, T, W). A broadcast multiply-and-sum:
        # torch.einsum("l,bltw->btw") measured several times slower on CPU.
        return (hidden * self.weights()[None, :, None, None]).sum(dim=1)


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
        layer: Optional[int] = None,
    ):
        super().__init__()
        self.mix = ScalarMix(n_layers)
        # the backbone layer it reads up to (the last of its mix when every state is kept)
        self.layer = n_layers - 1 if layer is None else int(layer)
        self.hidden_norm = nn.LayerNorm(hidden_width)
        self.lexical = LexicalEmbed(lexical_rows, lexical_width)
        self.project = nn.Linear(hidden_width + self.lexical.output_width, width)
        self.dropout = FastDropout(dropout)
        self.blocks = nn.ModuleList(
            PositionalAttentionBlock(width, n_heads, max_distance, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.tagger = nn.Linear(width, n_tags)

    def exits(self) -> List[Tuple[int, "PosAttnHead"]]:
        """One exit, after the last layer its mix covers."""
        return [(self.layer, self)]

    def mix_weights(self) -> torch.Tensor:
        """Each hidden state's weight in the mix, scale included: ``(n_layers,)``."""
        return self.mix.weights()

    @property
    def n_tags(self) -> int:
        return self.tagger.out_features

    def forward(self, hidden: torch.Tensor, lex_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, T, W) float; lex_ids (B, T, A, S) long; mask (B, T) bool → (B, T, n_tags)."""
        return self.from_mixed(self.mix(hidden.float()), lex_ids, mask)

    def from_mixed(self, mixed: torch.Tensor, lex_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``forward`` from the already mixed hidden states ``(B, T, W)`` (``mix.weights()``
        applied): inference mixes while gathering, with no (B, L, T, W) copy."""
        x = torch.cat([self.hidden_norm(mixed.float()), self.lexical(lex_ids)], dim=-1)
        x = self.dropout(self.project(self.dropout(x)))
        x = run_blocks(self.blocks, x, mask)  # in overlapping chunks on long rows: linear memory
        return self.tagger(self.norm(x))
