"""Static per-word vectors for the student: one row per NORM, derived from the teacher.

The student has no transformer; what it keeps of the teacher's backbone is a table
of word vectors (the teacher's contextual states averaged per word over the
distillation text, reduced by PCA to a few dozen dimensions, float16). A word not in
the table gets the student's learned OOV row. The table is part of the student's
model bytes (``serialize_attr`` below), so a saved pipeline needs nothing else.

``StaticVectors`` also stands where the component expects its backbone
(``get_backbone(model)``): it answers ``n_layers`` (1: the table is the student's
only "layer"), ``width``, ``device`` and holds the ``cache`` attribute the component
sets, so today's ``PosAttnNER`` runs a student unchanged.
"""
import io
from typing import Optional, Sequence, Tuple

import numpy
import torch
from spacy.attrs import NORM
from spacy.tokens import Doc
from thinc.api import Model, deserialize_attr, serialize_attr


class StaticVectors:
    """A sorted table of NORM hashes and their float16 vectors."""

    def __init__(self, width: int, keys: Optional[numpy.ndarray] = None, table: Optional[numpy.ndarray] = None):
        self.width = int(width)
        self.keys = numpy.zeros((0,), dtype="uint64") if keys is None else numpy.asarray(keys, dtype="uint64")
        self.table = numpy.zeros((0, self.width), dtype="float16") if table is None else numpy.asarray(table, dtype="float16")
        if self.table.shape != (len(self.keys), self.width):
            raise ValueError(
                f"StaticVectors: a table of shape {self.table.shape} for {len(self.keys)} keys of width {self.width}"
            )
        if len(self.keys) > 1 and not (self.keys[1:] > self.keys[:-1]).all():
            raise ValueError("StaticVectors: keys must be sorted and unique")
        self.cache = None  # set by the component (a feature cache a student never uses)
        self.per_sentence = True
        self._torch: Optional[torch.Tensor] = None

    # -- the backbone interface the component reads ----------------------------
    n_layers = 1

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def load(self) -> "StaticVectors":
        return self

    # -- lookup ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def ids(self, docs: Sequence[Doc]) -> numpy.ndarray:
        """Each token's row (tokens of all docs end to end), -1 where its NORM is not in the table."""
        norms = [doc.to_array(NORM).astype("uint64") for doc in docs if len(doc)]
        if not norms:
            return numpy.zeros((0,), dtype="int64")
        return self.rows_of(numpy.concatenate(norms))

    def rows_of(self, norms: numpy.ndarray) -> numpy.ndarray:
        if not len(self.keys):
            return numpy.full(len(norms), -1, dtype="int64")
        pos = numpy.searchsorted(self.keys, norms).clip(0, len(self.keys) - 1)
        return numpy.where(self.keys[pos] == norms, pos, -1).astype("int64")

    def torch_table(self) -> torch.Tensor:
        """float32 ``(len + 1, width)``: the table and a zero row last (where -1 points)."""
        if self._torch is None or self._torch.shape[0] != len(self.keys) + 1:
            t = numpy.zeros((len(self.keys) + 1, self.width), dtype="float32")
            t[: len(self.keys)] = self.table
            self._torch = torch.from_numpy(t)
        return self._torch

    # -- serialization ---------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        numpy.savez(buf, width=numpy.asarray(self.width), keys=self.keys, table=self.table)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "StaticVectors":
        with numpy.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(int(z["width"]), z["keys"], z["table"])

    def to_file(self, path) -> None:
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def from_file(cls, path) -> "StaticVectors":
        """A table written by ``to_file`` (``spacy-posattn-ner distill`` writes one beside its targets)."""
        try:
            with open(path, "rb") as f:
                return cls.from_bytes(f.read())
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"student vectors {path}: could not read a vectors table ({type(err).__name__}: {err})") from err

    def __getstate__(self):
        return {**self.__dict__, "_torch": None}


@serialize_attr.register(StaticVectors)
def _serialize_vectors(_: StaticVectors, value: StaticVectors, name: str, model: Model) -> bytes:
    return value.to_bytes()


@deserialize_attr.register(StaticVectors)
def _deserialize_vectors(_: StaticVectors, value: bytes, name: str, model: Model) -> StaticVectors:
    loaded = StaticVectors.from_bytes(value)
    loaded.per_sentence = _.per_sentence
    loaded.cache = _.cache
    return loaded


def pca_reduce(
    vectors: numpy.ndarray, width: int, weights: Optional[numpy.ndarray] = None
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Project ``vectors`` (n, W) onto their first ``width`` principal components
    (weighted by ``weights``, e.g. word counts, so frequent words shape the axes),
    scaled to unit variance per component. Returns (reduced float16, mean, components)."""
    x = numpy.asarray(vectors, dtype="float64")
    w = numpy.ones(len(x)) if weights is None else numpy.asarray(weights, dtype="float64")
    w = w / w.sum()
    mean = (x * w[:, None]).sum(axis=0)
    centered = x - mean
    cov = (centered * w[:, None]).T @ centered
    values, vecs = numpy.linalg.eigh(cov)
    order = numpy.argsort(values)[::-1][: min(width, x.shape[1])]
    components = vecs[:, order]
    reduced = centered @ components / numpy.sqrt(numpy.maximum(values[order], 1e-12))
    out = numpy.zeros((len(x), width), dtype="float16")
    out[:, : reduced.shape[1]] = reduced.astype("float16")
    return out, mean, components
