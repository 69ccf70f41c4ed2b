"""Hostile text (issue 27, items 4 and A): lone surrogates are replaced, one for one, by the
tokenizer wrapper, which the posattn_ner factory installs by default (also after a
reload), so that neither ``nlp(text)`` nor ``nlp.pipe`` raises; a seeded stream of
hostile texts gives no exception, one doc per text in order, no entity without a letter
or digit, and ``pipe`` equals single calls."""
import random
import unicodedata

import pytest
import spacy
import torch

from spacy_posattn_ner.text_safety import SurrogateSafeTokenizer, replace_lone_surrogates

from .conftest import ents_of, make_nlp, pipe_config, toy_examples
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


def _punct(text: str) -> bool:
    return all(unicodedata.category(ch)[0] == "P" for ch in text)


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
    assert isinstance(nlp.tokenizer, SurrogateSafeTokenizer)  # installed by the factory
    ner = nlp.get_pipe("posattn_ner")
    ner.precision, ner.exit_threshold = "fp32", 1.0
    return nlp


def test_the_factory_installs_the_wrapper_once_and_it_survives_a_reload(tmp_path, safe_nlp, tiny_backbone):
    good = "Thousands of demonstrators marched through London ."
    bad = "Paris \ud800 France"
    alone = [ents_of(safe_nlp(t)) for t in (good, "The United Nations met in New York .")]
    docs = list(safe_nlp.pipe([good, bad, "The United Nations met in New York ."]))
    assert len(docs) == 3 and docs[1].text == "Paris \ufffd France"
    assert [ents_of(docs[0]), ents_of(docs[2])] == alone
    safe_nlp.add_pipe("posattn_ner", name="second", config=pipe_config(tiny_backbone))
    try:
        assert not isinstance(safe_nlp.tokenizer.tokenizer, SurrogateSafeTokenizer)  # idempotent: one wrapper
    finally:
        safe_nlp.remove_pipe("second")
    safe_nlp.to_disk(tmp_path / "nlp")
    assert (tmp_path / "nlp" / "tokenizer").exists()  # saved as the tokenizer it wraps
    loaded = spacy.load(tmp_path / "nlp")
    assert isinstance(loaded.tokenizer, SurrogateSafeTokenizer)
    assert not isinstance(loaded.tokenizer.tokenizer, SurrogateSafeTokenizer)
    assert loaded.tokenizer.to_bytes() == safe_nlp.tokenizer.to_bytes()
    assert loaded(bad).text == "Paris \ufffd France"
    assert [ents_of(d) for d in loaded.pipe([good, bad])] == [alone[0], ents_of(docs[1])]


def test_hostile_stream_never_raises_and_pipe_equals_calls(safe_nlp):
    torch.set_num_threads(1)  # a tiny model (keep_torch_threads restores)
    rng = random.Random(27)
    texts = [_surrogate_text(rng) for _ in range(5000)]
    assert sum(any(0xD800 <= ord(c) <= 0xDFFF for c in t) for t in texts) > 1000
    docs = list(safe_nlp.pipe(texts, batch_size=256))
    assert len(docs) == len(texts)
    assert [len(d.text) for d in docs] == [len(t) for t in texts]  # one doc per text, in order, one character for one
    assert [d.text for d in docs] == [replace_lone_surrogates(t) for t in texts]
    ents = [e for d in docs for e in d.ents]
    assert ents  # there were entities to check
    # no entity without a letter or digit, except all-punctuation edges, which decoding
    # deliberately leaves to the model (decoding/masks.py: "Yahoo !"); an untrained head
    # finds some ("'", ")"), never one on whitespace, invisible characters, emoji or symbols
    no_alnum = [e for e in ents if not any(ch.isalnum() for ch in e.text)]
    assert [e.text for e in no_alnum if not (_punct(e[0].text) and _punct(e[-1].text))] == []
    single = [ents_of(safe_nlp(t)) for t in texts[::10]]
    assert [ents_of(d) for d in docs[::10]] == single
