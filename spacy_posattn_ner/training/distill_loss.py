"""Teacher → student loss: KL(teacher || student) at a temperature, plus gold cross-entropy.

Soft targets at temperature T are scaled by T² (Hinton et al. 2015) so that their
gradients keep the size of the hard loss's as T changes. Both terms are token means:
the KL over every token with a teacher distribution, the cross-entropy over tokens
whose gold tag is known (-1: unknown).
"""
from typing import Optional, Tuple

import numpy


def _log_softmax(x: numpy.ndarray) -> numpy.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - numpy.log(numpy.exp(x).sum(axis=-1, keepdims=True))


def get_teacher_student_loss(
    student_scores: numpy.ndarray,
    teacher_probs: numpy.ndarray,
    mask: numpy.ndarray,
    *,
    temperature: float = 1.0,
    gold: Optional[numpy.ndarray] = None,
    soft_weight: float = 1.0,
    gold_weight: float = 0.5,
) -> Tuple[float, numpy.ndarray]:
    """Loss and its gradient in ``student_scores`` (padded logits (B, T, K)).

    ``teacher_probs`` (B, T, K): the teacher's distribution at ``temperature`` (rows
    past a doc's end ignored); ``mask`` (B, T) bool: tokens with a teacher target;
    ``gold`` (B, T) int tag ids, -1 where unknown (None: no gold term).
    """
    scores = student_scores.astype("float32")
    mask_f = mask.astype("float32")[..., None]
    n_soft = max(float(mask.sum()), 1.0)
    target = teacher_probs.astype("float32")
    target = target / numpy.maximum(target.sum(axis=-1, keepdims=True), 1e-12)
    log_q = _log_softmax(scores / temperature)
    kl = (target * (numpy.log(numpy.maximum(target, 1e-12)) - log_q) * mask_f).sum() / n_soft
    d = soft_weight * temperature * (numpy.exp(log_q) - target) * mask_f / n_soft  # T² · (1/T) · (q - p)
    loss = soft_weight * temperature**2 * float(kl)
    if gold is not None and gold_weight > 0:
        known = gold >= 0
        n_gold = max(float(known.sum()), 1.0)
        log_p = _log_softmax(scores)
        onehot = numpy.eye(scores.shape[-1], dtype="float32")[numpy.where(known, gold, 0)] * known[..., None]
        loss += gold_weight * float(-(onehot * log_p).sum() / n_gold)
        d = d + gold_weight * (numpy.exp(log_p) - onehot) * known[..., None] / n_gold
    return loss, d.astype("float32")
