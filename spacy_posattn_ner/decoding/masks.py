"""Where an entity may not begin, end or run: the additive mask decoding adds to the log-probs.

Two rules, both independent of the model, so that every pipeline obeys them:

- an entity never begins or ends on a token with neither a letter nor a digit, unless the
  token is punctuation: whitespace, a zero-width space or other invisible character, an
  emoji or another symbol. B, L and U are forbidden there, so no entity consists only of
  such tokens; it may still run *through* one (``New \\n York``). Punctuation is left to
  the model: forbidding it too would change every score of every pipeline (each sentence
  has some, and the forward-backward normalizer sums over paths with entity edges there;
  measured up to 8.5e-4 on the 3b33c82 fixtures) and cut entities such as ``Yahoo !``;
- where a doc's sentence starts are set, an entity never runs over a sentence start
  (I and L are forbidden there), so scoring per sentence or per doc finds the same entities.
"""
import unicodedata
from functools import lru_cache
from typing import Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from ..segments import segment_starts

BANNED = -1e4  # finite: marginals stay free of inf - inf (marginals.py)


@lru_cache(maxsize=1 << 16)  # thread-safe; the same few thousand strings recur
def can_bound_entity(text: str) -> bool:
    """Whether an entity may begin or end on a token of this text: it has a letter or a
    digit, or it is all punctuation (Unicode categories P*)."""
    return any(ch.isalnum() for ch in text) or all(unicodedata.category(ch)[0] == "P" for ch in text)


def edge_and_inside(tags: Sequence[str]):
    """Per tag: does it begin or end an entity (B, L, U), does it continue one (I, L)."""
    return _edge_and_inside(tuple(tags))


@lru_cache(maxsize=64)  # one tag set per pipeline
def _edge_and_inside(tags: Tuple[str, ...]):
    prefix = numpy.asarray([t.split("-")[0] for t in tags])
    return numpy.isin(prefix, ("B", "L", "U")), numpy.isin(prefix, ("I", "L"))


def boundary_mask(docs: Sequence[Doc], longest: int, tags: Sequence[str]) -> torch.Tensor:
    """(B, T, K) float32: 0 where a tag is allowed, ``BANNED`` where the rules forbid it."""
    return torch.from_numpy(boundary_mask_array(docs, longest, tags))


def boundary_mask_array(docs: Sequence[Doc], longest: int, tags: Sequence[str]) -> numpy.ndarray:
    """``boundary_mask`` as a numpy array."""
    no_edge = numpy.zeros((len(docs), longest), dtype=bool)
    start = numpy.zeros((len(docs), longest), dtype=bool)
    for i, doc in enumerate(docs):
        if len(doc):
            no_edge[i, : len(doc)] = [not can_bound_entity(t.text) for t in doc]
            start[i, 1 : len(doc)] = segment_starts(doc)[1:]
    edge, inside = edge_and_inside(tags)
    banned = (no_edge[:, :, None] & edge[None, None, :]) | (start[:, :, None] & inside[None, None, :])
    return numpy.where(banned, BANNED, 0.0).astype("float32")
