"""Marginals over the constrained BILUO lattice, checked against brute-force path enumeration."""
import itertools
import math
from collections import defaultdict

import numpy
import pytest
import torch

from spacy_posattn_ner.decoding import best_paths, entity_bounds, make_tags, transition_masks
from spacy_posattn_ner.decoding.marginals import (
    Lattice,
    candidate_spans,
    forward_backward,
    span_marginals,
    temper,
)

LABELS = ["geo", "per"]
TAGS = make_tags(LABELS)  # 9 tags: O, then B/I/L/U per label
ALLOWED, START, END = transition_masks(TAGS)
MASKS = (ALLOWED, START, END)


def valid_paths(n, masks=MASKS):
    """Every allowed tag path of length n, one per row (itertools.product filtered by the masks)."""
    allowed, start, end = masks
    paths = numpy.asarray(list(itertools.product(range(len(TAGS)), repeat=n)), dtype="int64")
    paths = paths.reshape(len(TAGS) ** n, n)
    if n == 0:
        return paths  # the one empty path
    ok = start[paths[:, 0]] & end[paths[:, -1]] & allowed[paths[:, :-1], paths[:, 1:]].all(axis=1)
    return paths[ok]


def read_entities(path):
    """(start, end, label index) of a valid BILUO path, read independently of decoding.py."""
    spans, opened = [], None
    for t, tag in enumerate(TAGS[i] for i in path):
        prefix, _, label = tag.partition("-")
        if prefix == "B":
            opened = t
        elif prefix in ("L", "U"):
            spans.append((t if prefix == "U" else opened, t + 1, LABELS.index(label)))
    return spans


def brute_force(lp, masks=MASKS):
    """log Z, tag marginals (n, K) and {(start, end, label): marginal} by enumerating all paths."""
    lp = numpy.asarray(lp, dtype="float64")
    n = lp.shape[0]
    paths = valid_paths(n, masks)
    scores = lp[numpy.arange(n), paths].sum(axis=1)
    log_z = numpy.logaddexp.reduce(scores)
    probs = numpy.exp(scores - log_z)
    tags = numpy.zeros((n, len(TAGS)))
    for t in range(n):
        numpy.add.at(tags[t], paths[:, t], probs)
    spans = defaultdict(float)
    for path, p in zip(paths, probs):
        for span in read_entities(path):
            spans[span] += p
    return log_z, tags, spans


def brute_alpha_beta(lp):
    """Plain alpha and beta by enumeration: allowed prefixes ending in k at t (own score included)
    and allowed suffixes after t given k at t (end constraint included); -inf where none."""
    lp = numpy.asarray(lp, dtype="float64")
    n, K = lp.shape
    alpha, beta = numpy.full((n, K), -numpy.inf), numpy.full((n, K), -numpy.inf)
    for t in range(n):
        for k in range(K):
            pre = numpy.asarray(list(itertools.product(range(K), repeat=t)), dtype="int64").reshape(K**t, t)
            pre = numpy.concatenate([pre, numpy.full((len(pre), 1), k)], axis=1)
            ok = START[pre[:, 0]] & ALLOWED[pre[:, :-1], pre[:, 1:]].all(axis=1)
            if ok.any():
                alpha[t, k] = numpy.logaddexp.reduce(lp[numpy.arange(t + 1), pre[ok]].sum(axis=1))
            m = n - 1 - t
            suf = numpy.asarray(list(itertools.product(range(K), repeat=m)), dtype="int64").reshape(K**m, m)
            full = numpy.concatenate([numpy.full((len(suf), 1), k), suf], axis=1)
            ok = END[full[:, -1]] & ALLOWED[full[:, :-1], full[:, 1:]].all(axis=1)
            if ok.any():
                beta[t, k] = numpy.logaddexp.reduce(lp[numpy.arange(t + 1, n), suf[ok]].sum(axis=1))
    return alpha, beta


