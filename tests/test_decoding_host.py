"""decoding/host.py: the numpy decoding of CPU batches gives the torch path's answers."""
import numpy
import pytest
import torch

from spacy_posattn_ner.decoding import Lattice, best_paths, make_tags, transition_masks, viterbi
from spacy_posattn_ner.decoding import host
from spacy_posattn_ner.decoding.viterbi import entity_bounds

TAGS = make_tags(["geo", "org", "per"])
MASKS = transition_masks(TAGS)


def _batch(seed: int, spread: float = 3.0):
    rng = numpy.random.default_rng(seed)
    B, T, K = 7, 19, len(TAGS)
    lp = torch.log_softmax(torch.from_numpy(rng.normal(size=(B, T, K)) * spread).float(), dim=-1)
    lengths = torch.tensor([19, 9, 1, 0, 16, 5, 2])
    return lp, lengths


@pytest.mark.parametrize("seed", range(4))
def test_paths_equal_the_torch_viterbi(seed):
    lp, lengths = _batch(seed)  # random scores: most argmax paths break a constraint
    masks_t = tuple(torch.from_numpy(m) for m in MASKS)
    expected = best_paths(lp, lengths, *masks_t).numpy()
    got = host.best_paths(lp.numpy(), lengths.numpy(), *MASKS)
    for i, n in enumerate(lengths.tolist()):
        numpy.testing.assert_array_equal(got[i, :n], expected[i, :n])
    full, full_host = viterbi(lp, lengths, *masks_t).numpy(), host.viterbi(lp.numpy(), lengths.numpy(), *MASKS)
    for i, n in enumerate(lengths.tolist()):
        numpy.testing.assert_array_equal(full_host[i, :n], full[i, :n])


@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("seed", range(3))
def test_entity_probabilities_equal_the_lattice(seed, temperature):
    lp, lengths = _batch(seed, spread=2.0)
    masks_t = tuple(torch.from_numpy(m) for m in MASKS)
    path = best_paths(lp, lengths, *masks_t).numpy()
    entities = entity_bounds([path[i, :n] for i, n in enumerate(lengths.tolist())])
    assert len(entities[0]) > 5 and (entities[2] - entities[1] > 2).any()  # spans with an I run too
    expected = Lattice(lp, lengths, *masks_t, temperature=temperature).span_marginals(*entities).numpy()
    got = host.entity_probabilities(lp.numpy(), lengths.numpy(), MASKS, entities, temperature)
    assert got.dtype == numpy.float32
    numpy.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_underflow_gives_way_to_the_lattice():
    peaked = torch.full((1, 3, len(TAGS)), -1e4)
    peaked[0, 0, 0] = peaked[0, 2, 0] = 0.0
    peaked[0, 1, TAGS.index("I-geo")] = 0.0  # allowed nowhere: every allowed tag is e^-1e4 below it
    entities = tuple(numpy.asarray(a) for a in ([0], [1], [2], [0]))
    assert host.entity_probabilities(peaked.numpy(), numpy.asarray([3]), MASKS, entities, 1.0) is None


@pytest.mark.parametrize("temperature", [1.0, 1.534])
def test_decoder_on_host_equals_the_device_path(temperature):
    """What the component runs on the CPU (``Decoder._on_host``) against the torch path,
    on docs with sentence starts, a zero-width space (the boundary mask) and an underflowing row."""
    import spacy
    from spacy_posattn_ner.decoding import Decoder
    from spacy_posattn_ner.model.engine import TagScores

    nlp = spacy.blank("en")
    words = [["Iran", "said", "\u200b", "Monday", "."], ["A"], [], ["New", "York", "is", "big", ".", "It", "is", "."]]
    docs = [spacy.tokens.Doc(nlp.vocab, words=w) for w in words]
    docs[3][5].is_sent_start = True
    lp, _ = _batch(5, spread=2.0)
    lp = lp[:4, :8].clone()
    lengths = torch.tensor([len(d) for d in docs])
    lp[1, 0] = -1e4
    lp[1, 0, TAGS.index("I-geo")] = 0.0  # a row the probability-space recursions cannot hold
    scores = TagScores(log_probs=lp, lengths=lengths, exit_layer=torch.tensor([2, 2, -1, 2]),
                       segment_exit_layer=None, segment_doc=None)  # fmt: skip
    decoder = Decoder(TAGS)
    a = decoder._on_host(scores, docs, True, temperature)
    b = decoder._on_device(scores, docs, True, None, temperature)
    for x, y in zip(a.entities, b.entities):
        numpy.testing.assert_array_equal(x, y)
    assert len(a.entities[0]) >= 3
    numpy.testing.assert_allclose(a.entity_scores, b.entity_scores, rtol=1e-5, atol=1e-7)
    numpy.testing.assert_array_equal(a.exit_layer, b.exit_layer)
