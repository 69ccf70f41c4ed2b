"""Distillation: the teacher's targets, the student's vectors, then ``spacy train``.

``distill(teacher, texts, output, config)`` runs three steps, each resumable or cheap:

1. ``targets.write_targets``: the teacher's own inference over TEXTS, streamed to disk in
   shards (bad rows reported by file and line);
2. the static vectors: per-word means of the teacher's states over those texts, reduced
   by PCA (``vectors.pca_reduce``) and written beside the targets;
3. ``spacy train`` on the student config (``configs/student.cfg``) with the targets as
   its training corpus (``spacy-posattn-ner.TeacherTargets.v1``) and the component's
   ``distill_loss``: spaCy's own loop, schedule, evaluation and ``model-best``. Its
   ``model-best`` is copied to OUTPUT, an ordinary pipeline directory.

Without ``--dev``, the dev set is the teacher's own answers on the first ``dev_size``
texts (agreement with the teacher, said so in the summary); they stay in training too.
"""
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..training.teacher import iter_targets
from .targets import SUMS, WordSums, write_targets
from .vectors import StaticVectors, pca_reduce

VECTORS = "vectors.npz"
TEACHER_DEV = "teacher-dev.spacy"


def static_vectors(sums: WordSums, width: int, min_count: int = 2, max_rows: int = 30000) -> StaticVectors:
    """The ``max_rows`` most frequent words seen at least ``min_count`` times, their mean
    teacher states reduced to ``width`` dims (PCA weighted by sqrt(count))."""
    keys, means, counts = sums.means()
    keep = numpy.flatnonzero(counts >= min_count)
    keep = keep[numpy.argsort(-counts[keep], kind="stable")[:max_rows]]
    if not len(keep):
        return StaticVectors(width)
    reduced, _, _ = pca_reduce(means[keep], width, weights=numpy.sqrt(counts[keep]))
    order = numpy.argsort(keys[keep])
    return StaticVectors(width, keys[keep][order], reduced[order])


def teacher_dev(teacher: Language, targets_dir: Path, n: int) -> Path:
    """A dev set of the teacher's own answers on the first ``n`` target docs."""
    docs: List[Doc] = []
    for doc, _, _ in iter_targets(targets_dir, teacher):
        if len(docs) >= n:
            break
        docs.append(doc)
    path = targets_dir / TEACHER_DEV
    DocBin(attrs=["ORTH", "SENT_START", "ENT_IOB", "ENT_TYPE"], docs=list(teacher.pipe(docs))).to_disk(path)
    return path


def distill(
    teacher_path: str,
    texts: str,
    output: Path,
    config: Path,
    *,
    gold: Optional[Path] = None,
    dev: Optional[Path] = None,
    targets_dir: Optional[Path] = None,
    overrides: Optional[Dict[str, object]] = None,
    limit: int = 0,
    text_key: str = "text",
    overwrite: bool = False,
    batch_size: int = 128,
    shard_size: int = 4096,
    min_count: int = 2,
    dev_size: int = 500,
    say: Callable[[str], None] = print,
) -> Dict:
    from spacy.cli.train import train
    from spacy.util import load_config

    start = time.perf_counter()
    teacher = spacy.load(teacher_path)
    targets_dir = Path(targets_dir or output.parent / (output.name + ".targets"))
    index = write_targets(teacher, texts, targets_dir, batch_size=batch_size, shard_size=shard_size, text_key=text_key,
                          limit=limit, overwrite=overwrite, say=say)  # fmt: skip
    teacher_seconds = time.perf_counter() - start
    block = load_config(config, overrides={k: v for k, v in (overrides or {}).items() if k.startswith("components.")})
    width = int(block["components"]["posattn_ner"]["model"].get("vectors_width", 96))
    vectors = static_vectors(WordSums.load(targets_dir / SUMS, len(index["shards"])), width, min_count)
    vectors.to_file(targets_dir / VECTORS)
    say(f"static vectors: {len(vectors):,} words x {width}")
    if dev is None:
        dev = teacher_dev(teacher, targets_dir, dev_size)
        say(f"no --dev: the student is evaluated against the teacher's answers on {dev_size} texts ({dev})")
    ner = next(p for _, p in teacher.pipeline if p.__class__.__name__ == "PosAttnNER")
    train_dir = output.parent / (output.name + ".train")
    settings = {
        "paths.train": str(targets_dir), "paths.dev": str(dev), "paths.gold": str(gold) if gold else None,
        "paths.vectors_table": str(targets_dir / VECTORS),
        "initialize.components.posattn_ner.labels": list(ner.labels),
        "components.posattn_ner.spans_key": ner.spans_key, **(overrides or {}),
    }  # fmt: skip
    t0 = time.perf_counter()
    train(config, train_dir, use_gpu=-1, overrides=settings)
    train_seconds = time.perf_counter() - t0
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(train_dir / "model-best", output)
    meta = json.loads((output / "meta.json").read_text(encoding="utf8"))
    summary = {"teacher": str(teacher_path), "texts": texts, "dev_ents_f": meta.get("performance", {}).get("ents_f"), "teacher_seconds": round(teacher_seconds, 1),
               "train_seconds": round(train_seconds, 1), "total_seconds": round(time.perf_counter() - start, 1),
               "docs": sum(s["docs"] for s in index["shards"]), "tokens": sum(s["tokens"] for s in index["shards"]),
               "n_vectors": len(vectors), "dev": str(dev), "gold": str(gold) if gold else None,
               "bad_rows": index["errors"], "training_dir": str(train_dir)}  # fmt: skip
    (output / "distill.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf8")
    return summary
