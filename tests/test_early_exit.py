"""Early exit (PosAttnTagger.v2): exit heads, the threshold, and real savings."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc

import torch

from spacy_posattn_ner.backbone import layerwise
from spacy_posattn_ner.model.engine import TagScores
from spacy_posattn_ner.layers.lexical import lexical_ids_many
from spacy_posattn_ner.model.nodes import get_backbone, get_head, pad_features

from .conftest import ents_of, exit_config, toy_examples, train, trained_exit_nlp

TEXTS = [
    "Thousands of demonstrators marched through London .",
    "Mahmoud Ahmadinejad met British troops in New York on Tuesday .",
    "",
    "The United Nations met in Basra in March .",
    "Iran 's President spoke .",
]


@pytest.fixture(scope="module")
def exit_nlp(tiny_backbone):
    return trained_exit_nlp(tiny_backbone)


def test_exit_layers_default_to_every_layer(exit_nlp):
    assert exit_nlp.get_pipe("posattn_ner").exit_layers == [1, 2]


def test_every_exit_learns(exit_nlp):
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 0.0
    first = [ents_of(d) for d in exit_nlp.pipe(eg.reference.text for eg in toy_examples(exit_nlp))]
    ner.exit_threshold = 1.0
    last = [ents_of(d) for d in exit_nlp.pipe(eg.reference.text for eg in toy_examples(exit_nlp))]
    gold = [ents_of(eg.reference) for eg in toy_examples(exit_nlp)]
    assert first == gold and last == gold


def test_threshold_one_equals_the_last_head_on_all_layers_at_once(exit_nlp):
    """Layer by layer with exit off gives what the last exit's head gives on the
    features of every layer computed in one pass (the training path's features)."""
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 1.0
    docs = [exit_nlp(t) for t in TEXTS]
    assert [d._.exit_layer for d in docs] == [2, 2, None, 2, 2]
    fresh = [exit_nlp.make_doc(t) for t in TEXTS if t]
    feats = get_backbone(ner.model).features(fresh, precision="fp32")
    rows = ner.model.attrs["head_config"]["lexical_rows"]
    lex = [lexical_ids_many([d], rows) for d in fresh]
    hidden, lex_ids, mask = pad_features(feats, lex, torch.device("cpu"))
    with torch.no_grad():
        scores = get_head(ner.model).heads[-1](hidden[:, :3].float(), lex_ids, mask)
    lengths = torch.as_tensor([len(d) for d in fresh])
    reference = TagScores(torch.log_softmax(scores, dim=-1), lengths, torch.full((len(fresh),), 2))
    ner.set_annotations(fresh, ner.decode(reference, fresh))
    assert [ents_of(d) for d in docs if len(d)] == [ents_of(d) for d in fresh]


def _count_layer_calls(monkeypatch):
    calls = []
    original = layerwise.LayerRunner._compute

    def spy(self, layer):
        calls.append(layer)
        return original(self, layer)

    monkeypatch.setattr(layerwise.LayerRunner, "_compute", spy)
    return calls


def test_threshold_zero_stops_at_the_first_exit_and_skips_deeper_layers(exit_nlp, monkeypatch):
    ner = exit_nlp.get_pipe("posattn_ner")
    calls = _count_layer_calls(monkeypatch)
    for threshold in (0.0, 1.0):
        ner.exit_threshold = threshold
        calls.clear()
        docs = list(exit_nlp.pipe(TEXTS, batch_size=len(TEXTS)))
        expected = 1 if threshold == 0.0 else 2
        assert [d._.exit_layer for d in docs if len(d)] == [expected] * 4
        assert max(calls) == expected  # the second transformer layer never ran at threshold 0
        assert calls.count(1) >= 1 and calls.count(1) == calls.count(0)


def test_intermediate_threshold_mixes_exit_layers(exit_nlp):
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 1.0
    layers_by_threshold = []
    for threshold in numpy.linspace(0.0, 1.0, 21):
        ner.exit_threshold = float(threshold)
        layers_by_threshold.append(sum(d._.exit_layer for d in exit_nlp.pipe(TEXTS) if len(d)))
    assert layers_by_threshold == sorted(layers_by_threshold)  # a higher bar never exits earlier


def test_bad_threshold_and_exit_layers_are_rejected(exit_nlp, tiny_backbone):
    with pytest.raises(ValueError, match="exit_threshold"):
        exit_nlp.get_pipe("posattn_ner").exit_threshold = -0.5
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=exit_config(tiny_backbone, exit_layers=[1, 5]))
    with pytest.raises(ValueError, match=r"exit_layers \[1, 5\].*between 1 and 2"):
        nlp.initialize(lambda: toy_examples(nlp))
    for bad in ([1, -1, 2], [-3]):  # -1 is layer 2 here: not increasing; -3 is the embeddings
        nlp = spacy.blank("en")
        nlp.add_pipe("posattn_ner", config=exit_config(tiny_backbone, exit_layers=bad))
        with pytest.raises(ValueError, match=r"exit_layers.*-1 is the last"):
            nlp.initialize(lambda: toy_examples(nlp))


