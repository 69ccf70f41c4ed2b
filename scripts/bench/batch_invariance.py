"""Batch invariance (#27 B): does a doc's answer depend on the docs batched with it?

Runs one pipeline on the same docs at several batch sizes and compares each doc's tag
log-probs (and entities) with the doc run alone, for the padding before #27 B
("batch": each backbone batch and each head chunk padded to its longest member, as
``length_chunks`` did) and after it ("bucket": each row padded to
``batching.padded_length`` of its own length, batched with rows of that length only).
The "batch" mode is today's code with ``bucket_chunks`` and ``padded_length``
replaced by that older grouping (padding rows filled with their own first token
either way: masked positions, no effect on the values). Then words/s of ``nlp.pipe``
in both modes and at each precision, runs alternating, in one process.

Without ``--pipeline`` the pipeline is the factory's default model (the shipped
architecture on the embedded MiniLM backbone), initialized but not trained: its heads
are random, which is enough to compare answers with themselves.

    python -m scripts.bench.batch_invariance /tmp/corpus/test.spacy --limit 2000
"""
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy
import srsly
import torch
import typer
from spacy.tokens import Doc
from spacy.training import Example
from wasabi import msg

from .cli import BatchSize, DocsFile, Limit, Output, Repeats, Threads, report_head
from .data import fresh_docs, read_gold

app = typer.Typer(add_completion=False)
MODES = ("batch", "bucket")


@contextlib.contextmanager
def padding(mode: str) -> Iterator[None]:
    """``bucket``: the code as it is; ``batch``: pad to the batch's longest member (and int8:
    quantize the whole batch at once, as ``quantize_dynamic`` alone does)."""
    import spacy_posattn_ner.backbone as backbone_mod
    import spacy_posattn_ner.model.engine as engine_mod
    from spacy_posattn_ner.batching import length_chunks

    if mode == "bucket":
        yield
        return

    def batch_chunks(lengths, budget, cap=None):
        lengths = numpy.asarray(lengths, dtype="int64")
        return [(c, int(lengths[c].max())) for c in length_chunks(lengths, budget)]

    from spacy_posattn_ner.backbone.encoder import RowwiseInt8Linear

    saved = backbone_mod.bucket_chunks, backbone_mod.padded_length, engine_mod.bucket_chunks, RowwiseInt8Linear.forward
    backbone_mod.bucket_chunks, backbone_mod.padded_length = batch_chunks, lambda n, cap=None: int(n)
    engine_mod.bucket_chunks = batch_chunks
    RowwiseInt8Linear.forward = lambda self, x: self.inner(x)  # int8: one scale for the whole batch
    try:
        yield
    finally:
        (backbone_mod.bucket_chunks, backbone_mod.padded_length, engine_mod.bucket_chunks,
         RowwiseInt8Linear.forward) = saved  # fmt: skip


def make_pipeline(pipeline: Optional[Path], refs: List[Doc]):
    import spacy

    if pipeline is not None:
        return spacy.load(pipeline)
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner")
    spacy.util.fix_random_seed(0)
    examples = [Example(d, r) for d, r in zip(fresh_docs(refs[:200]), refs[:200])]  # labels and shapes only
    nlp.initialize(lambda: examples)
    return nlp


def run(nlp, docs: List[Doc], batch_size: int):
    """Per doc: its tag log-probs (float32, host) and entities, at this batch size."""
    from spacy_posattn_ner.model.nodes import hand_settings

    ner = nlp.get_pipe("posattn_ner")
    hand_settings(ner.model, ner.settings)
    log_probs, ents = [], []
    for i in range(0, len(docs), batch_size):
        batch = docs[i : i + batch_size]
        scores = ner.model.predict(batch)
        ner.set_annotations(batch, ner.decode(scores, batch))
        lp = scores.log_probs.float().cpu().numpy()
        log_probs.extend(lp[k, : len(d)] for k, d in enumerate(batch))
        ents.extend([(e.start, e.end, e.label_) for e in d.ents] for d in batch)
    return log_probs, ents


