"""Gold docs in, fresh docs out: what every benchmark reads and what it feeds a pipeline.

Every system is given Docs built from the gold words (no tokenizer runs), so F1 and
words/s compare the components, not the tokenizers, and the gold tokens line up
one to one with the predicted ones.
"""
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

from spacy.language import Language
from spacy.tokens import Doc, DocBin

# the package's gold docs and fresh docs (what calibrate-exit measures on), re-exported
from spacy_posattn_ner.calibration import COMPONENT, fresh_docs, read_gold  # noqa: F401


def sentence_docs(refs: Sequence[Doc]) -> List[Doc]:
    """One gold doc per sentence of ``refs`` (entities kept; none crosses a sentence):
    multi-sentence docs measured as single sentences."""
    return [sent.as_doc() for ref in refs for sent in ref.sents]


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


def load_pipeline(path: Path, n_threads: int = 0, need: Optional[str] = COMPONENT) -> Language:
    """The one pipeline loader of the project's scripts: ``spacy.load`` ``path`` with torch
    set to ``n_threads`` threads first (0 = torch's default); a ValueError naming the path
    if it does not load or has no ``need`` component (None: any pipeline)."""
    import spacy
    import torch

    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        nlp = spacy.load(path)
    except Exception as err:  # noqa: BLE001  (any load failure is reported with the path)
        raise ValueError(f"{path}: could not be loaded as a spaCy pipeline: {err}") from None
    if need is not None and need not in nlp.pipe_names:
        raise ValueError(f"{path}: no '{need}' component (pipeline: {', '.join(nlp.pipe_names) or 'empty'})")
    return nlp


@contextmanager
def override(pipe: Any, **settings: Any) -> Iterator[Any]:
    """``with override(ner, exit_threshold=0.0, precision="fp32"):`` runs with those settings
    and restores the pipe's own afterwards, whatever happens inside: the settings API's
    ``ner.settings.override``, yielding the pipe."""
    with pipe.settings.override(**settings):
        yield pipe
