"""The frozen backbone: a pretrained encoder that turns docs into token features.

It never trains. It is loaded lazily (``encoder``), cut into windows that fit it
(``windows``), run a layer at a time on its own device (``layerwise``) and its
wordpiece states are averaged into spaCy tokens (``pooling``). ``FrozenBackbone``
holds these parts together and is what the thinc model serializes.
"""
import bisect
import hashlib
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from ..batching import bucket_chunks, padded_length
from ..threads import install_fork_handler
from .encoder import (
    EMBEDDED_BACKBONE,
    PRECISIONS,
    TRAIN_PRECISIONS,
    BackboneLoadError,
    from_archive,
    inference_copy,
    load_hf,
    resolve_backbone,
    resolve_precision,
    resolve_train_precision,
    to_archive,
)
from .layerwise import LayerRunner, hidden_state_count, make_runner
from .pooling import TokenPooler
from .windows import SpanGetter, Window, Windower, token_texts

__all__ = [
    "EMBEDDED_BACKBONE", "PRECISIONS", "TRAIN_PRECISIONS", "BackboneLoadError", "FrozenBackbone",
    "LayerRunner", "TokenPooler", "Window", "kept_states", "mixed_count", "resolve_backbone", "resolve_precision",
    "resolve_train_precision", "token_texts",
]


def kept_states(hidden_states: Optional[Sequence[int]], n_layers: int) -> List[int]:
    """The hidden states a backbone keeps (0 = embeddings, k = layer k's output), as
    increasing indices below ``n_layers``: all of them for ``None``; a negative number
    counts from the last (-1 = the last layer). A pure function of the config and the
    backbone's depth, so a saved head is rebuilt before the weights are loaded."""
    if hidden_states is None:
        return list(range(n_layers))
    given = list(hidden_states)
    if not given or not all(isinstance(k, int) and not isinstance(k, bool) for k in given):
        raise ValueError(f"FrozenBackbone: hidden_states = {given!r}: need a non-empty list of integers")
    states = [k + n_layers if k < 0 else k for k in given]
    if sorted(set(states)) != states or states[0] < 0 or states[-1] > n_layers - 1:
        raise ValueError(
            f"FrozenBackbone: hidden_states = {given!r}: need increasing hidden-state numbers from 0 (the embeddings) "
            f"to {n_layers - 1} (the last layer; -1 counts from it)"
        )
    return states


def mixed_count(states: Sequence[int], layer: int) -> int:
    """How many of the kept ``states`` a head after ``layer`` mixes: those up to it."""
    return bisect.bisect_right(list(states), layer)


