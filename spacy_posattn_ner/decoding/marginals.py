"""Posterior marginals over the constrained BILUO lattice, and the candidate spans they imply.

Viterbi (``viterbi.py``) picks one best allowed path; this module says how sure the model is of
each entity. The sequence is read as a linear-chain model: a path's score is the sum of its tokens'
log-probabilities, allowed transitions/first tags/last tags cost 0 and the others are impossible, so
``P(path) = exp(score) / Z`` with ``Z`` summed over the allowed paths only. Forward–backward (log
space, batched over docs and vectorized over tags; the one loop runs over positions, as in
``viterbi``) gives token tag marginals and, from them, the probability that exactly a given span is
an entity with a given label.

Compute the lattice once per batch and ask it for spans and candidates::

    lattice = Lattice(log_probs, lengths, allowed, start, end, temperature=1.0)
    lattice.span_marginals(doc_index, starts, ends, label_index)   # e.g. Viterbi's entities
    lattice.candidates(threshold=0.1)                              # every span reaching 0.1

``span_marginals`` and ``candidate_spans`` are one-shot wrappers over the same class.

Everything stays on the input's device; the math is float32 (or wider, if the input is float64),
also for bf16 input; "impossible" is the finite ``NEG`` rather than ``-inf``, so neither logsumexp
nor its gradient ever sees ``inf - inf`` (marginals are differentiable in ``log_probs`` and in a
tensor ``temperature``, for fitting it).

Precision: plain log-space alpha and beta grow like ``|log Z|`` (hundreds for a long doc, 1e5 when
a doc's best allowed path is forced through -1e4 tags), and float32 rounding of such numbers is
relative to that size: measured against float64, tag marginals of a 300-token doc (8 labels) were
off by 1.4e-4, those of docs of one-hot -1e4 rows by 2e-2. So the recursions are scaled (Rabiner's
scaled forward–backward, in log space): alpha is rescaled at every step by ``c_t`` (its max), beta
is scaled by the same ``c_t``, and ``log Z = sum_t c_t`` plus the end step's logsumexp. A tag
marginal is then ``alpha_hat + beta_hat`` and a span's is ``alpha_hat`` at its first tag, plus
``log_prob - c_u`` over its other tokens, plus ``beta_hat`` at its last tag: only quantities of a
few positions' size, never ``log Z`` itself.
Measured on the same docs: 3e-6 and 1.4e-3 (the latter is float32's own resolution at 1e4).
"""
import math
from typing import NamedTuple, Optional, Sequence, Union

import numpy
import torch

from .viterbi import PREFIXES

NEG = -1e30  # log of "impossible": exp() of it (or of sums of it) is exactly 0 in float32
IndexLike = Union[torch.Tensor, numpy.ndarray, Sequence[int]]
MaskLike = Union[torch.Tensor, numpy.ndarray]


class ForwardBackward(NamedTuple):
    """Forward–backward quantities of a batch (positions past a doc's length hold ``NEG``).

    ``log_alpha`` (B, T, K): log of the summed score of allowed prefixes ending in tag k at t,
    t's own log-prob included. ``log_beta`` (B, T, K): log of the summed score of allowed suffixes
    after t, given tag k at t (t's log-prob excluded; the end constraint included). ``log_z`` (B,):
    log of the summed score of all allowed paths, 0 for an empty doc (its one, empty, path).
    ``log_alpha + log_beta - log_z`` is the log of the tag marginal ``P(y_t = k)``.
    """

    log_alpha: torch.Tensor
    log_beta: torch.Tensor
    log_z: torch.Tensor


class Candidates(NamedTuple):
    """Aligned 1-d tensors, one entry per span, sorted by doc, then start, end, label.

    ``end`` is exclusive; ``label`` indexes the labels in ``make_tags`` order; ``score`` is the
    span's marginal probability (float).
    """

    doc: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    label: torch.Tensor
    score: torch.Tensor


