"""BILUO tag set, its transition constraints, and batched constrained Viterbi.

Decoding only ever follows allowed transitions (``B-x`` → ``I-x``/``L-x``, an entity
never starts with ``I`` or ``L``...), so ``doc.ents`` is always a valid segmentation.
"""
from typing import List, Sequence, Tuple

import numpy
import torch

PREFIXES = ("B", "I", "L", "U")


def make_tags(labels: Sequence[str]) -> List[str]:
    """``O`` first, then B/I/L/U for each label in order."""
    return ["O"] + [f"{p}-{label}" for label in labels for p in PREFIXES]


def transition_masks(tags: Sequence[str]) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Allowed (prev, next) transitions, allowed first tags, allowed last tags."""
    n = len(tags)
    allowed = numpy.zeros((n, n), dtype=bool)
    parts = [(t, None) if t == "O" else tuple(t.split("-", 1)) for t in tags]
    for i, (p1, l1) in enumerate(parts):
        for j, (p2, l2) in enumerate(parts):
            if p1 in ("B", "I"):
                allowed[i, j] = p2 in ("I", "L") and l1 == l2
            else:  # O, L, U close whatever was open
                allowed[i, j] = p2 in ("O", "B", "U")
    start = numpy.asarray([p in ("O", "B", "U") for p, _ in parts])
    end = numpy.asarray([p in ("O", "L", "U") for p, _ in parts])
    return allowed, start, end


def viterbi(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    allowed: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Best allowed tag path per sequence. ``log_probs``: (B, T, K) → (B, T) tag ids.

    Vectorized over the batch and the tags; the one loop runs over positions.
    Positions past a sequence's length carry its scores through unchanged.
    """
    B, T, K = log_probs.shape
    neg = torch.finfo(log_probs.dtype).min / 4
    trans = torch.where(allowed, 0.0, neg).to(log_probs.dtype)
    score = log_probs[:, 0] + torch.where(start, 0.0, neg).to(log_probs.dtype)
    identity = torch.arange(K, device=log_probs.device).expand(B, K)
    backpointers = []
    for t in range(1, T):
        cand = score[:, :, None] + trans[None]  # (B, K_prev, K_next)
        best, arg = cand.max(dim=1)
        active = (t < lengths)[:, None]
        score = torch.where(active, best + log_probs[:, t], score)
        backpointers.append(torch.where(active, arg, identity))
    # the end constraint applies at each sequence's own last position, which the
    # carried-through scores still hold at T - 1
    score = score + torch.where(end, 0.0, neg).to(log_probs.dtype)
    path = torch.empty((B, T), dtype=torch.long, device=log_probs.device)
    path[:, T - 1] = score.argmax(dim=1)
    for t in range(T - 2, -1, -1):
        path[:, t] = backpointers[t].gather(1, path[:, t + 1 : t + 2]).squeeze(1)
    return path


def best_paths(log_probs: torch.Tensor, lengths: torch.Tensor, allowed: torch.Tensor, start: torch.Tensor,
               end: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``viterbi``'s answer, with Viterbi run only where it can change anything.

    Allowed transitions cost nothing, so when a sequence's per-token argmax already
    is an allowed path it is the best path of all, constrained or not; only the
    sequences whose argmax breaks a constraint need the dynamic programme. On
    trained models that is a small share of docs. (Exact up to ties between
    equally scored paths.) ``log_probs``: (B, T, K) → (B, T) tag ids.
    """
    B, T, _ = log_probs.shape
    path = log_probs.argmax(dim=-1)
    if B == 0 or T == 0:
        return path
    inside = torch.arange(T, device=path.device)[None, :] < lengths[:, None]
    empty = lengths <= 0
    ok = start[path[:, 0]] | empty
    if T > 1:
        ok &= (allowed[path[:, :-1], path[:, 1:]] | ~inside[:, 1:]).all(dim=1)
    last = path.gather(1, (lengths - 1).clamp(min=0)[:, None].long()).squeeze(1)
    ok &= end[last] | empty
    bad = torch.nonzero(~ok).flatten()
    if len(bad):
        path[bad] = viterbi(log_probs[bad], lengths[bad], allowed, start, end)
    return path


def entity_bounds(tag_ids: Sequence[numpy.ndarray]) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Entities of valid BILUO paths, for a whole batch in one pass.

    Returns four aligned int arrays: each entity's doc index, start token, end token
    (exclusive) and label index (the tag set's label order), sorted by doc then start.
    """
    empty = numpy.zeros((0,), dtype="int64")
    if not len(tag_ids):
        return empty, empty, empty, empty
    lengths = numpy.asarray([len(ids) for ids in tag_ids], dtype="int64")
    ids = numpy.concatenate([numpy.asarray(ids, dtype="int64") for ids in tag_ids]) if lengths.sum() else empty
    prefix = numpy.where(ids > 0, (ids - 1) % len(PREFIXES), -1)
    starts = numpy.flatnonzero((prefix == 0) | (prefix == 3))  # B or U
    ends = numpy.flatnonzero((prefix == 2) | (prefix == 3)) + 1  # L or U
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)])
    doc = numpy.searchsorted(offsets, starts, side="right") - 1
    return doc, starts - offsets[doc], ends - offsets[doc], (ids[starts] - 1) // len(PREFIXES)
