"""Registered, versioned model builders: thin functions that wire ``models``.

A published ``v1`` never changes; a changed architecture is added beside it as ``v2``.
"""
from functools import partial
from typing import List, Optional, Sequence, Union

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.span_getters import configure_strided_spans
from thinc.api import Model

from .backbone import EMBEDDED_BACKBONE, FrozenBackbone
from .models import PaddedScores, backbone_model, tagger_model
from .segments import sentence_strided_spans


@registry.architectures("spacy-posattn-ner.FrozenBackbone.v1")
def build_frozen_backbone(
    name: str = EMBEDDED_BACKBONE,
    window: int = 128,
    stride: int = 96,
    batch_wordpieces: int = 8192,
) -> Model[List[Doc], List[numpy.ndarray]]:
    """Docs → per-doc float16 ``(n_layers, n_tokens, width)`` features; never trained.

    ``window``/``stride`` are in spaCy tokens (spacy-transformers' strided spans):
    overlapping windows give every token left and right context in long docs.
    """
    _check_stride(window, stride)
    spans = configure_strided_spans(window, stride)
    return backbone_model(FrozenBackbone(name, spans, f"strided_spans:{window}:{stride}", batch_wordpieces))


@registry.architectures("spacy-posattn-ner.FrozenBackbone.v2")
def build_frozen_backbone_v2(
    name: str = EMBEDDED_BACKBONE,
    window: int = 128,
    stride: int = 96,
    batch_wordpieces: int = 8192,
    sentence_windows: bool = True,
) -> Model[List[Doc], List[numpy.ndarray]]:
    """FrozenBackbone.v1 that, with ``sentence_windows``, tags each sentence on its own
    where a doc's sentence starts are set: its windows never cross a sentence start
    (strided within a sentence longer than ``window``) and the heads read one sentence
    at a time, in training and inference alike. A doc's answer is then exactly its
    sentences' answers as docs of their own (what a model trained on one-sentence
    docs was trained on), and a sentence that exits early stops its windows and its
    heads. Docs without sentence starts are one segment, with v1's windows."""
    if not sentence_windows:
        return build_frozen_backbone(name, window, stride, batch_wordpieces)
    _check_stride(window, stride)
    spans = partial(sentence_strided_spans, window=window, stride=stride)
    spec = f"sentence_strided_spans:{window}:{stride}"
    return backbone_model(FrozenBackbone(name, spans, spec, batch_wordpieces, per_sentence=True))


def _check_stride(window: int, stride: int) -> None:
    if not 0 < stride <= window:
        raise ValueError(f"FrozenBackbone: need 0 < stride <= window, got stride={stride}, window={window}")


def _head_config(width, depth, n_heads, max_distance, lexical_rows, lexical_width, dropout) -> dict:
    return {
        "width": list(width) if isinstance(width, (list, tuple)) else width,
        "depth": list(depth) if isinstance(depth, (list, tuple)) else depth,
        "n_heads": n_heads,
        "max_distance": max_distance,
        "lexical_rows": list(lexical_rows),
        "lexical_width": lexical_width,
        "dropout": dropout,
    }


@registry.architectures("spacy-posattn-ner.PosAttnTagger.v1")
def build_posattn_tagger(
    backbone: Model[List[Doc], List[numpy.ndarray]],
    width: int = 256,
    depth: int = 2,
    n_heads: int = 4,
    max_distance: int = 16,
    lexical_rows: Sequence[int] = (5000, 1000, 2500, 500),
    lexical_width: int = 64,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], PaddedScores]:
    """Frozen backbone → scalar mix + hashed NORM/PREFIX/SUFFIX/SHAPE → ``depth``
    relative-position attention blocks → one score per BILUO tag."""
    cfg = _head_config(width, depth, n_heads, max_distance, lexical_rows, lexical_width, dropout)
    return tagger_model("posattn_tagger", backbone, cfg, nO)


@registry.architectures("spacy-posattn-ner.PosAttnTagger.v2")
def build_posattn_exit_tagger(
    backbone: Model[List[Doc], List[numpy.ndarray]],
    exit_layers: Optional[List[int]] = None,
    width: int = 256,
    depth: int = 2,
    n_heads: int = 4,
    max_distance: int = 16,
    lexical_rows: Sequence[int] = (5000, 1000, 2500, 500),
    lexical_width: int = 64,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], PaddedScores]:
    """PosAttnTagger.v1 with early exit: one head per backbone layer in
    ``exit_layers`` (1 = after the first transformer layer, -1 = after the last;
    None = every layer),
    each over the hidden states up to its layer, all trained jointly."""
    cfg = _head_config(width, depth, n_heads, max_distance, lexical_rows, lexical_width, dropout)
    cfg["exit_layers"] = None if exit_layers is None else list(exit_layers)
    return tagger_model("posattn_exit_tagger", backbone, cfg, nO)


@registry.architectures("spacy-posattn-ner.PosAttnTagger.v3")
def build_posattn_exit_tagger_v3(
    backbone: Model[List[Doc], List[numpy.ndarray]],
    exit_layers: Optional[List[int]] = None,
    width: Union[int, List[int]] = 256,
    depth: Union[int, List[int]] = 2,
    n_heads: int = 4,
    max_distance: int = 16,
    lexical_rows: Sequence[int] = (5000, 1000, 2500, 500),
    lexical_width: int = 64,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], PaddedScores]:
    """PosAttnTagger.v2 with a head size per exit: ``width`` and ``depth`` are a
    number for every exit or a list with one entry per exit layer (most docs leave
    at the first exit, so its head sets the inference cost; the last can stay large)."""
    cfg = _head_config(width, depth, n_heads, max_distance, lexical_rows, lexical_width, dropout)
    cfg["exit_layers"] = None if exit_layers is None else list(exit_layers)
    return tagger_model("posattn_exit_tagger", backbone, cfg, nO)
