"""Registered, versioned model builders. Thin: they wire layers, they hold no logic.

A published ``v1`` never changes; a changed architecture is added beside it as ``v2``.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.span_getters import configure_strided_spans
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, deserialize_attr, serialize_attr
from thinc.types import Floats3d, Ints1d

from .backbone import EMBEDDED_BACKBONE, FrozenBackbone
from .batching import length_chunks
from .layers.exits import MultiExitHead
from .layers.head import PosAttnHead
from .layers.lexical import lexical_ids

# (scores (n_docs, longest, n_tags), lengths (n_docs,))
PaddedScores = Tuple[Floats3d, Ints1d]
# The head runs on length-sorted groups of at most this many padded tokens: in a
# spaCy batch of sentences the longest one would otherwise set everybody's cost.
HEAD_TOKEN_BUDGET = 2048


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
    if not 0 < stride <= window:
        raise ValueError(f"FrozenBackbone: need 0 < stride <= window, got stride={stride}, window={window}")
    backbone = FrozenBackbone(
        name,
        configure_strided_spans(window, stride),
        window_spec=f"strided_spans:{window}:{stride}",
        batch_wordpieces=batch_wordpieces,
    )
    return Model("frozen_backbone", _backbone_forward, attrs={"backbone": backbone})


def _backbone_forward(model: Model, docs: List[Doc], is_train: bool):
    backbone: FrozenBackbone = model.attrs["backbone"]
    cache = backbone.cache
    if cache is not None and (is_train or backbone.cache_in_predict):
        feats = cache.get_or_compute(docs, backbone.train_key, backbone.train_features)
    elif is_train:
        feats = backbone.train_features(docs)
    else:
        feats = backbone.features(docs, precision=backbone.precision)
    return feats, lambda d_feats: []


@serialize_attr.register(FrozenBackbone)
def _serialize_backbone(_: FrozenBackbone, value: FrozenBackbone, name: str, model: Model) -> bytes:
    return value.to_bytes()


@deserialize_attr.register(FrozenBackbone)
def _deserialize_backbone(_: FrozenBackbone, value: bytes, name: str, model: Model) -> FrozenBackbone:
    return _.from_bytes(value)


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
    relative-position attention blocks → one score per BILUO tag.

    The PyTorch head is built at ``initialize`` once the tag count (nO) and the
    backbone's size are known; ``ensure_head`` rebuilds it before weights load.
    """
    head_config = {
        "width": width,
        "depth": depth,
        "n_heads": n_heads,
        "max_distance": max_distance,
        "lexical_rows": list(lexical_rows),
        "lexical_width": lexical_width,
        "dropout": dropout,
    }
    return Model(
        "posattn_tagger",
        _tagger_forward,
        init=_tagger_init,
        layers=[backbone],
        dims={"nO": nO},
        attrs={"head_config": head_config},
    )


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
    ``exit_layers`` (1 = after the first transformer layer; None = every layer),
    each over the hidden states up to its layer. All exits train jointly on the
    cached features; at inference a confident doc leaves at its first confident exit.
    """
    model = build_posattn_tagger(
        backbone, width, depth, n_heads, max_distance, lexical_rows, lexical_width, dropout, nO
    )
    model.name = "posattn_exit_tagger"
    model.attrs["head_config"]["exit_layers"] = None if exit_layers is None else list(exit_layers)
    return model


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
    number for every exit or a list with one entry per exit layer. Most docs leave
    at the first exit, so its head sets the inference cost; the last can stay large.
    """
    model = build_posattn_exit_tagger(
        backbone, exit_layers, 256, 2, n_heads, max_distance, lexical_rows, lexical_width, dropout, nO
    )
    model.attrs["head_config"]["width"] = list(width) if isinstance(width, (list, tuple)) else width
    model.attrs["head_config"]["depth"] = list(depth) if isinstance(depth, (list, tuple)) else depth
    return model


def _per_exit(cfg: Dict[str, Any], exit_layers: List[int]) -> List[Dict[str, int]]:
    """Each exit's width and depth from a v3 config (a number, or one per exit)."""
    values = {}
    for key in ("width", "depth"):
        value = cfg[key]
        if isinstance(value, int):
            value = [value] * len(exit_layers)
        if len(value) != len(exit_layers):
            raise ValueError(
                f"PosAttnTagger: {key} {value} has {len(value)} entries for {len(exit_layers)} exit layers "
                f"{exit_layers}: give one number, or one per exit layer"
            )
        values[key] = [int(v) for v in value]
    return [{"width": w, "depth": d} for w, d in zip(values["width"], values["depth"])]


def resolve_exit_layers(model: Model, n_layers: int) -> Optional[List[int]]:
    """The exit layers of a v2 model (None for v1), checked against the backbone."""
    cfg = model.attrs["head_config"]
    if "exit_layers" not in cfg:
        return None
    layers = cfg["exit_layers"]
    if layers is None:
        return list(range(1, n_layers))
    if not layers or sorted(set(layers)) != list(layers) or layers[0] < 1 or layers[-1] > n_layers - 1:
        raise ValueError(
            f"exit_layers {layers}: need increasing layer numbers between 1 and {n_layers - 1} "
            f"(the backbone has {n_layers - 1} layers)"
        )
    return list(layers)


