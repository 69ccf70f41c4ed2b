"""Calibration of a trained pipeline on dev: the exit threshold (speed against F1) and the
temperature of the entity scores. The console commands ``spacy-posattn-ner calibrate-exit``
and ``calibrate-confidence`` (``cli.py``) call these; the project's benchmark scripts
measure with them too.

Exit threshold: the pipeline runs at every threshold of a grid (0 and 1 always among them);
``choose_exit_threshold`` picks the fastest whose F1 is at most ``max_loss`` points below
never-exit (1.0). Words/s: the words of fresh Docs built from the gold words divided by the
wall-clock seconds of one ``nlp.pipe`` pass (no tokenizer runs; one untimed warm-up batch;
the best of ``repeats`` passes).

Confidence: an entity's score is its probability under the model; the scores are
*calibrated* when, among the entities scored about p, a share p is right (exact span and
label). ``fit_temperature`` minimizes the log-loss of entity correctness;
``expected_calibration_error`` and ``reliability`` say how well they are calibrated.
"""
import math
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Corpus, Example

from .model.nodes import hand_settings

COMPONENT = "posattn_ner"
NEVER_EXIT, ALWAYS_FIRST = 1.0, 0.0
DEFAULT_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)
EPSILON = 1e-9  # float slack when comparing F1 losses with a maximum
SPEED_DEFINITION = "nlp.pipe"
N_BINS = 10
# 2^(k/3) from 0.25 to 8, 1.0 exactly among them: the fitted log-loss is never above the uncalibrated one's
TEMPERATURE_GRID = tuple(2.0 ** (k / 3) for k in range(-6, 10))
LOG_TOLERANCE = 1e-3
EPS = 1e-7  # scores clipped to [EPS, 1 - EPS] in the log-loss: a sure mistake costs ~16, not inf


class CalibrationError(ValueError):
    """The pipeline or data cannot be calibrated (the message says why, naming the input)."""


# -- data ------------------------------------------------------------------------------------
def read_gold(nlp: Language, path, limit: int = 0) -> List[Doc]:
    """The gold docs of a .spacy file (the first ``limit``, 0 = all), empty docs left out."""
    docs = [eg.reference for eg in Corpus(path, limit=limit)(nlp)]
    if not docs:
        raise CalibrationError(f"{path}: no documents")
    return docs


def fresh_docs(refs: Sequence[Doc]) -> List[Doc]:
    """Unannotated Docs of the same words and spaces, in the refs' vocab."""
    return [Doc(ref.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref]) for ref in refs]


def get_component(nlp: Language, where: str, need_exits: bool = False) -> Any:
    hint = "early exit needs a posattn_ner trained with spacy-posattn-ner.PosAttnTagger.v2 or .v3"
    if COMPONENT not in nlp.pipe_names:
        raise CalibrationError(f"{where}: no '{COMPONENT}' component (pipeline: {nlp.pipe_names})")
    ner = nlp.get_pipe(COMPONENT)
    if need_exits and not ner.exit_layers:
        arch = nlp.config["components"][COMPONENT]["model"].get("@architectures", "?")
        raise CalibrationError(f"{where}: the '{COMPONENT}' component has no exit layers ({arch}); {hint}")
    return ner


# -- exit threshold --------------------------------------------------------------------------
def parse_thresholds(spec: Optional[str], include: Sequence[float] = ()) -> List[float]:
    """'0.5,0.9' -> sorted distinct floats >= 0, plus ``include``; None or '' -> the default grid."""
    values = set(float(x) for x in include)
    if spec is None or not spec.strip():
        return sorted(values | set(DEFAULT_THRESHOLDS))
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise CalibrationError(f"--thresholds: {item!r} is not a number") from None
        if not value >= 0.0:
            raise CalibrationError(f"--thresholds: {item!r}: thresholds must be >= 0")
        values.add(value)
    return sorted(values)


