"""Distillation: a student pipeline trained on a teacher's targets (and gold where given).

``distill(teacher, texts, output)``: the teacher's targets (``targets.write_targets``,
resumable) → the static vectors (per-word means of the teacher's states, PCA) → a
student pipeline (the teacher's sentencizer, if any, + posattn_ner with Student.v1 and
the teacher's labels) trained with Adam (warm-up, linear decay, batches by words) on
KL(teacher || student) at temperature T plus gold cross-entropy, evaluated on dev
each epoch; the best epoch is saved to ``output``.
"""
import copy
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from thinc.api import Adam, warmup_linear

from ..gold import gold_tag_ids
from ..training.distill_loss import get_teacher_student_loss
from .model import get_vectors, set_vectors
from .targets import SUMS, WordSums, read_shards, write_targets
from .vectors import StaticVectors, pca_reduce


@dataclass
class DistillOptions:
    temperature: float = 2.0
    soft_weight: float = 1.0
    gold_weight: float = 0.5
    epochs: int = 6
    batch_words: int = 2000
    learn_rate: float = 0.002
    warmup_steps: int = 200
    min_count: int = 2
    max_vectors: int = 30000
    shard_size: int = 4096
    teacher_batch_size: int = 128
    limit: int = 0
    overwrite: bool = False
    seed: int = 0
    text_key: str = "text"


def build_student(teacher: Language, model_block: Dict, vectors: StaticVectors) -> Language:
    """An untrained student pipeline: the teacher's sentencizer (if any) and posattn_ner
    with ``model_block``, the teacher's labels and display settings, fp32."""
    ner_t = teacher.get_pipe("posattn_ner")
    nlp = spacy.blank(teacher.lang)
    for name in teacher.pipe_names:
        if teacher.get_pipe_meta(name).factory in ("sentencizer", "senter") and name != "posattn_ner":
            if teacher.get_pipe_meta(name).factory == "sentencizer":
                cfg = {k: v for k, v in teacher.get_pipe_config(name).items() if k != "factory"}
                nlp.add_pipe("sentencizer", name=name, config=cfg)
    config = {
        "model": model_block,
        "precision": "fp32",
        "train_precision": "fp32",
        "scores": ner_t.scores,
        "spans_key": ner_t.spans_key,
        "candidate_threshold": ner_t.candidate_threshold,
        "temperature": 1.0,  # the teacher's calibrated temperature is its own; calibrate the student anew
        "cache_max_ram_mb": 0,
        "cache_max_disk_mb": 0,
    }
    ner = nlp.add_pipe("posattn_ner", config=config)
    set_vectors(ner.model, vectors)
    return nlp


def static_vectors(sums: WordSums, width: int, min_count: int, max_rows: int) -> StaticVectors:
    keys, means, counts = sums.means()
    keep = numpy.flatnonzero(counts >= min_count)
    keep = keep[numpy.argsort(-counts[keep], kind="stable")[:max_rows]]
    if not len(keep):
        return StaticVectors(width)
    reduced, _, _ = pca_reduce(means[keep], width, weights=numpy.sqrt(counts[keep]))
    order = numpy.argsort(keys[keep])
    return StaticVectors(width, keys[keep][order], reduced[order])


def _gold_index(nlp: Language, gold_path: Optional[Path]) -> Dict[str, Doc]:
    if gold_path is None:
        return {}
    return {doc.text: doc for doc in DocBin().from_disk(gold_path).get_docs(nlp.vocab)}


def _batches(order: List[int], lengths: List[int], batch_words: int):
    batch, words = [], 0
    for i in order:
        if batch and words + lengths[i] > batch_words:
            yield batch
            batch, words = [], 0
        batch.append(i)
        words += lengths[i]
    if batch:
        yield batch


def evaluate(nlp: Language, dev: List[Example]) -> float:
    scores = nlp.evaluate(dev, batch_size=256)
    return float(scores.get("ents_f") or 0.0)


