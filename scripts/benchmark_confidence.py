"""Entity scores on test (#15): how well they are calibrated before (T = 1) and after (the
pipeline's temperature, from ``spacy-posattn-ner calibrate-confidence``), what precision
and recall a score threshold buys, and what the scores cost in words/s.

    python -m scripts.benchmark_confidence training/posattn_ner/model-calibrated corpus/test.spacy \\
        --n-threads 2 --output metrics/benchmark_confidence.json

Built on ``spacy_posattn_ner.calibration``: the model runs once (``run_model``) and each
temperature re-decodes that output (``scored_entities``); an entity is right when its span
and label are exactly a gold entity's. The pipeline runs as saved (precision, exit
threshold). Writes JSON only; render-benchmarks turns it into BENCHMARKS.md and the plots.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy
import typer
from wasabi import msg

from scripts.bench.cli import BatchSize, DocsFile, Limit, Output, Pipeline, Repeats, Threads, report_head
from scripts.bench.data import load_pipeline, override
from scripts.bench.markdown import fmt_x
from spacy_posattn_ner.calibration import (
    COMPONENT, SPEED_DEFINITION, measure, read_gold, run_model, scored_entities, summary,
)

app = typer.Typer(add_completion=False)
PRECISIONS = (0.90, 0.95)  # recall is reported at these precisions
# PR curve thresholds: every 0.01, and finer near 1, where a sharp model's scores crowd.
PR_THRESHOLDS = tuple(k / 100 for k in range(100)) + (0.995, 0.999, 1.0)


def pr_curve(score: numpy.ndarray, correct: numpy.ndarray, n_gold: int,
             thresholds: Sequence[float] = PR_THRESHOLDS) -> List[Dict[str, float]]:  # fmt: skip
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


def candidates(ner: Any, batches: Sequence[tuple], threshold: float, n_gold: int) -> Dict[str, Any]:
    """The high-recall mode: every span (overlapping ones included) whose probability
    reaches ``threshold``, at the pipeline's temperature, scored against gold."""
    score: List[float] = []
    right: List[bool] = []
    with override(ner, scores=True, candidate_threshold=threshold):
        for docs, tag_scores, gold, _ in batches:
            found = ner.decode(tag_scores, docs).candidates
            for d, s, e, k, p in zip(*(a.tolist() for a in found)) if found is not None else ():
                score.append(p)
                right.append((s, e, ner.labels[k]) in gold[d])
    found_score, found_right = numpy.asarray(score, dtype="float64"), numpy.asarray(right, dtype=bool)
    return {"threshold": threshold, "n_spans": len(score), "n_correct": int(found_right.sum()),
            "pr_curve": pr_curve(found_score, found_right, n_gold)}  # fmt: skip


def time_scores(nlp: Any, ner: Any, refs: Sequence[Any], batch_size: int, repeats: int) -> Dict[str, Any]:
    """measure() with scores on and off, alternating in this one process (on, off, then off,
    on, ...), so a change in the machine's load hits both alike; the best pass of each
    counts. Candidates are off for both (the default)."""
    best: Dict[str, Dict[str, Any]] = {}
    passes: Dict[str, List[float]] = {"scores_on": [], "scores_off": []}
    for r in range(repeats):
        for on in (True, False) if r % 2 == 0 else (False, True):
            with override(ner, scores=on, candidate_threshold=None):
                row = measure(nlp, refs, batch_size=batch_size)
            key = "scores_on" if on else "scores_off"
            passes[key].append(row["words_per_second"])
            if key not in best or row["words_per_second"] > best[key]["words_per_second"]:
                best[key] = row
    out: Dict[str, Any] = {key: {"words_per_second": row["words_per_second"], "passes": passes[key],
                                 "ents_f": row["ents_f"], "n_words": row["n_words"]} for key, row in best.items()}  # fmt: skip
    out["overhead"] = 1.0 - best["scores_on"]["words_per_second"] / best["scores_off"]["words_per_second"]
    return out


@app.command()
def main(
    ctx: typer.Context,
    model_dir: Pipeline,
    test_path: DocsFile,
    output: Output = Path("metrics/benchmark_confidence.json"),
    candidate_threshold: float = typer.Option(0.05, "--candidate-threshold", min=1e-6, max=1.0,
                                              help="The high-recall mode's threshold that is scored too"),  # fmt: skip
    limit: Limit = 0,
    batch_size: BatchSize = 256,
    repeats: Repeats = 2,
    n_threads: Threads = 0,
) -> None:
    """On test: ECE before (T = 1) and after (the pipeline's temperature), reliability bins,
    mean score of right vs wrong entities, precision/recall over a score threshold, recall
    at precision 0.90 and 0.95, and words/s with scores on vs off."""
    head = report_head(ctx, "scripts.benchmark_confidence", n_threads)
    try:
        nlp = load_pipeline(model_dir)
        refs = read_gold(nlp, test_path, limit)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    ner = nlp.get_pipe(COMPONENT)
    n_gold = sum(len(ref.ents) for ref in refs)
    batches = run_model(nlp, ner, refs, batch_size)
    uncalibrated, found = scored_entities(ner, batches, 1.0), scored_entities(ner, batches, ner.temperature)
    if not len(found[0]):
        msg.fail(f"{test_path}: the pipeline predicts no entities: nothing to benchmark", exits=1)
    cands = candidates(ner, batches, candidate_threshold, n_gold)
    del batches  # the model's output for the whole split: not kept through the timing
    speed = time_scores(nlp, ner, refs, batch_size, repeats)
    report = {
        **head, "speed_definition": SPEED_DEFINITION, "model": str(model_dir), "data": str(test_path),
        "n_docs": len(refs), "n_words": speed["scores_on"]["n_words"], "n_gold": n_gold, "batch_size": batch_size,
        "repeats": repeats, "temperature": ner.temperature, "before": summary(*uncalibrated), "after": summary(*found),
        "pr_curve": pr_curve(*found, n_gold), "recall_at": [recall_at(*found, n_gold, p) for p in PRECISIONS],
        "candidates": cands, "speed": speed,
    }  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")  # floats exact: T as in the pipeline
    after, at = report["after"], report["recall_at"]
    msg.good(f"T = {ner.temperature:.3f}: test ECE {report['before']['ece']:.4f} -> {after['ece']:.4f}; mean score "
             f"right {fmt_x(after['mean_score_correct'], 3)}, wrong {fmt_x(after['mean_score_wrong'], 3)}; recall at "
             f"P0.90 {at[0]['recall']:.4f}, P0.95 {at[1]['recall']:.4f}; scores cost {speed['overhead']:.1%} of words/s")  # fmt: skip


if __name__ == "__main__":
    app()
