"""Training losses over the tagger's padded scores. Each returns ``(loss, d_scores)`` with
the gradient in the scores' shape, as ``TrainablePipe.get_loss`` does.

- ``token_loss``: softmax cross-entropy against the gold BILUO tag of every token whose
  gold tag is known, averaged over those tokens; with early exits, every exit counts
  equally (the mean over exits of each exit's token mean);
- exit self-distillation (``exit_distill`` > 0): an earlier exit's target mixes the gold
  tag with the last exit's predicted distribution, held fixed, so the deeper exit teaches
  the shallow one where the gold tag alone is a hard target for the features it sees;
- ``distill_loss``: a student learning from a teacher's tag distributions (knowledge
  distillation, Hinton et al. 2015): T² · KL(teacher_T || student_T) over every token
  with a teacher distribution, plus ``gold_weight`` times the token loss where gold is
  known. T² keeps the soft term's gradients the size of the hard term's as T changes.
- ``sequence_loss`` (``objective = "sequence"``): the gold path's negative log-likelihood
  over the constrained lattice decoding searches (a CRF objective on the heads).
"""
from typing import Tuple

import numpy
from thinc.api import Ops


def token_loss(ops: Ops, scores, gold: numpy.ndarray, exit_distill: float = 0.0) -> Tuple[float, numpy.ndarray]:
    """``scores``: ``(n_docs, T, K)`` or ``(n_exits, n_docs, T, K)`` logits; ``gold``:
    ``(n_docs, T)`` tag ids, -1 where unknown (padding, missing annotation)."""
    xp = ops.xp
    valid = gold >= 0
    n_exits = scores.shape[0] if scores.ndim == 4 else 1
    n_valid = max(int(valid.sum()), 1) * n_exits
    probs = ops.softmax(scores, axis=-1)
    valid_x = ops.asarray(valid)
    targets = xp.eye(scores.shape[-1], dtype="float32")[ops.asarray(numpy.where(valid, gold, 0))]
    if n_exits > 1 and exit_distill > 0:
        targets = exit_distill_targets(xp, targets, probs, exit_distill)
    d_scores = (probs - targets) * valid_x[..., None] / n_valid
    log_probs = xp.log(xp.clip(probs, 1e-12, 1.0))
    loss = float(-((targets * log_probs).sum(axis=-1) * valid_x).sum() / n_valid)
    return loss, d_scores.astype("float32")


def exit_distill_targets(xp, gold_targets, probs, alpha: float):
    """Targets per exit ``(n_exits, n_docs, T, K)``: the earlier exits learn
    ``(1 - alpha) * gold + alpha * last exit's probs``; the last exit learns the gold tags."""
    soft = (1.0 - alpha) * gold_targets + alpha * probs[-1]
    return xp.concatenate([xp.broadcast_to(soft, probs[:-1].shape), gold_targets[None]], axis=0)


def distill_loss(
    ops: Ops, scores, teacher_log_probs: numpy.ndarray, has_teacher: numpy.ndarray, gold: numpy.ndarray,
    temperature: float, gold_weight: float,
) -> Tuple[float, numpy.ndarray]:
    """``scores``: ``(n_docs, T, K)`` (or ``(n_exits, n_docs, T, K)``: every exit learns
    the same targets) logits; ``teacher_log_probs``: ``(n_docs, T, K)`` the teacher's
    log-probabilities at temperature 1; ``has_teacher``: ``(n_docs, T)`` bool; ``gold``:
    ``(n_docs, T)`` tag ids, -1 where unknown."""
    xp = ops.xp
    n_exits = scores.shape[0] if scores.ndim == 4 else 1
    soft = ops.asarray(has_teacher.astype("float32"))[..., None]
    n_soft = max(float(has_teacher.sum()), 1.0) * n_exits
    target = ops.softmax(ops.asarray(teacher_log_probs.astype("float32")) / temperature, axis=-1)
    log_q = scores / temperature
    log_q = log_q - log_q.max(axis=-1, keepdims=True)
    log_q = log_q - xp.log(xp.exp(log_q).sum(axis=-1, keepdims=True))
    kl = (target * (xp.log(xp.clip(target, 1e-12, 1.0)) - log_q) * soft).sum() / n_soft
    # d/dz of T² · KL(p || softmax(z / T)) = T · (q - p)
    d_scores = temperature * (xp.exp(log_q) - target) * soft / n_soft
    loss = temperature**2 * float(kl)
    if gold_weight > 0 and (gold >= 0).any():
        gold_loss, d_gold = token_loss(ops, scores, gold)
        loss += gold_weight * gold_loss
        d_scores = d_scores + gold_weight * d_gold
    return loss, d_scores.astype("float32")


