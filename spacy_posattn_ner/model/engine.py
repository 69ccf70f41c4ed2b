"""The one inference path: docs → tag log-probabilities and the layer each part left at.

Every model goes through it: a model without early exit is a model with one exit,
after the backbone's last layer. The backbone runs a layer at a time; after each
exit layer, that exit's head scores the docs still running, and a *segment* whose
confidence reaches the threshold is finished there. A segment is a sentence where
the doc's sentence starts are set (multi-sentence docs: each sentence leaves on its
own, with the whole doc as context), else the whole doc. A window whose tokens are
all finished leaves the backbone batches, so the deeper layers are really not
computed for it; while its doc goes on, its last states stand in for it in the
deeper layers (Li et al. 2021 copy exited states up), so the deeper heads still see
the finished tokens as context. Training runs every exit on every token.

With ``per_sentence`` (FrozenBackbone.v2's sentence windows) the heads read one
sentence at a time, as the backbone does: a finished sentence stops its heads and
its windows, nothing is carried, and a doc's answer is its sentences' answers.

Nothing depends on the other docs of a batch: a doc's answer is the same in any batch,
bit for bit, in fp32, bf16 and int8. Backbone windows and head rows are padded to a length
that depends on their own length only and batched with rows of that same length
(``batching.padded_length``): bf16 attention rounds differently with the padded
length, so a shared batch-wide pad made a doc's scores move with its batch mates.
int8 quantizes each window by its own range (``encoder.RowwiseInt8Linear``).
From wordpiece ids to log-probs, tensors stay on the backbone's device: pooling,
the layer mix, the heads and the bookkeeping of who left where. The only transfer
to the host per exit is one boolean per segment (which go on).
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc

from ..backbone import FrozenBackbone, TokenPooler, Window, resolve_precision
from ..batching import bucket_chunks
from ..layers.attention import CHUNK
from ..layers.lexical import lexical_ids_many
from ..segments import head_rows, segment_starts
from .exit_policies import ExitPolicy, least_sure_token_confidence

# The heads run on length-sorted groups of docs of at most this many padded tokens,
# so one long doc does not set the padding of a whole batch.
INFERENCE_TOKEN_BUDGET = 4096
# sees (token indices (n,), their mixed states (n, W)) at the last exit tried
Observer = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass
class TagScores:
    """What the model predicts for a batch of docs, on the model's device."""

    log_probs: torch.Tensor  # (n_docs, longest, n_tags) float32; zero past each doc's length
    lengths: torch.Tensor  # (n_docs,) int64
    exit_layer: torch.Tensor  # (n_docs,) int64: the deepest layer a doc's answer used, -1 if empty
    # (n_segments,) int64: the layer each segment (a sentence, or a whole doc) left at, docs in
    # order and each doc's segments in order; None where a caller built scores without them
    segment_exit_layer: Optional[torch.Tensor] = None
    segment_doc: Optional[numpy.ndarray] = None  # (n_segments,) int64 on the host: each segment's doc


