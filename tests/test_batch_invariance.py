"""#27 B: a doc's answer does not depend on its batch mates, in fp32, bf16 and int8.

bf16 attention (the backbone's SDPA and the heads') gives results that change with the
padded length of the batch (~4e-3), so windows and head rows are padded to a length
bucket of their own length (``batching.padded_length``) and batched only with rows of
the same bucket: each row sees the same shapes whatever its batch mates. int8 quantizes
each row by its own range (``encoder.RowwiseInt8Linear``). These tests
ask for exact equality of the tag log-probs of every doc run alone, in batches of 7,
all together and in another order, and of ``nlp.pipe`` against ``nlp(text)``."""
import random

import numpy
import pytest
import spacy
import torch

from spacy_posattn_ner.batching import bucket_chunks, padded_length

from .conftest import exit_config, make_nlp, toy_examples

WORDS = ["London", "New", "York", "Iran", "Mahmoud", "Ahmadinejad", "Tuesday", "United", "Nations", "Basra",
         "March", "British", "troops", "the", "of", ",", "said", "Thousands", "demonstrators", "antidisestablishment",
         "Kyrgyzstan", "2008", "U.S.", "$", "marched", "through", "government", "officials"]  # fmt: skip


def varied_texts(n: int = 60, seed: int = 5):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 2, 3, 5, 8, 13, 17, 21, 26, 30, 34, 40, 47, 55, 70, 90]) for _ in range(n - 1)]
    texts = [" ".join(rng.choice(WORDS) for _ in range(k)) + " ." for k in lengths]
    return texts + [" ".join(rng.choice(WORDS) for _ in range(600))]  # a long row: the heads' chunked path


def test_padded_length_depends_on_the_length_only():
    assert [padded_length(n) for n in (1, 8, 9, 16, 17, 33, 64, 65, 100, 130, 500, 512)] == [
        8, 8, 16, 16, 24, 40, 64, 72, 104, 144, 512, 512]  # fmt: skip
    assert padded_length(60, cap=62) == 62 and padded_length(700, cap=512) == 704  # a cap only for lengths under it
    for n in range(1, 2000):
        assert n <= padded_length(n) <= max(n + 7, n * 9 // 8 + 1)
    groups = bucket_chunks([3, 30, 9, 31, 8, 100], budget=64)
    assert sorted(int(i) for g, _ in groups for i in g) == list(range(6))
    for group, width in groups:  # one bucket per group, within the budget unless alone
        assert {padded_length(l) for l in numpy.asarray([3, 30, 9, 31, 8, 100])[group]} == {width}
        assert len(group) * width <= 64 or len(group) == 1


def _log_probs(ner, docs):
    scores = ner.model.predict(docs)
    return [scores.log_probs[i, : len(d)].clone() for i, d in enumerate(docs)]


@pytest.fixture(scope="module", params=["v1", "v2-exits"])
def pipeline(request, tiny_backbone):
    if request.param == "v1":
        nlp = make_nlp(tiny_backbone)
    else:
        nlp = spacy.blank("en")
        nlp.add_pipe("posattn_ner", config=exit_config(tiny_backbone, threshold=0.5))
    spacy.util.fix_random_seed(0)
    nlp.initialize(lambda: toy_examples(nlp))
    return nlp


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_docs_log_probs_do_not_depend_on_its_batch(pipeline, precision):
    torch.set_num_threads(2)
    ner = pipeline.get_pipe("posattn_ner")
    ner.precision = precision
    docs = [pipeline.make_doc(t) for t in varied_texts()]
    alone = [_log_probs(ner, [d])[0] for d in docs]
    together = _log_probs(ner, docs)
    sevens = [lp for i in range(0, len(docs), 7) for lp in _log_probs(ner, docs[i : i + 7])]
    order = list(reversed(range(len(docs))))
    reordered = dict(zip(order, _log_probs(ner, [docs[i] for i in order])))
    for i in range(len(docs)):
        for other in (together[i], sevens[i], reordered[i]):
            assert torch.equal(other, alone[i]), (precision, i, len(docs[i]), (other - alone[i]).abs().max().item())


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_pipe_equals_single_calls(pipeline, precision):
    torch.set_num_threads(2)
    ner = pipeline.get_pipe("posattn_ner")
    ner.precision, ner.scores = precision, True
    texts = varied_texts(30, seed=6)

    def answer(doc):
        spans = doc.spans.get(ner.spans_key, [])
        return [(e.start, e.end, e.label_) for e in doc.ents], [(s.start, s.end, s.label_) for s in spans], list(
            getattr(spans, "attrs", {}).get("scores", []))

    single = [answer(pipeline(t)) for t in texts]
    assert [answer(d) for d in pipeline.pipe(texts, batch_size=7)] == single
