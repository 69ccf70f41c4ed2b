"""gold_tag_ids: the vectorized path agrees with spaCy's get_aligned_ner."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_posattn_ner.training.gold import gold_tag_ids
from spacy_posattn_ner.decoding import make_tags

from .conftest import gmb_examples

TAGS = make_tags(["geo", "gpe", "org", "per", "tim", "art", "eve", "nat"])
INDEX = {tag: i for i, tag in enumerate(TAGS)}


def spacy_ids(eg: Example) -> list:
    return [-1 if t in (None, "-") else INDEX[t] for t in eg.get_aligned_ner()]


def test_matches_spacy_on_gmb_sentences(gmb_sentences):
    examples = gmb_examples(spacy.blank("en"), gmb_sentences)
    assert sum(len(eg.reference.ents) for eg in examples) > 20
    for eg in examples:
        assert gold_tag_ids(eg, INDEX).tolist() == spacy_ids(eg)


def test_single_token_and_adjacent_entities_and_missing_values():
    nlp = spacy.blank("en")
    words = ["Obama", "met", "Paris", "London", "officials", "in", "New", "York", " ", "today"]
    ref = Doc(nlp.vocab, words=words, spaces=[True] * 8 + [False, False])
    ref.set_ents(
        [Span(ref, 0, 1, "per"), Span(ref, 2, 3, "geo"), Span(ref, 3, 4, "geo"), Span(ref, 6, 8, "geo")],
        missing=[ref[5:6], ref[8:10]],  # unknown annotation, a space token among them
        default="outside",
    )
    eg = Example(Doc(nlp.vocab, words=words, spaces=[True] * 8 + [False, False]), ref)
    ids = gold_tag_ids(eg, INDEX)
    assert ids.tolist() == spacy_ids(eg)
    assert [TAGS[i] if i >= 0 else None for i in ids] == [
        "U-per", "O", "U-geo", "U-geo", "O", None, "B-geo", "L-geo", "O", None,
    ]


def test_other_tokenization_takes_spacys_path():
    nlp = spacy.blank("en")
    ref = Doc(nlp.vocab, words=["New", "York", "City", "is", "big"])
    ref.set_ents([Span(ref, 0, 3, "geo")], default="outside")
    pred = nlp.make_doc("New York City is big")
    retok = Example(Doc(nlp.vocab, words=["New York", "City", "is", "big"], spaces=[True, True, True, False]), ref)
    assert gold_tag_ids(retok, INDEX).tolist() == spacy_ids(retok) == [INDEX["B-geo"], INDEX["L-geo"], 0, 0]
    assert gold_tag_ids(Example(pred, ref), INDEX).tolist() == spacy_ids(Example(pred, ref))


def test_unknown_label_names_the_example_and_token():
    nlp = spacy.blank("en")
    ref = Doc(nlp.vocab, words=["The", "Iliad", "is", "old"])
    ref.set_ents([Span(ref, 1, 2, "book")], default="outside")
    eg = Example(Doc(nlp.vocab, words=["The", "Iliad", "is", "old"]), ref)
    with pytest.raises(ValueError, match=r"example 3: gold tag 'U-book' \(token 1, 'The Iliad is old"):
        gold_tag_ids(eg, INDEX, where="example 3: ")


def test_no_entity_annotation_is_all_missing():
    nlp = spacy.blank("en")
    eg = Example(nlp.make_doc("No annotation here"), nlp.make_doc("No annotation here"))
    assert (gold_tag_ids(eg, INDEX) == -1).all()
    assert numpy.asarray(spacy_ids(eg)).tolist() == [-1, -1, -1]