def all_spans(lengths, n_labels=len(LABELS)):
    """Every (doc, start, end, label) of a batch, as four index lists."""
    spans = [(d, s, e, x) for d, n in enumerate(lengths) for s in range(n) for e in range(s + 1, n + 1)
             for x in range(n_labels)]
    return tuple(list(col) for col in zip(*spans)) if spans else ([], [], [], [])


def rows(columns):
    """(doc, start, end, label) tuples from aligned columns (Candidates, entity_bounds...)."""
    return list(zip(*(torch.as_tensor(c).tolist() for c in columns[:4])))


def viterbi_entities(lp, lengths, masks):
    paths = best_paths(lp, lengths, *(torch.from_numpy(m) for m in masks))
    return entity_bounds([paths[i, :n].numpy() for i, n in enumerate(lengths.tolist())])


def random_batch(seed, lengths, sharp=1.5, dtype=torch.float32, tags=TAGS):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(len(lengths), max(lengths, default=0), len(tags), generator=gen, dtype=torch.float64)
    return torch.log_softmax(scores * sharp, dim=-1).to(dtype), torch.tensor(lengths)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_log_z_tag_and_span_marginals_equal_brute_force(dtype, tol):
    lengths = [1, 2, 3, 4, 5, 5, 3]
    lp, lens = random_batch(0, lengths, dtype=dtype)
    lattice = Lattice(lp, lens, *MASKS)
    tag_m = lattice.tag_marginals()
    doc, s, e, x = all_spans(lengths)
    got = lattice.span_marginals(doc, s, e, x)
    assert got.dtype == dtype
    exact = [brute_force(lp[d, :n]) for d, n in enumerate(lengths)]
    for d, n in enumerate(lengths):
        log_z, tags, _ = exact[d]
        assert abs(float(lattice.log_z[d]) - log_z) < tol * max(1, abs(log_z))
        assert torch.allclose(tag_m[d, :n].double(), torch.from_numpy(tags), atol=tol)
    want = torch.tensor([exact[d][2].get((s_, e_, x_), 0.0) for d, s_, e_, x_ in zip(doc, s, e, x)], dtype=torch.float64)
    assert torch.allclose(got.double(), want, atol=tol)
    assert (want > 1e-3).sum() > 50  # the spans really carry probability
    # the plain (unscaled) alpha, beta and log Z
    alpha, beta, log_z = forward_backward(lp, lens, *MASKS)
    assert alpha.dtype == dtype
    for d, n in enumerate(lengths):
        want_alpha, want_beta = brute_alpha_beta(lp[d, :n])
        for got_q, want_q in ((alpha[d, :n], want_alpha), (beta[d, :n], want_beta)):
            possible = numpy.isfinite(want_q)
            assert (~possible).sum() == 2 * len(LABELS)  # alpha: no I or L at 0; beta: no B or I at n - 1
            assert numpy.allclose(got_q.double().numpy()[possible], want_q[possible], atol=tol * 10)
            assert bool((got_q[torch.from_numpy(~possible)] < -1e29).all())
        assert abs(float(log_z[d]) - exact[d][0]) < tol * max(1, abs(exact[d][0]))


def test_other_masks_are_exact_too():
    """Recursions and span scores use the masks given (not BILUO's shape): geo entities of at most
    3 tokens, per entities of at least 3, no per right after a geo."""
    allowed, start, end = (m.copy() for m in MASKS)
    allowed[TAGS.index("I-geo"), TAGS.index("I-geo")] = False
    allowed[TAGS.index("B-per"), TAGS.index("L-per")] = False
    for geo_end in ("L-geo", "U-geo"):
        for per_start in ("B-per", "U-per"):
            allowed[TAGS.index(geo_end), TAGS.index(per_start)] = False
    masks = (allowed, start, end)
    lengths = [5, 4, 5, 2]
    lp, lens = random_batch(15, lengths, sharp=0.7, dtype=torch.float64)
    lattice = Lattice(lp, lens, *masks)
    spans = all_spans(lengths)
    got = lattice.span_marginals(*spans).tolist()
    exact = [brute_force(lp[d, :n], masks) for d, n in enumerate(lengths)]
    assert got == pytest.approx([exact[d][2].get((s, e, x), 0.0) for d, s, e, x in zip(*spans)], abs=1e-9)
    assert sum(1 for v in got if v == 0) > 10  # the restrictions really rule spans out
    tag_m = lattice.tag_marginals()
    for d, n in enumerate(lengths):
        assert float(lattice.log_z[d]) == pytest.approx(exact[d][0], abs=1e-9)
        assert torch.allclose(tag_m[d, :n], torch.from_numpy(exact[d][1]), atol=1e-9)
    cands = lattice.candidates(0.02)
    want = sorted((d, s, e, x) for d in range(len(lengths)) for (s, e, x), p in exact[d][2].items() if p >= 0.02)
    assert rows(cands) == want


