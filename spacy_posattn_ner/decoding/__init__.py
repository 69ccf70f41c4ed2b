"""Decoding: BILUO tags and their constraints, boundary masks, Viterbi, marginals, predictions."""
from .marginals import Lattice, candidate_spans, span_marginals
from .masks import boundary_mask, can_bound_entity
from .predictions import Decoder, Predictions, exit_layers
from .viterbi import PREFIXES, best_paths, entity_bounds, make_tags, transition_masks, viterbi

__all__ = [
    "Decoder", "Lattice", "PREFIXES", "Predictions", "best_paths", "boundary_mask", "can_bound_entity",
    "candidate_spans", "entity_bounds", "exit_layers", "make_tags", "span_marginals", "transition_masks", "viterbi",
]
