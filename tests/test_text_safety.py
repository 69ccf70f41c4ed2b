"""Hostile text (issue 27, item 4): lone surrogates are replaced, one for one, by the
tokenizer wrapper, so that neither ``nlp(text)`` nor ``nlp.pipe`` raises; with it, a
seeded stream of hostile texts gives no exception and ``pipe`` equals single calls."""
import random

import pytest
import spacy
import torch

from spacy_posattn_ner.text_safety import SurrogateSafeTokenizer, replace_lone_surrogates

from .conftest import ents_of, make_nlp, toy_examples
from .test_reliability import hostile_text


def test_lone_surrogates_are_replaced_one_for_one():
    assert replace_lone_surrogates("Paris \ud800 France") == "Paris \ufffd France"
    assert replace_lone_surrogates("\udfff\ud800x") == "\ufffd\ufffdx"
    same = "naïve 🙂 text"
    assert replace_lone_surrogates(same) is same


def test_without_the_wrapper_spacy_raises_and_with_it_the_doc_keeps_offsets():
    nlp = spacy.blank("en")
    with pytest.raises(UnicodeEncodeError):
        nlp("Paris \ud800 France")
    nlp.tokenizer = SurrogateSafeTokenizer(nlp.tokenizer)
    doc = nlp("Paris \ud800 France")
    assert [t.text for t in doc] == ["Paris", "\ufffd", "France"] and doc[2].idx == 8


def _surrogate_text(rng: random.Random) -> str:
    text = hostile_text(rng)
    if rng.random() < 0.3:
        at = rng.randint(0, len(text))
        text = text[:at] + chr(rng.randint(0xD800, 0xDFFF)) * rng.randint(1, 3) + text[at:]
    return text


@pytest.fixture(scope="module")
def safe_nlp(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    spacy.util.fix_random_seed(0)
    nlp.initialize(lambda: toy_examples(nlp))
    nlp.tokenizer = SurrogateSafeTokenizer(nlp.tokenizer)
    ner = nlp.get_pipe("posattn_ner")
    ner.precision, ner.exit_threshold = "fp32", 1.0
    return nlp


def test_hostile_stream_never_raises_and_pipe_equals_calls(safe_nlp):
    torch.set_num_threads(1)  # a tiny model (keep_torch_threads restores)
    rng = random.Random(27)
    texts = [_surrogate_text(rng) for _ in range(2500)]
    assert sum(any(0xD800 <= ord(c) <= 0xDFFF for c in t) for t in texts) > 500
    docs = list(safe_nlp.pipe(texts, batch_size=256))
    assert [len(d.text) for d in docs] == [len(t) for t in texts]  # one character for one
    single = [ents_of(safe_nlp(t)) for t in texts[::10]]
    assert [ents_of(d) for d in docs[::10]] == single