def test_exact_span_needs_the_i_run():
    """B at 0 and L at 3 also hold for B L B L (two entities): the span [0, 4) must exclude it."""
    lp = torch.full((1, 4, len(TAGS)), -8.0, dtype=torch.float64)
    for t, tag in enumerate(["B-geo", "L-geo", "B-geo", "L-geo"]):
        lp[0, t, TAGS.index(tag)] = 0.0
    lp = torch.log_softmax(lp, dim=-1)
    lattice = Lattice(lp, [4], *MASKS)
    _, tags, spans = brute_force(lp[0])
    b_and_l = tags[0, TAGS.index("B-geo")] * 1.0  # upper bound that ignores the middle
    got = float(lattice.span_marginals([0], [0], [4], [0])[0])
    assert got == pytest.approx(spans[(0, 4, 0)], abs=1e-12)
    assert got < 1e-3 < b_and_l  # nearly all mass is on B L B L
    pair = lattice.span_marginals([0, 0], [0, 2], [2, 4], [0, 0])
    assert pair.tolist() == pytest.approx([spans[(0, 2, 0)], spans[(2, 4, 0)]], abs=1e-12)
    assert float(pair.min()) > 0.99


@pytest.mark.parametrize("threshold", [0.003, 0.05, 0.3, 0.6])
def test_candidates_equal_brute_force_set(threshold):
    lengths = [5, 4, 5, 1, 0, 3, 5]
    lp, lens = random_batch(1, lengths, sharp=1.0)
    cands = candidate_spans(lp, lens, *MASKS, threshold=threshold)
    got = rows(cands)
    want, scores = [], {}
    for d, n in enumerate(lengths):
        for (s, e, x), p in brute_force(lp[d, :n])[2].items():
            assert abs(p - threshold) > 1e-4  # no float32 coin toss at the boundary
            if p >= threshold:
                want.append((d, s, e, x))
                scores[(d, s, e, x)] = p
    assert got == sorted(want) and len(want) >= 3
    assert cands.score.tolist() == pytest.approx([scores[k] for k in got], abs=2e-5)
    assert all(0 < v <= 1 for v in cands.score.tolist())


def test_max_length_keeps_exactly_the_short_candidates():
    lengths = [5, 5, 4]
    lp, lens = random_batch(2, lengths, sharp=0.5)
    lattice = Lattice(lp, lens, *MASKS)
    full = rows(lattice.candidates(0.01))
    assert max(e - s for _, s, e, _ in full) >= 3
    for cap in (1, 2, 3):
        capped = rows(lattice.candidates(0.01, max_length=cap))
        assert capped == [c for c in full if c[2] - c[1] <= cap]


