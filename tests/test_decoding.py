"""Constrained BILUO decoding: Viterbi, and the shortcut that skips it for valid argmax paths."""
import torch
from spacy.lang.en import English
from spacy.training.iob_utils import biluo_tags_to_spans

from spacy_posattn_ner.decoding import best_paths, entity_bounds, make_tags, transition_masks, viterbi

TAGS = make_tags(["geo", "per", "tim"])
MASKS = tuple(torch.from_numpy(a) for a in transition_masks(TAGS))


def is_valid(path, n):
    allowed, start, end = MASKS
    if n == 0:
        return True
    steps = all(bool(allowed[path[t], path[t + 1]]) for t in range(n - 1))
    return bool(start[path[0]]) and steps and bool(end[path[n - 1]])


def test_best_paths_equals_viterbi_on_random_scores():
    torch.manual_seed(0)
    for sharp in (0.5, 3.0, 12.0):  # from noisy (argmax often invalid) to confident
        log_probs = torch.log_softmax(torch.randn(64, 20, len(TAGS)) * sharp, dim=-1)
        lengths = torch.randint(0, 21, (64,))
        fast = best_paths(log_probs, lengths, *MASKS)
        slow = viterbi(log_probs, lengths, *MASKS)
        for i, n in enumerate(lengths.tolist()):
            assert fast[i, :n].tolist() == slow[i, :n].tolist()
            assert is_valid(fast[i].tolist(), n)


def test_an_invalid_argmax_is_repaired():
    """I-geo after O is the argmax, but an entity never starts with I."""
    log_probs = torch.full((1, 3, len(TAGS)), -10.0)
    log_probs[0, 0, TAGS.index("O")] = 0.0
    log_probs[0, 1, TAGS.index("I-geo")] = -0.1
    log_probs[0, 1, TAGS.index("U-geo")] = -0.2
    log_probs[0, 2, TAGS.index("O")] = 0.0
    path = best_paths(log_probs, torch.tensor([3]), *MASKS)[0].tolist()
    assert [TAGS[i] for i in path] == ["O", "U-geo", "O"]


def test_empty_batch_and_empty_docs():
    assert best_paths(torch.zeros((0, 0, len(TAGS))), torch.zeros((0,), dtype=torch.long), *MASKS).shape == (0, 0)
    out = best_paths(torch.zeros((2, 4, len(TAGS))), torch.tensor([0, 4]), *MASKS)
    assert is_valid(out[1].tolist(), 4)


def test_entity_bounds_of_a_batch_match_spacys_reading_of_each_doc():
    nlp = English()
    torch.manual_seed(1)
    log_probs = torch.log_softmax(torch.randn(40, 15, len(TAGS)) * 2.0, dim=-1)
    lengths = torch.randint(0, 16, (40,))
    paths = best_paths(log_probs, lengths, *MASKS)
    tag_ids = [paths[i, :n].numpy() for i, n in enumerate(lengths.tolist())]
    doc_of, starts, ends, label_of = entity_bounds(tag_ids)
    labels = ["geo", "per", "tim"]
    got = list(zip(doc_of.tolist(), starts.tolist(), ends.tolist(), [labels[k] for k in label_of.tolist()]))
    expected = []
    for i, ids in enumerate(tag_ids):
        doc = nlp.make_doc(" ".join(["w"] * len(ids)))
        for span in biluo_tags_to_spans(doc, [TAGS[t] for t in ids.tolist()]):
            expected.append((i, span.start, span.end, span.label_))
    assert got == expected and len(expected) > 20
    empty = entity_bounds([])
    assert all(len(a) == 0 for a in empty)
    assert all(len(a) == 0 for a in entity_bounds([torch.zeros(0, dtype=torch.long).numpy()] * 3))
