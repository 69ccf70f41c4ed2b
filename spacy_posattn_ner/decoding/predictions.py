"""From the model's tag log-probs to what ``set_annotations`` writes: entities, their
scores and the layers each doc's segments left at.

Decoding runs on the model's device (constrained Viterbi; with scores on, forward-backward
over the same lattice); the results come to the host once per batch.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from ..model.engine import TagScores
from .marginals import Lattice
from . import host
from .masks import boundary_mask, boundary_mask_array
from .viterbi import best_paths, entity_bounds, transition_masks


@dataclass
class Predictions:
    """What decoding found, on the host.

    ``entities`` are the Viterbi path's (doc, start, end, label index) arrays sorted by
    doc then start; ``entity_scores`` their probabilities (None with scores off);
    ``candidates`` the (doc, start, end, label, score) arrays of the spans whose
    probability reaches ``candidate_threshold`` (None when it is off).
    """

    exit_layer: numpy.ndarray  # (n_docs,) the deepest layer a doc's answer used, -1 if empty
    segment_exit_layers: List[List[int]]
    entities: Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]
    entity_scores: Optional[numpy.ndarray] = None
    candidates: Optional[Tuple[numpy.ndarray, ...]] = None


class Decoder:
    """Constrained decoding for one tag set; keeps its transition masks per device."""

    def __init__(self, tags: Sequence[str]):
        self.tags = list(tags)
        self._masks: Dict[str, Tuple[torch.Tensor, ...]] = {}
        self._host_masks = transition_masks(self.tags)  # numpy: what _on_host reads

    def masks(self, device: torch.device) -> Tuple[torch.Tensor, ...]:
        key = str(device)
        if key not in self._masks:  # a race builds the same tensors twice: harmless
            self._masks[key] = tuple(torch.from_numpy(a).to(device) for a in self._host_masks)
        return self._masks[key]

    def __call__(
        self, scores: TagScores, docs: Sequence[Doc], *, with_scores: bool, candidate_threshold: Optional[float],
        temperature: float,
    ) -> Predictions:
        if scores.log_probs.device.type == "cpu" and candidate_threshold is None:
            return self._on_host(scores, docs, with_scores, temperature)
        return self._on_device(scores, docs, with_scores, candidate_threshold, temperature)

    def _on_device(
        self, scores: TagScores, docs: Sequence[Doc], with_scores: bool, candidate_threshold: Optional[float],
        temperature: float,
    ) -> Predictions:
        """``__call__`` in torch on the scores' device (any batch, candidate spans included)."""
        log_probs = scores.log_probs
        masks = self.masks(log_probs.device)
        lengths = [len(doc) for doc in docs]
        with torch.inference_mode():
            if log_probs.shape[1]:
                log_probs = log_probs + boundary_mask(docs, log_probs.shape[1], self.tags).to(log_probs.device)
            path_np = best_paths(log_probs, scores.lengths, *masks).cpu().numpy()
            exit_np, per_segment = exit_layers(scores, len(docs))
            out = Predictions(exit_np, per_segment, entity_bounds([path_np[i, :n] for i, n in enumerate(lengths)]))
            if (with_scores or candidate_threshold is not None) and log_probs.shape[1]:
                lattice = Lattice(log_probs, scores.lengths, *masks, temperature=temperature)
                out.entity_scores = lattice.span_marginals(*out.entities).cpu().numpy()
                if candidate_threshold is not None:
                    out.candidates = tuple(a.cpu().numpy() for a in lattice.candidates(candidate_threshold))
        return out

    def _on_host(self, scores: TagScores, docs: Sequence[Doc], with_scores: bool, temperature: float) -> Predictions:
        """``__call__`` of a CPU batch without candidate spans, in numpy (``host.py``): the
        same paths, the same entity probabilities up to float32 rounding."""
        masks = self._host_masks
        lp = scores.log_probs.detach().numpy()
        lengths = scores.lengths.numpy()
        if lp.shape[1]:
            lp = lp + boundary_mask_array(docs, lp.shape[1], self.tags)
        path = host.best_paths(lp, lengths, *masks)
        exit_np, per_segment = exit_layers(scores, len(docs))
        out = Predictions(exit_np, per_segment, entity_bounds([path[i, :n] for i, n in enumerate(lengths.tolist())]))
        if with_scores and lp.shape[1]:
            probs = host.entity_probabilities(lp, lengths, masks, out.entities, temperature)
            if probs is None:  # underflow in probability space: the log-space recursions
                lattice = Lattice(torch.from_numpy(lp), scores.lengths, *self.masks(torch.device("cpu")), temperature=temperature)
                probs = lattice.span_marginals(*out.entities).numpy()
            out.entity_scores = probs
        return out


def exit_layers(scores: TagScores, n_docs: int) -> Tuple[numpy.ndarray, List[List[int]]]:
    """Each doc's deepest exit layer (-1: empty) and its segments' exit layers (one per
    sentence where set, else one), from one transfer of the segments' layers."""
    if scores.segment_exit_layer is None:
        exit_np = scores.exit_layer.cpu().numpy()
        return exit_np, [[int(k)] if k >= 0 else [] for k in exit_np.tolist()]
    layers, owner = scores.segment_exit_layer.cpu().numpy(), scores.segment_doc
    bounds = numpy.searchsorted(owner, numpy.arange(n_docs + 1))
    per_doc = [layers[bounds[i] : bounds[i + 1]] for i in range(n_docs)]
    exit_np = numpy.asarray([int(x.max()) if len(x) else -1 for x in per_doc], dtype="int64")
    return exit_np, [x.tolist() for x in per_doc]
