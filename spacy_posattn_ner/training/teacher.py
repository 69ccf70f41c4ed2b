"""A teacher's tag distributions as training data: attached to an example's reference doc
by the ``spacy-posattn-ner.TeacherTargets.v1`` reader, read by the component's
``get_loss`` (``distill_loss``). This is all distillation adds to training: ``spacy
train`` runs it with its own loop, schedule, evaluation and ``model-best``.

The distributions live on the reference (the "what to learn" side of an ``Example``),
which spaCy's ``Language.update`` does not copy, under ``user_data[TEACHER_KEY]`` as
``(tags, log_probs)``: the teacher's tag names and its ``(n_tokens, n_tags)``
log-probabilities at temperature 1 (float16). Tags are matched by name, so a student
whose labels were added in another order still learns the right columns.
"""
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import registry

TEACHER_KEY = "posattn_ner.teacher"
INDEX = "index.json"


def attach_teacher(doc: Doc, tags: Sequence[str], log_probs: numpy.ndarray) -> None:
    if log_probs.shape != (len(doc), len(tags)):
        raise ValueError(f"teacher targets of shape {log_probs.shape} for a doc of {len(doc)} tokens and {len(tags)} tags")
    doc.user_data[TEACHER_KEY] = (tuple(tags), log_probs)


def teacher_arrays(
    examples: Sequence[Example], tags: Sequence[str], shape: Tuple[int, int], where: str = "posattn_ner"
) -> Optional[Tuple[numpy.ndarray, numpy.ndarray]]:
    """``(log_probs (n_docs, T, K) float32, has_teacher (n_docs, T) bool)`` in ``tags``'
    order for a batch, or None if no example carries a teacher's distributions."""
    found = [eg.reference.user_data.get(TEACHER_KEY) for eg in examples]
    if all(f is None for f in found):
        return None
    log_probs = numpy.zeros(shape + (len(tags),), dtype="float32")
    has = numpy.zeros(shape, dtype=bool)
    columns: Dict[Tuple[str, ...], numpy.ndarray] = {}
    for i, (eg, item) in enumerate(zip(examples, found)):
        if item is None:
            continue
        t_tags, lp = item
        if t_tags not in columns:
            missing = sorted(set(tags) - set(t_tags))
            if missing:
                raise ValueError(f"{where}: example {i}: the teacher's tags lack {missing} (its labels differ)")
            columns[t_tags] = numpy.asarray([t_tags.index(tag) for tag in tags])
        if len(lp) != len(eg.predicted):
            raise ValueError(f"{where}: example {i}: teacher targets for {len(lp)} tokens, the doc has {len(eg.predicted)}")
        log_probs[i, : len(lp)] = lp[:, columns[t_tags]]
        has[i, : len(lp)] = True
    return log_probs, has


def read_index(path: Path) -> Dict:
    index_path = Path(path) / INDEX
    if not index_path.exists():
        raise ValueError(f"{path}: no {INDEX}: not a directory of teacher targets (spacy-posattn-ner distill writes one)")
    index = json.loads(index_path.read_text(encoding="utf8"))
    if not index.get("complete"):
        raise ValueError(f"{path}: the teacher targets are incomplete; run spacy-posattn-ner distill again to resume")
    return index


def iter_targets(path: Path, nlp: Language) -> Iterator[Tuple[Doc, numpy.ndarray, List[str]]]:
    """Each doc of a targets directory (as the teacher's pipeline tokenized and split it)
    with its teacher log-probabilities and the teacher's tags, shard by shard."""
    index = read_index(path)
    for shard in index["shards"]:
        docs = list(DocBin().from_disk(Path(path) / f"{shard['name']}.spacy").get_docs(nlp.vocab))
        with numpy.load(Path(path) / f"{shard['name']}.npz") as z:
            log_probs, offsets = z["log_probs"], z["offsets"]
        if len(offsets) != len(docs) + 1 or int(offsets[-1]) != len(log_probs):
            raise ValueError(f"{Path(path) / shard['name']}: docs and distributions do not match; delete it and resume")
        for i, doc in enumerate(docs):
            yield doc, log_probs[offsets[i] : offsets[i + 1]], index["tags"]


@registry.readers("spacy-posattn-ner.TeacherTargets.v1")
def teacher_targets_corpus(
    path: Union[str, Path], gold: Optional[Union[str, Path]] = None, limit: int = 0
) -> Callable[[Language], Iterator[Example]]:
    """Training examples from a directory of teacher targets: each doc's reference is its
    gold doc from ``gold`` (a .spacy file; matched by text) where there is one, else the
    doc with its entities missing, and carries the teacher's distributions. ``limit``:
    the first N docs (0: all). Read shard by shard on every pass: memory stays bounded."""
    read_index(path)  # fail at config time, naming the directory
    gold_of: Dict[int, Dict[str, Doc]] = {}  # per vocab: the gold file is read once, not on every pass

    def read(nlp: Language) -> Iterator[Example]:
        if id(nlp.vocab) not in gold_of:
            gold_of[id(nlp.vocab)] = {d.text: d for d in DocBin().from_disk(gold).get_docs(nlp.vocab)} if gold else {}
        gold_docs = gold_of[id(nlp.vocab)]
        for n, (doc, log_probs, tags) in enumerate(iter_targets(Path(path), nlp)):
            if limit and n >= limit:
                return
            reference = gold_docs.get(doc.text)
            if reference is None or len(reference) != len(doc):
                reference = Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
            attach_teacher(reference, tags, log_probs)
            yield Example(doc, reference)

    return read