def measure(nlp: Language, refs: Sequence[Doc], *, batch_size: int, repeats: int = 1,
            layer_keys: Sequence[int] = ()) -> Dict[str, Any]:  # fmt: skip
    """F1 (spaCy's Scorer on the first timed pass) and words/s of ``nlp`` on ``refs``, and
    the exit layers its segments used (see the module doc)."""
    list(nlp.pipe(fresh_docs(refs[:batch_size]), batch_size=batch_size))
    seconds: List[float] = []
    first: List[Doc] = []
    for _ in range(max(1, repeats)):
        docs = fresh_docs(refs)
        start = time.perf_counter()
        out = list(nlp.pipe(docs, batch_size=batch_size))
        seconds.append(time.perf_counter() - start)
        first = first or out
    scores = Scorer(nlp).score([Example(doc, ref) for doc, ref in zip(first, refs)])
    n_words = sum(len(doc) for doc in first)
    row: Dict[str, Any] = {key: float(scores.get(key) or 0.0) for key in ("ents_f", "ents_p", "ents_r")}
    row.update(words_per_second=n_words / min(seconds), pass_seconds=seconds, n_docs=len(first), n_words=n_words)
    layers = [k for doc in first for k in (doc._.exit_layers if doc._.exit_layers is not None else [doc._.exit_layer])]
    row.update(exit_layer_stats(layers, layer_keys))
    return row


def exit_layer_stats(layers: Sequence[Optional[int]], keys: Sequence[int] = ()) -> Dict[str, Any]:
    """Mean backbone layers run per segment, and the share of segments per exit layer."""
    ran = [layer for layer in layers if layer is not None]
    if not ran and not keys:
        return {"mean_exit_layer": None}
    counts = Counter(ran)
    share = {str(k): (counts[k] / len(ran) if ran else 0.0) for k in sorted(set(keys) | set(counts))}
    return {"mean_exit_layer": sum(ran) / len(ran) if ran else None, "exit_layer_share": share}


def run_exit_grid(nlp: Language, ner: Any, refs: Sequence[Doc], thresholds: Sequence[float], batch_size: int,
                  repeats: int = 1, log: Callable[[str], None] = lambda text: None) -> List[Dict[str, Any]]:  # fmt: skip
    """``measure`` at every threshold; the pipeline's own threshold is restored afterwards."""
    rows = []
    for threshold in thresholds:
        with ner.settings.override(exit_threshold=threshold):
            row = {"threshold": float(threshold)}
            row.update(measure(nlp, refs, batch_size=batch_size, repeats=repeats, layer_keys=ner.exit_layers))
        log(f"threshold {threshold:g}: F1 {row['ents_f']:.4f}, {row['words_per_second']:,.0f} words/s, "
            f"mean exit layer {row['mean_exit_layer']}")  # fmt: skip
        rows.append(row)
    return rows


