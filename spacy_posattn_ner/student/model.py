"""The student as a thinc model the ``posattn_ner`` component runs unchanged.

Inference (``model.predict(docs)``) returns the engine's ``TagScores``: log-probs
``(n_docs, longest, n_tags)``, lengths, and exit layer 0 for every segment (the
student's answer used no transformer layer: 0 is the "embeddings" layer in the
teacher's numbering, so ``doc._.exit_layer``/``exit_layers`` stay ints, one per
segment). Training (``begin_update``) returns the tagger's padded scores and a
backprop, as ``models._train_forward`` does, so the component's loss, decoding,
scores, calibration and serialization work as they do for the teacher.

The node structure mirrors the tagger's: a ``backbone`` ref (here a node holding
the ``StaticVectors`` table and the precision attrs the component reads) and a
``head`` ref built at initialize (the PyTorch ``StudentNet`` in a shim).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, PyTorchShim
from thinc.types import Floats3d

from ..batching import length_chunks
from ..layers.lexical import lexical_ids_many
from ..model.build import MAX_LEXICAL_ROWS, MAX_WIDTH, _int_in, ensure_head
from ..model.engine import TagScores, segment_ids
from ..model.nodes import PaddedScores
from ..segments import head_rows
from .net import StudentNet
from .vectors import StaticVectors

# rows (sentences) are scored in length-sorted groups of at most this many padded tokens
TOKEN_BUDGET = 8192
HEAD_BUILDER = "spacy-posattn-ner.student_head.v1"
# the head_config keys, which are StudentNet's size arguments
STUDENT_KEYS = ("width", "depth", "window", "maxout_pieces", "lstm_width", "lexical_rows", "lexical_width", "dropout")


def student_model(
    head_config: Dict[str, Any], vectors_width: int, per_sentence: bool, nO: Optional[int], vectors_path: Optional[str] = None
) -> Model:
    vectors = StaticVectors(vectors_width)
    vectors.per_sentence = per_sentence
    inputs = Model("static_vectors", _inputs_forward, attrs={"backbone": vectors, "settings": None})
    return Model(
        "posattn_student",
        _student_forward,
        init=_student_init,
        layers=[inputs],
        refs={"backbone": inputs, "head": None},
        dims={"nO": nO},
        attrs={"head_config": head_config, "head_builder": HEAD_BUILDER, "settings": None, "vectors_path": vectors_path},
    )


def _inputs_forward(model: Model, docs: List[Doc], is_train: bool):
    raise NotImplementedError("the student's vectors node is read by the student model, not called")


def get_vectors(model: Model) -> StaticVectors:
    return model.get_ref("backbone").attrs["backbone"]


def set_vectors(model: Model, vectors: StaticVectors) -> None:
    """Install a table (at distillation, before training)."""
    old = get_vectors(model)
    if vectors.width != old.width:
        raise ValueError(f"Student: vectors of width {vectors.width}, the model's config says vectors_width = {old.width}")
    vectors.per_sentence, vectors.cache = old.per_sentence, old.cache
    model.get_ref("backbone").attrs["backbone"] = vectors


def get_net(model: Model) -> StudentNet:
    return model.get_ref("head").shims[0]._model


def check_student_config(cfg: Dict[str, Any], where: str) -> None:
    """Refuse sizes no student can have, naming ``where`` and the setting."""
    for key, low in (("width", 1), ("depth", 0), ("window", 0), ("maxout_pieces", 1), ("lstm_width", 0),
                     ("lexical_width", 1)):
        if not _int_in(cfg.get(key), low, MAX_WIDTH):
            raise ValueError(f"{where}: {key} = {cfg.get(key)!r}: need an integer from {low} to {MAX_WIDTH}")
    rows = cfg.get("lexical_rows")
    if not isinstance(rows, list) or len(rows) != 4 or not all(_int_in(r, 1, MAX_LEXICAL_ROWS) for r in rows):
        raise ValueError(f"{where}: lexical_rows = {rows!r}: need four integers from 1 to {MAX_LEXICAL_ROWS}")
    dropout = cfg.get("dropout")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{where}: dropout = {dropout!r}: need a number in [0, 1)")


class StudentHeadBuilder:
    """The student's net, from its config (at initialize, and before weights are loaded)."""

    check = staticmethod(check_student_config)

    @staticmethod
    def build(model: Model, n_layers: int = 1, hidden_width: int = 0, where: str = "Student") -> None:
        from thinc.util import get_torch_default_device

        cfg = model.attrs["head_config"]
        check_student_config(cfg, where)
        sizes = {key: cfg[key] for key in STUDENT_KEYS}
        net = StudentNet(vectors_width=get_vectors(model).width, n_tags=model.get_dim("nO"), **sizes)
        net = net.to(get_torch_default_device())
        head = Model("student_net", _inputs_forward, shims=[PyTorchShim(net)])
        model.layers.append(head)
        model.set_ref("head", head)


