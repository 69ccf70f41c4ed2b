"""The registered student architecture (``spacy-posattn-ner.Student.v1``)."""
from typing import List, Optional, Sequence

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from ..model.nodes import PaddedScores
from .model import check_student_config, student_model


@registry.architectures("spacy-posattn-ner.Student.v1")
def build_student(
    vectors_width: int = 96,
    width: int = 128,
    depth: int = 3,
    window: int = 1,
    maxout_pieces: int = 3,
    lstm_width: int = 0,
    lexical_rows: Sequence[int] = (5000, 1000, 2500, 500),
    lexical_width: int = 64,
    dropout: float = 0.1,
    sentence_windows: bool = True,
    vectors_path: Optional[str] = None,
    nO: Optional[int] = None,
) -> Model[List[Doc], PaddedScores]:
    """A compact tagger distilled from a posattn_ner teacher, with no transformer:
    static per-word vectors (``vectors_width`` dims, PCA of the teacher's states,
    filled in by ``spacy-posattn-ner distill``; all OOV until then) and hashed
    NORM/PREFIX/SUFFIX/SHAPE embeddings → ``depth`` maxout window convolutions
    (``window`` tokens either side, residual, layer norm) → optionally a BiLSTM of
    ``lstm_width`` each way (0: none) → one score per BILUO tag. With
    ``sentence_windows``, each sentence is read on its own where a doc's sentence
    starts are set (as the teacher's FrozenBackbone.v2 does). ``vectors_path``: the table
    ``distill`` writes (``StaticVectors.to_file``), read at initialize; a trained student
    keeps its table in its own weights."""
    cfg = {
        "width": width,
        "depth": depth,
        "window": window,
        "maxout_pieces": maxout_pieces,
        "lstm_width": lstm_width,
        "lexical_rows": list(lexical_rows),
        "lexical_width": lexical_width,
        "dropout": dropout,
    }
    if isinstance(vectors_width, bool) or not isinstance(vectors_width, int) or not 1 <= vectors_width <= 4096:
        raise ValueError(f"Student.v1: vectors_width = {vectors_width!r}: need an integer from 1 to 4096")
    check_student_config(cfg, "Student.v1")
    return student_model(cfg, vectors_width, sentence_windows, nO, vectors_path)