def temper(log_probs: torch.Tensor, temperature: Union[float, torch.Tensor] = 1.0) -> torch.Tensor:
    """``log_softmax(log_probs / temperature)`` in float32 (or wider).

    A plain temperature of 1 returns ``log_probs`` as they are (upcast only): they are already
    log-softmaxed, so renormalizing would change nothing but rounding. A tensor temperature always
    goes through the division, so a gradient reaches it.
    """
    value = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else float(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {value!r}")
    log_probs = log_probs.to(torch.promote_types(log_probs.dtype, torch.float32))
    if not isinstance(temperature, torch.Tensor) and value == 1.0:
        return log_probs
    return torch.log_softmax(log_probs / temperature, dim=-1)


class ScaledForwardBackward(NamedTuple):
    """Scaled forward–backward of a batch (see the module docstring); ``NEG`` past each length.

    ``log_alpha_hat`` (B, T, K): alpha rescaled at each position so that its largest entry is 0.
    ``log_beta_hat`` (B, T, K): beta scaled so that
    ``log_alpha_hat + log_beta_hat = log P(y_t = k)``. ``log_emit`` (B, T, K): the log-probs minus
    each position's normalizer ``c_t``, which is what a span's inner tokens contribute.
    ``log_scale`` (B, T): ``c_0 + ... + c_t``. ``log_z`` (B,): ``log Z``, 0 for an empty doc.
    ``lengths`` (B,): the docs' lengths.
    """

    log_alpha_hat: torch.Tensor
    log_beta_hat: torch.Tensor
    log_emit: torch.Tensor
    log_scale: torch.Tensor
    log_z: torch.Tensor
    lengths: torch.Tensor

    def unscaled(self) -> ForwardBackward:
        """Plain alpha, beta and log Z (alpha = alpha_hat + C_t, beta = beta_hat + log Z - C_t)."""
        T = self.log_scale.shape[1]
        inside = (torch.arange(T, device=self.lengths.device)[None, :] < self.lengths[:, None])[:, :, None]
        log_alpha = self.log_alpha_hat + self.log_scale[..., None]
        log_beta = self.log_beta_hat + (self.log_z[:, None] - self.log_scale)[..., None]
        pad = self.log_scale.new_full((), NEG)
        return ForwardBackward(torch.where(inside, log_alpha, pad), torch.where(inside, log_beta, pad), self.log_z)


def forward_backward(
    log_probs: torch.Tensor,
    lengths: IndexLike,
    allowed: MaskLike,
    start: MaskLike,
    end: MaskLike,
) -> ForwardBackward:
    """Forward–backward over the allowed paths of each doc. ``log_probs``: (B, T, K).

    ``log_probs`` are used as given (see ``temper``). Positions past a doc's length are ignored
    (their values may even be NaN): a doc gets the same results alone as in any padded batch.
    """
    return _scaled_forward_backward(*_prepare(log_probs, lengths, allowed, start, end)).unscaled()


class Lattice:
    """Forward–backward of a batch, computed once, answering span and candidate queries.

    Labels are indexed in ``make_tags`` order: tag ``1 + 4 * label + PREFIXES.index(prefix)``.
    Attributes: ``log_probs`` (the tempered scores, float32, 0 past each length), ``lengths``,
    ``log_trans`` (K, K: 0 allowed, ``NEG`` not), ``scaled`` (``ScaledForwardBackward``),
    ``log_z`` (B,), ``n_labels``.
    """

    def __init__(
        self,
        log_probs: torch.Tensor,
        lengths: IndexLike,
        allowed: MaskLike,
        start: MaskLike,
        end: MaskLike,
        temperature: Union[float, torch.Tensor] = 1.0,
    ) -> None:
        K = log_probs.shape[-1]
        if (K - 1) % len(PREFIXES):
            raise ValueError(f"{K} tags is not 'O' plus B/I/L/U per label (see make_tags)")
        self.n_labels = (K - 1) // len(PREFIXES)
        lp, self.lengths, self.log_trans, log_start, log_end = _prepare(
            temper(log_probs, temperature), lengths, allowed, start, end
        )
        self.log_probs = lp  # tempered, float32, 0 past each doc's length
        self.scaled = _scaled_forward_backward(lp, self.lengths, self.log_trans, log_start, log_end)
        self.log_z = self.scaled.log_z
        labels = torch.arange(self.n_labels, device=lp.device)
        self._tag = {p: 1 + len(PREFIXES) * labels + i for i, p in enumerate(PREFIXES)}

    def forward_backward(self) -> ForwardBackward:
        """Plain ``(log_alpha, log_beta, log_z)`` of the tempered log-probs."""
        return self.scaled.unscaled()

    def tag_marginals(self) -> torch.Tensor:
        """``P(y_t = k)`` as (B, T, K); rows sum to 1 inside each doc, 0 past its length."""
        return self._log_tag_marginals().exp().clamp(max=1.0)

    def _log_tag_marginals(self) -> torch.Tensor:
        return self.scaled.log_alpha_hat + self.scaled.log_beta_hat

    def span_marginals(
        self, doc_index: IndexLike, starts: IndexLike, ends: IndexLike, label_index: IndexLike
    ) -> torch.Tensor:
        """Probability that exactly ``[start, end)`` is an entity with that label, per span.

        A one-token span is ``U`` at ``start``; a longer one is ``B`` at ``start``, ``I`` at every
        token between and ``L`` at ``end - 1``. The ``I`` run matters: ``B`` at ``start`` and ``L``
        at ``end - 1`` alone also hold for ``B L B L``, which is two entities, not this span.
        Returns a float tensor (n_spans,) with values in [0, 1] (0 only for impossible spans or
        probabilities below float32's range).
        """
        doc, s, e, x = (torch.as_tensor(a, device=self.log_probs.device).long().reshape(-1)
                        for a in (doc_index, starts, ends, label_index))
        if not (len(doc) == len(s) == len(e) == len(x)):
            raise ValueError("doc_index, starts, ends and label_index must have the same length")
        if len(doc):
            B = self.log_probs.shape[0]
            bad = (doc < 0) | (doc >= B) | (s < 0) | (e <= s) | (x < 0) | (x >= self.n_labels)
            if B:
                bad |= e > self.lengths[doc.clamp(0, B - 1)]
            if bool(bad.any()):
                i = int(torch.nonzero(bad)[0, 0])
                raise ValueError(
                    f"span {i} (doc {int(doc[i])}, tokens [{int(s[i])}, {int(e[i])}), label {int(x[i])}) "
                    "is empty, outside its doc, or has an unknown label"
                )
        return self._span_log_marginals(doc, s, e, x).exp().clamp(max=1.0)

    def candidates(self, threshold: float, max_length: Optional[int] = None) -> Candidates:
        """Every span (any label, overlaps included) whose marginal is at least ``threshold``.

        Exact, without enumerating the O(T^2) spans: for a fixed start the events "the entity
        starting here is (end, label)" are disjoint, and a span's marginal is at most
        ``P(B-x at start)`` (``U`` for one token) and, for every ``j`` inside it, at most
        ``P(B-x at start, I-x from start + 1 to j)``, which only shrinks as ``j`` grows. So only
        starts whose ``B``/``U`` marginal reaches the threshold are followed, each grows one token
        per step, and a run stops for good as soon as its ``B I..I`` probability falls below the
        threshold: no longer span can reach it. At most ``1 / threshold`` runs cover a token (their
        events are disjoint), so the work is O(T / threshold) per doc, plus one step per token of
        the longest surviving run. ``max_length`` (tokens, optional) caps span length on top of
        that. Pruning compares with a small margin below the threshold, so rounding can never drop
        a span; the kept spans are then scored by ``span_marginals`` and filtered at the threshold,
        so scores agree with it exactly.
        """
        threshold = float(threshold)
        if not (0 < threshold <= 1):
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1 or None, got {max_length!r}")
        la, lb, emit = self.scaled.log_alpha_hat, self.scaled.log_beta_hat, self.scaled.log_emit
        floor = math.log(threshold) - 1e-3  # margin for rounding (log space, i.e. 0.1 %)
        B_, I_, L_, U_ = (self._tag[p] for p in PREFIXES)
        log_marg = self._log_tag_marginals()
        found = []
        doc, s, x = torch.nonzero(log_marg[..., U_] >= floor).unbind(1)
        found.append((doc, s, s + 1, x))
        if max_length is None or max_length >= 2:
            doc, s, x = torch.nonzero(log_marg[..., B_] >= floor).unbind(1)
            prev = B_[x]  # the run's last tag: B, then I
            run = la[doc, s, prev]  # scaled log score of prefixes ending in B-x at s, then in its I run
            offset = 1
            while len(doc):
                pos = s + offset
                inside = pos < self.lengths[doc]
                doc, s, x, prev, run, pos = (a[inside] for a in (doc, s, x, prev, run, pos))
                last, mid = L_[x], I_[x]
                close = run + self.log_trans[prev, last] + emit[doc, pos, last] + lb[doc, pos, last]
                hit = close >= floor
                found.append((doc[hit], s[hit], pos[hit] + 1, x[hit]))
                if max_length is not None and offset + 2 > max_length:
                    break
                run = run + self.log_trans[prev, mid] + emit[doc, pos, mid]
                alive = run + lb[doc, pos, mid] >= floor
                doc, s, x, run, prev = doc[alive], s[alive], x[alive], run[alive], mid[alive]
                offset += 1
        doc, s, e, x = (torch.cat(parts) for parts in zip(*found))
        score = self._span_log_marginals(doc, s, e, x).exp().clamp(max=1.0)
        keep = score >= threshold
        doc, s, e, x, score = doc[keep], s[keep], e[keep], x[keep], score[keep]
        T = self.log_probs.shape[1] + 1
        order = torch.argsort(((doc * T + s) * T + e) * max(self.n_labels, 1) + x)
        return Candidates(doc[order], s[order], e[order], x[order], score[order])

    def _span_log_marginals(
        self, doc: torch.Tensor, s: torch.Tensor, e: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """Log marginals of valid spans (no checks): scaled alpha at the first tag, the other
        tokens' scaled log-probs and the transitions between them, scaled beta at the last tag
        (the scales of the tokens outside the span cancel against log Z)."""
        emit, lt = self.scaled.log_emit, self.log_trans
        n = e - s
        single = n == 1
        first = torch.where(single, self._tag["U"][x], self._tag["B"][x])
        mid = self._tag["I"][x]
        last = torch.where(single, self._tag["U"][x], self._tag["L"][x])
        score = self.scaled.log_alpha_hat[doc, s, first] + self.scaled.log_beta_hat[doc, e - 1, last]
        run_trans = lt[first, mid] + lt[mid, last] + torch.where(n > 3, lt[mid, mid], 0.0)
        trans = torch.where(n == 2, lt[first, last], run_trans)
        score = score + torch.where(single, 0.0, emit[doc, e - 1, last] + trans)
        count = (n - 2).clamp(min=0)  # the I run
        span = torch.repeat_interleave(torch.arange(len(n), device=n.device), count)
        pos = s[span] + 1 + torch.arange(len(span), device=n.device) - (torch.cumsum(count, 0) - count)[span]
        return score + torch.zeros_like(score).index_add(0, span, emit[doc[span], pos, mid[span]])


def span_marginals(
    log_probs: torch.Tensor,
    lengths: IndexLike,
    allowed: MaskLike,
    start: MaskLike,
    end: MaskLike,
    doc_index: IndexLike,
    starts: IndexLike,
    ends: IndexLike,
    label_index: IndexLike,
    temperature: Union[float, torch.Tensor] = 1.0,
) -> torch.Tensor:
    """One-shot ``Lattice(...).span_marginals(...)``: (n_spans,) probabilities.

    To also ask for candidates, build the ``Lattice`` once and use both methods.
    """
    lattice = Lattice(log_probs, lengths, allowed, start, end, temperature=temperature)
    return lattice.span_marginals(doc_index, starts, ends, label_index)


def candidate_spans(
    log_probs: torch.Tensor,
    lengths: IndexLike,
    allowed: MaskLike,
    start: MaskLike,
    end: MaskLike,
    threshold: float,
    max_length: Optional[int] = None,
    temperature: Union[float, torch.Tensor] = 1.0,
) -> Candidates:
    """One-shot ``Lattice(...).candidates(threshold, max_length)``."""
    lattice = Lattice(log_probs, lengths, allowed, start, end, temperature=temperature)
    return lattice.candidates(threshold, max_length=max_length)


def _prepare(log_probs, lengths, allowed, start, end):
    """Float32 scores zeroed past each doc's length (so NaN padding cannot leak), lengths, and
    the masks as log costs (0 allowed, NEG not), all on the scores' device."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, tokens, tags), got shape {tuple(log_probs.shape)}")
    B, T, K = log_probs.shape
    device = log_probs.device
    dtype = torch.promote_types(log_probs.dtype, torch.float32)
    lengths = torch.as_tensor(lengths, device=device).long().reshape(-1)
    if len(lengths) != B:
        raise ValueError(f"{len(lengths)} lengths for {B} docs")
    if B and (bool((lengths < 0).any()) or bool((lengths > T).any())):
        raise ValueError(f"lengths must be in [0, {T}]")
    inside = torch.arange(T, device=device)[None, :, None] < lengths[:, None, None]
    lp = torch.where(inside, log_probs.to(dtype), 0.0)

    def cost(mask: MaskLike, shape) -> torch.Tensor:
        mask = torch.as_tensor(mask, device=device)
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} where {shape} was expected")
        return torch.where(mask.bool(), 0.0, NEG).to(dtype)

    return lp, lengths, cost(allowed, (K, K)), cost(start, (K,)), cost(end, (K,))


def _shared_sets(log_trans: torch.Tensor, incoming: bool):
    """The distinct predecessor (``incoming``) or successor sets of the tags, as log costs
    (G, K), and each tag's set (K,).

    Tags with the same set need the same logsumexp: in BILUO, ``O``, ``B-*`` and ``U-*`` all
    follow ``{O, L-*, U-*}`` and ``I-x``, ``L-x`` follow ``{B-x, I-x}``, so a step costs
    (labels + 1) logsumexps over K tags instead of K. Exact for any mask.
    """
    allowed = log_trans == 0
    key = (bytes((allowed.T if incoming else allowed).cpu().numpy()), str(log_trans.dtype), str(log_trans.device))
    if key not in _SETS:  # one tag set per pipeline: computed once (a race computes it twice, harmlessly)
        sets, group = torch.unique((allowed.T if incoming else allowed).to(torch.uint8), dim=0, return_inverse=True)
        _SETS[key] = (torch.where(sets.bool(), 0.0, NEG).to(log_trans.dtype), group)
    return _SETS[key]


_SETS: dict = {}


def _scaled_forward_backward(lp, lengths, log_trans, log_start, log_end) -> ScaledForwardBackward:
    """The recursions, one loop over positions, vectorized over docs and tags. Without a
    gradient to keep, on the CPU, they run in numpy (``_scaled_forward_backward_numpy``)."""
    if lp.device.type == "cpu" and not (torch.is_grad_enabled() and (lp.requires_grad or log_trans.requires_grad)):
        return _scaled_forward_backward_numpy(lp, lengths, log_trans, log_start, log_end)
    B, T, K = lp.shape
    if T == 0:
        return ScaledForwardBackward(lp, lp, lp, lp.new_zeros((B, 0)), lp.new_zeros((B,)), lengths)
    inside = torch.arange(T, device=lp.device)[None, :] < lengths[:, None]
    # forward, rescaled at every position (no masking needed: t only sees positions <= t)
    into, into_group = _shared_sets(log_trans, incoming=True)
    alpha = lp[:, 0] + log_start
    alphas, scales = [], []
    for t in range(T):
        if t:
            alpha = torch.logsumexp(alphas[-1][:, None, :] + into, dim=2)[:, into_group] + lp[:, t]
        scales.append(alpha.amax(dim=-1))  # any per-step constant is exact; the max is one cheap op
        alphas.append(alpha - scales[-1][:, None])
    log_alpha = torch.stack(alphas, dim=1)
    scale = torch.where(inside, torch.stack(scales, dim=1), 0.0)
    emit = lp - scale[:, :, None]
    # the end constraint, at each doc's own last position
    last = log_alpha[torch.arange(B, device=lp.device), (lengths - 1).clamp(min=0)]
    end_scale = torch.logsumexp(last + log_end, dim=-1)
    log_z = torch.where(lengths > 0, scale.sum(dim=1) + end_scale, 0.0)
    # backward, scaled by the same normalizers: alpha_hat + beta_hat = log P(y_t = k)
    out_of, out_group = _shared_sets(log_trans, incoming=False)
    final = log_end - end_scale[:, None]
    betas = [final]
    for t in range(T - 2, -1, -1):
        step = torch.logsumexp((emit[:, t + 1] + betas[-1])[:, None, :] + out_of, dim=2)[:, out_group]
        betas.append(torch.where(inside[:, t + 1, None], step, final))
    log_beta = torch.stack(betas[::-1], dim=1)
    pad = lp.new_full((), NEG)
    inside = inside[:, :, None]
    log_alpha, log_beta = torch.where(inside, log_alpha, pad), torch.where(inside, log_beta, pad)
    return ScaledForwardBackward(log_alpha, log_beta, emit, torch.cumsum(scale, dim=1), log_z, lengths)


def _logsumexp(x: numpy.ndarray, axis: int) -> numpy.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + numpy.log(numpy.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def _scaled_forward_backward_numpy(lp, lengths, log_trans, log_start, log_end) -> ScaledForwardBackward:
    """``_scaled_forward_backward``'s answer in numpy (inference only: no gradient is kept).

    A short doc's decoding is made of a few small array operations per position, and numpy's
    cost per operation is a fraction of torch's. The recursions first run in probability space
    (``_probability_recursions``: a step is one small matrix product, in float64), which needs
    half the operations of the log-space ones; where that cannot be trusted (a position's
    allowed tags all underflow, or the tag marginals of some position do not sum to 1) the
    log-space recursions run instead (``_log_recursions``, step for step the torch ones)."""
    B, T, K = lp.shape
    if T == 0:
        return ScaledForwardBackward(lp, lp, lp, lp.new_zeros((B, 0)), lp.new_zeros((B,)), lengths)
    x = lp.detach().numpy()
    arrays = _probability_recursions(x, lengths.numpy(), *(a.detach().numpy() for a in (log_trans, log_start, log_end)))
    if arrays is None:
        return _log_recursions(lp, lengths, log_trans, log_start, log_end)
    return ScaledForwardBackward(*(torch.from_numpy(numpy.ascontiguousarray(a, dtype=x.dtype)) for a in arrays), lengths)


# the tag marginals of every position must sum to 1 within this, or the log-space recursions run
SUM_TOLERANCE = 1e-6


def _probability_recursions(x, n, log_trans, log_start, log_end):
    """Scaled forward–backward in probability space (Rabiner's recursions), float64.

    The costs are 0 (allowed) or ``NEG``, so a step is ``alpha_t = (alpha_{t-1} @ A) * p_t``
    with ``A`` the 0/1 transition matrix and ``p_t = exp(x_t - max x_t)``; alpha is divided by
    its largest entry at every step, which is the log-space version's ``c_t`` (so the scaled
    quantities are the same ones, not just equivalent ones). Float64 products of nonnegative
    numbers lose no relative precision; they can only underflow, which would drop paths: then
    some position's tag marginals no longer sum to 1, and ``None`` is returned (as it is when
    a position's allowed tags all underflow, e.g. rows of -1e4 scores around one disallowed tag).
    Returns (log_alpha_hat, log_beta_hat, log_emit, log_scale, log_z) or None.
    """
    B, T, K = x.shape
    inside = numpy.arange(T)[None, :] < n[:, None]
    A = (log_trans > NEG / 2).astype(numpy.float64)
    start, end = (log_start > NEG / 2).astype(numpy.float64), (log_end > NEG / 2).astype(numpy.float64)
    x64 = x.astype(numpy.float64)
    top = x64.max(axis=-1)
    with numpy.errstate(all="ignore"):
        p = numpy.exp(x64 - top[..., None])
        alpha_hat, peak = numpy.empty((B, T, K)), numpy.empty((B, T))
        alpha = p[:, 0] * start
        for t in range(T):
            if t:
                alpha = (alpha_hat[:, t - 1] @ A) * p[:, t]
            peak[:, t] = alpha.max(axis=-1)
            alpha_hat[:, t] = alpha / peak[:, t, None]
        scale = numpy.where(inside, top + numpy.log(peak), 0.0)
        last = alpha_hat[numpy.arange(B), numpy.clip(n - 1, 0, None)]
        end_sum = (last * end).sum(axis=-1)
        log_z = numpy.where(n > 0, scale.sum(axis=1) + numpy.log(end_sum), 0.0)
        final = end / end_sum[:, None]
        step_p = p / peak[..., None]  # exp(log_emit): the log-probs minus c_t
        beta_hat = numpy.empty((B, T, K))
        beta_hat[:, T - 1] = beta = final
        for t in range(T - 2, -1, -1):
            beta = numpy.where(inside[:, t + 1, None], (step_p[:, t + 1] * beta) @ A.T, final)
            beta_hat[:, t] = beta
        sums = (alpha_hat * beta_hat).sum(axis=-1)[inside]
        if not bool((numpy.abs(sums - 1.0) <= SUM_TOLERANCE).all()):  # NaN fails too
            return None
        pad = inside[:, :, None]
        log_alpha_hat = numpy.where(pad, numpy.maximum(numpy.log(alpha_hat), NEG), NEG)
        log_beta_hat = numpy.where(pad, numpy.maximum(numpy.log(beta_hat), NEG), NEG)
    return log_alpha_hat, log_beta_hat, x64 - scale[:, :, None], numpy.cumsum(scale, axis=1), log_z


def _log_recursions(lp, lengths, log_trans, log_start, log_end) -> ScaledForwardBackward:
    """``_scaled_forward_backward``'s log-space recursions, step for step, in numpy."""
    B, T, K = lp.shape
    if T == 0:
        return ScaledForwardBackward(lp, lp, lp, lp.new_zeros((B, 0)), lp.new_zeros((B,)), lengths)
    x, n = lp.detach().numpy(), lengths.numpy()
    ls, le = log_start.detach().numpy(), log_end.detach().numpy()
    inside = numpy.arange(T)[None, :] < n[:, None]
    into, into_group = (a.numpy() for a in _shared_sets(log_trans.detach(), incoming=True))
    alpha = x[:, 0] + ls
    alphas, scales = [], []
    for t in range(T):
        if t:
            alpha = _logsumexp(alphas[-1][:, None, :] + into, 2)[:, into_group] + x[:, t]
        scales.append(alpha.max(axis=-1))
        alphas.append(alpha - scales[-1][:, None])
    log_alpha = numpy.stack(alphas, axis=1)
    scale = numpy.where(inside, numpy.stack(scales, axis=1), x.dtype.type(0))
    emit = x - scale[:, :, None]
    last = log_alpha[numpy.arange(B), numpy.clip(n - 1, 0, None)]
    end_scale = _logsumexp(last + le, -1)
    log_z = numpy.where(n > 0, scale.sum(axis=1) + end_scale, x.dtype.type(0))
    out_of, out_group = (a.numpy() for a in _shared_sets(log_trans.detach(), incoming=False))
    final = le - end_scale[:, None]
    betas = [final]
    for t in range(T - 2, -1, -1):
        step = _logsumexp((emit[:, t + 1] + betas[-1])[:, None, :] + out_of, 2)[:, out_group]
        betas.append(numpy.where(inside[:, t + 1, None], step, final))
    log_beta = numpy.stack(betas[::-1], axis=1)
    pad = x.dtype.type(NEG)
    log_alpha = numpy.where(inside[:, :, None], log_alpha, pad)
    log_beta = numpy.where(inside[:, :, None], log_beta, pad)
    arrays = (log_alpha, log_beta, emit, numpy.cumsum(scale, axis=1), log_z)
    return ScaledForwardBackward(*(torch.from_numpy(numpy.ascontiguousarray(a, dtype=x.dtype)) for a in arrays), lengths)
