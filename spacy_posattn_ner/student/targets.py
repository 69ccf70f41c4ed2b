"""Teacher targets: the teacher pipeline's own inference over TEXTS, streamed to disk.

One pass of the teacher (its model's inference path at full depth: exit_threshold 1.0)
gives, per batch, the per-token tag log-probabilities (float16; the distillation loss
applies its temperature) and, observed inside the engine, the mixed backbone states the
teacher's last head reads; those are summed per word (NORM) for the student's static
vectors. Work is cut into
shards of ``shard_size`` docs: each shard (``shard-00000.npz``: tokens' distributions
and doc offsets; ``shard-00000.spacy``: the docs, as tokenized and sentence-split by the
teacher's pipeline) is written whole, then the word sums up to it, then ``index.json``
(atomically), so an interrupted run resumes after the last complete shard. Bad input
rows (bad JSON, a text that is not a string...) are reported by file and line and
listed in the index; they are skipped, never silently.
"""
import json
import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy
import torch
from spacy.attrs import NORM
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..model.nodes import predict_tag_scores
from ..training.teacher import INDEX
from ..annotate.inputs import resolve_inputs
from ..annotate.records import ReadOptions, Record, iter_records

SUMS = "word-sums.npz"
FORMAT = "spacy-posattn-ner.teacher-targets.v1"


class TargetsError(ValueError):
    """A problem with TEXTS, the output directory or a resumed run (the message says which)."""


class WordSums:
    """Running per-NORM sums of the teacher's states and counts (bounded by the vocabulary)."""

    def __init__(self, width: int = 0):
        self.index: Dict[int, int] = {}
        self.sums = numpy.zeros((1024, width), dtype="float64")
        self.counts = numpy.zeros(1024, dtype="int64")

    def add(self, norms: numpy.ndarray, states: numpy.ndarray) -> None:
        if self.sums.shape[1] != states.shape[1]:
            self.sums = numpy.zeros((len(self.counts), states.shape[1]))
        rows = numpy.asarray([self.index.setdefault(int(k), len(self.index)) for k in norms.tolist()], dtype="int64")
        if len(self.index) > len(self.counts):
            grow = max(len(self.index), 2 * len(self.counts))
            self.sums = numpy.concatenate([self.sums, numpy.zeros((grow - len(self.counts), self.sums.shape[1]))])
            self.counts = numpy.concatenate([self.counts, numpy.zeros(grow - len(self.counts), dtype="int64")])
        numpy.add.at(self.sums, rows, states)
        numpy.add.at(self.counts, rows, 1)

    def save(self, path: Path, n_shards: int) -> None:
        n = len(self.index)
        tmp = path.with_suffix(".tmp.npz")
        numpy.savez(tmp, keys=numpy.asarray(list(self.index), dtype="uint64"), sums=self.sums[:n].astype("float32"),
                    counts=self.counts[:n], n_shards=numpy.asarray(n_shards))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, n_shards: int) -> "WordSums":
        with numpy.load(path) as z:
            if int(z["n_shards"]) != n_shards:
                raise TargetsError(f"{path}: word sums of {int(z['n_shards'])} shards, the index lists {n_shards}; "
                                   "delete the directory (or use --overwrite) to start again")
            out = cls(z["sums"].shape[1])
            out.index = {int(k): i for i, k in enumerate(z["keys"].tolist())}
            out.sums = z["sums"].astype("float64")
            out.counts = z["counts"].astype("int64")
        return out

    def means(self) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        n = len(self.index)
        keys = numpy.asarray(list(self.index), dtype="uint64")
        return keys, self.sums[:n] / numpy.maximum(self.counts[:n], 1)[:, None], self.counts[:n]


def _docs_of(nlp: Language, records: List[Record]) -> List[Doc]:
    docs = []
    for rec in records:
        doc = Doc(nlp.vocab, words=rec.words, spaces=rec.spaces) if rec.words is not None else nlp.make_doc(rec.text)
        docs.append(doc)
    return docs


