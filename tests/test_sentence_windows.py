"""FrozenBackbone.v2's sentence windows: the backbone runs each sentence on its own,
so a sentence sees in a multi-sentence doc exactly what it sees as a doc of its own
(what a model trained on one-sentence docs was trained on), and a sentence that
exits early stops its windows."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc

from spacy_posattn_ner.backbone.layerwise import LayerRunner
from spacy_posattn_ner.model.nodes import get_backbone
from spacy_posattn_ner.segments import segment_bounds

from .conftest import exit_config, trained_exit_nlp

SENTS = [
    "Thousands marched through Basra .".split(),
    "Bush met Putin in Moscow on Friday .".split(),
    ("The UN said talks would resume in Geneva after the long winter break that began in December of last year "
     "and ended in March with a deal on trade and aid .").split(),
    "Iran 's President Mahmoud Ahmadinejad spoke in London .".split(),
]


def sentenced(vocab, sents) -> Doc:
    words = [w for s in sents for w in s]
    starts = [i == 0 for s in sents for i in range(len(s))]
    return Doc(vocab, words=words, sent_starts=starts)


def backbone_of(tiny_backbone: str, sentence_windows: bool):
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=exit_config(tiny_backbone, sentence_windows=sentence_windows))
    return nlp, get_backbone(nlp.get_pipe("posattn_ner").model).load()


def test_windows_stay_inside_sentences_and_cover_every_token(tiny_backbone):
    nlp, backbone = backbone_of(tiny_backbone, sentence_windows=True)
    doc = sentenced(nlp.vocab, SENTS * 2)  # the 32-token sentence needs two windows of 24 tokens
    bounds = segment_bounds(doc)
    sentence_of = numpy.searchsorted(bounds, numpy.arange(len(doc)), side="right") - 1
    covered = numpy.zeros(len(doc), dtype=int)
    windows = backbone.windows([doc])
    for win in windows:
        tokens = win.token_index[win.token_index >= 0]
        assert len(set(sentence_of[tokens].tolist())) == 1  # no window crosses a sentence start
        covered[numpy.unique(tokens)] += 1
    assert covered.min() >= 1
    assert len(windows) > len(SENTS) * 2  # the long sentence was strided, not cut


def test_a_doc_without_sentence_starts_gets_v1_windows(tiny_backbone):
    nlp, v2 = backbone_of(tiny_backbone, sentence_windows=True)
    _, v1 = backbone_of(tiny_backbone, sentence_windows=False)
    doc = nlp.make_doc(" ".join(w for s in SENTS * 3 for w in s))
    got, want = v2.windows([doc]), v1.windows([doc])
    assert [w.input_ids.tolist() for w in got] == [w.input_ids.tolist() for w in want]
    assert [w.token_index.tolist() for w in got] == [w.token_index.tolist() for w in want]
    assert v2.fingerprint != v1.fingerprint  # the feature cache never mixes the two


def test_a_sentence_in_a_doc_gets_the_features_it_gets_alone(tiny_backbone):
    nlp, backbone = backbone_of(tiny_backbone, sentence_windows=True)
    doc = sentenced(nlp.vocab, SENTS)
    together = backbone.features([doc], precision="fp32")[0]
    bounds = segment_bounds(doc)
    for k, words in enumerate(SENTS):
        alone = backbone.features([Doc(nlp.vocab, words=words)], precision="fp32")[0]
        numpy.testing.assert_allclose(together[:, bounds[k] : bounds[k + 1]], alone, atol=2e-3)


@pytest.fixture(scope="module")
def sentence_exit_nlp(tiny_backbone):
    return trained_exit_nlp(tiny_backbone, n_iter=25, precision="fp32", sentence_windows=True)


def test_a_sentence_that_leaves_stops_its_own_windows(sentence_exit_nlp, monkeypatch):
    rows_per_layer: dict = {}
    original = LayerRunner.next_layer

    def spy(self):
        hidden = original(self)
        # windows of different padded lengths run in batches of their own (batch invariance)
        rows_per_layer[self.layer] = rows_per_layer.get(self.layer, 0) + int(hidden.shape[0])
        return hidden

    ner = sentence_exit_nlp.get_pipe("posattn_ner")
    short = SENTS[:2] + SENTS[3:]  # three sentences of one window each
    doc = sentenced(sentence_exit_nlp.vocab, short)
    ner.exit_threshold = 0.0
    first = ner.model.predict([doc])
    top = first.log_probs[0, : len(doc)].max(dim=-1).values.exp().numpy()
    bounds = segment_bounds(doc)
    conf = numpy.asarray([top[s:e].min() for s, e in zip(bounds[:-1], bounds[1:])])
    assert len(set(conf.tolist())) == len(short)
    threshold = float(numpy.sort(conf)[1])  # the two most confident leave at layer 1, one goes on
    monkeypatch.setattr(LayerRunner, "next_layer", spy)
    ner.exit_threshold = threshold
    mixed = ner.model.predict([doc])
    assert sorted(mixed.segment_exit_layer.tolist()) == [1, 1, 2]
    # layers 0 and 1 (embeddings, first transformer layer) run all three sentences,
    # layer 2 only the one that went on: its window alone
    assert list(rows_per_layer.values()) == [3, 3, 1]  # v1's one window over the doc would run [1, 1, 1]


@pytest.mark.parametrize("threshold", ["none", "some", "all"])
def test_a_doc_is_tagged_exactly_as_its_sentences_alone(sentence_exit_nlp, threshold):
    """Backbone and heads read one sentence at a time: a doc's log-probs and exit
    layers are its sentences' as docs of their own, whoever exits where."""
    ner = sentence_exit_nlp.get_pipe("posattn_ner")
    sents = SENTS + SENTS[:2]
    doc = sentenced(sentence_exit_nlp.vocab, sents)
    ner.exit_threshold = 0.0
    first = ner.model.predict([doc])
    top = first.log_probs[0, : len(doc)].max(dim=-1).values.exp().numpy()
    bounds = segment_bounds(doc)
    conf = sorted(top[a:b].min() for a, b in zip(bounds[:-1], bounds[1:]))
    ner.exit_threshold = {"none": 1.0, "some": float(conf[len(conf) // 2]), "all": 0.0}[threshold]
    together = ner.model.predict([doc])
    alone = ner.model.predict([Doc(sentence_exit_nlp.vocab, words=words) for words in sents])
    assert together.segment_exit_layer.tolist() == alone.exit_layer.tolist()
    if threshold == "some":
        assert len(set(together.segment_exit_layer.tolist())) == 2
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        numpy.testing.assert_allclose(together.log_probs[0, a:b].numpy(), alone.log_probs[k, : b - a].numpy(), atol=1e-4)
    tagged = sentence_exit_nlp(sentenced(sentence_exit_nlp.vocab, sents))
    per_sentence = [sentence_exit_nlp(Doc(sentence_exit_nlp.vocab, words=words)) for words in sents]
    shifted = [(e.start + bounds[k], e.end + bounds[k], e.label_) for k, d in enumerate(per_sentence) for e in d.ents]
    assert [(e.start, e.end, e.label_) for e in tagged.ents] == shifted


def test_training_reads_each_sentence_on_its_own(tiny_backbone):
    """The training forward gives a sentence in a doc the scores it gives the
    sentence alone (no dropout here), and its backprop runs on those rows."""
    from .conftest import toy_examples

    nlp = spacy.blank("en")
    config = exit_config(tiny_backbone, sentence_windows=True)
    config["model"]["dropout"] = 0.0
    nlp.add_pipe("posattn_ner", config=config)
    nlp.initialize(lambda: toy_examples(nlp))
    model = nlp.get_pipe("posattn_ner").model
    doc = sentenced(nlp.vocab, SENTS[:3])
    (scores, lengths), backprop = model([doc], is_train=True)
    bounds = segment_bounds(doc)
    for k, words in enumerate(SENTS[:3]):
        (alone, _), _ = model([Doc(nlp.vocab, words=words)], is_train=True)
        a, b = bounds[k], bounds[k + 1]
        numpy.testing.assert_allclose(scores[..., 0, a:b, :], alone[..., 0, :, :], atol=1e-3)
    assert backprop(numpy.ones_like(scores)) == []
