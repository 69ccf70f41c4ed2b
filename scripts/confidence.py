"""(Draft, not yet run: no project command calls it and no test covers it yet.)

Entity confidence: fit the temperature on dev (calibrate), and measure calibration,
precision/recall over a score threshold and the cost of scores on test (benchmark).

An entity's score is its probability under the model (``doc.spans["posattn_ner"]``);
it is *calibrated* when, among entities scored p, a share p is right (exact span and
label). The temperature divides the log-probs before forward-backward; Viterbi's
path does not depend on it, so fitting it re-decodes one pass of the model's output.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy
import typer

from .bench.cli import BatchSize, DocsFile, Limit, Output, Pipeline, Repeats, Threads, report_head
from .bench.data import fresh_docs, read_gold
from .bench.measure import measure

app = typer.Typer(add_completion=False, help=__doc__)
MODULE = "scripts.confidence"
N_BINS = 10
TEMPERATURES = numpy.exp(numpy.linspace(numpy.log(0.25), numpy.log(8.0), 61)).tolist()


def model_outputs(nlp, refs, batch_size: int) -> List[Tuple[list, Any]]:
    """One pass of the component's model over fresh docs: (docs, TagScores) per batch."""
    ner = nlp.get_pipe("posattn_ner")
    docs = fresh_docs(refs)
    out = []
    for i in range(0, len(docs), batch_size):
        batch = docs[i : i + batch_size]
        out.append((batch, ner.model.predict(batch)))
    return out


def scored_entities(ner, outputs, refs, temperature: float) -> Dict[str, numpy.ndarray]:
    """Every predicted entity's score at ``temperature`` and whether it is right."""
    ner.temperature = temperature
    scores, correct, offset = [], [], 0
    for docs, tag_scores in outputs:
        pred = ner.decode(tag_scores, docs)
        doc_of, starts, ends, label_of = pred.entities
        for k in range(len(doc_of)):
            ref = refs[offset + int(doc_of[k])]
            gold = {(e.start, e.end, e.label_) for e in ref.ents}
            correct.append((int(starts[k]), int(ends[k]), ner.labels[int(label_of[k])]) in gold)
        scores.append(pred.entity_scores)
        offset += len(docs)
    return {"score": numpy.concatenate(scores).astype("float64"), "correct": numpy.asarray(correct, dtype=bool)}


def log_loss(score: numpy.ndarray, correct: numpy.ndarray) -> float:
    p = numpy.clip(score, 1e-7, 1 - 1e-7)
    return float(-numpy.mean(numpy.where(correct, numpy.log(p), numpy.log1p(-p))))


