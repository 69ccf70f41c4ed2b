"""The ``posattn_ner`` pipeline component: labels, initialize, predict → decode →
set_annotations, update, scoring and serialization (its factory: ``factory.py``).

The model owns prediction (``model/``), decoding its own package (``decoding/``), the
losses theirs (``training/``) and the runtime settings theirs (``settings.py``): the
component wires them. ``predict`` calls the thinc model and nothing else, with the
settings handed over, so the answers do not depend on how the pipeline was made
(trained in this process, loaded from disk or installed as a package).
"""
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy
import srsly
import torch
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer

from .backbone import resolve_precision
from .decoding import Decoder, Predictions, make_tags
from .decoding.viterbi import transition_masks
from .decoding.annotations import annotate
from .feature_cache import FeatureCache
from .model.build import check_model_config, drop_head, ensure_head, get_head, has_head
from .model.engine import TagScores
from .model.nodes import PaddedScores, get_backbone, hand_settings
from .model.optimizer import step_in_place, use_params as use_torch_params
from .serialization import checksum, legacy_model_settings, read_cfg, verify
from .settings import NAMES, TRAINING_DEFAULTS, Settings, validate_training
from .training.gold import gold_tag_ids
from .training.losses import distill_loss, sequence_loss, token_loss
from .training.teacher import teacher_arrays

for _name in ("exit_layer", "exit_layers"):
    # exit_layer: the deepest backbone layer a doc's prediction used; exit_layers: the layer each
    # segment (a sentence where set, else the doc) left at. None before posattn_ner ran.
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)