class FrozenBackbone:
    """A lazily loaded, never-trained encoder and everything needed to run it on docs.

    ``features(docs)`` gives, per doc, a float16 array ``(n_layers, n_tokens, width)``
    of every hidden state (embeddings + each layer) pooled into tokens: the features
    the head trains on. Inference runs the same windows, runners and pooling layer
    by layer (``spacy_posattn_ner.model.engine``). Safe to share between threads: lazily
    built parts are built under a lock, and nothing else changes after loading
    except ``cache`` (a training device set by the component).
    """

    def __init__(
        self, name: str, span_getter: SpanGetter, window_spec: str, batch_wordpieces: int = 8192, per_sentence: bool = False,
        hidden_states: Optional[Sequence[int]] = None,
    ):
        self.name = name
        # which hidden states are pooled, cached and mixed (None: all). A 12-layer,
        # width-768 encoder's 13 states take 20 kB per token in the feature cache
        # (21 GB for GMB's training split); keeping a few bounds it (FrozenBackbone.v3).
        self.hidden_states = None if hidden_states is None else [int(k) for k in hidden_states]
        self.span_getter = span_getter
        self.window_spec = window_spec
        # each sentence (segment) is tagged on its own, backbone and heads alike, so a
        # doc's answer is its sentences' answers (FrozenBackbone.v2's sentence windows)
        self.per_sentence = per_sentence
        self.batch_wordpieces = batch_wordpieces
        self.cache = None  # a FeatureCache for training features (runtime only, never saved)
        self._lock = threading.RLock()
        self._model: Optional[torch.nn.Module] = None
        self._tokenizer = None
        self._windower: Optional[Windower] = None
        self._copies: Dict[str, torch.nn.Module] = {}  # inference copies by precision (bf16, int8)
        self._fingerprint: Optional[str] = None

    def __getstate__(self):  # locks do not pickle; a copy gets a lock of its own
        return {**self.__dict__, "_lock": None}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state, _lock=threading.RLock())

    # -- loading ---------------------------------------------------------------
    def load(self) -> "FrozenBackbone":
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._set(*load_hf(resolve_backbone(self.name), self.name))
        return self

    def _set(self, model: torch.nn.Module, tokenizer) -> None:
        from thinc.util import get_torch_default_device

        model.to(get_torch_default_device())  # the GPU when spacy.require_gpu() was called
        model.eval()
        model.requires_grad_(False)  # gradients stay None; no optimizer ever sees these
        with self._lock:
            self._tokenizer = tokenizer
            self._windower = None
            self._copies = {}
            self._fingerprint = None
            self._model = model

    @property
    def model(self) -> torch.nn.Module:
        return self.load()._model

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_layers(self) -> int:
        """Hidden states per token: the embedding output plus each layer."""
        return hidden_state_count(self.model)

    @property
    def kept(self) -> List[int]:
        """The hidden states pooled, cached and mixed, increasing (``kept_states``)."""
        return kept_states(self.hidden_states, self.n_layers)

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_length(self) -> int:
        limits = [getattr(self.model.config, "max_position_embeddings", 512)]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max and tok_max < 10**6:
            limits.append(tok_max)
        return int(min(limits))

    @property
    def fingerprint(self) -> str:
        """A digest of the weights, config, tokenizer and windowing: the feature
        cache's keys depend on it, so a stale entry can never come back."""
        if self._fingerprint is None:
            h = hashlib.sha1()
            h.update(self.model.config.to_json_string().encode("utf8"))
            h.update(self.tokenizer.backend_tokenizer.to_str().encode("utf8"))
            h.update(self.window_spec.encode("utf8"))
            if self.hidden_states is not None:
                h.update(repr(self.kept).encode("utf8"))
            for key, tensor in sorted(self.model.state_dict().items()):
                h.update(key.encode("utf8"))
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # -- serialization ---------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Weights, config and tokenizer as one tar archive (no hub needed to load)."""
        return to_archive(self.model, self.tokenizer)

    def from_bytes(self, data: bytes) -> "FrozenBackbone":
        self._set(*from_archive(data, self.name))
        return self

    # -- windows and runners ---------------------------------------------------
    @property
    def windower(self) -> Windower:
        if self._windower is None:
            with self._lock:
                if self._windower is None:
                    from tokenizers import Tokenizer

                    # a copy of the Rust tokenizer with truncation and padding off:
                    # tokenizer.json files often set both, and windows are never cut
                    encoder = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
                    encoder.no_truncation()
                    encoder.no_padding()
                    tok = self.tokenizer
                    self._windower = Windower(self.span_getter, encoder, self.max_length, tok.cls_token_id, tok.sep_token_id)
        return self._windower

    def windows(self, docs: Sequence[Doc]) -> List[Window]:
        """Encoder inputs that fit the model, every token of every doc covered."""
        return self.windower(docs)

    def batches(self, windows: List[Window]) -> Iterator[List[Window]]:
        """Length-sorted batches under a padded-wordpiece budget, each of windows of one
        ``padded_length`` bucket: a window is padded to a length that depends on its own
        length only, so its states do not depend on the windows batched with it (bf16
        attention rounds differently with the padded length: ``batching.padded_length``)."""
        for chunk, _ in bucket_chunks([len(w.input_ids) for w in windows], self.batch_wordpieces, cap=self.max_length):
            yield [windows[i] for i in chunk]

    def inference_model(self, precision: str, training: bool = False) -> Tuple[torch.nn.Module, str, bool]:
        """The encoder to run at ``precision``, the precision that means here, and
        whether to run it under bf16 autocast.

        On CPU, bf16 inference runs a bf16 copy of the weights and int8 a dynamically
        quantized copy, each made once. Training features (``training=True``) and
        GPUs keep bf16 autocast over the fp32 weights, the setting their own
        measurements were made with.
        """
        device = self.device
        precision = resolve_precision(precision, device)
        if precision == "int8" and device.type != "cpu":
            raise ValueError("precision 'int8' (dynamic quantization) runs on CPU only; use 'bf16' on GPU")
        if precision == "int8" or (precision == "bf16" and device.type == "cpu" and not training):
            if precision not in self._copies:
                with self._lock:
                    if precision not in self._copies:
                        self._copies[precision] = inference_copy(self.model, precision)
            return self._copies[precision], precision, False
        return self.model, precision, precision == "bf16"

    def runner(self, batch: Sequence[Window], precision: str, training: bool = False) -> LayerRunner:
        """A layer-by-layer runner over a batch of windows, each padded to its
        ``padded_length`` (the longest one's, for a batch from ``batches``), on the
        encoder's device."""
        model, _, autocast = self.inference_model(precision, training)
        lengths = numpy.asarray([len(w.input_ids) for w in batch])
        width = max(padded_length(n, cap=self.max_length) for n in lengths.tolist())
        ids = numpy.full((len(batch), width), self.tokenizer.pad_token_id or 0, dtype="int64")
        mask = numpy.arange(ids.shape[1])[None, :] < lengths[:, None]
        ids[mask] = numpy.concatenate([w.input_ids for w in batch])
        device = self.device
        return make_runner(model, torch.from_numpy(ids).to(device), torch.from_numpy(mask.astype("int64")).to(device), autocast)

    # -- training features -----------------------------------------------------
    def features(self, docs: Sequence[Doc], precision: str = "fp32", training: bool = True) -> List[numpy.ndarray]:
        """Per doc, float16 ``(n_kept, n_tokens, width)`` pooled hidden states of the
        kept layers (``kept``), on the host (for the feature cache). Layers past the
        last kept one are not run."""
        docs = list(docs)
        windows = self.windows(docs)
        kept = self.kept
        slot = {layer: k for k, layer in enumerate(kept)}
        pooler = TokenPooler([len(d) for d in docs], windows, len(kept), self.width, self.device)
        for batch in self.batches(windows):
            runner = self.runner(batch, precision, training=training)
            plan = pooler.plan(batch, runner.ids.shape[1])
            for layer in range(kept[-1] + 1):
                hidden = runner.next_layer()
                if layer in slot:
                    pooler.add(plan, hidden, slot[layer])
        pooled = pooler.pooled().cpu().numpy()
        return [pooled[:, pooler.offsets[i] : pooler.offsets[i + 1]] for i in range(len(docs))]

    def train_key(self, train_precision: str) -> str:
        """The cache's key prefix for training features: weights, windows, precision."""
        return f"{self.fingerprint}:{resolve_train_precision(train_precision, self.device)}"

    def train_features(self, docs: Sequence[Doc], train_precision: str) -> List[numpy.ndarray]:
        """The features the head trains on, through the feature cache when one is set:
        the backbone runs once per distinct doc over a whole training run."""
        precision = resolve_train_precision(train_precision, self.device)
        compute = lambda todo: self.features(todo, precision=precision, training=True)  # noqa: E731
        if self.cache is None:
            return compute(list(docs))
        return self.cache.get_or_compute(docs, self.train_key(train_precision), compute)


# a worker forked by nlp.pipe(n_process=N) must not inherit the parent's thread pool
install_fork_handler()
