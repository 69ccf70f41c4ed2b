"""Words/s of `spacy-posattn-ner annotate` on a corpus and on N copies of it: the local
engine with 1 and 2 processes and the Ray engine with 1 and 2 workers (one torch thread
each), side by side with a plain `nlp.pipe` loop (1 and 2 processes) in the same run.
Writes JSON only; render-benchmarks turns it into BENCHMARKS.md's section.

Words/s here is texts in, entities out (see SPEED_DEFINITION): unlike measure()'s, the
tokenizer runs, as it must for annotate. Every engine reads the same texts (the corpus's
doc.text, written out as JSONL) in the same batches (the shard size is a multiple of the
batch size), so their entity counts agree even for a pipeline whose output depends on its
batches (int8). The machine's load average is recorded before every run: on a busy
machine the figures are not comparable with a quiet one's.

    python -m scripts.benchmark_annotate training/posattn_ner_exit/model-best corpus/test.spacy \\
        --repeat 10 --output metrics/benchmark_annotate.json
"""
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import spacy
import srsly
import typer
from wasabi import msg

from scripts.bench.cli import BatchSize, DocsFile, Output, Pipeline, report_head
from scripts.bench.data import load_pipeline, read_gold
from scripts.bench.markdown import ratio
from spacy_posattn_ner.annotate import AnnotateOptions, annotate_corpus


app = typer.Typer(add_completion=False)

ENGINES = ("pipe1", "pipe2", "local1", "local2", "ray1", "ray2")
SPEED_DEFINITION = (
    "words: spaCy tokens of the documents the pipeline made from the texts (tokenizer included); seconds: "
    "pipeN, the wall time of the nlp.pipe loop over the texts (pipeline loaded beforehand, worker start-up "
    "included); localN and rayN, annotate's annotation phase (reading JSONL, worker or actor start-up, the "
    "actors' pipeline loads, writing the shards; the driver's own pipeline load and Ray's start are outside it)"
)
TARGETS = {"max_overhead": 0.10, "min_two_over_one": 1.7}
# name in "ratios" -> (numerator engine, denominator engine)
RATIOS = {"local1_over_pipe1": ("local1", "pipe1"), "pipe2_over_pipe1": ("pipe2", "pipe1"),
          "local2_over_local1": ("local2", "local1"), "ray2_over_ray1": ("ray2", "ray1")}  # fmt: skip


def parse_engines(spec: str) -> List[str]:
    wanted = [e.strip() for e in spec.split(",") if e.strip()]
    unknown = [e for e in wanted if e not in ENGINES]
    if unknown or not wanted:
        raise typer.BadParameter(f"{', '.join(unknown) or 'none'}: choose from {', '.join(ENGINES)}", param_hint="--engines")
    return list(dict.fromkeys(wanted))


def write_texts(texts: Sequence[str], copies: int, path: Path) -> None:
    """``copies`` times the texts as JSONL, ids 0, 1, ..."""
    with open(path, "w", encoding="utf8") as f:
        for i in range(len(texts) * copies):
            f.write(json.dumps({"id": i, "text": texts[i % len(texts)]}, ensure_ascii=False) + "\n")


def pipe_run(nlp, texts: Sequence[str], n_process: int, batch_size: int) -> Dict[str, Any]:
    """A plain nlp.pipe loop over the texts (forked workers get one torch thread:
    spacy_posattn_ner's at-fork hook)."""
    start = time.perf_counter()
    words = entities = 0
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
        words += len(doc)
        entities += len(doc.ents)
    seconds = time.perf_counter() - start
    return {"documents": len(texts), "words": words, "entities": entities, "errors": 0, "seconds": seconds,
            "wall_seconds": seconds}  # fmt: skip


def annotate_run(model: Path, src: Path, out: Path, engine: str, batch_size: int, shard_size: int) -> Dict[str, Any]:
    """annotate_corpus on ``src``; its seconds, and its wall time with the driver's pipeline load."""
    kind, n = engine[:-1], int(engine[-1])
    options = AnnotateOptions(batch_size=batch_size, shard_size=shard_size, torch_threads=1, overwrite=True,
                              progress=False, engine="ray" if kind == "ray" else "local",
                              n_process=n if kind == "local" else 1, workers=n if kind == "ray" else 1,
                              cpus_per_worker=1.0)  # fmt: skip
    start = time.perf_counter()
    summary = annotate_corpus(str(model), str(src), out, options)
    wall = time.perf_counter() - start
    return {"documents": summary.documents, "words": summary.words, "entities": summary.entities,
            "errors": summary.errors, "seconds": summary.seconds, "wall_seconds": wall}  # fmt: skip


def start_ray() -> float:
    """A local Ray for both Ray runs (as annotate would start one: 2 workers, 1 CPU each); its start-up seconds."""
    from spacy_posattn_ner.annotate.ray_engine import _init_ray

    start = time.perf_counter()
    _init_ray(None, workers=2, cpus_per_worker=1.0)
    return time.perf_counter() - start


