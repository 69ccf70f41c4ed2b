"""The thinc models: a frozen-backbone node and the tagger over it.

The tagger has two paths and one of each: training runs the heads (every exit) on
the backbone's training features, read through the feature cache; inference is
``engine.tag_scores``, the same for every model, whether trained in this process,
loaded from disk or installed from a wheel. The PyTorch head's size depends on the
labels, so it is built at ``initialize`` (and rebuilt from the component's cfg
before its weights are loaded).
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, deserialize_attr, serialize_attr
from thinc.types import Floats3d, Ints1d

from .backbone import FrozenBackbone
from .batching import length_chunks
from .engine import TagScores, tag_scores
from .layers.exits import MultiExitHead
from .layers.head import PosAttnHead
from .layers.lexical import lexical_ids_many
from .segments import head_rows

# training output: (scores (n_docs, longest, n_tags), or (n_exits, ...) with exits; lengths)
PaddedScores = Tuple[Floats3d, Ints1d]
# In training the head runs on length-sorted groups of at most this many padded tokens.
TRAIN_TOKEN_BUDGET = 2048
# Other heads (the distilled student): head_config["head_builder"] names one here, and
# ensure_head calls it instead of building a PosAttnHead (the component rebuilds the
# head through ensure_head before loading weights).
HEAD_BUILDERS: Dict[str, Callable[[Model, int, int], None]] = {}


# -- the backbone node ---------------------------------------------------------
def backbone_model(backbone: FrozenBackbone) -> Model[List[Doc], List[numpy.ndarray]]:
    """A node that holds the backbone (serialized with the model) and its precision
    settings; its forward gives the training features."""
    attrs = {"backbone": backbone, "precision": "auto", "train_precision": "fp32"}
    return Model("frozen_backbone", _backbone_forward, attrs=attrs)


def _backbone_forward(model: Model, docs: List[Doc], is_train: bool):
    backbone: FrozenBackbone = model.attrs["backbone"]
    return backbone.train_features(docs, model.attrs["train_precision"]), lambda d_feats: []


@serialize_attr.register(FrozenBackbone)
def _serialize_backbone(_: FrozenBackbone, value: FrozenBackbone, name: str, model: Model) -> bytes:
    return value.to_bytes()


@deserialize_attr.register(FrozenBackbone)
def _deserialize_backbone(_: FrozenBackbone, value: bytes, name: str, model: Model) -> FrozenBackbone:
    return _.from_bytes(value)


# -- the tagger ----------------------------------------------------------------
def tagger_model(name: str, backbone: Model, head_config: Dict[str, Any], nO: Optional[int]) -> Model:
    """The tagger over ``backbone``; ``head_config`` sizes the head built at initialize."""
    return Model(
        name,
        _tagger_forward,
        init=_tagger_init,
        layers=[backbone],
        refs={"backbone": backbone, "head": None},
        dims={"nO": nO},
        attrs={"head_config": head_config, "exit_threshold": 1.0},
    )


def get_backbone(model: Model) -> FrozenBackbone:
    return model.get_ref("backbone").attrs["backbone"]


def has_head(model: Model) -> bool:
    return bool(model.has_ref("head"))


def get_head(model: Model) -> torch.nn.Module:
    """The PyTorch head (built at initialize): PosAttnHead (v1) or MultiExitHead (v2, v3)."""
    if not has_head(model):
        raise ValueError("the posattn_ner head is built at initialize; call nlp.initialize() first")
    return model.get_ref("head").shims[0]._model


def drop_head(model: Model) -> None:
    """Remove the head (re-initialization, or before a head of saved sizes is built)."""
    if has_head(model):
        model.layers.remove(model.get_ref("head"))
        model.set_ref("head", None)


def resolve_exit_layers(model: Model, n_layers: int) -> Optional[List[int]]:
    """The exit layers of an exit model (None without early exit), checked against the
    backbone. A negative number counts from the last layer (-1 = the last), so one
    config fits backbones of any depth."""
    cfg = model.attrs["head_config"]
    if "exit_layers" not in cfg:
        return None
    given = cfg["exit_layers"]
    if given is None:
        return list(range(1, n_layers))
    layers = [k + n_layers if k < 0 else k for k in given]
    if not layers or sorted(set(layers)) != layers or layers[0] < 1 or layers[-1] > n_layers - 1:
        raise ValueError(
            f"exit_layers {given}: need increasing layer numbers between 1 and {n_layers - 1} "
            f"(the backbone has {n_layers - 1} layers; -1 is the last)"
        )
    return layers


def _per_exit(cfg: Dict[str, Any], exit_layers: List[int]) -> List[Dict[str, int]]:
    """Each exit's width and depth (a number for all, or one per exit)."""
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


def ensure_head(model: Model, n_layers: int, hidden_width: int) -> None:
    """Create the PyTorch head from the model's config if it is not there yet."""
    if has_head(model):
        return
    cfg: Dict[str, Any] = model.attrs["head_config"]
    if cfg.get("head_builder") is not None:
        HEAD_BUILDERS[cfg["head_builder"]](model, n_layers, hidden_width)
        return
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
    from thinc.util import get_torch_default_device

    wrapper = PyTorchWrapper_v2(head.to(get_torch_default_device()), convert_inputs=_pad_inputs)
    model.layers.append(wrapper)
    model.set_ref("head", wrapper)


def _tagger_init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    if not model.has_dim("nO"):
        raise ValueError("PosAttnTagger: nO (the number of tags) must be set before initialize")
    backbone = get_backbone(model).load()
    ensure_head(model, backbone.n_layers, backbone.width)


def _tagger_forward(model: Model, docs: List[Doc], is_train: bool):
    if not is_train:
        return predict_tag_scores(model, docs), lambda d_scores: []
    return _train_forward(model, docs)


def predict_tag_scores(model: Model, docs: Sequence[Doc]) -> TagScores:
    """The inference path (``engine.tag_scores``) with this model's settings."""
    backbone_node = model.get_ref("backbone")
    return tag_scores(
        backbone_node.attrs["backbone"],
        get_head(model),
        docs,
        model.attrs["head_config"]["lexical_rows"],
        threshold=model.attrs["exit_threshold"],
        precision=backbone_node.attrs["precision"],
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

    def backprop(d_scores: Floats3d) -> List:
        # each chunk's gradients accumulate in the head's parameters until finish_update
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


def _pad_inputs(model: Model, X, is_train: bool):
    feats, lex = X
    device = next(model.shims[0]._model.parameters()).device
    return ArgsKwargs(args=pad_features(feats, lex, device), kwargs={}), lambda dX: []
