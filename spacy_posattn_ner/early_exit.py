"""Early-exit inference: the backbone runs layer by layer and confident docs leave.

After each exit layer, every doc still running gets tag scores from that exit's
head; a doc whose confidence reaches the threshold is finished there, its windows
leave the backbone batches, and the remaining docs go on to the next layer.
Docs spanning several windows move together and are pooled as in training, so the
unit of exit is the doc (a sentence in GMB): sentence-level exit, as in Li et al.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from .architectures import pad_features
from .backbone import FrozenBackbone, LayerRunner, TokenPooler
from .layers.exits import MultiExitHead, confidence

LexicalFn = Callable[[Doc], numpy.ndarray]


class _Exits:
    """Applies exit heads to the docs still running and records who leaves where."""

    def __init__(self, heads: MultiExitHead, lex: Dict[int, numpy.ndarray], threshold: float, n_docs: int):
        self.heads = heads
        self.lex = lex
        self.threshold = threshold
        self.log_probs: List[Optional[torch.Tensor]] = [None] * n_docs
        self.exit_layer = numpy.full((n_docs,), -1, dtype="int64")

    def apply(self, j: int, active: List[int], feats: List[torch.Tensor]) -> List[int]:
        """Run exit j on ``active`` docs; return those that go on."""
        device = next(self.heads.parameters()).device
        hidden, lex_ids, mask = pad_features([f.numpy() for f in feats], [self.lex[i] for i in active], device)
        with torch.inference_mode():
            log_probs = torch.log_softmax(self.heads.heads[j](hidden, lex_ids, mask).float(), dim=-1).cpu()
        last = j == len(self.heads.exit_layers) - 1
        done = torch.ones(len(active), dtype=torch.bool) if last else confidence(log_probs, mask.cpu()) >= self.threshold
        remaining = []
        for row, i in enumerate(active):
            if bool(done[row]):
                self.log_probs[i] = log_probs[row, : feats[row].shape[1]]
                self.exit_layer[i] = self.heads.exit_layers[j]
            else:
                remaining.append(i)
        return remaining


def predict_from_features(
    heads: MultiExitHead, feats: Sequence[numpy.ndarray], lex: Dict[int, numpy.ndarray], threshold: float
) -> Tuple[List[Optional[torch.Tensor]], numpy.ndarray]:
    """The exit policy on precomputed all-layer features (the training-time cache)."""
    exits = _Exits(heads, lex, threshold, len(feats))
    active = [i for i in range(len(feats)) if feats[i].shape[1] > 0]
    for j, k in enumerate(heads.exit_layers):
        if not active:
            break
        active = exits.apply(j, active, [torch.from_numpy(numpy.asarray(feats[i][: k + 1])) for i in active])
    return exits.log_probs, exits.exit_layer


def predict_layerwise(
    backbone: FrozenBackbone,
    heads: MultiExitHead,
    docs: Sequence[Doc],
    lex: Dict[int, numpy.ndarray],
    threshold: float,
) -> Tuple[List[Optional[torch.Tensor]], numpy.ndarray, int]:
    """Run the backbone a layer at a time, exiting confident docs as early as allowed.

    Returns per-doc log-probs (None for empty docs), the exit layer per doc (-1 for
    empty docs), and the number of encoder layer calls (batches x layers run).
    """
    exits = _Exits(heads, lex, threshold, len(docs))
    active = [i for i, doc in enumerate(docs) if len(doc)]
    if not active:
        return exits.log_probs, exits.exit_layer, 0
    windows = backbone.windows(docs)
    pooler = TokenPooler(docs, windows, backbone.n_layers, backbone.width)
    runners = [LayerRunner(backbone, batch, backbone.precision) for batch in backbone._batches(windows)]
    exit_index = {k: j for j, k in enumerate(heads.exit_layers)}
    for layer in range(max(heads.exit_layers) + 1):
        for runner in runners:
            if runner.batch:
                pooler.add(runner.batch, runner.next_layer(), layer)
        if layer not in exit_index:
            continue
        active = exits.apply(exit_index[layer], active, [pooler.doc(i, layer) for i in active])
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
