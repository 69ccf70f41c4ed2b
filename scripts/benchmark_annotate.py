"""Words/s of `spacy-posattn-ner annotate` on a corpus and on N copies of it: the local
engine with 1 and 2 processes and the Ray engine with 1 and 2 workers (one torch thread
each), side by side with a plain `nlp.pipe` loop (1 and 2 processes) in the same run.

The .spacy corpus is written out as JSONL texts (doc.text), so every engine reads the same
input, in the same batches (the shard size is a multiple of the batch size): their entity
counts agree even for a pipeline whose output depends on its batches (int8). The `nlp.pipe` loops time the loop only (the pipeline is already loaded); annotate's
`seconds` cover its whole annotation phase (reading, worker start-up and their pipeline
loads, writing the shards): that is the price of the job, and `wall_seconds` adds the
driver's own pipeline load. The machine's load average is recorded: on a busy machine the
figures are not comparable with a quiet one's.

    python scripts/benchmark_annotate.py training/posattn_ner/model-best corpus/test.spacy \
        --repeat 10 --output-json metrics/benchmark_annotate.json
"""
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
import typer
from spacy.tokens import DocBin

from spacy_posattn_ner.annotate import AnnotateOptions, annotate_corpus

ENGINES = ["pipe1", "pipe2", "local1", "local2", "ray1", "ray2"]
app = typer.Typer(add_completion=False)


def write_texts(texts: List[str], repeat: int, path: Path) -> None:
    with open(path, "w", encoding="utf8") as f:
        for i in range(len(texts) * repeat):
            f.write(json.dumps({"id": i, "text": texts[i % len(texts)]}, ensure_ascii=False) + "\n")


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def pipe_run(nlp, texts: List[str], n_process: int, batch_size: int) -> Dict[str, Any]:
    set_threads(1)  # forked workers also get one thread (spacy_posattn_ner's at-fork hook)
    start = time.perf_counter()
    words = entities = 0
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
        words += len(doc)
        entities += len(doc.ents)
    seconds = time.perf_counter() - start
    return {"documents": len(texts), "words": words, "entities": entities, "errors": 0, "seconds": seconds, "wall_seconds": seconds}


def annotate_run(model: str, src: Path, out: Path, engine: str, batch_size: int, shard_size: int) -> Dict[str, Any]:
    kind, n = engine[:-1], int(engine[-1])
    options = AnnotateOptions(
        batch_size=batch_size,
        shard_size=shard_size,
        torch_threads=1,
        overwrite=True,
        progress=False,
        engine="ray" if kind == "ray" else "local",
        n_process=n if kind == "local" else 1,
        workers=n if kind == "ray" else 1,
        cpus_per_worker=1.0,
    )
    start = time.perf_counter()
    summary = annotate_corpus(model, str(src), out, options)
    wall = time.perf_counter() - start
    return {
        "documents": summary.documents,
        "words": summary.words,
        "entities": summary.entities,
        "errors": summary.errors,
        "seconds": summary.seconds,
        "wall_seconds": wall,
    }


@app.command()
def main(
    # fmt: off
    model: str = typer.Argument(..., help="Pipeline directory or package"),
    corpus: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .spacy corpus (its doc.text is annotated)"),
    repeat: int = typer.Option(10, "--repeat", help="The second corpus: this many copies of the first"),
    engines: str = typer.Option(",".join(ENGINES), "--engines", help=f"Comma-separated, any of {', '.join(ENGINES)}"),
    batch_size: int = typer.Option(128, "--batch-size"),
    shard_size: int = typer.Option(10_240, "--shard-size", help="A multiple of --batch-size: annotate's batches are then nlp.pipe's"),
    output_json: Path = typer.Option(Path("metrics/benchmark_annotate.json"), "--output-json"),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Inputs and outputs (default: a temporary directory)"),
    # fmt: on
) -> None:
    # one thread each everywhere: HF tokenizers' own thread pool too (and no fork warnings)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    wanted = [e.strip() for e in engines.split(",") if e.strip()]
    if shard_size % batch_size:
        raise typer.BadParameter(f"--shard-size {shard_size} is not a multiple of --batch-size {batch_size}: the nlp.pipe loops would see other batches")
    unknown = [e for e in wanted if e not in ENGINES]
    if unknown:
        raise typer.BadParameter(f"unknown engines {unknown}: choose from {ENGINES}")
    # Ray runs last: the local runs fork this process, which should not hold a Ray driver then
    order = sorted(wanted, key=lambda e: e.startswith("ray"))
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="benchmark-annotate-"))
    work.mkdir(parents=True, exist_ok=True)
    texts = [doc.text for doc in DocBin().from_disk(corpus).get_docs(spacy.blank("en").vocab)]
    corpora = [(corpus.stem, texts, 1), (f"{corpus.stem} x{repeat}", texts * repeat, repeat)]
    for name, _, copies in corpora:
        write_texts(texts, copies, work / f"{_slug(name)}.jsonl")
    load_start = os.getloadavg()
    nlp = spacy.load(model) if any(e.startswith("pipe") for e in order) else None
    results: Dict[str, Dict[str, Dict[str, Any]]] = {name: {} for name, _, _ in corpora}
    ray_started = False
    try:
        for engine in order:
            if engine.startswith("ray") and not ray_started:
                import ray

                ray.init(num_cpus=max(os.cpu_count() or 1, 3), include_dashboard=False, logging_level="WARNING")
                ray_started = True
            for name, docs, _ in corpora:
                if engine.startswith("pipe"):
                    row = pipe_run(nlp, docs, int(engine[-1]), batch_size)
                else:
                    src, out = work / f"{_slug(name)}.jsonl", work / f"out-{_slug(name)}-{engine}"
                    row = annotate_run(model, src, out, engine, batch_size, shard_size)
                    shutil.rmtree(out, ignore_errors=True)
                row["words_per_second"] = row["words"] / row["seconds"] if row["seconds"] > 0 else 0.0
                results[name][engine] = {"engine": engine, **row}
                print(f"{name:>14} {engine:>7}: {row['documents']:>8,} docs {row['words']:>10,} words {row['seconds']:8.1f} s {row['words_per_second']:>10,.0f} words/s", flush=True)
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    report = {
        "model": model,
        "corpus": str(corpus),
        "repeat": repeat,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "torch_threads_per_process": 1,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_start": list(load_start),
            "load_average_end": list(os.getloadavg()),
        },
        "notes": "pipeN: nlp.pipe loop with N processes, pipeline preloaded; localN: annotate with N processes; "
        "rayN: annotate on a local Ray with N workers. annotate's seconds include worker start-up and model loads.",
        "corpora": [
            {
                "name": name,
                "documents": len(docs),
                "runs": [results[name][e] for e in wanted],
            }
            for name, docs, _ in corpora
        ],
    }
    output_json.parent.mkdir(parents=True, exist_ok=True)
    output_json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    print(f"wrote {output_json}")
    if not work_dir:
        shutil.rmtree(work, ignore_errors=True)


def _slug(name: str) -> str:
    return name.replace(" ", "_")


if __name__ == "__main__":
    app()