def reference_row(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The never-exit row every F1 loss is measured against."""
    for row in rows:
        if row["threshold"] == NEVER_EXIT:
            return row
    raise CalibrationError("no row for threshold 1.0 (never exit)")


def f1_loss_points(row: Dict[str, Any], rows: Sequence[Dict[str, Any]]) -> float:
    """F1 points ``row`` loses against never-exit (negative: it gains)."""
    return (reference_row(rows)["ents_f"] - row["ents_f"]) * 100.0


def choose_exit_threshold(rows: Sequence[Dict[str, Any]], max_loss: float) -> Dict[str, Any]:
    """The fastest row at most ``max_loss`` F1 points below never-exit (ties: fewer layers
    run, then the higher threshold)."""
    allowed = [r for r in rows if f1_loss_points(r, rows) <= max_loss + EPSILON]
    return max(allowed, key=lambda r: (r["words_per_second"], -(r["mean_exit_layer"] or 0.0), r["threshold"]))


# -- confidence ------------------------------------------------------------------------------
def log_loss(score: numpy.ndarray, correct: numpy.ndarray) -> float:
    """Mean binary cross-entropy of the scores against correctness (what the temperature minimizes)."""
    if not len(score):
        raise CalibrationError("no entities: the log-loss is undefined")
    p = numpy.clip(score.astype("float64"), EPS, 1.0 - EPS)
    return float(-numpy.mean(numpy.where(correct, numpy.log(p), numpy.log1p(-p))))


def reliability(score: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS) -> Dict[str, Any]:
    """ECE over ``n_bins`` equal-width score bins ([lo, hi), the last closed) and the bins:
    ECE = sum over bins of (share of entities) * |accuracy - mean score|."""
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


def expected_calibration_error(score: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS) -> float:
    return reliability(score, correct, n_bins)["ece"]


def summary(score: numpy.ndarray, correct: numpy.ndarray) -> Dict[str, Any]:
    """Counts, log-loss, mean score of the right and of the wrong entities, ECE and its bins."""
    return {
        "n_entities": int(len(score)),
        "n_correct": int(correct.sum()),
        "log_loss": log_loss(score, correct),
        "mean_score_correct": float(score[correct].mean()) if correct.any() else None,
        "mean_score_wrong": float(score[~correct].mean()) if (~correct).any() else None,
        **reliability(score, correct),
    }


def fit_temperature(loss: Callable[[float], float], grid: Sequence[float] = TEMPERATURE_GRID,
                    tol: float = LOG_TOLERANCE) -> Tuple[float, List[Tuple[float, float]]]:  # fmt: skip
    """The temperature with the least ``loss``: the grid first, then a golden-section search
    in log T between the best grid point's neighbours. Returns it and every (temperature,
    loss) evaluated; the best is the least of all, so never worse than any grid point."""
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


def run_model(nlp: Language, ner: Any, refs: Sequence[Doc], batch_size: int) -> List[Tuple[List[Doc], Any, list, list]]:
    """One pass of the model (the components before posattn_ner first): per batch the docs,
    the tag scores, the gold entities and the tokens inside entities given before it ran."""
    before = nlp.pipe_names[: nlp.pipe_names.index(COMPONENT)]
    batches = []
    for i in range(0, len(refs), batch_size):
        chunk = refs[i : i + batch_size]
        with nlp.select_pipes(enable=before):
            docs = list(nlp.pipe(fresh_docs(chunk), batch_size=batch_size))
        given = []
        for doc in docs:
            taken = numpy.zeros(len(doc), dtype=bool)
            for ent in doc.ents:
                taken[ent.start : ent.end] = True
            given.append(taken)
        gold = [{(e.start, e.end, e.label_) for e in ref.ents} for ref in chunk]
        hand_settings(ner.model, ner.settings)
        batches.append((docs, ner.model.predict(docs), gold, given))
    return batches


def scored_entities(ner: Any, batches: Sequence[tuple], temperature: float) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Every predicted entity (less those overlapping given ones), its score at
    ``temperature`` and whether it is right."""
    scores: List[float] = []
    correct: List[bool] = []
    with ner.settings.override(scores=True, candidate_threshold=None, temperature=temperature):
        for docs, tag_scores, gold, given in batches:
            pred = ner.decode(tag_scores, docs)
            if pred.entity_scores is None:
                continue
            for k, (d, s, e, label) in enumerate(zip(*(a.tolist() for a in pred.entities))):
                if not given[d][s:e].any():
                    scores.append(float(pred.entity_scores[k]))
                    correct.append((s, e, ner.labels[label]) in gold[d])
    return numpy.asarray(scores, dtype="float64"), numpy.asarray(correct, dtype=bool)


def calibrate_temperature(nlp: Language, ner: Any, refs: Sequence[Doc], batch_size: int = 256) -> Dict[str, Any]:
    """Fit the temperature on ``refs`` and set it on ``ner``; what the report says of it
    (the fields of calibrate-confidence's report, without the head and paths)."""
    batches = run_model(nlp, ner, refs, batch_size)
    tried: Dict[float, Dict[str, float]] = {}

    def loss(t: float) -> float:
        found = scored_entities(ner, batches, t)
        if not len(found[0]):
            raise CalibrationError("the pipeline predicts no entities on these docs: nothing to calibrate")
        tried[t] = {"temperature": t, "log_loss": log_loss(*found), "ece": summary(*found)["ece"]}
        return tried[t]["log_loss"]

    best, _ = fit_temperature(loss)
    before, after = summary(*scored_entities(ner, batches, 1.0)), summary(*scored_entities(ner, batches, best))
    ner.temperature = best
    return {"n_docs": len(refs), "temperature": best, "at_range_edge": best in (TEMPERATURE_GRID[0], TEMPERATURE_GRID[-1]),
            "search": [tried[t] for t in sorted(tried)], "before": before, "after": after}  # fmt: skip
