"""The one inference path: docs → tag log-probabilities and the layer each doc left at.

Every model goes through it: a model without early exit is a model with one exit,
after the backbone's last layer. The backbone runs a layer at a time; after each
exit layer, the docs still running are scored by that exit's head, and a doc whose
confidence reaches the threshold is finished there: its windows leave the backbone
batches, so the deeper layers are really not computed for it. The unit of exit is
the doc; a long doc's windows move together and are pooled as in training.

From wordpiece ids to log-probs, tensors stay on the backbone's device: pooling,
the layer mix, the heads and the bookkeeping of who left where. The only transfer
to the host per exit is one boolean per doc (which docs go on).
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from .backbone import FrozenBackbone, TokenPooler, Window, resolve_precision
from .batching import length_chunks
from .layers.exits import MultiExitHead, confidence
from .layers.head import PosAttnHead
from .layers.lexical import lexical_ids_many

# The heads run on length-sorted groups of docs of at most this many padded tokens,
# so one long doc does not set the padding of a whole batch.
INFERENCE_TOKEN_BUDGET = 4096


@dataclass
class TagScores:
    """What the model predicts for a batch of docs, on the model's device."""

    log_probs: torch.Tensor  # (n_docs, longest, n_tags) float32; zero past each doc's length
    lengths: torch.Tensor  # (n_docs,) int64
    exit_layer: torch.Tensor  # (n_docs,) int64: the backbone layer each doc's answer used, -1 if empty


def exit_heads(head: torch.nn.Module) -> Tuple[List[int], List[PosAttnHead]]:
    """The exits of a head: ``MultiExitHead``'s, or one after the last layer for a
    plain ``PosAttnHead`` (whose mix covers every hidden state)."""
    if isinstance(head, MultiExitHead):
        return list(head.exit_layers), list(head.heads)
    return [int(head.mix.logits.shape[0]) - 1], [head]


def exits_to_try(n_exits: int, threshold: float) -> List[int]:
    """All exits, or only the last when the threshold means "never exit early" (>= 1):
    a confidence can round to exactly 1.0, and the other heads' cost buys nothing."""
    return list(range(n_exits)) if threshold < 1.0 else [n_exits - 1]


@dataclass
class _Batch:
    """One backbone batch in flight: its windows, runner and pooling plan."""

    windows: List[Window]
    runner: object
    plan: tuple


def tag_scores(
    backbone: FrozenBackbone,
    head: torch.nn.Module,
    docs: Sequence[Doc],
    lexical_rows: Sequence[int],
    threshold: float,
    precision: str,
    token_budget: int = INFERENCE_TOKEN_BUDGET,
) -> TagScores:
    """Run the backbone layer by layer and the exits after it (see the module doc)."""
    device = backbone.device
    if head.training:  # dropout off; training mode comes back with the next update
        head.eval()
    layers, heads = exit_heads(head)
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
    n_tags = heads[-1].tagger.out_features
    out = TagScores(
        log_probs=torch.zeros((len(docs), int(lengths.max(initial=0)), n_tags), device=device),
        lengths=torch.from_numpy(lengths).to(device),
        exit_layer=torch.full((len(docs),), -1, dtype=torch.long, device=device),
    )
    active = numpy.flatnonzero(lengths > 0)
    if not len(active):
        return out
    with torch.inference_mode():
        lex = torch.from_numpy(lexical_ids_many(docs, lexical_rows)).to(device)
        offsets = numpy.concatenate([[0], numpy.cumsum(lengths)])
        windows = backbone.windows(docs)
        pooler = TokenPooler(lengths, windows, backbone.n_layers, backbone.width, device)
        batches = []
        for batch in backbone.batches(windows):
            runner = backbone.runner(batch, precision)
            batches.append(_Batch(batch, runner, pooler.plan(batch, runner.ids.shape[1])))
        autocast = resolve_precision(precision, device) == "bf16"  # the heads follow the backbone
        to_try = exits_to_try(len(layers), threshold)
        computed = 0  # hidden states pooled so far (layer 0 = embeddings)
        for j in to_try:
            for layer in range(computed, layers[j] + 1):
                for b in batches:
                    if b.windows:
                        pooler.add(b.plan, b.runner.next_layer(), layer)
            computed = layers[j] + 1
            last = j == to_try[-1]
            done = _apply_exit(out, heads[j], layers[j], active, lengths, offsets, lex, pooler, threshold, last, autocast, token_budget)
            active = active[~done]
            if not len(active):
                break
            _drop_finished(batches, set(active.tolist()), pooler)
    return out


def _apply_exit(
    out: TagScores, head: PosAttnHead, layer: int, active: numpy.ndarray, lengths: numpy.ndarray,
    offsets: numpy.ndarray, lex: torch.Tensor, pooler: TokenPooler, threshold: float, last: bool,
    autocast: bool, token_budget: int,
) -> numpy.ndarray:
    """Score the ``active`` docs with one exit's head; write the answers of those that
    are done into ``out``; return which of ``active`` are done (host bools)."""
    device = out.log_probs.device
    weights = head.mix.weights()  # its length is the number of layers it mixes
    done_parts, order = [], []
    for chunk in length_chunks(lengths[active], token_budget):
        docs = active[chunk]
        T = int(lengths[docs].max())
        mask = numpy.arange(T)[None, :] < lengths[docs][:, None]
        index = torch.from_numpy(numpy.where(mask, offsets[docs][:, None] + numpy.arange(T)[None, :], 0)).to(device)
        mask_t = torch.from_numpy(mask).to(device)
        mixed = pooler.gather_mixed(index, weights)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            scores = head.from_mixed(mixed, lex[index], mask_t)
        log_probs = torch.log_softmax(scores.float(), dim=-1)
        done = torch.ones(len(docs), dtype=torch.bool, device=device)
        if not last:
            done = confidence(log_probs, mask_t) >= threshold
        rows = torch.from_numpy(docs).to(device)
        out.log_probs[rows, :T] = torch.where(done[:, None, None], log_probs, out.log_probs[rows, :T])
        out.exit_layer[rows] = torch.where(done, torch.full_like(out.exit_layer[rows], layer), out.exit_layer[rows])
        done_parts.append(done)
        order.append(chunk)
    result = numpy.empty(len(active), dtype=bool)
    result[numpy.concatenate(order)] = torch.cat(done_parts).cpu().numpy()  # one transfer per exit
    return result


def _drop_finished(batches: List[_Batch], going_on: set, pooler: TokenPooler) -> None:
    """Remove the windows of finished docs from the backbone batches."""
    for b in batches:
        keep = [r for r, win in enumerate(b.windows) if win.doc_index in going_on]
        if len(keep) < len(b.windows):
            b.windows = [b.windows[r] for r in keep]
            if keep:
                b.runner.keep(torch.as_tensor(keep, dtype=torch.long, device=b.runner.ids.device))
                b.plan = pooler.plan(b.windows, b.runner.ids.shape[1])
