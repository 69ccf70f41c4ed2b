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