def test_viterbi_entities_have_positive_marginals_and_are_candidates():
    tags = make_tags(["geo", "per", "tim"])
    masks = transition_masks(tags)
    gen = torch.Generator().manual_seed(3)
    lengths = torch.randint(0, 21, (32,), generator=gen)
    lp = torch.log_softmax(torch.randn(32, 20, len(tags), generator=gen) * 2.0, dim=-1)
    lattice = Lattice(lp, lengths, *masks)
    entities = viterbi_entities(lp, lengths, masks)
    marg = lattice.span_marginals(*entities)
    assert len(marg) > 50 and bool((marg > 0).all()) and bool((marg <= 1).all())
    # exhaustive over all spans of these 20-token docs: pruning drops nothing
    every = all_spans(lengths.tolist(), n_labels=3)
    every_m = lattice.span_marginals(*every)
    for threshold in (0.02, 0.3, 0.6):
        cands = lattice.candidates(threshold)
        got = set(rows(cands))
        assert {v for v, m in zip(rows(entities), marg.tolist()) if m >= threshold} <= got
        assert got == {v for v, m in zip(rows(every), every_m.tolist()) if m >= threshold}
        # for a fixed start, "the entity starting here is (end, label)" are disjoint events
        per_start = defaultdict(float)
        for d_, s_, score in zip(cands.doc.tolist(), cands.start.tolist(), cands.score.tolist()):
            per_start[(d_, s_)] += score
        assert max(per_start.values()) <= 1 + 1e-5


def test_a_doc_alone_equals_the_same_doc_in_a_padded_batch():
    lp, _ = random_batch(4, [5])
    alone = Lattice(lp, [5], *MASKS)
    gen = torch.Generator().manual_seed(5)
    batch = torch.log_softmax(torch.randn(4, 9, len(TAGS), generator=gen), dim=-1)
    batch[2, :5] = lp[0]
    batch[2, 5:] = float("nan")  # garbage past the doc's length must not leak
    batch[1, :] = float("inf")
    lengths = torch.tensor([9, 0, 5, 0])
    together = Lattice(batch, lengths, *MASKS)
    (alpha, beta, log_z), (alpha1, beta1, log_z1) = together.forward_backward(), alone.forward_backward()
    assert torch.allclose(alpha[2, :5], alpha1[0], atol=1e-5) and torch.allclose(beta[2, :5], beta1[0], atol=1e-5)
    assert torch.allclose(log_z[2], log_z1[0], atol=1e-5)
    assert together.log_z[[1, 3]].tolist() == [0.0, 0.0]
    tag_m = together.tag_marginals()
    assert torch.allclose(tag_m[2, :5], alone.tag_marginals()[0], atol=1e-6)
    assert torch.isfinite(tag_m).all() and float(tag_m[2, 5:].sum()) == 0 and float(tag_m[1].sum()) == 0
    _, s, e, x = all_spans([5])
    in_batch = together.span_marginals([2] * len(s), s, e, x)
    assert torch.allclose(in_batch, alone.span_marginals([0] * len(s), s, e, x), atol=1e-6)
    a, b = alone.candidates(0.01), together.candidates(0.01)
    in_doc = b.doc == 2
    assert [t.tolist() for t in a[1:4]] == [t[in_doc].tolist() for t in b[1:4]]  # start, end, label
    assert torch.allclose(a.score, b.score[in_doc], atol=1e-6)
    assert bool((b.doc != 1).all() and (b.doc != 3).all())


def test_empty_batches_docs_and_span_lists():
    for shape, lengths in (((0, 0, len(TAGS)), []), ((3, 0, len(TAGS)), [0, 0, 0]), ((2, 4, len(TAGS)), [0, 0])):
        lattice = Lattice(torch.zeros(shape), lengths, *MASKS)
        assert lattice.log_z.tolist() == [0.0] * shape[0]
        assert lattice.tag_marginals().shape == shape
        assert all(len(a) == 0 for a in lattice.candidates(0.1))
        assert lattice.span_marginals([], [], [], []).shape == (0,)
    alpha, beta, log_z = forward_backward(torch.zeros((0, 0, len(TAGS))), [], *MASKS)
    assert alpha.shape == beta.shape == (0, 0, len(TAGS)) and log_z.shape == (0,)


def test_one_shot_functions_agree_with_the_lattice():
    lengths = [4, 2, 5]
    lp, lens = random_batch(6, lengths)
    lattice = Lattice(lp, lens, *MASKS, temperature=1.7)
    fb = forward_backward(temper(lp, 1.7), lens, *MASKS)
    for got, want in zip(fb, lattice.forward_backward()):
        assert torch.equal(got, want)
    spans = all_spans(lengths)
    assert torch.equal(span_marginals(lp, lens, *MASKS, *spans, temperature=1.7), lattice.span_marginals(*spans))
    one_shot = candidate_spans(lp, lens, *MASKS, threshold=0.1, max_length=3, temperature=1.7)
    for got, want in zip(one_shot, lattice.candidates(0.1, max_length=3)):
        assert torch.equal(got, want)