def summarize(runs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The ratios against the targets, and whether the engines agree, for one input."""
    wps = {engine: run["words_per_second"] for engine, run in runs.items()}
    ratios = {name: ratio(wps.get(num), wps.get(den)) for name, (num, den) in RATIOS.items()}
    overhead = ratios["local1_over_pipe1"]
    counts = {engine: [run["documents"], run["words"], run["entities"]] for engine, run in runs.items()}
    return {
        "ratios": ratios,
        "overhead": None if overhead is None else 1.0 - overhead,
        "entities": {engine: run["entities"] for engine, run in runs.items()},
        "entities_agree": len({run["entities"] for run in runs.values()}) == 1,
        "counts_agree": len({tuple(c) for c in counts.values()}) == 1,  # documents, words and entities
    }


@app.command()
def main(
    ctx: typer.Context,
    model: Pipeline,
    corpus: DocsFile,
    repeat: int = typer.Option(10, "--repeat", min=1, help="The second input: this many copies of the corpus"),
    engines: str = typer.Option(",".join(ENGINES), "--engines", help=f"Comma-separated, any of {', '.join(ENGINES)}"),
    batch_size: BatchSize = 128,
    shard_size: int = typer.Option(10_240, "--shard-size", min=1, help="A multiple of --batch-size: annotate's batches are then nlp.pipe's"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", file_okay=False, help="Inputs and outputs (default: a temporary directory)"),
    output: Output = Path("metrics/benchmark_annotate.json"),
) -> None:
    """Words/s of annotate (local processes, Ray workers) beside nlp.pipe loops, on a corpus and copies of it."""
    if shard_size % batch_size:
        raise typer.BadParameter(f"{shard_size} is not a multiple of --batch-size {batch_size}: the nlp.pipe loops would "
                                 "see other batches", param_hint="--shard-size")  # fmt: skip
    wanted = parse_engines(engines)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # HF tokenizers' thread pool: one thread too
    head = report_head(ctx, "scripts.benchmark_annotate", n_threads=1)
    texts = [doc.text for doc in read_gold(spacy.blank("en"), corpus)]
    inputs = [(corpus.stem, 1), (f"{corpus.stem} x{repeat}", repeat)]
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="benchmark-annotate-"))
    work.mkdir(parents=True, exist_ok=True)
    for name, copies in inputs:
        write_texts(texts, copies, work / f"{_slug(name)}.jsonl")
    start = time.perf_counter()
    nlp = load_pipeline(model, need=None)  # spacy.load, as annotate's driver, workers and actors load it
    load_seconds = time.perf_counter() - start
    runs: Dict[str, Dict[str, Dict[str, Any]]] = {name: {} for name, _ in inputs}
    ray_seconds: Optional[float] = None
    try:  # Ray last: the other runs fork this process, which should not hold a Ray driver then
        for engine in sorted(wanted, key=lambda e: e.startswith("ray")):
            if engine.startswith("ray") and ray_seconds is None:
                ray_seconds = start_ray()
            for name, copies in inputs:
                load_before = [round(x, 2) for x in os.getloadavg()]
                if engine.startswith("pipe"):
                    row = pipe_run(nlp, texts * copies, int(engine[-1]), batch_size)
                else:
                    src, out = work / f"{_slug(name)}.jsonl", work / f"out-{_slug(name)}-{engine}"
                    row = annotate_run(model, src, out, engine, batch_size, shard_size)
                    shutil.rmtree(out, ignore_errors=True)
                row["words_per_second"] = row["words"] / row["seconds"] if row["seconds"] > 0 else 0.0
                runs[name][engine] = {"engine": engine, **row, "load_before": load_before}
                print(f"{name:>14} {engine:>6}: {row['documents']:>8,} docs {row['words']:>10,} words "
                         f"{row['seconds']:8.1f} s {row['words_per_second']:>10,.0f} words/s (load {load_before[0]:.2f})", flush=True)  # fmt: skip
    finally:
        if ray_seconds is not None:
            import ray

            ray.shutdown()
        if not work_dir:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        **head,
        "speed_definition": SPEED_DEFINITION,
        "model": str(model),
        "corpus": str(corpus),
        "repeat": repeat,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "engines": wanted,
        "pipeline_load_seconds": load_seconds,
        "ray_start_seconds": ray_seconds,
        "targets": TARGETS,
        "inputs": [{"name": name, "copies": copies, "documents": len(texts) * copies,
                    "runs": [runs[name][e] for e in wanted], **summarize(runs[name])}
                   for name, copies in inputs],  # fmt: skip
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(f"Wrote {output}; `spacy project run render-benchmarks` renders it")


def _slug(name: str) -> str:
    return name.replace(" ", "_")


if __name__ == "__main__":
    app()