def reliability(score: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS) -> Dict[str, Any]:
    """Expected calibration error over equal-width score bins, and the bins themselves."""
    edges = numpy.linspace(0.0, 1.0, n_bins + 1)
    which = numpy.clip(numpy.digitize(score, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        conf = float(score[inside].mean()) if n else None
        acc = float(correct[inside].mean()) if n else None
        if n:
            ece += n / len(score) * abs(acc - conf)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": bins}


def summary(score: numpy.ndarray, correct: numpy.ndarray) -> Dict[str, Any]:
    return {
        "n_entities": int(len(score)),
        "n_correct": int(correct.sum()),
        "log_loss": log_loss(score, correct),
        "mean_score_correct": float(score[correct].mean()) if correct.any() else None,
        "mean_score_wrong": float(score[~correct].mean()) if (~correct).any() else None,
        **reliability(score, correct),
    }


@app.command()
def calibrate(
    ctx: typer.Context,
    model_dir: Pipeline,
    dev_path: DocsFile,
    output: Output = Path("metrics/calibrate_confidence.json"),
    save_to: Path = typer.Option(None, "--save-to", file_okay=False, help="Save the calibrated pipeline here (default: MODEL_DIR)"),
    limit: Limit = 0,
    batch_size: BatchSize = 256,
    n_threads: Threads = 0,
) -> None:
    """Fit the temperature that minimizes the log-loss of entity correctness on dev; save it."""
    import spacy

    head = report_head(ctx, MODULE, n_threads)
    nlp = spacy.load(model_dir)
    ner = nlp.get_pipe("posattn_ner")
    refs = read_gold(nlp, dev_path, limit)
    outputs = model_outputs(nlp, refs, batch_size)
    rows = []
    for t in TEMPERATURES:
        found = scored_entities(ner, outputs, refs, t)
        rows.append({"temperature": t, "log_loss": log_loss(**found), "ece": reliability(**found)["ece"]})
    best = min(rows, key=lambda r: r["log_loss"])
    before = summary(**scored_entities(ner, outputs, refs, 1.0))
    after = summary(**scored_entities(ner, outputs, refs, best["temperature"]))
    ner.temperature = best["temperature"]
    nlp.to_disk(save_to or model_dir)
    report = {**head, "model": str(model_dir), "data": str(dev_path), "n_docs": len(refs),
              "temperature": best["temperature"], "grid": rows, "before": before, "after": after,
              "saved_to": str(save_to or model_dir)}  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    typer.echo(f"temperature {best['temperature']:.3f}: dev ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
               f"log-loss {before['log_loss']:.4f} -> {after['log_loss']:.4f}; saved to {save_to or model_dir}")  # fmt: skip


def pr_curve(score: numpy.ndarray, correct: numpy.ndarray, n_gold: int) -> List[Dict[str, float]]:
    """Precision and recall when only entities scored at least t are kept, for each t."""
    order = numpy.argsort(-score, kind="stable")
    kept = numpy.arange(1, len(order) + 1)
    right = numpy.cumsum(correct[order])
    points = []
    for t in sorted(set(numpy.round(numpy.linspace(0.0, 1.0, 101), 2).tolist()) | {0.5, 0.9, 0.95}):
        n = int((score >= t).sum())
        if n:
            points.append({"threshold": t, "precision": float(right[n - 1] / kept[n - 1]), "recall": float(right[n - 1] / n_gold), "kept": n})
    return points


def recall_at(points: Sequence[Dict[str, float]], precision: float) -> Dict[str, Any]:
    ok = [p for p in points if p["precision"] >= precision]
    best = max(ok, key=lambda p: p["recall"]) if ok else None
    return {"precision": precision, "recall": best["recall"] if best else 0.0, "threshold": best["threshold"] if best else None}


def candidate_entities(ner, outputs, refs, threshold: float) -> Dict[str, numpy.ndarray]:
    """Every candidate span (the high-recall mode) with its score and whether it is right."""
    ner.candidate_threshold = threshold
    try:
        scores, correct, offset = [], [], 0
        for docs, tag_scores in outputs:
            doc_c, start_c, end_c, label_c, score_c = ner.decode(tag_scores, docs).candidates
            for k in range(len(doc_c)):
                gold = {(e.start, e.end, e.label_) for e in refs[offset + int(doc_c[k])].ents}
                correct.append((int(start_c[k]), int(end_c[k]), ner.labels[int(label_c[k])]) in gold)
            scores.append(score_c)
            offset += len(docs)
    finally:
        ner.candidate_threshold = None
    return {"score": numpy.concatenate(scores).astype("float64"), "correct": numpy.asarray(correct, dtype=bool)}


@app.command()
def benchmark(
    ctx: typer.Context,
    model_dir: Pipeline,
    test_path: DocsFile,
    output: Output = Path("metrics/benchmark_confidence.json"),
    candidate_threshold: float = typer.Option(0.05, "--candidate-threshold", help="For the high-recall curve"),
    limit: Limit = 0,
    batch_size: BatchSize = 256,
    repeats: Repeats = 2,
    n_threads: Threads = 0,
) -> None:
    """On test: ECE before/after calibration, precision/recall over an entity score
    threshold, recall at precision 0.90 and 0.95, and words/s with scores on vs off."""
    import spacy

    head = report_head(ctx, MODULE, n_threads)
    nlp = spacy.load(model_dir)
    ner = nlp.get_pipe("posattn_ner")
    calibrated = ner.temperature
    refs = read_gold(nlp, test_path, limit)
    n_gold = sum(len(ref.ents) for ref in refs)
    outputs = model_outputs(nlp, refs, batch_size)
    before = summary(**scored_entities(ner, outputs, refs, 1.0))
    found = scored_entities(ner, outputs, refs, calibrated)
    after = summary(**found)
    curve = pr_curve(found["score"], found["correct"], n_gold)
    cands = candidate_entities(ner, outputs, refs, candidate_threshold)
    cand_curve = pr_curve(cands["score"], cands["correct"], n_gold)
    speed = {}
    for _ in range(repeats):  # alternate, so a change in load hits both alike
        for on in (True, False):
            ner.scores = on
            row = measure(nlp, refs, batch_size=batch_size)
            key = "scores_on" if on else "scores_off"
            if key not in speed or row["words_per_second"] > speed[key]["words_per_second"]:
                speed[key] = row
    ner.scores = True
    report = {
        **head, "model": str(model_dir), "data": str(test_path), "n_docs": len(refs), "n_gold": n_gold,
        "temperature": calibrated, "before": before, "after": after,
        "pr_curve": curve, "recall_at": [recall_at(curve, p) for p in (0.90, 0.95)],
        "candidates": {"threshold": candidate_threshold, "n": int(len(cands["score"])), "pr_curve": cand_curve,
                       "recall_at": [recall_at(cand_curve, p) for p in (0.90, 0.95)]},
        "speed": {k: {f: v[f] for f in ("words_per_second", "ents_f", "n_words")} for k, v in speed.items()},
    }  # fmt: skip
    report["speed"]["overhead"] = 1.0 - speed["scores_on"]["words_per_second"] / speed["scores_off"]["words_per_second"]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    typer.echo(
        f"test ECE {before['ece']:.4f} -> {after['ece']:.4f} (T={calibrated:.3f}); mean score right "
        f"{after['mean_score_correct']:.3f} vs wrong {after['mean_score_wrong']:.3f}; recall at P0.90 "
        f"{report['recall_at'][0]['recall']:.4f}, P0.95 {report['recall_at'][1]['recall']:.4f}; scores cost "
        f"{report['speed']['overhead']:.1%} of words/s"
    )


if __name__ == "__main__":
    app()