def distill(
    teacher: Language,
    texts: str,
    output: Path,
    model_block: Dict,
    *,
    gold: Optional[Path] = None,
    dev: Optional[Path] = None,
    targets_dir: Optional[Path] = None,
    options: DistillOptions = DistillOptions(),
    say: Callable[[str], None] = print,
) -> Dict:
    start = time.perf_counter()
    targets_dir = targets_dir or output.parent / (output.name + ".targets")
    index = write_targets(teacher, texts, targets_dir, temperature=options.temperature, shard_size=options.shard_size,
                          batch_size=options.teacher_batch_size, text_key=options.text_key, limit=options.limit,
                          overwrite=options.overwrite, say=say)
    teacher_seconds = time.perf_counter() - start
    n_shards = len(index["shards"])
    sums = WordSums.load(targets_dir / SUMS, n_shards)
    width = int(model_block.get("vectors_width", 96))
    vectors = static_vectors(sums, width, options.min_count, options.max_vectors)
    say(f"static vectors: {len(vectors):,} words x {width} (of {len(sums.index):,} seen)")
    spacy.util.fix_random_seed(options.seed)
    nlp = build_student(teacher, model_block, vectors)
    ner = nlp.get_pipe("posattn_ner")
    docs, probs = [], []
    for shard_docs, shard_probs in read_shards(targets_dir, nlp):
        docs.extend(shard_docs)
        probs.extend(shard_probs)
    sample = [Example(d, d) for d in docs[:10]]
    ner.initialize(lambda: sample, nlp=nlp, labels=list(teacher.get_pipe("posattn_ner").labels))
    gold_docs = _gold_index(nlp, gold)
    tag_index = {tag: i for i, tag in enumerate(ner.tags)}
    golds: List[Optional[numpy.ndarray]] = []
    for doc in docs:
        ref = gold_docs.get(doc.text)
        golds.append(gold_tag_ids(Example(doc, ref), tag_index, where=f"--gold doc {doc.text[:40]!r}: ")
                     if ref is not None else None)
    say(f"{len(docs):,} docs, {sum(g is not None for g in golds):,} with gold")
    dev_examples = [Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d)
                    for d in DocBin().from_disk(dev).get_docs(nlp.vocab)] if dev else []
    lengths = [len(d) for d in docs]
    steps_per_epoch = max(1, sum(lengths) // options.batch_words)
    total = steps_per_epoch * options.epochs
    schedule = warmup_linear(options.learn_rate, options.warmup_steps, total)
    optimizer = Adam(schedule, L2=0.0, grad_clip=1.0)
    rng = random.Random(options.seed)
    best = (-1.0, None, -1)
    history = []
    n_tags = len(ner.tags)
    for epoch in range(options.epochs):
        order = sorted(range(len(docs)), key=lambda i: (lengths[i] + rng.random() * 4))  # similar lengths together
        batches = list(_batches(order, lengths, options.batch_words))
        rng.shuffle(batches)
        epoch_loss, t0 = 0.0, time.perf_counter()
        for batch in batches:
            bdocs = [docs[i] for i in batch]
            (scores, blens), backprop = ner.model.begin_update(bdocs)
            T = scores.shape[1]
            teacher_p = numpy.zeros((len(batch), T, n_tags), dtype="float32")
            gold_ids = numpy.full((len(batch), T), -1, dtype="int64")
            mask = numpy.zeros((len(batch), T), dtype=bool)
            for j, i in enumerate(batch):
                n = lengths[i]
                teacher_p[j, :n] = probs[i]
                mask[j, :n] = True
                if golds[i] is not None:
                    gold_ids[j, :n] = golds[i]
            loss, d_scores = get_teacher_student_loss(
                scores, teacher_p, mask, temperature=options.temperature, gold=gold_ids if gold_docs else None,
                soft_weight=options.soft_weight, gold_weight=options.gold_weight)
            backprop(d_scores)
            ner.finish_update(optimizer)
            optimizer.step_schedules()
            epoch_loss += loss
        f1 = evaluate(nlp, dev_examples) if dev_examples else -epoch
        history.append({"epoch": epoch, "loss": epoch_loss / len(batches), "dev_ents_f": f1 if dev_examples else None,
                        "seconds": time.perf_counter() - t0})
        say(f"epoch {epoch}: loss {epoch_loss / len(batches):.4f}, dev F1 {f1:.4f} ({time.perf_counter() - t0:.0f} s)")
        if f1 > best[0]:
            best = (f1, ner.model.to_bytes(), epoch)
    ner.model.from_bytes(best[1])
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    summary = {"teacher_seconds": teacher_seconds, "total_seconds": time.perf_counter() - start, "best_epoch": best[2],
               "best_dev_ents_f": best[0] if dev_examples else None, "history": history, "n_docs": len(docs),
               "n_vectors": len(vectors), "bad_rows": index["errors"]}
    (output / "distill.json").write_text(json.dumps(summary, indent=1))
    return summary
