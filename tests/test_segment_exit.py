"""Early exit per sentence: in a multi-sentence doc each sentence leaves on its own,
with the whole doc as context; windows whose sentences all left stop, and carry
their last states for the deeper exits."""
import numpy
import pytest
import torch
from spacy.tokens import Doc

from spacy_posattn_ner.backbone import TokenPooler
from spacy_posattn_ner.model.engine import segment_ids

from .conftest import trained_exit_nlp

SENTS = [
    "Thousands marched through Basra .".split(),
    "Bush met Putin in Moscow on Friday .".split(),
    "The UN said talks would resume in Geneva .".split(),
    "Iran 's President Mahmoud Ahmadinejad spoke in London .".split(),
]


@pytest.fixture(scope="module")
def exit_nlp(tiny_backbone):
    return trained_exit_nlp(tiny_backbone, n_iter=25, precision="fp32")


def sentenced(nlp, sents) -> Doc:
    words = [w for s in sents for w in s]
    starts = [i == 0 for s in sents for i in range(len(s))]
    return Doc(nlp.vocab, words=words, sent_starts=starts)


def predict(nlp, docs, threshold):
    ner = nlp.get_pipe("posattn_ner")
    ner.exit_threshold = threshold
    return ner.model.predict(docs)


def sentence_confidences(nlp, doc, layer_scores) -> numpy.ndarray:
    top = layer_scores.log_probs[0, : len(doc)].max(dim=-1).values.exp().numpy()
    return numpy.asarray([top[s.start : s.end].min() for s in doc.sents])


def test_segments_are_sentences_where_set_else_docs(exit_nlp):
    plain = exit_nlp.make_doc("Bush met Putin . Then he left .")
    two = sentenced(exit_nlp, SENTS[:2])
    ids, owner = segment_ids([plain, exit_nlp.make_doc(""), two])
    assert ids.tolist() == [0] * len(plain) + [1] * len(SENTS[0]) + [2] * len(SENTS[1])
    assert owner.tolist() == [0, 2, 2]


def test_each_sentence_leaves_on_its_own(exit_nlp):
    doc = sentenced(exit_nlp, SENTS[:2])  # 13 tokens: one window, so nothing is carried
    first = predict(exit_nlp, [doc], 0.0)  # every sentence at the first exit
    full = predict(exit_nlp, [doc], 1.0)  # every sentence at the last
    conf = sentence_confidences(exit_nlp, doc, first)
    assert conf[0] != conf[1]
    threshold = float(conf.max())  # the more confident sentence leaves, the other goes on
    mixed = predict(exit_nlp, [doc], threshold)
    early, late = int(conf.argmax()), int(conf.argmin())
    assert mixed.segment_exit_layer.tolist()[early] == 1 and mixed.segment_exit_layer.tolist()[late] == 2
    assert mixed.exit_layer.tolist() == [2]
    sents = list(doc.sents)
    for k, source in ((early, first), (late, full)):
        span = slice(sents[k].start, sents[k].end)
        assert torch.equal(mixed.log_probs[0, span], source.log_probs[0, span])
    exit_nlp.get_pipe("posattn_ner").exit_threshold = threshold
    tagged = exit_nlp(sentenced(exit_nlp, SENTS[:2]))
    assert tagged._.exit_layers == mixed.segment_exit_layer.tolist() and tagged._.exit_layer == 2


def test_a_doc_without_sentence_starts_is_one_segment(exit_nlp):
    exit_nlp.get_pipe("posattn_ner").exit_threshold = 0.5
    doc = exit_nlp("Bush met Putin in Moscow . The UN said talks would resume .")
    assert doc._.exit_layers == [doc._.exit_layer]
    assert exit_nlp("")._.exit_layers is None


def test_windows_that_left_carry_their_states_and_answers_do_not_depend_on_the_batch(exit_nlp, monkeypatch):
    carried = []
    original = TokenPooler.carry

    def spy(self, plan, hidden):
        carried.append(int(hidden.shape[0]))
        return original(self, plan, hidden)

    monkeypatch.setattr(TokenPooler, "carry", spy)
    long_doc = sentenced(exit_nlp, SENTS * 3)  # several windows of 24 wordpieces
    conf = sentence_confidences(exit_nlp, long_doc, predict(exit_nlp, [long_doc], 0.0))
    # a threshold at which some sentences leave early and a whole window of them stops
    for threshold in sorted(set(conf.tolist())):
        carried.clear()
        alone = predict(exit_nlp, [long_doc], threshold)
        if carried and len(set(alone.segment_exit_layer.tolist())) == 2:
            break
    else:
        pytest.fail(f"no threshold among the sentence confidences {conf} stopped a window early")
    others = [sentenced(exit_nlp, SENTS[:1]), exit_nlp.make_doc("Rain in Basra ."), long_doc]
    batched = predict(exit_nlp, others, threshold)
    n = len(long_doc)
    assert torch.equal(batched.log_probs[2, :n], alone.log_probs[0, :n])
    assert batched.segment_exit_layer[-len(conf):].tolist() == alone.segment_exit_layer.tolist()
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = threshold
    piped = list(exit_nlp.pipe([sentenced(exit_nlp, SENTS * 3), sentenced(exit_nlp, SENTS[:1])], batch_size=8))
    single = exit_nlp(sentenced(exit_nlp, SENTS * 3))
    assert [(e.start, e.end, e.label_) for e in piped[0].ents] == [(e.start, e.end, e.label_) for e in single.ents]
    assert piped[0]._.exit_layers == single._.exit_layers == alone.segment_exit_layer.tolist()


def test_carried_states_stand_in_for_deeper_layers_only():
    lengths = [3]

    class W:  # a window over the doc's 3 tokens, one wordpiece each
        doc_index = 0
        token_index = numpy.asarray([-1, 0, 1, 2, -1])

    pooler = TokenPooler(lengths, [W()], n_layers=3, width=2, device=torch.device("cpu"))
    plan = pooler.plan([W()], 5)
    hidden = torch.arange(10, dtype=torch.float32).reshape(1, 5, 2)
    pooler.add(plan, hidden, 0)
    pooler.carry(plan, hidden)
    pooler.add(plan, torch.zeros(1, 5, 2), 1)  # a kept window would add to the carried states
    layers = pooler.pooled().float()
    assert torch.equal(layers[0], hidden[0, 1:4])
    assert torch.equal(layers[1], hidden[0, 1:4])


def test_entities_never_cross_a_sentence_start(exit_nlp):
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 1.0
    for sents in (SENTS, SENTS[::-1], [s[:2] for s in SENTS]):
        doc = exit_nlp(sentenced(exit_nlp, sents))
        per_sentence = [(e.start, e.end, e.label_) for s in doc.sents for e in s.ents]
        assert per_sentence == [(e.start, e.end, e.label_) for e in doc.ents]
        assert all(e.sent.start <= e.start and e.end <= e.sent.end for e in doc.ents)