def compare(nlp, refs: List[Doc], batch_sizes: List[int]) -> Dict[str, Any]:
    base_lp, base_ents = run(nlp, fresh_docs(refs), 1)
    out: Dict[str, Any] = {}
    worst = numpy.zeros(len(refs))
    ents_differ = numpy.zeros(len(refs), dtype=bool)
    for size in batch_sizes:
        lp, ents = run(nlp, fresh_docs(refs), size)
        diff = numpy.asarray([float(numpy.abs(a - b).max(initial=0.0)) for a, b in zip(lp, base_lp)])
        differ = numpy.asarray([a != b for a, b in zip(ents, base_ents)])
        worst, ents_differ = numpy.maximum(worst, diff), ents_differ | differ
        out[f"batch_{size}"] = {"docs_diff_gt_0": int((diff > 0).sum()), "docs_diff_gt_1e-4": int((diff > 1e-4).sum()),
                                "max_abs_diff": float(diff.max(initial=0.0)), "docs_entities_differ": int(differ.sum())}  # fmt: skip
    out["any_batch_size"] = {"docs_diff_gt_0": int((worst > 0).sum()), "docs_diff_gt_1e-4": int((worst > 1e-4).sum()),
                             "max_abs_diff": float(worst.max(initial=0.0)), "docs_entities_differ": int(ents_differ.sum())}  # fmt: skip
    return out


@app.command()
def main(
    ctx: typer.Context,
    test_path: DocsFile,
    pipeline: Optional[Path] = typer.Option(None, "--pipeline", exists=True, file_okay=False,
                                            help="Saved pipeline (default: the factory's model, initialized, untrained)"),  # fmt: skip
    limit: Limit = 2000,
    batch_sizes: str = typer.Option("7,64,256", "--batch-sizes", help="Compared with batch size 1"),
    precisions: str = typer.Option("bf16,fp32", "--precisions", help="Precisions to compare and time"),
    n_threads: Threads = 2,
    speed_batch_size: BatchSize = 256,
    repeats: Repeats = 3,
    output: Output = Path("metrics/batch_invariance.json"),
) -> None:
    report = report_head(ctx, "scripts.bench.batch_invariance", n_threads)
    import spacy  # noqa: F401

    nlp_refs = spacy.blank("en")
    refs = read_gold(nlp_refs, test_path, limit)
    nlp = make_pipeline(pipeline, refs)
    refs = [Doc(nlp.vocab, words=[t.text for t in r], spaces=[bool(t.whitespace_) for t in r]) for r in refs]
    ner = nlp.get_pipe("posattn_ner")
    sizes = [int(s) for s in batch_sizes.split(",") if s.strip()]
    precs = [p.strip() for p in precisions.split(",") if p.strip()]
    n_words = sum(len(d) for d in refs)
    report.update(docs=len(refs), words=n_words, exit_threshold=ner.exit_threshold,
                  pipeline=str(pipeline) if pipeline else "factory default model, initialized (seed 0), untrained",
                  invariance={}, words_per_second={})  # fmt: skip
    for precision in precs:
        ner.precision = precision
        for mode in MODES:
            with padding(mode):
                t0 = time.perf_counter()
                report["invariance"].setdefault(precision, {})[mode] = res = compare(nlp, refs, sizes)
                msg.info(f"{precision} {mode}: {res['any_batch_size']} ({time.perf_counter() - t0:.0f}s)")
    times: Dict[str, List[float]] = {}
    for precision in precs:  # warm up (bf16 copy made once)
        ner.precision = precision
        list(nlp.pipe(fresh_docs(refs[:64])))
    for _ in range(repeats):
        for precision in precs:
            ner.precision = precision
            for mode in MODES:
                docs = fresh_docs(refs)
                with padding(mode):
                    t0 = time.perf_counter()
                    for _doc in nlp.pipe(docs, batch_size=speed_batch_size):
                        pass
                    times.setdefault(f"{precision}/{mode}", []).append(time.perf_counter() - t0)
    for key, runs in times.items():
        report["words_per_second"][key] = {"median": round(n_words / statistics.median(runs)),
                                           "runs": [round(n_words / t) for t in runs]}  # fmt: skip
        msg.info(f"{key}: {report['words_per_second'][key]}")
    report["speed_note"] = (f"nlp.pipe(batch_size={speed_batch_size}) over the docs, words/s; {repeats} runs per row, "
                            "rows alternating (precision, mode) in one process; median and each run")  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(f"Wrote {output}")


if __name__ == "__main__":
    app()