def write_targets(
    teacher: Language,
    texts: str,
    out_dir: Path,
    *,
    shard_size: int = 4096,
    batch_size: int = 128,
    text_key: str = "text",
    limit: int = 0,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> Dict:
    """Run the teacher over ``texts`` into ``out_dir`` (resuming a run there); the index."""
    ner_name = next((n for n, p in teacher.pipeline if p.__class__.__name__ == "PosAttnNER"), None)
    if ner_name is None:
        raise TargetsError(f"the teacher has no posattn_ner component (pipeline: {teacher.pipe_names})")
    ner = teacher.get_pipe(ner_name)
    before = [p for n, p in teacher.pipeline[: teacher.pipe_names.index(ner_name)]]
    files, ignored = resolve_inputs(texts)
    for path in ignored:
        say(f"warning: {path}: not a known input format, ignored")
    spec = {"format": FORMAT, "texts": [(f.label, f.size, f.mtime_ns) for f in files],
            "shard_size": shard_size, "limit": limit, "tags": list(ner.tags)}
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / INDEX
    index = {**spec, "shards": [], "errors": [], "complete": False}
    if index_path.exists() and not overwrite:
        old = json.loads(index_path.read_text())
        if {k: old.get(k) for k in spec} != json.loads(json.dumps(spec)):
            changed = [k for k in spec if old.get(k) != json.loads(json.dumps(spec))[k]]
            raise TargetsError(f"{out_dir}: an earlier run with other inputs or settings ({', '.join(changed)}); "
                               "use --overwrite to start again")
        index = old
        if index["complete"]:
            say(f"{out_dir}: teacher targets complete ({sum(s['docs'] for s in index['shards']):,} docs), reused")
            return index
        say(f"{out_dir}: resuming after {len(index['shards'])} complete shards")
    done = len(index["shards"])
    sums = WordSums.load(out_dir / SUMS, done) if done else WordSums()
    records = iter_records(files, ReadOptions(text_key=text_key, several_files=len(files) > 1))
    start, n_words, seen = time.perf_counter(), 0, 0
    shard: List[Record] = []

    def good_records() -> Iterator[Record]:
        nonlocal seen
        for rec in records:
            if limit and seen >= limit:
                return
            seen += 1
            if rec.error is not None:
                if rec.error not in index["errors"]:  # a resumed run lists each once
                    index["errors"].append(rec.error)
                say(f"bad row skipped: {rec.error}")
                continue
            yield rec

    k = 0
    for rec in good_records():
        shard.append(rec)
        if len(shard) == shard_size:
            if k >= done:
                n_words += _write_shard(teacher, ner, before, shard, k, out_dir, sums, index, batch_size)
                say(f"shard {k}: {len(shard):,} docs ({n_words / (time.perf_counter() - start):,.0f} words/s)")
            k, shard = k + 1, []
    if shard and k >= done:
        n_words += _write_shard(teacher, ner, before, shard, k, out_dir, sums, index, batch_size)
        say(f"shard {k}: {len(shard):,} docs ({n_words / (time.perf_counter() - start):,.0f} words/s)")
    index["complete"] = True
    _save_index(index_path, index)
    return index


def _write_shard(teacher, ner, before, shard, k, out_dir, sums, index, batch_size) -> int:
    parts, docs_all = [], []
    with ner.settings.override(exit_threshold=1.0):
        for i in range(0, len(shard), batch_size):
            docs = _docs_of(teacher, shard[i : i + batch_size])
            for proc in before:
                docs = [proc(doc) for doc in docs]
            total = sum(len(d) for d in docs)
            states: Dict[str, torch.Tensor] = {}

            def observe(tokens: torch.Tensor, mixed: torch.Tensor) -> None:
                if "all" not in states:
                    states["all"] = torch.zeros((total, mixed.shape[-1]))
                states["all"][tokens.cpu()] = mixed.float().cpu()

            log_probs = predict_tag_scores(ner.model, docs, observe=observe).log_probs.float().cpu()
            for j, doc in enumerate(docs):
                parts.append(log_probs[j, : len(doc)].clamp(min=-60.0).numpy().astype("float16"))
            if "all" in states and total:
                norms = numpy.concatenate([d.to_array(NORM).astype("uint64") for d in docs if len(d)])
                sums.add(norms, states["all"].numpy())
            docs_all.extend(docs)
    offsets = numpy.concatenate([[0], numpy.cumsum([len(d) for d in docs_all])]).astype("int64")
    n_tags = len(ner.tags)
    log_probs = numpy.concatenate(parts) if parts else numpy.zeros((0, n_tags), dtype="float16")
    name = f"shard-{k:05d}"
    numpy.savez(out_dir / f"{name}.tmp.npz", log_probs=log_probs, offsets=offsets)
    os.replace(out_dir / f"{name}.tmp.npz", out_dir / f"{name}.npz")
    DocBin(attrs=["ORTH", "SENT_START"], docs=docs_all).to_disk(out_dir / f"{name}.spacy")
    sums.save(out_dir / SUMS, k + 1)
    index["shards"].append({"name": name, "docs": len(docs_all), "tokens": int(offsets[-1]),
                            "first_record": shard[0].where, "last_record": shard[-1].where})
    _save_index(out_dir / INDEX, index)
    return int(offsets[-1])


def _save_index(path: Path, index: Dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, path)
