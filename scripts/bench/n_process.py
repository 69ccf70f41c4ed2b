"""``nlp.pipe(texts, n_process=N)`` against one process (#27): same answers, what it costs.

Loads a pipeline once, then runs the first ``--limit`` texts of a corpus through
``nlp.pipe`` with ``n_process`` = 1 and N alternately (``--rounds`` times each, in one
process, the parent warm after the first pass), compares every doc's entities and span
scores with the first one-process pass, and times each pass (wall clock, worker
start-up included: that is what a caller waits for).

    python -m scripts.bench.n_process PIPELINE corpus/test.spacy --limit 400 --output metrics/reliability/n_process.json
"""
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

from .cli import BatchSize, DocsFile, Limit, Output, Pipeline, Threads, report_head
from .data import load_pipeline, read_gold

app = typer.Typer(add_completion=False)


def _answers(docs, key: str) -> List[Any]:
    out = []
    for doc in docs:
        group = doc.spans[key] if key in doc.spans else []
        scores = [round(float(s), 6) for s in group.attrs["scores"]] if key in doc.spans else []
        out.append(([(e.start, e.end, e.label_) for e in doc.ents], scores))
    return out


@app.command()
def main(
    ctx: typer.Context,
    pipeline: Pipeline,
    corpus: DocsFile,
    limit: Limit = 400,
    n_process: int = typer.Option(2, "--n-process", min=2),
    batch_size: BatchSize = 64,
    rounds: int = typer.Option(2, "--rounds", min=1),
    n_threads: Threads = 0,
    output: Optional[Path] = typer.Option(None, "--output", help="The JSON report"),
) -> None:
    report: Dict[str, Any] = report_head(ctx, "scripts.bench.n_process", n_threads)
    nlp = load_pipeline(pipeline, n_threads)
    ner = next(p for _, p in nlp.pipeline if p.__class__.__name__ in ("PosAttnNER",))
    texts = [doc.text for doc in read_gold(nlp, corpus, limit)]
    seconds: Dict[str, List[float]] = {"1": [], str(n_process): []}
    reference = None
    same, max_diff = True, 0.0
    for _ in range(rounds):
        for n in (1, n_process):
            start = time.perf_counter()
            answers = _answers(list(nlp.pipe(texts, n_process=n, batch_size=batch_size)), ner.spans_key)
            seconds[str(n)].append(round(time.perf_counter() - start, 3))
            if reference is None:
                reference = answers
                continue
            for (ents_a, scores_a), (ents_b, scores_b) in zip(reference, answers):
                same &= ents_a == ents_b and len(scores_a) == len(scores_b)
                max_diff = max([max_diff] + [abs(a - b) for a, b in zip(scores_a, scores_b)])
    ratio = min(seconds[str(n_process)]) / min(seconds["1"])
    report.update(pipeline=str(pipeline), texts=len(texts), words=sum(len(t.split()) for t in texts), batch_size=batch_size,
                  n_process=n_process, seconds=seconds, ratio_best=round(ratio, 2), entities_identical=same,
                  max_score_diff=max_diff)  # fmt: skip
    msg.info(f"{len(texts)} texts: n_process=1 {seconds['1']} s, n_process={n_process} {seconds[str(n_process)]} s "
             f"(best against best {ratio:.2f}x); identical entities: {same}, largest score difference {max_diff:g}")  # fmt: skip
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, report)


if __name__ == "__main__":
    app()
