"""The registered student architecture (``spacy-posattn-ner.Student.v1``)."""
from typing import List, Optional, Sequence

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from ..models import PaddedScores
from .model import student_model


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
    nO: Optional[int] = None,
) -> Model[List[Doc], PaddedScores]:
    """A compact tagger distilled from a posattn_ner teacher, with no transformer:
    static per-word vectors (``vectors_width`` dims, PCA of the teacher's states,
    filled in by ``spacy-posattn-ner distill``; all OOV until then) and hashed
    NORM/PREFIX/SUFFIX/SHAPE embeddings → ``depth`` maxout window convolutions
    (``window`` tokens either side, residual, layer norm) → optionally a BiLSTM of
    ``lstm_width`` each way (0: none) → one score per BILUO tag. With
    ``sentence_windows``, each sentence is read on its own where a doc's sentence
    starts are set (as the teacher's FrozenBackbone.v2 does)."""
    for key, value, low in (("vectors_width", vectors_width, 1), ("width", width, 1), ("depth", depth, 0),
                            ("window", window, 0), ("maxout_pieces", maxout_pieces, 1), ("lstm_width", lstm_width, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"Student.v1: {key} must be an integer >= {low}, got {value!r}")
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
    return student_model(cfg, vectors_width, sentence_windows, nO)
