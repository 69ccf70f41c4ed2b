"""Early-exit inference: the backbone runs layer by layer and confident docs leave.

After each exit layer, every doc still running gets tag scores from that exit's
head; a doc whose confidence reaches the threshold is finished there, its windows
leave the backbone batches, and the remaining docs go on to the next layer.
Docs spanning several windows move together and are pooled as in training, so the
unit of exit is the doc (a sentence in GMB): sentence-level exit, as in Li et al.

The heads run on length-sorted chunks of docs under a padded-token budget, so a
batch's longest doc does not set the cost of all the others.
"""
from typing import Callable, List, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from .backbone import FrozenBackbone, LayerRunner, TokenPooler, resolve_precision
from .batching import length_chunks
from .layers.exits import MultiExitHead, confidence

# (docs of a chunk, their (B, T) global token indices, per-layer mix weights of
# layers 0..len-1) → (B, T, width) mixed features
Gather = Callable[[numpy.ndarray, torch.Tensor, List[float]], torch.Tensor]


class _Exits:
    """Applies exit heads to the docs still running and records who leaves where."""

    def __init__(
        self,
        heads: MultiExitHead,
        lex: numpy.ndarray,
        lengths: Sequence[int],
        threshold: float,
        precision: str = "fp32",
        token_budget: int = 4096,
    ):
        self.heads = heads
        self.lex = torch.from_numpy(lex)
        self.lengths = numpy.asarray(lengths, dtype="int64")
        self.offsets = numpy.concatenate([[0], numpy.cumsum(self.lengths)])
        self.threshold = threshold
        self.precision = precision
        self.token_budget = token_budget
        self.device = next(heads.parameters()).device
        n_tags = heads.heads[-1].tagger.out_features
        self.log_probs = torch.zeros((len(self.lengths), int(self.lengths.max(initial=0)), n_tags))
        self.exit_layer = numpy.full((len(self.lengths),), -1, dtype="int64")

    def chunks(self, active: Sequence[int]) -> List[numpy.ndarray]:
        """Length-sorted groups of docs whose padded size stays within the budget."""
        active = numpy.asarray(active, dtype="int64")
        return [active[c] for c in length_chunks(self.lengths[active], self.token_budget)]

    def apply(self, j: int, active: Sequence[int], gather: Gather) -> List[int]:
        """Run exit j on ``active`` docs; return those that go on, in doc order."""
        last = j == len(self.heads.exit_layers) - 1
        upto = self.heads.exit_layers[j]
        head = self.heads.heads[j]
        with torch.inference_mode():
            weights = head.mix.weights().float().cpu().tolist()  # len == upto + 1
        remaining: List[int] = []
        for chunk in self.chunks(active):
            lengths = self.lengths[chunk]
            T = int(lengths.max())
            mask = numpy.arange(T)[None, :] < lengths[:, None]
            index = torch.from_numpy(numpy.where(mask, self.offsets[chunk][:, None] + numpy.arange(T)[None, :], 0))
            mask_t = torch.from_numpy(mask)
            mixed = gather(chunk, index, weights).to(self.device)
            with torch.inference_mode(), torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
            ):
                scores = head.from_mixed(mixed, self.lex[index].to(self.device), mask_t.to(self.device))
                log_probs = torch.log_softmax(scores.float(), dim=-1).cpu()
            done = numpy.ones(len(chunk), dtype=bool) if last else (confidence(log_probs, mask_t) >= self.threshold).numpy()
            rows = torch.from_numpy(chunk[done])
            self.log_probs[rows, :T] = log_probs[torch.from_numpy(numpy.flatnonzero(done))]
            self.exit_layer[chunk[done]] = upto
            remaining.extend(chunk[~done].tolist())
        return sorted(remaining)


def _exits_to_try(heads: MultiExitHead, threshold: float) -> List[int]:
    """All exits, or only the last when the threshold means "never exit early" (>= 1):
    a confidence can round to exactly 1.0, and the other heads' cost buys nothing."""
    n = len(heads.exit_layers)
    return list(range(n)) if threshold < 1.0 else [n - 1]


