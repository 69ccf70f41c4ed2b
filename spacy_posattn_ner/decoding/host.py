"""Decoding a CPU batch in numpy: the same answers as the torch path, a fraction of its fixed cost.

On a one-sentence ``nlp(text)`` decoding is some eighty array operations on arrays of a few
hundred numbers, so their fixed cost is the whole cost, and a numpy operation costs a
fraction of a torch one. This module holds numpy versions of what ``predictions.Decoder``
runs on the CPU with entity scores on and no candidate spans: the constrained Viterbi
(``best_paths``/``viterbi``, step for step: max and add are exact, so the paths are the
same) and each entity's probability (``Lattice.span_marginals`` over the probability-space
forward–backward of ``marginals._probability_recursions``, whose float64 arrays are used
as they are rather than rounded to float32 first). Where those recursions cannot be
trusted (underflow) the caller falls back to the torch ``Lattice``, as ``marginals`` does.
GPU batches, gradients and candidate spans keep the torch path.
"""
from typing import Optional, Tuple

import numpy

from .marginals import NEG, _probability_recursions
from .viterbi import PREFIXES


def best_paths(lp: numpy.ndarray, lengths: numpy.ndarray, allowed: numpy.ndarray, start: numpy.ndarray,
               end: numpy.ndarray) -> numpy.ndarray:  # fmt: skip
    """``viterbi.best_paths`` in numpy: each doc's argmax path where it is allowed, else
    the constrained Viterbi path. ``lp`` (B, T, K) float; → (B, T) int64."""
    B, T, _ = lp.shape
    path = lp.argmax(axis=-1)
    if B == 0 or T == 0:
        return path
    inside = numpy.arange(T)[None, :] < lengths[:, None]
    empty = lengths <= 0
    ok = start[path[:, 0]] | empty
    if T > 1:
        ok &= (allowed[path[:, :-1], path[:, 1:]] | ~inside[:, 1:]).all(axis=1)
    last = path[numpy.arange(B), numpy.clip(lengths - 1, 0, None)]
    ok &= end[last] | empty
    bad = numpy.flatnonzero(~ok)
    if len(bad):
        path[bad] = viterbi(lp[bad], lengths[bad], allowed, start, end)
    return path


def viterbi(lp: numpy.ndarray, lengths: numpy.ndarray, allowed: numpy.ndarray, start: numpy.ndarray,
            end: numpy.ndarray) -> numpy.ndarray:  # fmt: skip
    """``viterbi.viterbi`` in numpy, step for step (the same float32 sums, the first
    maximum on ties)."""
    B, T, K = lp.shape
    neg = numpy.finfo(lp.dtype).min / 4
    trans = numpy.where(allowed, 0.0, neg).astype(lp.dtype)
    score = lp[:, 0] + numpy.where(start, 0.0, neg).astype(lp.dtype)
    identity = numpy.broadcast_to(numpy.arange(K), (B, K))
    backpointers = []
    for t in range(1, T):
        cand = score[:, :, None] + trans[None]
        arg = cand.argmax(axis=1)
        best = numpy.take_along_axis(cand, arg[:, None, :], axis=1)[:, 0]
        active = (t < lengths)[:, None]
        score = numpy.where(active, best + lp[:, t], score)
        backpointers.append(numpy.where(active, arg, identity))
    score = score + numpy.where(end, 0.0, neg).astype(lp.dtype)
    path = numpy.empty((B, T), dtype="int64")
    path[:, T - 1] = score.argmax(axis=1)
    rows = numpy.arange(B)
    for t in range(T - 2, -1, -1):
        path[:, t] = backpointers[t][rows, path[:, t + 1]]
    return path


def log_softmax(x: numpy.ndarray) -> numpy.ndarray:
    top = x.max(axis=-1, keepdims=True)
    shifted = x - top
    return shifted - numpy.log(numpy.exp(shifted).sum(axis=-1, keepdims=True))


def entity_probabilities(
    lp: numpy.ndarray, lengths: numpy.ndarray, masks: Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray],
    entities: Tuple[numpy.ndarray, ...], temperature: float,
) -> Optional[numpy.ndarray]:
    """Each entity's probability (``Lattice.span_marginals``) as float32, or None where the
    probability-space recursions underflow (the caller then runs the torch ``Lattice``).
    ``lp`` (B, T, K) are the masked log-probs, ``entities`` (doc, start, end, label) arrays."""
    B, T, K = lp.shape
    x = lp.astype(numpy.float32)
    if temperature != 1.0:
        x = log_softmax(x / numpy.float32(temperature))
    x = numpy.where(numpy.arange(T)[None, :, None] < lengths[:, None, None], x, 0.0).astype(numpy.float32)
    allowed, start, end = masks
    costs = [numpy.where(m, 0.0, NEG).astype(numpy.float32) for m in (allowed, start, end)]
    arrays = _probability_recursions(x, lengths, *costs)
    if arrays is None:
        return None
    log_alpha_hat, log_beta_hat, emit = arrays[0], arrays[1], arrays[2]
    lt = costs[0].astype(numpy.float64)
    doc, s, e, label = (numpy.asarray(a, dtype="int64") for a in entities)
    if not len(doc):
        return numpy.zeros((0,), dtype=numpy.float32)
    tag = {p: 1 + len(PREFIXES) * label + i for i, p in enumerate(PREFIXES)}
    n = e - s
    single = n == 1
    first = numpy.where(single, tag["U"], tag["B"])
    mid = tag["I"]
    last = numpy.where(single, tag["U"], tag["L"])
    score = log_alpha_hat[doc, s, first] + log_beta_hat[doc, e - 1, last]
    run_trans = lt[first, mid] + lt[mid, last] + numpy.where(n > 3, lt[mid, mid], 0.0)
    trans = numpy.where(n == 2, lt[first, last], run_trans)
    score = score + numpy.where(single, 0.0, emit[doc, e - 1, last] + trans)
    count = numpy.clip(n - 2, 0, None)  # the I run
    if count.any():
        span = numpy.repeat(numpy.arange(len(n)), count)
        pos = s[span] + 1 + numpy.arange(len(span)) - (numpy.cumsum(count) - count)[span]
        score = score + numpy.bincount(span, weights=emit[doc[span], pos, mid[span]], minlength=len(n))
    return numpy.minimum(numpy.exp(score), 1.0).astype(numpy.float32)
