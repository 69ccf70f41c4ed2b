"""Entity confidence (#15): fit the temperature of the entity scores on dev and save it in
the pipeline (calibrate), and measure on test how well the scores are calibrated, what
precision and recall a score threshold buys, and what the scores cost in words/s (benchmark).

    python -m scripts.confidence calibrate training/posattn_ner/model-best corpus/dev.spacy \\
        --save-to training/posattn_ner/model-best --output metrics/calibrate_confidence.json
    python -m scripts.confidence benchmark training/posattn_ner/model-best corpus/test.spacy \\
        --n-threads 2 --output metrics/benchmark_confidence.json

An entity is right when its span and label are exactly a gold entity's. The model runs once
per command: the temperature only changes how its log-probs are read (Viterbi's path does not
depend on it), so every temperature tried re-decodes that one output. Entities set before
posattn_ner ran (score 1.0: given, not predicted) are left out. The pipeline runs as saved
(precision, exit threshold): with early exit, the scores judged are those of the exit that
answered each doc, and one temperature serves every exit. Writes JSON only;
render-benchmarks turns the reports into BENCHMARKS.md and the plots.
"""
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

import numpy
import typer
from spacy.language import Language
from spacy.tokens import Doc
from wasabi import msg

from scripts.bench.calibration import TEMPERATURE_GRID, fit_temperature, log_loss, overhead, pr_curve, recall_at, summary
from scripts.bench.cli import BatchSize, DocsFile, Limit, Output, Pipeline, Repeats, Threads, report_head
from scripts.bench.data import fresh_docs, read_gold
from scripts.bench.markdown import fmt_x
from scripts.bench.measure import SPEED_DEFINITION, measure

app = typer.Typer(add_completion=False, help="Entity scores: fit their temperature on dev; benchmark them on test.")
MODULE = "scripts.confidence"
COMPONENT = "posattn_ner"
PRECISIONS = (0.90, 0.95)  # recall is reported at these precisions
Scored = Tuple[numpy.ndarray, numpy.ndarray]  # (score float64, correct bool), one entry per entity


class Batch(NamedTuple):
    """One batch of the model's output, with what is needed to judge its entities."""

    docs: List[Doc]
    tag_scores: Any  # engine.TagScores, on the model's device
    gold: List[Set[Tuple[int, int, str]]]  # per doc: (start, end, label) of its gold entities
    given: List[numpy.ndarray]  # per doc: tokens inside entities set before posattn_ner ran