def predict_from_features(
    heads: MultiExitHead,
    feats: Sequence[numpy.ndarray],
    lex: numpy.ndarray,
    threshold: float,
    precision: str = "fp32",
) -> Tuple[torch.Tensor, numpy.ndarray]:
    """The exit policy on precomputed all-layer features (the training-time cache).

    ``feats``: per doc ``(n_layers, n_tokens, width)``; ``lex``: the docs' lexical
    ids concatenated (``lexical_ids_many``). Returns log-probs ``(n_docs, longest,
    n_tags)`` (rows past a doc's length are zero) and each doc's exit layer (-1 for
    empty docs).
    """
    lengths = [f.shape[1] if f.ndim == 3 else 0 for f in feats]
    exits = _Exits(heads, lex, lengths, threshold, precision)
    active = [i for i, n in enumerate(lengths) if n > 0]
    if active:
        width = feats[active[0]].shape[2]

        def gather(chunk: numpy.ndarray, index: torch.Tensor, weights: List[float]) -> torch.Tensor:
            # copied per chunk: no concatenation of a whole batch's features
            n = len(weights)
            out = numpy.zeros((len(chunk), n, index.shape[1], width), dtype=numpy.float16)
            for row, i in enumerate(chunk.tolist()):
                out[row, :, : feats[i].shape[1]] = feats[i][:n]
            w = torch.tensor(weights, dtype=torch.float32)[None, :, None, None]
            return (torch.from_numpy(out).float() * w).sum(dim=1)

        for j in _exits_to_try(heads, threshold):
            active = exits.apply(j, active, gather)
            if not active:
                break
    return exits.log_probs, exits.exit_layer


def predict_layerwise(
    backbone: FrozenBackbone,
    heads: MultiExitHead,
    docs: Sequence[Doc],
    lex: numpy.ndarray,
    threshold: float,
) -> Tuple[torch.Tensor, numpy.ndarray, int]:
    """Run the backbone a layer at a time, exiting confident docs as early as allowed.

    Returns log-probs as ``predict_from_features`` does, the exit layer per doc (-1
    for empty docs), and the number of encoder layer calls (batches x layers run).
    """
    lengths = [len(doc) for doc in docs]
    # the heads follow the backbone: bf16 autocast where "auto" (or "bf16") means bf16
    precision = resolve_precision(backbone.precision, next(backbone.model.parameters()).device)
    exits = _Exits(heads, lex, lengths, threshold, precision)
    active = [i for i, n in enumerate(lengths) if n > 0]
    if not active:
        return exits.log_probs, exits.exit_layer, 0
    windows = backbone.windows(docs)
    pooler = TokenPooler(docs, windows, backbone.n_layers, backbone.width)
    runners = [LayerRunner(backbone, batch, backbone.precision) for batch in backbone._batches(windows)]
    exit_index = {heads.exit_layers[j]: j for j in _exits_to_try(heads, threshold)}
    for layer in range(max(heads.exit_layers) + 1):
        for runner in runners:
            if runner.batch:
                pooler.add(runner, runner.next_layer(), layer)
        if layer not in exit_index:
            continue
        active = exits.apply(exit_index[layer], active, lambda chunk, index, weights: pooler.gather_mixed(index, weights))
        if not active:
            break
        going_on = set(active)
        for runner in runners:
            keep = [r for r, win in enumerate(runner.batch) if win.doc_index in going_on]
            if len(keep) < len(runner.batch):
                runner.keep(keep)
    backbone.n_forward_windows += len(windows)
    backbone.n_forward_docs += len(docs)
    return exits.log_probs, exits.exit_layer, sum(r.n_layer_calls for r in runners)


def save_exit_threshold(pipeline_dir, threshold: float, component: str = "posattn_ner") -> None:
    """Write ``exit_threshold`` into a saved pipeline's config.cfg.

    The threshold is a factory setting, so it lives in the config: that is what
    ``spacy.load`` reads, and what ``spacy.load(..., config={...})`` overrides.
    Setting ``pipe.exit_threshold`` changes a running pipeline only.
    """
    from pathlib import Path

    from spacy.util import load_config

    path = Path(pipeline_dir) / "config.cfg"
    config = load_config(path, interpolate=False)
    if component not in config.get("components", {}):
        raise ValueError(f"{path}: no component '{component}' to set exit_threshold on")
    config["components"][component]["exit_threshold"] = float(threshold)
    config.to_disk(path)