def sequence_loss(
    ops: Ops, scores, gold: numpy.ndarray, lengths: numpy.ndarray, masks: Tuple[numpy.ndarray, ...]
) -> Tuple[float, numpy.ndarray]:
    """The negative log-likelihood of each doc's gold path over the constrained BILUO lattice
    that decoding searches (a linear-chain CRF whose emissions are the tag log-probs and whose
    transitions are the BILUO constraints), per gold token, every exit counting equally.

    Its gradient in the logits is ``P(y_t = k) - [k = gold_t]``: the token loss's with the
    lattice's tag marginals in place of the softmax, so the heads learn the sequence model
    that Viterbi and the entity scores read, not tag by tag. The marginals come from the
    forward–backward of ``decoding.marginals`` (no autograd). A doc whose gold path is not
    complete (a token without a gold tag) or not allowed by the constraints has no likelihood
    to maximize: its tokens get the token loss, weighted by their count.
    ``scores``: ``(n_docs, T, K)`` or ``(n_exits, n_docs, T, K)`` logits; ``gold``:
    ``(n_docs, T)`` tag ids, -1 where unknown; ``lengths``: ``(n_docs,)``; ``masks``:
    ``decoding.viterbi.transition_masks`` of the tag set.
    """
    import torch

    from ..decoding.marginals import Lattice

    allowed, start, end = masks
    lengths = numpy.asarray(lengths, dtype="int64")
    arr = ops.to_numpy(scores).astype("float32")
    stacked = arr if arr.ndim == 4 else arr[None]
    n_exits, n_docs, T, K = stacked.shape
    inside = numpy.arange(T)[None, :] < lengths[:, None]
    known = gold >= 0
    n_total = max(int(known.sum()), 1) * n_exits
    safe = numpy.where(known, gold, 0)
    chained = numpy.ones(n_docs, dtype=bool) if T < 2 else (allowed[safe[:, :-1], safe[:, 1:]] | ~inside[:, 1:]).all(1)
    last = safe[numpy.arange(n_docs), numpy.clip(lengths - 1, 0, None)]
    sequence = (known | ~inside).all(1) & chained & start[safe[:, 0]] & end[last] & (lengths > 0)
    d_scores = numpy.zeros_like(stacked)
    loss = 0.0
    if sequence.any():
        rows = numpy.flatnonzero(sequence)
        onehot = numpy.eye(K, dtype="float32")[safe[rows]] * inside[rows][..., None]
        for e in range(n_exits):
            z = stacked[e, rows]
            log_probs = z - z.max(-1, keepdims=True)
            log_probs = log_probs - numpy.log(numpy.exp(log_probs).sum(-1, keepdims=True))
            with torch.no_grad():
                lattice = Lattice(torch.from_numpy(log_probs), lengths[rows], allowed, start, end)
                marginals = lattice.tag_marginals().numpy()
                log_z = lattice.log_z.numpy()
            gold_score = (log_probs * onehot).sum(axis=(1, 2))
            loss += float((log_z - gold_score).sum()) / n_total
            d_scores[e, rows] = (marginals - onehot) / n_total
    if (~sequence & known.any(1)).any():
        token_gold = numpy.where(sequence[:, None], -1, gold)
        token_part, d_token = token_loss(ops, arr, token_gold)
        weight = int((token_gold >= 0).sum()) * n_exits / n_total
        loss += weight * token_part
        d_scores = d_scores + weight * ops.to_numpy(d_token).reshape(d_scores.shape)
    out = d_scores if arr.ndim == 4 else d_scores[0]
    return loss, ops.asarray(out.astype("float32"))
