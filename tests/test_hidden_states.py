"""FrozenBackbone.v3's ``hidden_states``: only the listed states are pooled, cached and
mixed (a larger encoder's feature cache must fit in RAM), with the same answers in
training, in process and after a round trip."""
import numpy
import pytest
import spacy
import torch

from spacy_posattn_ner.backbone import kept_states, mixed_count
from spacy_posattn_ner.model.nodes import get_backbone

from .conftest import SMALL_HEAD, ents_of, toy_examples, train, TOY


def _config(backbone: str, hidden_states, exit_layers=(1, -1)):
    return {
        "model": {
            "@architectures": "spacy-posattn-ner.PosAttnTagger.v2",
            **SMALL_HEAD,
            "exit_layers": list(exit_layers),
            "backbone": {
                "@architectures": "spacy-posattn-ner.FrozenBackbone.v3",
                "name": backbone,
                "window": 24,
                "stride": 16,
                "hidden_states": hidden_states,
            },
        },
        "precision": "fp32",
    }


def test_kept_states_resolve_and_refuse_with_the_setting_named():
    assert kept_states(None, 4) == [0, 1, 2, 3]
    assert kept_states([0, 2, -1], 13) == [0, 2, 12]
    assert [mixed_count([0, 4, 8, 12], k) for k in (3, 4, 8, 12)] == [1, 2, 3, 4]
    for bad in ([], [2, 1], [0, 0], [0, 13], [-14], [1.5], [True]):
        with pytest.raises(ValueError, match="hidden_states"):
            kept_states(bad, 13)


def test_features_hold_only_the_kept_states(tiny_backbone):
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=_config(tiny_backbone, [1, -1]))
    every = spacy.blank("en")
    every.add_pipe("posattn_ner", config=_config(tiny_backbone, None))
    docs = [nlp.make_doc(text) for text, _ in TOY]
    kept = get_backbone(nlp.get_pipe("posattn_ner").model).load()
    full = get_backbone(every.get_pipe("posattn_ner").model).load()
    assert kept.kept == [1, 2] and full.kept == [0, 1, 2]
    some, all_ = kept.features(docs, training=False), full.features(docs, training=False)
    for a, b, doc in zip(some, all_, docs):
        assert a.shape == (2, len(doc), full.width) and b.shape == (3, len(doc), full.width)
        numpy.testing.assert_array_equal(a, b[1:])
    assert kept.fingerprint != full.fingerprint  # their cache entries never mix


def test_a_subset_trains_predicts_and_round_trips(tiny_backbone, tmp_path):
    torch.set_num_threads(1)
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=_config(tiny_backbone, [1, -1]))
    train(nlp, toy_examples(nlp), n_iter=40)
    head = nlp.get_pipe("posattn_ner").model.get_ref("head").shims[0]._model
    # exit 1 mixes state 1 only, the last exit states 1 and 2
    assert [h.mix_weights().shape[0] for _, h in head.exits()] == [1, 2]
    ner = nlp.get_pipe("posattn_ner")
    expected = [ents_of(eg.reference) for eg in toy_examples(nlp)]
    texts = [text for text, _ in TOY]
    for threshold, layer in ((1.0, 2), (0.0, 1)):
        ner.exit_threshold = threshold
        docs = list(nlp.pipe(texts, batch_size=2))
        assert {d._.exit_layer for d in docs} == {layer}
        if threshold == 1.0:
            assert [ents_of(d) for d in docs] == expected
    ner.exit_threshold = 1.0
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert get_backbone(loaded.get_pipe("posattn_ner").model).hidden_states == [1, -1]
    for text in texts:
        a, b = nlp(text), loaded(text)
        assert ents_of(a) == ents_of(b)
        numpy.testing.assert_allclose(
            [s for s in a.spans["posattn_ner"].attrs["scores"]], [s for s in b.spans["posattn_ner"].attrs["scores"]],
            atol=1e-6,
        )


def test_an_exit_layer_that_is_not_kept_is_refused_at_initialize(tiny_backbone):
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=_config(tiny_backbone, [0, -1], exit_layers=(1, -1)))
    with pytest.raises(ValueError, match=r"exit layers \[1\] are not among the backbone's hidden_states \[0, 2\]"):
        nlp.initialize(lambda: toy_examples(nlp))


def test_malformed_hidden_states_are_refused_when_the_config_is_read(tiny_backbone):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="hidden_states"):
        nlp.add_pipe("posattn_ner", config=_config(tiny_backbone, [3, 1]))
