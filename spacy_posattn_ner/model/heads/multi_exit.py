"""Exit heads, one per chosen backbone layer.

Each exit has a head of its own over the layers seen so far (FastNER; Li et al.
2021): a sentence (or a doc without sentence starts) whose prediction at an early
exit is confident enough (the exit policy, ``model/exit_policies.py``) leaves there.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .posattn import PosAttnHead


class MultiExitHead(nn.Module):
    """``heads[j]`` reads the kept backbone hidden states ``0..exit_layers[j]``.

    ``per_exit[j]`` overrides ``head_kwargs`` for exit j (e.g. its ``width`` and
    ``depth``): the first exit, which most docs leave at, can be the cheapest.
    """

    def __init__(
        self, exit_layers: Sequence[int], per_exit: Optional[Sequence[Dict[str, Any]]] = None,
        mixed: Optional[Sequence[int]] = None, **head_kwargs
    ):
        super().__init__()
        self.exit_layers = list(exit_layers)
        per_exit = list(per_exit) if per_exit is not None else [{}] * len(self.exit_layers)
        if len(per_exit) != len(self.exit_layers):
            raise ValueError(f"per_exit has {len(per_exit)} entries for {len(self.exit_layers)} exits")
        # how many of the leading kept hidden states each exit mixes (all up to its
        # layer: k + 1 when the backbone keeps every state)
        self.mixed = [k + 1 for k in self.exit_layers] if mixed is None else [int(n) for n in mixed]
        if len(self.mixed) != len(self.exit_layers):
            raise ValueError(f"mixed has {len(self.mixed)} entries for {len(self.exit_layers)} exits")
        self.heads = nn.ModuleList(
            PosAttnHead(n_layers=n, **{**head_kwargs, **own}) for n, own in zip(self.mixed, per_exit)
        )

    def exits(self) -> List[Tuple[int, PosAttnHead]]:
        return list(zip(self.exit_layers, self.heads))

    def forward(self, hidden: torch.Tensor, lex_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Training: every exit's scores, ``(n_exits, B, T, n_tags)``."""
        return torch.stack(
            [head(hidden[:, :n], lex_ids, mask) for n, head in zip(self.mixed, self.heads)]
        )