def test_negative_exit_layers_count_from_the_last(tiny_backbone):
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=exit_config(tiny_backbone, exit_layers=[1, -1]))
    nlp.initialize(lambda: toy_examples(nlp))
    assert nlp.get_pipe("posattn_ner").exit_layers == [1, 2]  # the tiny backbone has 2 layers


def test_threshold_round_trips_and_overrides_at_load(exit_nlp, tmp_path):
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 0.0
    try:
        exit_nlp.to_disk(tmp_path / "p")
        expected = [ents_of(d) for d in exit_nlp.pipe(TEXTS)]
    finally:
        ner.exit_threshold = 1.0
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("posattn_ner").exit_threshold == 0.0
    assert loaded.config["components"]["posattn_ner"]["exit_threshold"] == 0.0  # config.cfg tells the truth
    assert [d._.exit_layer for d in loaded.pipe(TEXTS) if len(d)] == [1] * 4
    assert [ents_of(d) for d in loaded.pipe(TEXTS)] == expected
    override = spacy.load(tmp_path / "p", config={"components": {"posattn_ner": {"exit_threshold": 1.0}}})
    assert override.get_pipe("posattn_ner").exit_threshold == 1.0
    assert [d._.exit_layer for d in override.pipe(TEXTS) if len(d)] == [2] * 4
    assert [ents_of(d) for d in override.pipe(TEXTS)] == [ents_of(d) for d in exit_nlp.pipe(TEXTS)]


def test_exit_layer_survives_multiprocessing(exit_nlp):
    exit_nlp.get_pipe("posattn_ner").exit_threshold = 0.0
    docs = list(exit_nlp.pipe(TEXTS, n_process=2, batch_size=2))
    assert [d._.exit_layer for d in docs] == [1, 1, None, 1, 1]
    exit_nlp.get_pipe("posattn_ner").exit_threshold = 1.0


def test_long_doc_exits_as_one_unit(exit_nlp):
    exit_nlp.get_pipe("posattn_ner").exit_threshold = 1.0
    words = ("Iran 's President spoke in London on Tuesday . " * 60).split()
    doc = exit_nlp(Doc(exit_nlp.vocab, words=words))
    assert doc._.exit_layer == 2 and all(t.ent_iob_ in ("O", "B", "I") for t in doc)


def v3_config(backbone: str, width, depth, exit_layers=None):
    config = exit_config(backbone, exit_layers=exit_layers)
    config["model"].update({"@architectures": "spacy-posattn-ner.PosAttnTagger.v3", "width": width, "depth": depth})
    return config


def test_v3_sizes_each_exit_head_and_round_trips(tiny_backbone, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=v3_config(tiny_backbone, width=[16, 32], depth=[1, 2]))
    train(nlp, toy_examples(nlp), n_iter=60)
    ner = nlp.get_pipe("posattn_ner")
    heads = get_head(ner.model).heads
    assert [h.tagger.in_features for h in heads] == [16, 32]
    assert [len(h.blocks) for h in heads] == [1, 2]
    gold = [ents_of(eg.reference) for eg in toy_examples(nlp)]
    for threshold, layer in ((0.0, 1), (1.0, 2)):  # the small first head learns too
        ner.exit_threshold = threshold
        docs = list(nlp.pipe(eg.reference.text for eg in toy_examples(nlp)))
        assert [ents_of(d) for d in docs] == gold and {d._.exit_layer for d in docs} == {layer}
    ner.exit_threshold = 0.0
    nlp.to_disk(tmp_path / "v3")
    loaded = spacy.load(tmp_path / "v3")
    assert [len(h.blocks) for h in get_head(loaded.get_pipe("posattn_ner").model).heads] == [1, 2]
    assert [ents_of(d) for d in loaded.pipe(TEXTS)] == [ents_of(d) for d in nlp.pipe(TEXTS)]


