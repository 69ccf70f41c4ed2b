"""Entity-score calibration, pure numpy: what calibrate-confidence minimizes and what
benchmark-confidence reports (scripts/confidence.py runs the model; nothing here does).

An entity's score is its probability under the model; the scores are *calibrated* when,
among the entities scored about p, a share p is right (exact span and label). The inputs
are two aligned arrays: ``score`` (float) and ``correct`` (bool), one entry per predicted
entity, and ``n_gold``, the gold entities of the same docs (recall's denominator).
"""
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy

N_BINS = 10
# The temperatures tried first: 2^(k/3) from 0.25 to 8, 1.0 exactly among them, so the
# fitted temperature's log-loss is never above the uncalibrated one's.
TEMPERATURE_GRID = tuple(2.0 ** (k / 3) for k in range(-6, 10))
LOG_TOLERANCE = 1e-3  # golden-section search stops when the bracket is this narrow in log T
# PR curve thresholds: every 0.01, and finer near 1, where a sharp model's scores crowd.
PR_THRESHOLDS = tuple(k / 100 for k in range(100)) + (0.995, 0.999, 1.0)
EPS = 1e-7  # scores are clipped to [EPS, 1 - EPS] in the log-loss, so a sure mistake costs ~16, not inf


def log_loss(score: numpy.ndarray, correct: numpy.ndarray) -> float:
    """Mean binary cross-entropy of the scores against correctness (what the temperature minimizes)."""
    if not len(score):
        raise ValueError("no entities: the log-loss is undefined")
    p = numpy.clip(score.astype("float64"), EPS, 1.0 - EPS)
    return float(-numpy.mean(numpy.where(correct, numpy.log(p), numpy.log1p(-p))))


def reliability(score: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS) -> Dict[str, Any]:
    """Expected calibration error over ``n_bins`` equal-width score bins ([lo, hi), the last
    closed), and the bins: ECE = sum over bins of (share of entities) * |accuracy - mean score|."""
    edges = numpy.linspace(0.0, 1.0, n_bins + 1)
    which = numpy.clip(numpy.digitize(score, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        conf = float(score[inside].mean()) if n else None
        acc = float(correct[inside].mean()) if n else None
        if n:
            ece += n / len(score) * abs(acc - conf)  # type: ignore[operator]
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": bins}


def summary(score: numpy.ndarray, correct: numpy.ndarray) -> Dict[str, Any]:
    """Everything the reports say of one set of scores: counts, log-loss, mean score of the
    right and of the wrong entities (right ones should score higher), ECE and its bins."""
    return {
        "n_entities": int(len(score)),
        "n_correct": int(correct.sum()),
        "log_loss": log_loss(score, correct),
        "mean_score_correct": float(score[correct].mean()) if correct.any() else None,
        "mean_score_wrong": float(score[~correct].mean()) if (~correct).any() else None,
        **reliability(score, correct),
    }


def fit_temperature(
    loss: Callable[[float], float], grid: Sequence[float] = TEMPERATURE_GRID, tol: float = LOG_TOLERANCE
) -> Tuple[float, List[Tuple[float, float]]]:
    """The temperature with the least ``loss``: the grid first (log-loss need not be
    unimodal far from its minimum), then a golden-section search in log T between the
    best grid point's neighbours. Returns it and every (temperature, loss) evaluated,
    by temperature; the best is the least of all of them, so never worse than any grid point."""
    seen: Dict[float, float] = {}

    def f(log_t: float) -> float:
        t = math.exp(log_t)
        if t not in seen:
            seen[t] = float(loss(t))
        return seen[t]

    for t in grid:
        seen[t] = float(loss(t))
    i = min(range(len(grid)), key=lambda k: seen[grid[k]])
    a, b = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    best = min(seen, key=lambda t: (seen[t], abs(math.log(t))))  # ties: the one nearest 1
    return best, sorted(seen.items())


def pr_curve(
    score: numpy.ndarray, correct: numpy.ndarray, n_gold: int, thresholds: Sequence[float] = PR_THRESHOLDS
) -> List[Dict[str, float]]:
    """Precision and recall of the entities scored at least t, for each threshold t that
    keeps any (t = 0 keeps them all: the pipeline's own precision and recall)."""
    points = []
    for t in thresholds:
        kept = score >= t
        n = int(kept.sum())
        if n:
            right = int(correct[kept].sum())
            points.append({"threshold": float(t), "precision": right / n,
                           "recall": right / n_gold if n_gold else 0.0, "kept": n})  # fmt: skip
    return points


def recall_at(score: numpy.ndarray, correct: numpy.ndarray, n_gold: int, precision: float) -> Dict[str, Any]:
    """The most recall a score threshold gives while the kept entities' precision is at
    least ``precision``, over every distinct score as threshold (not a grid); the
    threshold is the lowest score kept (None, recall 0, when no threshold reaches it)."""
    order = numpy.argsort(-score, kind="stable")
    ranked = score[order]
    right = numpy.cumsum(correct[order])
    kept = numpy.arange(1, len(order) + 1)
    ends = numpy.flatnonzero(numpy.append(ranked[1:] != ranked[:-1], True))  # cut after a run of equal scores
    ok = ends[right[ends] >= precision * kept[ends] - 1e-12]
    if not len(ok) or not n_gold:
        return {"precision": precision, "recall": 0.0, "threshold": None, "kept": 0}
    best = ok[numpy.argmax(right[ok])]  # the first of equal recalls: fewest kept, highest precision
    return {"precision": precision, "recall": float(right[best] / n_gold), "threshold": float(ranked[best]),
            "kept": int(kept[best])}  # fmt: skip


def overhead(on: Optional[float], off: Optional[float]) -> Optional[float]:
    """The share of words/s that scores cost: 1 - on/off (negative: on was faster)."""
    if on is None or not off:
        return None
    return 1.0 - on / off
