"""Entity probabilities in doc.spans: aligned with the entities, candidates, settings."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from .conftest import ents_of, trained_exit_nlp

TEXTS = [
    "Iran 's President Mahmoud Ahmadinejad spoke in London on Tuesday .",
    "The United Nations met in New York .",
    "",
    "nothing to see here .",
]
KEY = "posattn_ner"


@pytest.fixture(scope="module")
def scored(tiny_backbone):
    return trained_exit_nlp(tiny_backbone, n_iter=25)


def spans_of(doc):
    group = doc.spans[KEY]
    return [(s.start, s.end, s.label_) for s in group], group.attrs["scores"].tolist()


def test_every_entity_gets_a_probability(scored):
    docs = list(scored.pipe(TEXTS))
    assert any(d.ents for d in docs)
    for doc in docs:
        spans, scores = spans_of(doc)
        assert spans == ents_of(doc) and len(scores) == len(spans)  # entities only, aligned
        assert all(0.0 < p <= 1.0 for p in scores)


def test_candidates_include_the_entities_and_overlapping_readings(scored):
    ner = scored.get_pipe("posattn_ner")
    ner.candidate_threshold = 1e-4
    try:
        docs = list(scored.pipe(TEXTS))
    finally:
        ner.candidate_threshold = None
    extra = 0
    for doc in docs:
        spans, scores = spans_of(doc)
        assert set(ents_of(doc)) <= set(spans)
        assert spans == sorted(spans, key=lambda s: (s[0], s[1], s[2])) and len(set(spans)) == len(spans)
        for span, p in zip(spans, scores):
            assert 0.0 < p <= 1.0 and (span in ents_of(doc) or p >= 1e-4)
        extra += len(spans) - len(doc.ents)
    assert extra > 0  # a low threshold really adds other readings


def test_scores_follow_the_exit_that_answered_and_every_precision(scored):
    ner = scored.get_pipe("posattn_ner")
    seen = {}
    try:
        for precision in ("fp32", "bf16", "int8"):
            for threshold in (0.0, 1.0):
                ner.precision, ner.exit_threshold = precision, threshold
                doc = scored(TEXTS[0])
                spans, scores = spans_of(doc)
                assert spans == ents_of(doc) and all(0 < p <= 1 for p in scores)
                seen[(precision, threshold)] = (doc._.exit_layer, scores)
    finally:
        ner.precision, ner.exit_threshold = "fp32", 1.0
    assert seen[("fp32", 0.0)][0] == 1 and seen[("fp32", 1.0)][0] == 2
    assert seen[("fp32", 0.0)][1] != seen[("fp32", 1.0)][1]  # another head, other scores


def test_long_docs_in_windows_are_scored(scored):
    words = ("Iran 's President spoke in London on Tuesday . " * 40).split()
    doc = scored(Doc(scored.vocab, words=words))
    spans, scores = spans_of(doc)
    assert len(doc) == len(words) and spans == ents_of(doc) and len(scores) > 20
    assert all(0 < p <= 1 for p in scores)


def test_preset_entities_keep_their_spans_with_score_one(scored):
    doc = scored.make_doc(TEXTS[0])
    doc.set_ents([Span(doc, 3, 4, label="CUSTOM")])
    doc = scored.get_pipe("posattn_ner")(doc)
    spans, scores = spans_of(doc)
    assert (3, 4, "CUSTOM") in spans and scores[spans.index((3, 4, "CUSTOM"))] == 1.0
    assert spans == ents_of(doc)


def test_temperature_flattens_and_is_checked(scored):
    ner = scored.get_pipe("posattn_ner")
    cool = spans_of(scored(TEXTS[0]))[1]
    ner.temperature = 4.0
    try:
        warm = spans_of(scored(TEXTS[0]))[1]
    finally:
        ner.temperature = 1.0
    assert max(warm) < max(cool)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            ner.temperature = bad
    with pytest.raises(ValueError, match=r"candidate_threshold must be in \(0, 1\]"):
        ner.candidate_threshold = 0.0


def test_scores_travel_with_docs_and_pipelines(scored, tmp_path):
    docs = list(scored.pipe(TEXTS))
    back = list(DocBin(docs=docs).from_bytes(DocBin(docs=docs).to_bytes()).get_docs(scored.vocab))
    assert [spans_of(d) for d in back] == [spans_of(d) for d in docs]
    ner = scored.get_pipe("posattn_ner")
    ner.temperature, ner.candidate_threshold = 2.0, 0.3
    try:
        scored.to_disk(tmp_path / "p")
        expected = [spans_of(d) for d in scored.pipe(TEXTS)]
    finally:
        ner.temperature, ner.candidate_threshold = 1.0, None
    loaded = spacy.load(tmp_path / "p")
    assert (loaded.get_pipe("posattn_ner").temperature, loaded.get_pipe("posattn_ner").candidate_threshold) == (2.0, 0.3)
    assert [spans_of(d) for d in loaded.pipe(TEXTS)] == expected
    assert [spans_of(d) for d in loaded.pipe(TEXTS, n_process=2, batch_size=2)] == expected


def test_scores_can_be_switched_off(scored):
    ner = scored.get_pipe("posattn_ner")
    ner.scores = False
    try:
        doc = scored(TEXTS[0])
        assert KEY not in doc.spans and doc.ents
    finally:
        ner.scores = True
    with pytest.raises(ValueError, match="scores must be true or false"):
        ner.scores = "yes"
    assert numpy.isfinite(spans_of(scored(TEXTS[0]))[1]).all()