def test_v3_rejects_a_size_list_that_does_not_match_the_exits(tiny_backbone):
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=v3_config(tiny_backbone, width=[16, 32, 32], depth=1, exit_layers=[1, 2]))
    with pytest.raises(ValueError, match=r"width \[16, 32, 32\] has 3 entries for 2 exit layers \[1, 2\]"):
        nlp.initialize(lambda: toy_examples(nlp))


def test_exit_heads_run_at_the_backbones_resolved_precision(exit_nlp, monkeypatch):
    """'auto' must mean the same for the exit heads as for the backbone (it once
    left the heads in fp32 while the backbone ran in bf16)."""
    from spacy_posattn_ner.model import engine
    from spacy_posattn_ner.backbone import resolve_precision

    seen = []
    original = engine._apply_exit

    def spy(*args, **kwargs):
        seen.append(args[9])  # autocast
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_apply_exit", spy)
    ner = exit_nlp.get_pipe("posattn_ner")
    for precision in ("auto", "fp32", "bf16"):
        ner.precision = precision
        exit_nlp(TEXTS[0])
    ner.precision = "fp32"
    assert seen == [resolve_precision("auto", torch.device("cpu")) == "bf16", False, True]


def _softmax(x):
    e = numpy.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_exit_distill_mixes_the_last_exits_distribution_into_earlier_targets(exit_nlp, alpha):
    ner = exit_nlp.get_pipe("posattn_ner")
    examples = toy_examples(exit_nlp)[:3]
    lengths = numpy.asarray([len(eg.predicted) for eg in examples])
    T, K = int(lengths.max()), len(ner.tags)
    rng = numpy.random.default_rng(0)
    scores = rng.normal(size=(2, len(examples), T, K)).astype("float32")
    saved = ner.exit_distill
    ner.exit_distill = alpha
    try:
        loss, d_scores = ner.get_loss(examples, (scores, lengths))
    finally:
        ner.exit_distill = saved
    index = {tag: i for i, tag in enumerate(ner.tags)}
    gold = numpy.zeros((len(examples), T, K), dtype="float32")
    valid = numpy.zeros((len(examples), T), dtype=bool)
    for i, eg in enumerate(examples):
        for t, tag in enumerate(eg.get_aligned_ner()):
            gold[i, t, index[tag]] = 1.0
            valid[i, t] = True
    probs = _softmax(scores)
    n = valid.sum() * 2
    first_target = (1 - alpha) * gold + alpha * probs[1]
    numpy.testing.assert_allclose(d_scores[1], (probs[1] - gold) * valid[..., None] / n, atol=1e-6)
    numpy.testing.assert_allclose(d_scores[0], (probs[0] - first_target) * valid[..., None] / n, atol=1e-6)
    expected = -(
        (first_target * numpy.log(probs[0])).sum(-1)[valid].sum() + (gold * numpy.log(probs[1])).sum(-1)[valid].sum()
    ) / n
    assert loss == pytest.approx(expected, rel=1e-5)


def test_exit_distill_with_equal_exits_leaves_the_first_exit_nothing_to_learn(exit_nlp):
    ner = exit_nlp.get_pipe("posattn_ner")
    examples = toy_examples(exit_nlp)[:2]
    lengths = numpy.asarray([len(eg.predicted) for eg in examples])
    one = numpy.random.default_rng(1).normal(size=(len(examples), int(lengths.max()), len(ner.tags)))
    saved, ner.exit_distill = ner.exit_distill, 1.0
    try:
        _, d_scores = ner.get_loss(examples, (numpy.stack([one, one]).astype("float32"), lengths))
    finally:
        ner.exit_distill = saved
    assert numpy.abs(d_scores[0]).max() < 1e-7 and numpy.abs(d_scores[1]).max() > 1e-3


def test_exit_distill_is_checked_and_set_from_the_config(tiny_backbone):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("posattn_ner", config={**exit_config(tiny_backbone), "exit_distill": 0.25})
    assert ner.exit_distill == 0.25 and nlp.config["components"]["posattn_ner"]["exit_distill"] == 0.25
    with pytest.raises(ValueError, match=r"exit_distill must be a number in \[0, 1\], got 1.5"):
        ner.exit_distill = 1.5
    with pytest.raises(ValueError, match="exit_distill"):
        spacy.blank("en").add_pipe("posattn_ner", config={**exit_config(tiny_backbone), "exit_distill": -0.1})
