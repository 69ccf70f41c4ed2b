"""The PyTorch heads. Each implements what the engine calls:

- ``exits()`` -> ``[(layer, head), ...]``: after which backbone layer each exit head reads
  (one pair for a head without early exit);
- an exit head's ``mix_weights()`` (its scalar mix of the hidden states ``0..layer``),
  ``from_mixed(mixed, lex_ids, mask)`` -> tag scores, and ``n_tags``;
- ``forward(hidden, lex_ids, mask)`` for training: ``(B, T, K)`` or ``(n_exits, B, T, K)``.
"""
from .multi_exit import MultiExitHead
from .posattn import PosAttnHead, ScalarMix

__all__ = ["MultiExitHead", "PosAttnHead", "ScalarMix"]