class PosAttnNER(TrainablePipe):
    """Named entities from a frozen transformer and a positional-attention tagger.

    Tags are BILUO; decoding is constrained Viterbi, so ``doc.ents`` is always valid, and
    an entity never starts or ends on a token without a letter or digit. Entities already
    on a doc (from an entity ruler, say) are kept; predictions that overlap them are not
    added. ``self.settings`` owns the runtime settings; ``self.exit_threshold`` etc. are
    aliases of its attributes.
    """

    def __init__(
        self, vocab: Vocab, model: Model, name: str = "posattn_ner", *, settings: Optional[Settings] = None,
        training: Optional[Dict[str, Any]] = None, spans_key: str = "posattn_ner", scorer: Optional[Callable] = None,
    ):
        self.vocab, self.model, self.name, self.scorer = vocab, model, name, scorer
        self.settings = settings if settings is not None else Settings()
        self.training = validate_training({**TRAINING_DEFAULTS.__dict__, **(training or {})})
        self.cfg: Dict[str, Any] = {"labels": [], "n_layers": None, "hidden_width": None, "spans_key": spans_key}
        t = self.training
        get_backbone(model).cache = FeatureCache(t.cache_max_ram_mb, t.cache_dir, t.cache_max_disk_mb)
        hand_settings(model, self.settings)  # the model reads them there, never keeps its own
        self._decoder: Optional[Decoder] = None

    # -- labels ----------------------------------------------------------------
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def tags(self) -> List[str]:
        return make_tags(self.labels)

    @property
    def spans_key(self) -> str:
        return self.cfg["spans_key"]

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label or "-" in label:
            raise ValueError(f"posattn_ner: invalid entity label {label!r} (a non-empty string without '-')")
        if label in self.cfg["labels"]:
            return 0
        if has_head(self.model):
            raise ValueError(f"posattn_ner: cannot add label {label!r} after initialize; re-run initialize with the new labels")
        self.cfg["labels"].append(label)
        self._decoder = None
        return 1

    # -- settings (aliases of self.settings) -----------------------------------
    @property
    def exit_distill(self) -> float:
        """Training only: the weight of exit self-distillation (``training/losses.py``)."""
        return self.training.exit_distill

    @exit_distill.setter
    def exit_distill(self, value: float) -> None:
        self.training = validate_training({**self.training.__dict__, "exit_distill": value})

    @property
    def resolved_precision(self) -> str:
        """What ``precision`` means on this machine and device ("auto" → bf16 or fp32)."""
        return resolve_precision(self.settings.precision, get_backbone(self.model).device)

    @property
    def exit_layers(self) -> Optional[List[int]]:
        """Backbone layers with an exit head (None for a model without early exit)."""
        return getattr(get_head(self.model), "exit_layers", None) if has_head(self.model) else None

    # -- initialize ------------------------------------------------------------
    def initialize(
        self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        validate_get_examples(get_examples, "PosAttnNER.initialize")
        found = labels if labels is not None else sorted({e.label_ for eg in get_examples() for e in eg.reference.ents})
        drop_head(self.model)  # re-initialize from scratch
        self.cfg["labels"] = []
        for label in found:
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"posattn_ner '{self.name}': no entity labels to train. The examples from get_examples have no "
                f"entities and no labels were given (set [initialize.components.{self.name}.labels])."
            )
        check_model_config(self.model, f"[components.{self.name}.model]")
        self.model.set_dim("nO", len(self.tags), force=True)
        self.model.initialize(X=[eg.predicted for eg in islice(get_examples(), 10)])
        backbone = get_backbone(self.model)
        self.cfg["n_layers"], self.cfg["hidden_width"] = backbone.n_layers, backbone.width
        self._decoder = None

    # -- predict / annotate ----------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> Predictions:
        """The model's tag scores (with this component's settings), decoded."""
        docs = list(docs)
        if not has_head(self.model):
            raise ValueError(f"posattn_ner '{self.name}' is not initialized: call nlp.initialize() first")
        hand_settings(self.model, self.settings)  # handed over at predict time (the same one owner)
        return self.decode(self.model.predict(docs), docs)

    def decode(self, scores: TagScores, docs: Sequence[Doc]) -> Predictions:
        """Constrained Viterbi (and, with scores on, forward-backward over the same lattice)
        on the model's device; the results come to the host once."""
        if self._decoder is None or self._decoder.tags != self.tags:
            self._decoder = Decoder(self.tags)
        s = self.settings.values
        return self._decoder(scores, docs, with_scores=s.scores, candidate_threshold=s.candidate_threshold,
                             temperature=s.temperature)  # fmt: skip

    def set_annotations(self, docs: Iterable[Doc], predictions: Predictions) -> None:
        annotate(list(docs), predictions, self.labels, self.spans_key)

    # -- training --------------------------------------------------------------
    def update(
        self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One step on the head; ``drop`` sets the rate of every dropout in the head for
        this step (spaCy's ``[training] dropout``), as thinc layers do."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "PosAttnNER.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        for module in get_head(self.model).modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = float(drop)
        hand_settings(self.model, self.settings)  # train_precision
        scores, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        backprop(d_scores)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Step the optimizer on the head's parameters, in place (``model/optimizer.py`` says why)."""
        step_in_place(self.model, sgd)

    def use_params(self, params: Dict) -> Iterator[None]:
        """The block runs with ``params`` (an optimizer's ``averages``) in the head: spaCy's loop
        scores dev and saves the pipeline inside ``nlp.use_params(optimizer.averages)``, so
        ``use_averages = true`` now takes effect (``model/optimizer.py`` says why thinc's own
        path missed the head's weights). A generator, as ``TrainablePipe.use_params`` is:
        ``Language.use_params`` steps it by hand."""
        with use_torch_params(self.model, params):
            yield

    def get_loss(self, examples: Iterable[Example], scores: PaddedScores) -> Tuple[float, numpy.ndarray]:
        """``training.losses.token_loss`` against the aligned gold BILUO tags (with exit
        self-distillation when ``exit_distill`` > 0); where the examples carry a teacher's
        distributions (``training/teacher.py``), ``distill_loss`` with the gold term."""
        examples = list(examples)
        scores_arr, _ = scores
        gold = numpy.full(scores_arr.shape[-3:-1], -1, dtype="int64")  # (n_docs, T)
        index = {tag: i for i, tag in enumerate(self.tags)}
        for i, eg in enumerate(examples):
            ids = gold_tag_ids(eg, index, where=f"posattn_ner '{self.name}', example {i}: ")
            gold[i, : len(ids)] = ids
        teacher = teacher_arrays(examples, self.tags, gold.shape, where=f"posattn_ner '{self.name}'")
        if teacher is None and self.training.objective == "sequence":
            masks = transition_masks(self.tags)
            return sequence_loss(self.model.ops, scores_arr, gold, numpy.asarray(scores[1]), masks)
        if teacher is None:
            return token_loss(self.model.ops, scores_arr, gold, self.training.exit_distill)
        t = self.training
        return distill_loss(self.model.ops, scores_arr, *teacher, gold, t.distill_temperature, t.distill_gold_weight)

    # -- serialization ---------------------------------------------------------
    def _cfg_to_save(self, model_bytes: bytes) -> Dict[str, Any]:
        self.cfg["model_checksum"] = checksum(model_bytes)
        self.cfg["settings"] = self.settings.to_cfg()
        self.cfg["config_settings"] = dict(self.settings.config_values)
        return self.cfg

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        model_bytes = self.model.to_bytes()
        serialize = {
            "cfg": lambda: srsly.json_dumps(self._cfg_to_save(model_bytes)),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: model_bytes,
        }
        return util.to_bytes(serialize, exclude)

    def to_disk(self, path, *, exclude=tuple()) -> None:
        model_bytes = self.model.to_bytes()
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self._cfg_to_save(model_bytes)),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: Path(p).write_bytes(model_bytes),
        }
        util.to_disk(path, serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "PosAttnNER":
        where, config = f"posattn_ner '{self.name}' cfg bytes", f"[components.{self.name}.model] of the pipeline's config"
        deserialize = {
            "cfg": lambda b: self._take_cfg(b, where),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self._load_model(b, f"posattn_ner '{self.name}' model bytes", config),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def from_disk(self, path, *, exclude=tuple()) -> "PosAttnNER":
        config = f"{Path(path).parent / 'config.cfg'} [components.{self.name}.model]"
        deserialize = {
            "cfg": lambda p: self._take_cfg(Path(p).read_bytes(), str(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self._load_model(Path(p).read_bytes(), str(p), config),
        }
        util.from_disk(path, deserialize, exclude)
        return self

    def _take_cfg(self, data: bytes, where: str) -> None:
        """Read and check a saved cfg (``serialization.read_cfg``) before anything is built."""
        cfg, self._saved_settings = read_cfg(data, where)
        self.cfg.pop("model_checksum", None)  # a checksum from an earlier load describes other weights
        self.cfg.update(cfg)

    def _load_model(self, data: bytes, where: str, config_where: str) -> None:
        """Check the weights against the saved checksum, rebuild the lazily built head from
        cfg, load, then restore the saved settings unless the loading config says otherwise."""
        if self.cfg.get("model_checksum") is not None:
            verify(data, self.cfg["model_checksum"], where)
        if self.cfg.get("labels") and self.cfg.get("n_layers"):
            check_model_config(self.model, config_where)
            drop_head(self.model)
            self.model.set_dim("nO", len(self.tags), force=True)
            ensure_head(self.model, self.cfg["n_layers"], self.cfg["hidden_width"], config_where)
        try:
            self.model.from_bytes(data)
        except Exception as err:
            raise ValueError(f"{where}: could not load the model weights ({type(err).__name__}: {err})") from err
        saved = dict(getattr(self, "_saved_settings", {}))
        for node, key in legacy_model_settings(self.model):  # saved before settings.py: kept on the nodes
            saved.setdefault(key, Settings.check_cfg({key: node.attrs.pop(key)}, f"{where}: ")[key])
        self.settings.restore(saved, self.cfg.pop("config_settings", None) or {}, f"{where}: ")
        hand_settings(self.model, self.settings)
        self._decoder = None


def _alias(key: str) -> property:
    return property(lambda self: getattr(self.settings, key), lambda self, value: self.settings.set(key, value),
                    doc=f"Alias of ``settings.{key}`` (spacy_posattn_ner.settings).")  # fmt: skip


for _key in NAMES:
    setattr(PosAttnNER, _key, _alias(_key))