def test_temperature_one_is_the_identity_and_others_renormalize():
    lp, lens = random_batch(7, [5, 3])
    kept = Lattice(lp, lens, *MASKS).log_probs
    assert torch.equal(kept[0], lp[0]) and torch.equal(kept[1, :3], lp[1, :3])
    assert torch.equal(Lattice(lp, lens, *MASKS, temperature=1.0).log_z, Lattice(lp, lens, *MASKS).log_z)
    warm = Lattice(lp, lens, *MASKS, temperature=2.5)
    by_hand = Lattice(torch.log_softmax(lp / 2.5, dim=-1), lens, *MASKS)
    assert torch.allclose(warm.tag_marginals(), by_hand.tag_marginals(), atol=1e-6)


def test_high_temperature_flattens_the_marginals():
    # one token: the allowed paths are O, U-geo and U-per, so P(k) = softmax over those of lp / T
    lp = torch.log_softmax(torch.tensor([[[2.0, 0, 0, 0, -1.0, 0, 0, 0, 0.5]]]), dim=-1)
    o, u_geo, u_per = 0, TAGS.index("U-geo"), TAGS.index("U-per")
    previous = 1.0
    for temperature in (1.0, 2.0, 10.0, 1e4):
        p = Lattice(lp, [1], *MASKS, temperature=temperature).tag_marginals()[0, 0]
        z = sum(math.exp(v / temperature) for v in (2.0, -1.0, 0.5))
        assert p[[o, u_geo, u_per]].tolist() == pytest.approx(
            [math.exp(v / temperature) / z for v in (2.0, -1.0, 0.5)], abs=1e-6
        )
        assert float(p[o]) < previous  # the favourite loses mass as T grows
        previous = float(p[o])
    assert previous == pytest.approx(1 / 3, abs=1e-3)
    # longer docs: as T grows, marginals tend to the share of allowed paths (all scores equal)
    lp, lens = random_batch(8, [4], sharp=3.0)
    _, counts, spans = brute_force(numpy.zeros((4, len(TAGS))))
    hot = Lattice(lp, lens, *MASKS, temperature=1e5)
    assert torch.allclose(hot.tag_marginals()[0].double(), torch.from_numpy(counts), atol=1e-4)
    keys = list(spans)
    got = hot.span_marginals([0] * len(keys), *zip(*keys))
    assert got.tolist() == pytest.approx([spans[k] for k in keys], abs=1e-4)
    cold = Lattice(lp, lens, *MASKS).span_marginals([0] * len(keys), *zip(*keys))
    assert float(cold.max()) > float(got.max()) + 0.3


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf"), torch.tensor(0.0)])
def test_invalid_temperature_raises(temperature):
    lp, lens = random_batch(9, [3])
    with pytest.raises(ValueError, match="temperature"):
        Lattice(lp, lens, *MASKS, temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        span_marginals(lp, lens, *MASKS, [0], [0], [1], [0], temperature=temperature)


def test_invalid_spans_thresholds_and_shapes_raise():
    lp, lens = random_batch(10, [3, 2])
    lattice = Lattice(lp, lens, *MASKS)
    # empty, past its doc's end, no such doc, no such label, negative start
    for bad in (([0], [1], [1], [0]), ([1], [0], [3], [0]), ([2], [0], [1], [0]), ([0], [0], [1], [2]),
                ([0], [-1], [1], [0])):
        with pytest.raises(ValueError, match="span 0"):
            lattice.span_marginals(*bad)
    for threshold in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            lattice.candidates(threshold)
    with pytest.raises(ValueError, match="lengths"):
        Lattice(lp, [4, 2], *MASKS)
    with pytest.raises(ValueError, match="tags"):
        Lattice(lp[..., :8], lens, ALLOWED[:8, :8], START[:8], END[:8])


def test_peaked_log_probs_stay_finite():
    # the argmax path O I-geo O is not allowed; everything else costs 1e4
    lp = torch.full((1, 3, len(TAGS)), -1e4)
    lp[0, 0, TAGS.index("O")] = 0.0
    lp[0, 1, TAGS.index("I-geo")] = -0.1
    lp[0, 1, TAGS.index("U-geo")] = -0.2
    lp[0, 2, TAGS.index("O")] = 0.0
    lattice = Lattice(lp, [3], *MASKS)
    assert float(lattice.span_marginals([0], [1], [2], [0])[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(lattice.log_z[0]) == pytest.approx(-0.2, abs=1e-4)
    # many random one-hot rows (argmax paths mostly invalid), for a batch
    gen = torch.Generator().manual_seed(11)
    hot = torch.randint(0, len(TAGS), (16, 30), generator=gen)
    lp = torch.full((16, 30, len(TAGS)), -1e4).scatter(2, hot[..., None], 0.0)
    lengths = torch.randint(0, 31, (16,), generator=gen)
    lattice = Lattice(lp, lengths, *MASKS)
    inside = torch.arange(30)[None, :] < lengths[:, None]
    assert all(torch.isfinite(q).all() for q in lattice.forward_backward())
    assert torch.isfinite(lattice.log_z).all() and float(lattice.log_z.min()) < -1e4
    tag_m = lattice.tag_marginals()
    assert torch.isfinite(tag_m).all()
    # float32 resolves -1e4 only to 1e-3 (its ulp there), so marginals are that exact here
    assert torch.allclose(tag_m.sum(-1)[inside], torch.ones(int(inside.sum())), atol=2e-3)
    cands = lattice.candidates(0.5)
    assert len(cands.doc) > 20 and torch.isfinite(cands.score).all()
    grad_lp = lp.clone().requires_grad_(True)
    Lattice(grad_lp, lengths, *MASKS).tag_marginals()[inside].sum().backward()
    assert torch.isfinite(grad_lp.grad).all()


def test_bf16_input_under_inference_mode_computes_in_float32():
    lp, lens = random_batch(12, [5, 4])
    spans = all_spans([5, 4])
    with torch.inference_mode():
        lattice = Lattice(lp.bfloat16(), lens, *MASKS, temperature=1.3)
        got = lattice.span_marginals(*spans)
        cands = lattice.candidates(0.2)
    assert lattice.scaled.log_alpha_hat.dtype == lattice.log_z.dtype == torch.float32
    assert got.dtype == cands.score.dtype == torch.float32
    want = Lattice(lp.bfloat16().float(), lens, *MASKS, temperature=1.3).span_marginals(*spans)
    assert torch.allclose(got, want, atol=1e-6)


def test_temperature_tensor_gets_a_gradient():
    lp, lens = random_batch(13, [5, 4])
    temperature = torch.tensor(1.5, requires_grad=True)
    spans = ([0, 1], [0, 1], [2, 2], [0, 1])
    torch.log(Lattice(lp, lens, *MASKS, temperature=temperature).span_marginals(*spans)).sum().backward()

    def log_likelihood(value: float) -> float:
        return float(torch.log(span_marginals(lp, lens, *MASKS, *spans, temperature=value)).sum())

    step = 1e-3
    numeric = (log_likelihood(1.5 + step) - log_likelihood(1.5 - step)) / (2 * step)
    assert float(temperature.grad) == pytest.approx(numeric, rel=1e-2, abs=1e-3)


def test_a_300_token_doc_with_8_labels():
    tags = make_tags([f"L{i}" for i in range(8)])
    masks = transition_masks(tags)
    gen = torch.Generator().manual_seed(14)
    lp = torch.log_softmax(torch.randn(2, 300, len(tags), generator=gen) * 3.0, dim=-1)
    lengths = torch.tensor([300, 170])
    lattice = Lattice(lp, lengths, *masks)
    tag_m = lattice.tag_marginals()
    # the scaled recursions keep float32 within 3e-6 of float64 here (plain log space: 1.4e-4)
    assert torch.allclose(tag_m.double(), Lattice(lp.double(), lengths, *masks).tag_marginals(), atol=2e-5)
    cands = lattice.candidates(0.1)
    assert len(cands.doc) > 50 and bool((cands.end <= lengths[cands.doc]).all())
    entities = viterbi_entities(lp, lengths, masks)
    marg = lattice.span_marginals(*entities)
    got = set(rows(cands))
    assert {v for v, m in zip(rows(entities), marg.tolist()) if m >= 0.1} <= got
    assert set(rows(lattice.candidates(0.1, max_length=2))) == {c for c in got if c[2] - c[1] <= 2}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_recursions_match_torch(seed):
    """Inference on the CPU runs the scaled recursions in numpy; they are the torch ones step
    for step (checked on ragged batches with empty docs, impossible rows and -1e4 tags)."""
    from spacy_posattn_ner.decoding import marginals as m
    from spacy_posattn_ner.decoding.viterbi import make_tags, transition_masks

    rng = numpy.random.default_rng(seed)
    tags = make_tags(["geo", "org", "per"])
    B, T, K = 6, 17, len(tags)
    lp = torch.log_softmax(torch.from_numpy(rng.normal(size=(B, T, K)) * 3).float(), dim=-1)
    lp[1, 3] = -1e4
    lp[1, 3, 0] = 0.0
    lp[2, :, 1:] -= 1e4
    lengths = torch.tensor([17, 9, 1, 0, 16, 5])
    allowed, start, end = (torch.from_numpy(a) for a in transition_masks(tags))
    prepared = m._prepare(lp, lengths, allowed, start, end)
    fast = m._scaled_forward_backward_numpy(*prepared)
    with torch.enable_grad():
        slow = m._scaled_forward_backward(prepared[0].clone().requires_grad_(True), *prepared[1:])
    for name, a, b in zip(fast._fields, fast, slow):
        if name in ("log_alpha_hat", "log_beta_hat"):
            # the probability-space recursions (float64) hold e^-1e4 as 0, i.e. NEG: both are
            # nothing to float32's exp, and the -1e4 rows' marginals agree below
            a, b = a.clamp(min=-700), b.clamp(min=-700)
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=2e-4)
    marginals = fast.log_alpha_hat + fast.log_beta_hat
    torch.testing.assert_close(marginals.exp(), (slow.log_alpha_hat + slow.log_beta_hat).detach().exp(), atol=1e-6, rtol=0)


def test_probability_recursions_run_unless_they_underflow():
    """The numpy path first runs in probability space; rows whose allowed tags all underflow
    (a disallowed argmax among -1e4 scores) make it give way to the log-space recursions,
    whose answers it then returns."""
    from spacy_posattn_ner.decoding import marginals as m

    lp, lens = random_batch(21, [7, 3, 5])
    prepared = m._prepare(lp, lens, *(torch.as_tensor(a) for a in MASKS))
    arrays = m._probability_recursions(*(a.numpy() for a in prepared))
    assert arrays is not None
    log_z = m._log_recursions(*prepared).log_z
    assert numpy.allclose(arrays[-1], log_z.numpy(), atol=1e-5)
    peaked = torch.full((1, 3, len(TAGS)), -1e4)
    peaked[0, 0, TAGS.index("O")] = peaked[0, 2, TAGS.index("O")] = 0.0
    peaked[0, 1, TAGS.index("I-geo")] = 0.0  # allowed nowhere here; every allowed tag is e^-1e4 below it
    prepared = m._prepare(peaked, [3], *(torch.as_tensor(a) for a in MASKS))
    assert m._probability_recursions(*(a.numpy() for a in prepared)) is None
    scaled = m._scaled_forward_backward_numpy(*prepared)
    # three allowed paths through the middle token: O, U-geo or U-org, each at -1e4
    assert float(scaled.log_z[0]) == pytest.approx(-1e4 + numpy.log(1 + len(LABELS)), abs=1e-2)
    assert torch.isfinite(scaled.log_alpha_hat).all()
