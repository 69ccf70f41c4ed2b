"""Gold docs in, fresh docs out: what every benchmark reads and what it feeds a pipeline.

Every system is given Docs built from the gold words (no tokenizer runs), so F1 and
words/s compare the components, not the tokenizers, and the gold tokens line up
one to one with the predicted ones.
"""
from pathlib import Path
from typing import List, Sequence

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus


def read_gold(nlp: Language, path: Path, limit: int = 0) -> List[Doc]:
    """The gold docs of a .spacy file in ``nlp``'s vocab: the first ``limit`` (0 = all),
    empty docs left out (as spaCy's ``Corpus`` does for training and evaluation)."""
    docs = [eg.reference for eg in Corpus(path, limit=limit)(nlp)]
    if not docs:
        raise ValueError(f"{path}: no documents")
    return docs


def sentence_docs(refs: Sequence[Doc]) -> List[Doc]:
    """One gold doc per sentence of ``refs`` (entities kept; none crosses a sentence):
    multi-sentence docs measured as single sentences."""
    return [sent.as_doc() for ref in refs for sent in ref.sents]


def fresh_docs(refs: Sequence[Doc]) -> List[Doc]:
    """Unannotated Docs of the same words and spaces, in the refs' vocab."""
    return [Doc(ref.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref]) for ref in refs]


def count_docs(path: Path) -> int:
    """Docs in a .spacy file, empty ones included."""
    return len(DocBin().from_disk(path))


def write_prefix(nlp: Language, src: Path, dest: Path, limit: int) -> int:
    """The first ``limit`` docs of ``src`` as the .spacy file ``dest`` (for commands
    such as ``spacy evaluate`` that have no limit option); returns how many."""
    docs = read_gold(nlp, src, limit)
    dest.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs).to_disk(dest)
    return len(docs)