@contextmanager
def settings(ner: Any, **values: Any) -> Iterator[None]:
    """Runtime settings changed for a block and restored after it (they are saved with the
    pipeline, so a measurement must not leave its own behind)."""
    saved = {key: getattr(ner, key) for key in values}
    for key, value in values.items():
        setattr(ner, key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(ner, key, value)


def write_report(path: Path, report: Dict[str, Any]) -> None:
    """The JSON report, floats exact (srsly rounds them to 10 digits: the temperature in the
    report would then differ from the one saved in the pipeline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")


def load(model_dir: Path) -> Tuple[Language, Any]:
    import spacy

    import spacy_posattn_ner  # noqa: F401  (registers the factory)

    nlp = spacy.load(model_dir)
    if COMPONENT not in nlp.pipe_names:
        msg.fail(f"{model_dir}: no '{COMPONENT}' component (pipeline: {nlp.pipe_names})", exits=1)
    return nlp, nlp.get_pipe(COMPONENT)


def run_model(nlp: Language, ner: Any, refs: Sequence[Doc], batch_size: int) -> List[Batch]:
    """One pass of the model over fresh Docs of the refs' words, the components before
    posattn_ner run first (as nlp.pipe would)."""
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
        batches.append(Batch(docs, ner.model.predict(docs), gold, given))
    return batches


def scored_entities(ner: Any, batches: Sequence[Batch], temperature: float) -> Scored:
    """Every entity the pipeline predicts (Viterbi's, less those overlapping given entities,
    as set_annotations does), its score at ``temperature`` and whether it is right."""
    scores: List[float] = []
    correct: List[bool] = []
    with settings(ner, scores=True, candidate_threshold=None, temperature=temperature):
        for batch in batches:
            pred = ner.decode(batch.tag_scores, batch.docs)
            if pred.entity_scores is None:  # every doc of the batch empty
                continue
            for k, (d, s, e, label) in enumerate(zip(*(a.tolist() for a in pred.entities))):
                if not batch.given[d][s:e].any():
                    scores.append(float(pred.entity_scores[k]))
                    correct.append((s, e, ner.labels[label]) in batch.gold[d])
    return numpy.asarray(scores, dtype="float64"), numpy.asarray(correct, dtype=bool)


def scored_candidates(ner: Any, batches: Sequence[Batch], temperature: float, threshold: float) -> Scored:
    """Every span (overlapping ones included) whose probability reaches ``threshold``: the
    high-recall mode's spans, each with its score and whether it is right."""
    scores: List[float] = []
    correct: List[bool] = []
    with settings(ner, scores=True, candidate_threshold=threshold, temperature=temperature):
        for batch in batches:
            found = ner.decode(batch.tag_scores, batch.docs).candidates
            if found is None:
                continue
            doc_c, start_c, end_c, label_c, score_c = (a.tolist() for a in found)
            scores += score_c
            correct += [(s, e, ner.labels[k]) in batch.gold[d] for d, s, e, k in zip(doc_c, start_c, end_c, label_c)]
    return numpy.asarray(scores, dtype="float64"), numpy.asarray(correct, dtype=bool)


@app.command()
def calibrate(
    ctx: typer.Context,
    model_dir: Pipeline,
    dev_path: DocsFile,
    save_to: Optional[Path] = typer.Option(None, "--save-to", file_okay=False,
                                           help="Save the pipeline with the fitted temperature here (may be MODEL_DIR)"),  # fmt: skip
    output: Output = Path("metrics/calibrate_confidence.json"),
    limit: Limit = 0,
    batch_size: BatchSize = 256,
    n_threads: Threads = 0,
) -> None:
    """Fit the temperature that minimizes the log-loss of entity correctness on dev (a grid,
    then golden-section search); with --save-to, save the pipeline with it."""
    head = report_head(ctx, MODULE, n_threads)
    nlp, ner = load(model_dir)
    refs = read_gold(nlp, dev_path, limit)
    batches = run_model(nlp, ner, refs, batch_size)
    tried: Dict[float, Dict[str, float]] = {}

    def loss(t: float) -> float:
        found = scored_entities(ner, batches, t)
        if not len(found[0]):
            msg.fail(f"{dev_path}: the pipeline predicts no entities: nothing to calibrate", exits=1)
        tried[t] = {"temperature": t, "log_loss": log_loss(*found), "ece": summary(*found)["ece"]}
        return tried[t]["log_loss"]

    best, _ = fit_temperature(loss)
    at_edge = best in (TEMPERATURE_GRID[0], TEMPERATURE_GRID[-1])
    if at_edge:
        msg.warn(f"The fitted temperature {best:g} is at an edge of the range searched ({TEMPERATURE_GRID[0]:g} to "
                 f"{TEMPERATURE_GRID[-1]:g}): the least log-loss may lie beyond it (an untrained or tiny model?)")  # fmt: skip
    before, after = summary(*scored_entities(ner, batches, 1.0)), summary(*scored_entities(ner, batches, best))
    ner.temperature = best
    if save_to is not None:
        nlp.to_disk(save_to)  # every weight is in memory: saving over MODEL_DIR itself is safe
    report = {**head, "model": str(model_dir), "data": str(dev_path), "n_docs": len(refs), "temperature": best,
              "at_range_edge": at_edge, "search": [tried[t] for t in sorted(tried)], "before": before, "after": after,
              "saved_to": None if save_to is None else str(save_to)}  # fmt: skip
    write_report(output, report)
    msg.good(f"Temperature {best:.3f}: dev ECE {before['ece']:.4f} -> {after['ece']:.4f}, log-loss "
             f"{before['log_loss']:.4f} -> {after['log_loss']:.4f}" + (f"; saved to {save_to}" if save_to else ""))  # fmt: skip


def time_scores(nlp: Language, ner: Any, refs: Sequence[Doc], batch_size: int, repeats: int) -> Dict[str, Any]:
    """measure() with scores on and off, alternating in this one process (on, off, then off,
    on, ...), so a change in the machine's load hits both alike; the best pass of each
    counts. Candidates are off for both (the default)."""
    rows: Dict[str, Dict[str, Any]] = {}
    passes: Dict[str, List[float]] = {"scores_on": [], "scores_off": []}
    with settings(ner, candidate_threshold=None):
        for r in range(repeats):
            for on in (True, False) if r % 2 == 0 else (False, True):
                with settings(ner, scores=on):
                    row = measure(nlp, refs, batch_size=batch_size)
                key = "scores_on" if on else "scores_off"
                passes[key].append(row["words_per_second"])
                if key not in rows or row["words_per_second"] > rows[key]["words_per_second"]:
                    rows[key] = row
    out: Dict[str, Any] = {key: {"words_per_second": rows[key]["words_per_second"], "passes": passes[key],
                                 "ents_f": rows[key]["ents_f"], "n_words": rows[key]["n_words"]} for key in rows}  # fmt: skip
    out["overhead"] = overhead(rows["scores_on"]["words_per_second"], rows["scores_off"]["words_per_second"])
    return out


@app.command()
def benchmark(
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
    head = report_head(ctx, MODULE, n_threads)
    nlp, ner = load(model_dir)
    calibrated = ner.temperature
    refs = read_gold(nlp, test_path, limit)
    n_gold = sum(len(ref.ents) for ref in refs)
    batches = run_model(nlp, ner, refs, batch_size)
    uncalibrated, found = scored_entities(ner, batches, 1.0), scored_entities(ner, batches, calibrated)
    if not len(found[0]):
        msg.fail(f"{test_path}: the pipeline predicts no entities: nothing to benchmark", exits=1)
    cands = scored_candidates(ner, batches, calibrated, candidate_threshold)
    del batches  # the model's output for the whole split: not kept through the timing
    speed = time_scores(nlp, ner, refs, batch_size, repeats)
    report = {
        **head, "speed_definition": SPEED_DEFINITION, "model": str(model_dir), "data": str(test_path),
        "n_docs": len(refs), "n_words": speed["scores_on"]["n_words"], "n_gold": n_gold, "batch_size": batch_size,
        "repeats": repeats, "temperature": calibrated, "before": summary(*uncalibrated), "after": summary(*found),
        "pr_curve": pr_curve(*found, n_gold), "recall_at": [recall_at(*found, n_gold, p) for p in PRECISIONS],
        "candidates": {"threshold": candidate_threshold, "n_spans": int(len(cands[0])),
                       "n_correct": int(cands[1].sum()), "pr_curve": pr_curve(*cands, n_gold)},
        "speed": speed,
    }  # fmt: skip
    write_report(output, report)
    after, at = report["after"], report["recall_at"]
    msg.good(f"T = {calibrated:.3f}: test ECE {report['before']['ece']:.4f} -> {after['ece']:.4f}; mean score right "
             f"{fmt_x(after['mean_score_correct'], 3)}, wrong {fmt_x(after['mean_score_wrong'], 3)}; recall at "
             f"P0.90 {at[0]['recall']:.4f}, P0.95 {at[1]['recall']:.4f}; scores cost {speed['overhead']:.1%} of words/s")  # fmt: skip


if __name__ == "__main__":
    app()