@registry.misc(HEAD_BUILDER)
def student_head_builder() -> StudentHeadBuilder:
    return StudentHeadBuilder()


def _student_init(model: Model, X=None, Y=None) -> None:
    if not model.has_dim("nO") or model.get_dim("nO") is None:
        raise ValueError("Student: nO (the number of tags) must be set before initialize")
    vectors_path = model.attrs.get("vectors_path")
    if vectors_path:
        set_vectors(model, StaticVectors.from_file(vectors_path))
    ensure_head(model, 1, get_vectors(model).width, "Student.v1")


class _Rows:
    """The rows a batch of docs is read in, and each row's tokens in the flat token order."""

    def __init__(self, model: Model, docs: Sequence[Doc]):
        vectors = get_vectors(model)
        self.lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
        self.offsets = numpy.concatenate([[0], numpy.cumsum(self.lengths)])
        rows = head_rows(docs, vectors.per_sentence)
        self.first = self.offsets[rows[:, 0]] + rows[:, 1]
        self.length = rows[:, 2] - rows[:, 1]
        ids = vectors.ids(docs)
        self.known = torch.from_numpy(ids >= 0)
        self.vecs = vectors.torch_table()[torch.from_numpy(ids)]  # -1 → the zero row
        self.lex = torch.from_numpy(lexical_ids_many(docs, model.attrs["head_config"]["lexical_rows"]))

    def chunks(self, budget: int):
        """(token index (B, T), mask (B, T)) per length-sorted group of rows."""
        for chunk in length_chunks(self.length, budget):
            first, length = self.first[chunk], self.length[chunk]
            T = int(length.max())
            mask = numpy.arange(T)[None, :] < length[:, None]
            index = numpy.where(mask, first[:, None] + numpy.arange(T)[None, :], 0)
            yield torch.from_numpy(index), torch.from_numpy(mask)

    def run(self, net: StudentNet, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return net(self.vecs[index], self.known[index], self.lex[index], mask)

    def padded_index(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each flat token's (doc, position) in the padded output."""
        doc_of = numpy.repeat(numpy.arange(len(self.lengths)), self.lengths)
        position = numpy.arange(int(self.offsets[-1])) - numpy.repeat(self.offsets[:-1], self.lengths)
        return torch.from_numpy(doc_of), torch.from_numpy(position)


def predict_student_scores(model: Model, docs: Sequence[Doc]) -> TagScores:
    """Tag log-probs for ``docs`` (fp32, no autograd), in the engine's ``TagScores``."""
    net = get_net(model)
    if net.training:
        net.eval()
    n_tags = model.get_dim("nO")
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
    seg_np, seg_doc = segment_ids(docs)
    out = TagScores(
        log_probs=torch.zeros((len(docs), int(lengths.max(initial=0)), n_tags)),
        lengths=torch.from_numpy(lengths),
        exit_layer=torch.from_numpy(numpy.where(lengths > 0, 0, -1).astype("int64")),
        segment_exit_layer=torch.zeros(len(seg_doc), dtype=torch.long),
        segment_doc=seg_doc,
    )
    if not lengths.sum():
        return out
    with torch.inference_mode():
        rows = _Rows(model, docs)
        flat = torch.empty((int(rows.offsets[-1]), n_tags))
        for index, mask in rows.chunks(TOKEN_BUDGET):
            log_probs = torch.log_softmax(rows.run(net, index, mask), dim=-1)
            flat[index[mask]] = log_probs[mask]
        doc_of, position = rows.padded_index()
        out.log_probs[doc_of, position] = flat
    return out


def _student_forward(model: Model, docs: List[Doc], is_train: bool):
    if not is_train:
        return predict_student_scores(model, docs), lambda d_scores: []
    return _train_forward(model, docs)


def _train_forward(model: Model, docs: List[Doc]):
    """Padded scores ``(n_docs, longest, n_tags)`` (numpy float32) with a backprop into the net."""
    net = get_net(model)
    net.train()
    n_tags = model.get_dim("nO")
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int32")
    longest = int(lengths.max()) if len(docs) else 0
    if not lengths.sum():
        return (model.ops.alloc3f(len(docs), longest, n_tags), lengths), lambda d_scores: []
    rows = _Rows(model, docs)
    flat_parts, where = [], []
    for index, mask in rows.chunks(TOKEN_BUDGET // 4):
        flat_parts.append(rows.run(net, index, mask)[mask])
        where.append(index[mask])
    flat = torch.cat(flat_parts)
    doc_of, position = rows.padded_index()
    order = torch.cat(where)
    full = torch.zeros((len(docs), longest, n_tags))
    full[doc_of[order], position[order]] = flat
    scores = full.detach().numpy().copy()

    def backprop(d_scores: Floats3d) -> List:
        full.backward(torch.from_numpy(numpy.ascontiguousarray(d_scores, dtype="float32")))
        return []

    return (scores, lengths), backprop
