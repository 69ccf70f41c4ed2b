"""Pipelines saved by commit 3b33c82 load with today's code and answer as they did.

tests/fixtures/pipelines_3b33c82/make_fixtures.py made them (a PosAttnTagger.v3 with
exits over FrozenBackbone.v2's sentence windows plus a sentencizer, and a
PosAttnTagger.v1 over FrozenBackbone.v1) and recorded their entities, exit layers and
entity scores on 200 GMB test sentences at exit thresholds 0, 0.5 and 1.
"""
import json
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc

import spacy_posattn_ner  # noqa: F401

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pipelines_3b33c82"


@pytest.fixture(scope="module")
def expected():
    return json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("kind", ["v3_sentences", "v1"])
def test_saved_pipeline_answers_as_it_did(kind, expected):
    nlp = spacy.load(FIXTURES / kind)
    ner = nlp.get_pipe("posattn_ner")
    assert ner.exit_threshold == 1.0 and ner.precision == "fp32"
    for threshold, runs in expected["pipelines"][kind].items():
        ner.exit_threshold = float(threshold)
        docs = nlp.pipe(Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in expected["docs"])
        for i, (doc, want) in enumerate(zip(docs, runs)):
            where = f"{kind}, threshold {threshold}, doc {i}"
            assert [[e.start, e.end, e.label_] for e in doc.ents] == want["ents"], where
            assert doc._.exit_layer == want["exit_layer"], where
            assert doc._.exit_layers == want["exit_layers"], where
            group = doc.spans["posattn_ner"]
            assert [[s.start, s.end, s.label_] for s in group] == want["spans"], where
            numpy.testing.assert_allclose(group.attrs["scores"], want["scores"], atol=1e-6, err_msg=where)


def test_fixtures_exercise_exits_and_entities(expected):
    """The recorded answers are worth comparing: entities found, and at 0.5 some
    sentences leave at the first exit and some at the last."""
    runs = expected["pipelines"]["v3_sentences"]
    layers = {k for doc in runs["0.5"] for k in doc["exit_layers"]}
    assert layers == {1, 2}
    assert sum(len(doc["ents"]) for doc in runs["1.0"]) > 100
    assert len(expected["docs"]) == 100 and all(len(d["words"]) for d in expected["docs"])
