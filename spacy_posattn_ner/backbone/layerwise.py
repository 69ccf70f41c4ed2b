"""Running an encoder one layer at a time, so that early exit can stop it.

BERT-family encoders (an ``embeddings`` module and ``encoder.layer``: BERT, RoBERTa,
MiniLM, ELECTRA...) run a layer per call: windows whose docs have left are dropped
from the batch before the next layer, so the deeper layers are really not computed
for them. Any other encoder runs whole once (``output_hidden_states``) and hands its
layers out one by one: correct everywhere, with no saving from early exit.
Hidden states stay on the encoder's device in its dtype; nothing is copied to the host.
"""
from typing import Optional, Tuple

import torch


def is_layerwise(model: torch.nn.Module) -> bool:
    """Whether ``model`` has the BERT-family layout ``LayerRunner`` can step through."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    return hasattr(model, "embeddings") and isinstance(layers, torch.nn.ModuleList)


class LayerRunner:
    """A padded batch of wordpiece ids, run through the encoder a layer per ``next_layer``.

    ``ids`` and ``mask`` are ``(B, T)`` on the encoder's device. ``autocast`` runs
    the calls under bf16 autocast (GPU inference, training features).
    """

    def __init__(self, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, autocast: bool = False):
        self.model = model
        self.ids = ids
        self.mask = mask
        self.autocast = autocast
        self.layer = -1  # the last layer handed out (0 = embeddings)
        self._hidden: Optional[torch.Tensor] = None
        self._bias: Optional[torch.Tensor] = None  # MPNet's relative-position bias, per batch

    def _context(self):
        return torch.autocast(self.ids.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def next_layer(self) -> torch.Tensor:
        """Hidden states ``(B, T, width)`` of the next layer (0 = embeddings), on the device."""
        self.layer += 1
        with torch.inference_mode(), self._context():
            self._hidden = self._compute(self.layer)
        return self._hidden

    def _compute(self, layer: int) -> torch.Tensor:
        model = self.model
        if layer == 0:
            self._bias = None
            return model.embeddings(input_ids=self.ids, token_type_ids=torch.zeros_like(self.ids))
        extended = model.get_extended_attention_mask(self.mask, self.ids.shape)
        encoder = model.encoder
        if hasattr(encoder, "compute_position_bias"):
            # MPNet: every layer adds the relative-position bias its encoder computes once
            # from the embeddings (its layers given none would run without positions)
            if self._bias is None:
                self._bias = encoder.compute_position_bias(self._hidden)
            return encoder.layer[layer - 1](self._hidden, attention_mask=extended, position_bias=self._bias)[0]
        return encoder.layer[layer - 1](self._hidden, attention_mask=extended)[0]

    @property
    def hidden(self) -> Optional[torch.Tensor]:
        """The last layer handed out (None before the first)."""
        return self._hidden

    def keep(self, rows: torch.Tensor) -> None:
        """Continue with these rows of the batch only (a long tensor on the device)."""
        self.ids, self.mask = self.ids[rows], self.mask[rows]
        if self._hidden is not None:
            self._hidden = self._hidden[rows]
        if self._bias is not None:
            self._bias = self._bias[rows]


class WholeModelRunner(LayerRunner):
    """The generic path: the whole encoder runs at the first call, with
    ``output_hidden_states``; later calls hand out the layers it returned."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._all: Optional[Tuple[torch.Tensor, ...]] = None

    def _compute(self, layer: int) -> torch.Tensor:
        if self._all is None:
            out = self.model(input_ids=self.ids, attention_mask=self.mask, output_hidden_states=True)
            self._all = tuple(out.hidden_states)
        return self._all[layer]

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        if self._all is not None:
            self._all = tuple(h[rows] for h in self._all)


def make_runner(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, autocast: bool = False) -> LayerRunner:
    """The fast layer-by-layer runner where the encoder allows it, else the generic one."""
    cls = LayerRunner if is_layerwise(model) else WholeModelRunner
    return cls(model, ids, mask, autocast)


def hidden_state_count(model: torch.nn.Module) -> int:
    """Hidden states per token: the embedding output plus each layer."""
    return int(model.config.num_hidden_layers) + 1