def segment_ids(docs: Sequence[Doc]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Each token's segment number (tokens of all docs end to end) and each segment's
    doc, both int64 (segments: ``spacy_posattn_ner.segments``)."""
    parts, owners, base = [], [], 0
    for i, doc in enumerate(docs):
        if not len(doc):
            continue
        ids = numpy.cumsum(segment_starts(doc), dtype="int64") - 1 + base
        owners.append(numpy.full(int(ids[-1]) + 1 - base, i, dtype="int64"))
        base = int(ids[-1]) + 1
        parts.append(ids)
    empty = numpy.zeros((0,), dtype="int64")
    return (numpy.concatenate(parts), numpy.concatenate(owners)) if parts else (empty, empty)


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


@dataclass
class _Segments:
    """Who is still running, by segment: on the device for the heads, on the host
    for the windows."""

    of_token: torch.Tensor  # (total_tokens,) long: each token's segment
    of_token_host: numpy.ndarray
    doc: numpy.ndarray  # (n_segments,) each segment's doc
    active: torch.Tensor  # (n_segments,) bool
    exit_layer: torch.Tensor  # (n_segments,) long, -1 until the segment leaves


def tag_scores(
    backbone: FrozenBackbone,
    head: torch.nn.Module,
    docs: Sequence[Doc],
    lexical_rows: Sequence[int],
    threshold: float,
    precision: str,
    policy: ExitPolicy = least_sure_token_confidence,
    token_budget: int = INFERENCE_TOKEN_BUDGET,
    observe: Optional[Observer] = None,
) -> TagScores:
    """Run the backbone layer by layer and the exits after it (see the module doc).
    ``head`` is any head of ``model/heads`` (its ``exits()``); ``policy`` gives each
    segment's confidence at an early exit, compared with ``threshold``. ``observe``, if
    given, sees the mixed states the last exit tried reads, as ``(tokens, states)``: each
    token's index in the docs' tokens end to end and its state (the distillation's
    per-word vectors are made from these)."""
    device = backbone.device
    if head.training:  # dropout off; training mode comes back with the next update
        head.eval()
    layers, heads = (list(x) for x in zip(*head.exits()))
    lengths = numpy.asarray([len(doc) for doc in docs], dtype="int64")
    n_tags = heads[-1].n_tags
    seg_np, seg_doc = segment_ids(docs)
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)])
    n_segments = len(seg_doc)
    segments = _Segments(
        of_token=torch.from_numpy(seg_np).to(device),
        of_token_host=seg_np,
        doc=seg_doc,
        active=torch.ones(n_segments, dtype=torch.bool, device=device),
        exit_layer=torch.full((n_segments,), -1, dtype=torch.long, device=device),
    )
    out = TagScores(
        log_probs=torch.zeros((len(docs), int(lengths.max(initial=0)), n_tags), device=device),
        lengths=torch.from_numpy(lengths).to(device),
        exit_layer=torch.full((len(docs),), -1, dtype=torch.long, device=device),
        segment_exit_layer=segments.exit_layer,
        segment_doc=seg_doc,
    )
    active = numpy.flatnonzero(lengths > 0)
    if not len(active):
        return out
    per_sentence = backbone.per_sentence
    all_rows = head_rows(docs, per_sentence)  # whole docs (context across sentences), or one sentence each
    row_first, row_length = offsets[all_rows[:, 0]] + all_rows[:, 1], all_rows[:, 2] - all_rows[:, 1]
    rows = (row_first, row_length)
    flat = torch.zeros((int(offsets[-1]), n_tags), device=device)  # each token's answer
    with torch.inference_mode():
        lex = torch.from_numpy(lexical_ids_many(docs, lexical_rows)).to(device)
        windows = backbone.windows(docs)
        slot = {layer: k for k, layer in enumerate(backbone.kept)}  # kept hidden state -> pooler slot
        pooler = TokenPooler(lengths, windows, len(slot), backbone.width, device)
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
                        hidden = b.runner.next_layer()
                        if layer in slot:
                            pooler.add(b.plan, hidden, slot[layer])
            computed = layers[j] + 1
            last = j == to_try[-1]
            going_on = _apply_exit(
                flat, segments, heads[j], layers[j], rows, lex, pooler, (policy, threshold), last, autocast, token_budget,
                observe if last else None,
            )
            if not going_on.any():
                break
            active = numpy.unique(segments.doc[going_on])
            # sentence rows are the segments; a whole-doc row goes on with its doc
            keep = going_on if per_sentence else numpy.isin(all_rows[:, 0], active)
            rows = (row_first[keep], row_length[keep])
            context = set() if per_sentence else set(active.tolist())  # whose finished windows carry on
            _drop_finished(batches, going_on, segments.of_token_host, offsets, context, pooler)
        doc_of = numpy.repeat(numpy.arange(len(docs)), lengths)
        position = numpy.arange(int(offsets[-1])) - numpy.repeat(offsets[:-1], lengths)
        out.log_probs[torch.from_numpy(doc_of).to(device), torch.from_numpy(position).to(device)] = flat
        owner = torch.from_numpy(out.segment_doc).to(device)
        out.exit_layer.scatter_reduce_(0, owner, segments.exit_layer, reduce="amax")
    return out


def _apply_exit(
    flat: torch.Tensor, segments: _Segments, head: torch.nn.Module, layer: int,
    rows: Tuple[numpy.ndarray, numpy.ndarray], lex: torch.Tensor, pooler: TokenPooler,
    rule: Tuple[ExitPolicy, float], last: bool, autocast: bool, token_budget: int,
    observe: Optional[Observer] = None,
) -> numpy.ndarray:
    """Score the ``rows`` (first token, length: whole docs for context, or sentences)
    with one exit's head; write the answers of the segments that finish here into
    ``flat`` (one row per token); return which segments go on (host bools)."""
    device = flat.device
    policy, threshold = rule
    weights = head.mix_weights()  # its length is the number of layers it mixes
    n_segments = len(segments.doc)
    row_first, row_length = rows
    # each row padded to a length of its own (rows of up to CHUNK tokens stay within it, so
    # they run the attention whole), and its padding filled with its own first token: a
    # row's shapes and values do not depend on the rows batched with it
    for chunk, T in bucket_chunks(row_length, token_budget, cap=CHUNK):
        first, length = row_first[chunk], row_length[chunk]
        mask = numpy.arange(T)[None, :] < length[:, None]
        index = torch.from_numpy(numpy.where(mask, first[:, None] + numpy.arange(T)[None, :], first[:, None])).to(device)
        mask_t = torch.from_numpy(mask).to(device)
        mixed = pooler.gather_mixed(index, weights)
        if observe is not None:
            observe(index[mask_t], mixed[mask_t])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            scores = head.from_mixed(mixed, lex[index], mask_t)
        log_probs = torch.log_softmax(scores.float(), dim=-1)
        seg = segments.of_token[index]  # (B, T)
        finish = segments.active.clone()
        if not last:
            finish &= policy(log_probs, mask_t, seg, n_segments) >= threshold
        tokens = index[mask_t]
        finish_tok = finish[seg[mask_t]]
        flat[tokens] = torch.where(finish_tok[:, None], log_probs[mask_t], flat[tokens])
        # segments of this chunk's rows that finish here (the others are not in it: finish
        # is only true for active segments, and those are all in the active rows' chunks)
        in_chunk = torch.zeros(n_segments, dtype=torch.bool, device=device)
        in_chunk[seg[mask_t]] = True
        now = finish & in_chunk
        segments.exit_layer[now] = layer
        segments.active &= ~now
    return segments.active.cpu().numpy()  # one transfer per exit


def _drop_finished(
    batches: List[_Batch], going_on: numpy.ndarray, seg_of_token: numpy.ndarray, offsets: numpy.ndarray,
    carry_docs: set, pooler: TokenPooler,
) -> None:
    """Remove the windows whose tokens all finished from the backbone batches; those
    of ``carry_docs`` (docs that go on and whose heads read the whole doc) carry their
    last states into the deeper layers."""
    for b in batches:
        keep, carry = [], []
        for r, win in enumerate(b.windows):
            tokens = offsets[win.doc_index] + win.token_index[win.token_index >= 0]
            if going_on[seg_of_token[tokens]].any():
                keep.append(r)
            elif win.doc_index in carry_docs:
                carry.append(r)
        if len(keep) < len(b.windows):
            if carry:
                rows = torch.as_tensor(carry, dtype=torch.long, device=b.runner.ids.device)
                windows = [b.windows[r] for r in carry]
                pooler.carry(pooler.plan(windows, b.runner.ids.shape[1]), b.runner.hidden[rows])
            b.windows = [b.windows[r] for r in keep]
            if keep:
                b.runner.keep(torch.as_tensor(keep, dtype=torch.long, device=b.runner.ids.device))
                b.plan = pooler.plan(b.windows, b.runner.ids.shape[1])
