"""The sequence objective: the gold path's negative log-likelihood over the constrained lattice."""
import itertools

import numpy
import pytest
import torch
from thinc.api import NumpyOps

from spacy_posattn_ner.decoding.marginals import Lattice
from spacy_posattn_ner.decoding.viterbi import make_tags, transition_masks
from spacy_posattn_ner.training.losses import sequence_loss, token_loss

TAGS = make_tags(["geo", "per"])
MASKS = transition_masks(TAGS)
OPS = NumpyOps()


def tag(name):
    return TAGS.index(name)


def brute_force_nll(logits, gold):
    """-log P(gold) by enumerating every allowed path (tiny docs only)."""
    lp = torch.log_softmax(torch.from_numpy(logits).double(), -1).numpy()
    allowed, start, end = MASKS
    scores = []
    for path in itertools.product(range(len(TAGS)), repeat=len(gold)):
        if start[path[0]] and end[path[-1]] and all(allowed[a, b] for a, b in zip(path, path[1:])):
            scores.append(lp[numpy.arange(len(gold)), path].sum())
    return numpy.logaddexp.reduce(scores) - lp[numpy.arange(len(gold)), gold].sum()


def test_loss_is_the_gold_paths_negative_log_likelihood_and_its_gradient_is_exact():
    rng = numpy.random.default_rng(0)
    logits = rng.normal(size=(2, 4, len(TAGS))).astype("float32") * 2
    gold = numpy.asarray([[tag("B-geo"), tag("L-geo"), tag("O"), tag("U-per")], [tag("O"), tag("U-geo"), -1, -1]])
    lengths = numpy.asarray([4, 2])
    loss, d_scores = sequence_loss(OPS, logits, gold, lengths, MASKS)
    want = (brute_force_nll(logits[0], gold[0]) + brute_force_nll(logits[1, :2], gold[1, :2])) / 6
    assert loss == pytest.approx(want, rel=1e-4)
    # the gradient is autograd's through the lattice (torch recursions) and log_softmax
    z = torch.from_numpy(logits).double().requires_grad_(True)
    lp = torch.log_softmax(z, -1)
    lattice = Lattice(lp, torch.from_numpy(lengths), *(torch.from_numpy(m) for m in MASKS))
    onehot = torch.zeros_like(lp)
    for d, n in enumerate(lengths):
        onehot[d, torch.arange(n), torch.from_numpy(gold[d, :n])] = 1.0
    ((lattice.log_z.sum() - (lp * onehot).sum()) / 6).backward()
    numpy.testing.assert_allclose(d_scores, z.grad.numpy(), atol=1e-5)
    assert numpy.all(d_scores[1, 2:] == 0)  # padding learns nothing


def test_docs_without_a_complete_allowed_gold_path_get_the_token_loss():
    rng = numpy.random.default_rng(1)
    logits = rng.normal(size=(3, 3, len(TAGS))).astype("float32")
    gold = numpy.asarray([
        [tag("O"), -1, tag("O")],  # a token without gold: no path likelihood
        [tag("O"), tag("I-geo"), tag("L-geo")],  # not allowed: I after O
        [tag("U-per"), tag("O"), tag("O")],
    ])  # fmt: skip
    lengths = numpy.asarray([3, 3, 3])
    loss, d_scores = sequence_loss(OPS, logits, gold, lengths, MASKS)
    only_token = numpy.where(numpy.asarray([[1], [1], [0]]) == 1, gold, -1)
    token_part, d_token = token_loss(OPS, logits, only_token)
    n_token = int((only_token >= 0).sum())
    numpy.testing.assert_allclose(d_scores[:2], d_token[:2] * n_token / 8, atol=1e-6)
    seq_only = sequence_loss(OPS, logits[2:], gold[2:], lengths[2:], MASKS)[0]
    assert loss == pytest.approx(token_part * n_token / 8 + seq_only * 3 / 8, rel=1e-5)


def test_every_exit_counts_equally():
    rng = numpy.random.default_rng(2)
    logits = rng.normal(size=(2, 1, 3, len(TAGS))).astype("float32")
    gold = numpy.asarray([[tag("B-per"), tag("I-per"), tag("L-per")]])
    lengths = numpy.asarray([3])
    loss, d_scores = sequence_loss(OPS, logits, gold, lengths, MASKS)
    parts = [sequence_loss(OPS, logits[e], gold, lengths, MASKS) for e in range(2)]
    assert loss == pytest.approx(sum(p[0] for p in parts) / 2, rel=1e-5)
    for e in range(2):
        numpy.testing.assert_allclose(d_scores[e], parts[e][1] / 2, atol=1e-7)


def test_a_pipeline_trained_with_the_sequence_objective_finds_the_toy_entities_at_every_exit(tiny_backbone):
    import spacy

    from ..conftest import ents_of, exit_config, toy_examples, train

    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config={**exit_config(tiny_backbone), "objective": "sequence"})
    torch.set_num_threads(1)
    losses = train(nlp, toy_examples(nlp), n_iter=40)
    ner = nlp.get_pipe("posattn_ner")
    assert ner.training.objective == "sequence" and losses["posattn_ner"] < 0.5
    gold = [ents_of(eg.reference) for eg in toy_examples(nlp)]
    for threshold in (0.0, 1.0):  # the first exit, the last exit
        ner.exit_threshold = threshold
        assert [ents_of(d) for d in nlp.pipe(eg.reference.text for eg in toy_examples(nlp))] == gold


def test_an_unknown_objective_is_refused_by_name(tiny_backbone):
    import spacy

    from ..conftest import exit_config

    with pytest.raises(ValueError, match="objective 'crf' is not one of token, sequence"):
        spacy.blank("en").add_pipe("posattn_ner", config={**exit_config(tiny_backbone), "objective": "crf"})
