"""The thinc models: a frozen-backbone node and the tagger over it.

The tagger has two paths and one of each: training runs the heads (every exit) on
the backbone's training features, read through the feature cache; inference is
``engine.tag_scores``, the same for every model, whether trained in this process,
loaded from disk or installed from a wheel. The PyTorch head's size depends on the
labels, so it is built at ``initialize`` (``build.py``; rebuilt from the component's
cfg before its weights are loaded).

Runtime settings (exit threshold and policy, precisions) are not the model's: the
component owns them (``settings.py``) and hands them over in ``attrs["settings"]``;
they are never saved with the model's bytes.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, deserialize_attr, serialize_attr
from thinc.types import Floats3d, Floats4d, Ints1d

from ..backbone import FrozenBackbone
from ..batching import length_chunks
from ..layers.lexical import lexical_ids_many
from ..segments import head_rows
from ..settings import SettingValues, Settings
from .build import ensure_head, get_head
from .engine import Observer, TagScores, tag_scores

# training output: (scores (n_docs, longest, n_tags), or (n_exits, ...) with exits; lengths)
PaddedScores = Tuple[Union[Floats3d, Floats4d], Ints1d]
# what the tagger gives: TagScores when predicting, PaddedScores in training (begin_update)
TaggerOutput = Union[TagScores, PaddedScores]
# In training the head runs on length-sorted groups of at most this many padded tokens.
TRAIN_TOKEN_BUDGET = 2048
_DEFAULTS = SettingValues()


# -- the backbone node ---------------------------------------------------------
def backbone_model(backbone: FrozenBackbone) -> Model[List[Doc], List[numpy.ndarray]]:
    """A node that holds the backbone (serialized with the model); its forward gives the
    training features at the ``train_precision`` of the settings handed to it."""
    return Model("frozen_backbone", _backbone_forward, attrs={"backbone": backbone, "settings": None})


def _backbone_forward(model: Model, docs: List[Doc], is_train: bool):
    backbone: FrozenBackbone = model.attrs["backbone"]
    return backbone.train_features(docs, settings_of(model).train_precision), lambda d_feats: []


@serialize_attr.register(FrozenBackbone)
def _serialize_backbone(_: FrozenBackbone, value: FrozenBackbone, name: str, model: Model) -> bytes:
    return value.to_bytes()


@deserialize_attr.register(FrozenBackbone)
def _deserialize_backbone(_: FrozenBackbone, value: bytes, name: str, model: Model) -> FrozenBackbone:
    return _.from_bytes(value)


@serialize_attr.register(Settings)
def _serialize_settings(_: Settings, value: Settings, name: str, model: Model) -> bytes:
    raise TypeError("not saved with the model: the component saves its settings in its cfg")  # thinc skips it


# -- the tagger ----------------------------------------------------------------
def tagger_model(name: str, backbone: Model, head_config: Dict[str, Any], nO: Optional[int]) -> Model[List[Doc], TaggerOutput]:
    """The tagger over ``backbone``; ``head_config`` sizes the head built at initialize.
    ``predict`` gives ``TagScores``; ``begin_update`` gives ``PaddedScores``."""
    return Model(
        name,
        _tagger_forward,
        init=_tagger_init,
        layers=[backbone],
        refs={"backbone": backbone, "head": None},
        dims={"nO": nO},
        attrs={"head_config": head_config, "settings": None},
    )


def get_backbone(model: Model) -> FrozenBackbone:
    return model.get_ref("backbone").attrs["backbone"]


def hand_settings(model: Model, settings: Settings) -> None:
    """The component hands its settings (the object, not a copy) to the nodes that read them."""
    model.attrs["settings"] = settings
    model.get_ref("backbone").attrs["settings"] = settings


def settings_of(model: Model) -> SettingValues:
    """The settings the component handed over (defaults for a model used on its own)."""
    settings = model.attrs.get("settings")
    return settings.values if settings is not None else _DEFAULTS


def _tagger_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    if not model.has_dim("nO"):
        raise ValueError("PosAttnTagger: nO (the number of tags) must be set before initialize")
    backbone = get_backbone(model).load()
    ensure_head(model, backbone.n_layers, backbone.width)


def _tagger_forward(model: Model, docs: List[Doc], is_train: bool):
    if not is_train:
        return predict_tag_scores(model, docs), lambda d_scores: []
    return _train_forward(model, docs)


def predict_tag_scores(model: Model, docs: Sequence[Doc], observe: Optional[Observer] = None) -> TagScores:
    """The inference path (``engine.tag_scores``) with the settings handed to the model
    (``observe``: see ``engine.tag_scores``)."""
    settings = settings_of(model)
    return tag_scores(
        get_backbone(model),
        get_head(model),
        docs,
        model.attrs["head_config"]["lexical_rows"],
        threshold=settings.exit_threshold,
        precision=settings.precision,
        policy=settings.exit_policy,
        observe=observe,
    )


def _train_forward(model: Model, docs: List[Doc]):
    """Every exit's scores on the training features, with a backprop to the head.
    The heads read what they read at inference: whole docs, or with a per-sentence
    backbone each sentence on its own."""
    n_tags = model.get_dim("nO")
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int32")
    longest = int(lengths.max()) if len(docs) else 0
    nonempty = [i for i, n in enumerate(lengths) if n > 0]
    if not nonempty:
        return (model.ops.alloc3f(len(docs), longest, n_tags), lengths), lambda d_scores: []
    docs_in = [docs[i] for i in nonempty]
    feats, _ = model.get_ref("backbone")(docs_in, is_train=True)
    lex_all = lexical_ids_many(docs_in, model.attrs["head_config"]["lexical_rows"])
    starts = numpy.concatenate([[0], numpy.cumsum(lengths[nonempty])])
    rows = head_rows(docs_in, get_backbone(model).per_sentence)  # (doc k, first, end) within docs_in
    head = model.get_ref("head")
    full = None
    callbacks = []
    for chunk in length_chunks(rows[:, 2] - rows[:, 1], TRAIN_TOKEN_BUDGET):
        spans = rows[chunk].tolist()
        inputs = ([feats[k][:, a:b] for k, a, b in spans], [lex_all[starts[k] + a : starts[k] + b] for k, a, b in spans])
        scores, backprop_chunk = head(inputs, True)
        if full is None:  # no exits: (n_docs, T, n_tags); exits: (n_exits, n_docs, T, n_tags)
            full = model.ops.alloc(scores.shape[:-3] + (len(docs), longest, n_tags), dtype="f")
        for i, (k, a, b) in enumerate(spans):
            full[..., nonempty[k], a:b, :] = scores[..., i, : b - a, :]
        callbacks.append(([(nonempty[k], a, b) for k, a, b in spans], scores.shape, backprop_chunk))

    def backprop(d_scores) -> List:
        # each chunk's gradients accumulate in the head's parameters until the optimizer step
        for spans, shape, backprop_chunk in callbacks:
            d_chunk = model.ops.alloc(shape, dtype="f")
            for i, (doc, a, b) in enumerate(spans):
                d_chunk[..., i, : b - a, :] = d_scores[..., doc, a:b, :]
            backprop_chunk(d_chunk)
        return []

    return (full, lengths), backprop


def pad_features(
    feats: Sequence[numpy.ndarray], lex: Sequence[numpy.ndarray], device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad per-doc training features into (B, L, T, W) float16, lexical ids
    (B, T, A, S) and a token mask (B, T), on ``device``."""
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


def pad_inputs(model: Model, X, is_train: bool):
    feats, lex = X
    device = next(model.shims[0]._model.parameters()).device
    return ArgsKwargs(args=pad_features(feats, lex, device), kwargs={}), lambda dX: []