def get_backbone(model: Model) -> FrozenBackbone:
    return model.layers[0].attrs["backbone"]


def get_head(model: Model) -> torch.nn.Module:
    """The PyTorch head (built at initialize): PosAttnHead (v1) or MultiExitHead (v2)."""
    if len(model.layers) < 2:
        raise ValueError("the posattn_ner head is built at initialize; call nlp.initialize() first")
    return model.layers[1].shims[0]._model


def ensure_head(model: Model, n_layers: int, hidden_width: int) -> None:
    """Create the PyTorch head from the model's config if it is not there yet."""
    if len(model.layers) > 1:
        return
    cfg: Dict[str, Any] = model.attrs["head_config"]
    kwargs = dict(
        hidden_width=hidden_width,
        n_tags=model.get_dim("nO"),
        n_heads=cfg["n_heads"],
        max_distance=cfg["max_distance"],
        lexical_rows=cfg["lexical_rows"],
        lexical_width=cfg["lexical_width"],
        dropout=cfg["dropout"],
    )
    exit_layers = resolve_exit_layers(model, n_layers)
    if exit_layers is None:
        head: torch.nn.Module = PosAttnHead(n_layers=n_layers, width=cfg["width"], depth=cfg["depth"], **kwargs)
    else:
        head = MultiExitHead(exit_layers, _per_exit(cfg, exit_layers), **kwargs)
    model._layers.append(PyTorchWrapper_v2(head, convert_inputs=_pad_inputs))


def _tagger_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    if not model.has_dim("nO"):
        raise ValueError("PosAttnTagger: nO (the number of tags) must be set before initialize")
    backbone = get_backbone(model).load()
    ensure_head(model, backbone.n_layers, backbone.width)


def _tagger_forward(model: Model, docs: List[Doc], is_train: bool):
    n_tags = model.get_dim("nO")
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int32")
    longest = int(lengths.max()) if len(docs) else 0
    full = model.ops.alloc3f(len(docs), longest, n_tags)
    nonempty = [i for i, n in enumerate(lengths) if n > 0]
    if not nonempty:
        return (full, lengths), lambda d_scores: []
    backbone, head = model.layers
    docs_in = [docs[i] for i in nonempty]
    feats, _ = backbone(docs_in, is_train)
    rows = model.attrs["head_config"]["lexical_rows"]
    lex = [lexical_ids(doc, rows) for doc in docs_in]
    full = None
    callbacks = []
    for chunk in length_chunks(lengths[nonempty], HEAD_TOKEN_BUDGET):
        scores, backprop_chunk = head(([feats[k] for k in chunk], [lex[k] for k in chunk]), is_train)
        if full is None:  # v1: (n_docs, T, n_tags); v2: (n_exits, n_docs, T, n_tags)
            full = model.ops.alloc(scores.shape[:-3] + (len(docs), longest, n_tags), dtype="f")
        targets = [nonempty[k] for k in chunk]
        full[..., targets, : scores.shape[-2], :] = scores
        callbacks.append((targets, scores.shape[-2], backprop_chunk))

    def backprop(d_scores: Floats3d) -> List:
        # each chunk's gradients accumulate in the head's parameters until finish_update
        for targets, length, backprop_chunk in callbacks:
            backprop_chunk(model.ops.xp.ascontiguousarray(d_scores[..., targets, :length, :]))
        return []

    return (full, lengths), backprop


def pad_features(
    feats: Sequence[numpy.ndarray], lex: Sequence[numpy.ndarray], device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad per-doc features into (B, L, T, W) float16, lexical ids (B, T, A, S) and
    a token mask (B, T), on ``device``: the head's input, in training and inference."""
    n_layers, _, width = feats[0].shape
    longest = max(f.shape[1] for f in feats)
    hidden = numpy.zeros((len(feats), n_layers, longest, width), dtype=numpy.float16)
    lex_ids = numpy.zeros((len(feats), longest) + lex[0].shape[1:], dtype=numpy.int64)
    mask = numpy.zeros((len(feats), longest), dtype=bool)
    for i, (f, ids) in enumerate(zip(feats, lex)):
        n = f.shape[1]
        hidden[i, :, :n] = f
        lex_ids[i, :n] = ids
        mask[i, :n] = True
    return tuple(torch.from_numpy(a).to(device) for a in (hidden, lex_ids, mask))  # type: ignore[return-value]


def _pad_inputs(model: Model, X, is_train: bool):
    feats, lex = X
    device = next(model.shims[0]._model.parameters()).device
    return ArgsKwargs(args=pad_features(feats, lex, device), kwargs={}), lambda dX: []
