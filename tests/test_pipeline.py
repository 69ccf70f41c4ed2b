"""The posattn_ner component: training, prediction, errors, serialization."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam

from spacy_posattn_ner.model.nodes import get_backbone
from spacy_posattn_ner.backbone import BackboneLoadError

from .conftest import ents_of, gmb_examples, make_nlp, pipe_config, toy_examples, train


def setup_entry_points():
    """setup.py's entry points, read from this checkout (the installed metadata may be another checkout's)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    groups = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    return {group: dict(item.replace(" ", "").split("=", 1) for item in items) for group, items in groups.items()}


def test_registered_by_entry_points():
    import importlib

    eps = setup_entry_points()
    assert eps["spacy_factories"]["posattn_ner"] == "spacy_posattn_ner.pipeline:make_posattn_ner"
    for group, registry in (("spacy_architectures", spacy.registry.architectures), ("spacy_misc", spacy.registry.misc),
                            ("spacy_loggers", spacy.registry.loggers)):
        ours = {name for name in registry.get_all() if name.startswith("spacy-posattn-ner.")}
        assert ours == set(eps[group]), group  # every one by both
        for name, target in eps[group].items():  # and each entry point loads the registered function
            module, func = target.split(":")
            assert getattr(importlib.import_module(module), func) is registry.get(name), name
    assert {"spacy-posattn-ner.PosAttnTagger.v3", "spacy-posattn-ner.FrozenBackbone.v2"} <= set(eps["spacy_architectures"])


def test_initialize_collects_labels(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    nlp.initialize(lambda: toy_examples(nlp))
    ner = nlp.get_pipe("posattn_ner")
    assert ner.labels == ("geo", "gpe", "org", "per", "tim")
    assert ner.tags[0] == "O" and len(ner.tags) == 1 + 4 * 5
    with pytest.raises(ValueError, match="after initialize"):
        ner.add_label("nat")


@pytest.mark.parametrize("get_examples", [None, "not callable", lambda: []])
def test_initialize_bad_get_examples(tiny_backbone, get_examples):
    nlp = make_nlp(tiny_backbone)
    with pytest.raises(TypeError, match="E930"):
        nlp.get_pipe("posattn_ner").initialize(get_examples)


def test_initialize_non_examples(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    with pytest.raises(TypeError, match="E978"):
        nlp.get_pipe("posattn_ner").initialize(lambda: [nlp.make_doc("a b")])


def test_initialize_without_entities_says_so(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    eg = Example.from_dict(nlp.make_doc("nothing here"), {"entities": []})
    with pytest.raises(ValueError, match="no entity labels"):
        nlp.initialize(lambda: [eg])


def test_predict_before_initialize_says_so(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    with pytest.raises(ValueError, match="not initialized"):
        nlp("London calling")


def test_unknown_backbone_path_names_it(tmp_path):
    missing = str(tmp_path / "no-such-model")
    nlp = make_nlp(missing)
    eg = toy_examples(nlp)
    with pytest.raises(BackboneLoadError, match="no-such-model"):
        nlp.initialize(lambda: eg)


def test_unknown_hub_name_offline_names_it():
    nlp = make_nlp("no-such-org/no-such-model-xyz")
    with pytest.raises(BackboneLoadError, match="(?s)no-such-org/no-such-model-xyz.*hub"):
        nlp.initialize(lambda: toy_examples(nlp))


def test_labels_from_initialize_config(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    nlp.get_pipe("posattn_ner").initialize(lambda: toy_examples(nlp), labels=["tim", "geo"])
    assert nlp.get_pipe("posattn_ner").labels == ("tim", "geo")


def test_overfits_toy_data_and_backbone_stays_frozen(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    examples = toy_examples(nlp)
    nlp.initialize(lambda: examples)
    backbone = get_backbone(nlp.get_pipe("posattn_ner").model).model
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = Adam(0.005)
    first = nlp.update(examples, sgd=optimizer)["posattn_ner"]
    for _ in range(40):
        last = nlp.update(examples, sgd=optimizer)["posattn_ner"]
    assert last < first / 20
    for eg in examples:
        assert ents_of(nlp(eg.reference.text)) == ents_of(eg.reference)
    after = backbone.state_dict()
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    for key, value in before.items():
        assert value.numpy().tobytes() == after[key].numpy().tobytes(), key


def test_overfits_gmb_sentences_embedded_backbone(gmb_sentences):
    """The real default: the embedded MiniLM, 12 GMB sentences learned by heart."""
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config={"model": {
        "@architectures": "spacy-posattn-ner.PosAttnTagger.v1", "width": 64, "depth": 1, "dropout": 0.0,
        "backbone": {"@architectures": "spacy-posattn-ner.FrozenBackbone.v1"}}})
    examples = gmb_examples(nlp, gmb_sentences[:12])
    assert sum(len(eg.reference.ents) for eg in examples) > 20
    train(nlp, examples, n_iter=60, learn_rate=0.01)
    fresh = [Doc(nlp.vocab, words=[t.text for t in eg.reference]) for eg in examples]
    predicted = list(nlp.pipe(fresh))
    correct = sum(ents_of(p) == ents_of(eg.reference) for p, eg in zip(predicted, examples))
    assert correct == len(examples)
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] == 1.0


@pytest.fixture(scope="module")
def trained(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    train(nlp, toy_examples(nlp), n_iter=30)
    return nlp


TEXTS = [
    "Thousands of demonstrators marched through London .",
    "Mahmoud Ahmadinejad met British troops in New York on Tuesday .",
    "",
    "The United Nations",
]


def test_pipe_equals_call(trained):
    single = [ents_of(trained(t)) for t in TEXTS]
    assert [ents_of(d) for d in trained.pipe(TEXTS, batch_size=3)] == single
    assert any(single)


def test_pipe_multiprocess_equals_call(trained):
    single = [ents_of(trained(t)) for t in TEXTS]
    assert [ents_of(d) for d in trained.pipe(TEXTS, n_process=2, batch_size=2)] == single


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\n\t", "London 🙂🙂 calling 🚀", "bell\x07 and\x00 nul \x1b[0m", "北京 是 中国 的 首都", "القاهرة مدينة", "a" * 3000],
)
def test_odd_input_is_annotated(trained, text):
    doc = trained(text)
    assert all(t.ent_iob_ in ("O", "B", "I") for t in doc)  # every token got a decision
    for ent in doc.ents:
        assert ent.label_ in trained.get_pipe("posattn_ner").labels


def test_long_doc_is_covered_by_windows(trained):
    words = ("Iran 's President Mahmoud Ahmadinejad spoke in London on Tuesday . " * 200).split()
    assert len(words) >= 2000
    doc = Doc(trained.vocab, words=words)
    backbone = get_backbone(trained.get_pipe("posattn_ner").model)
    windows = backbone.windows([doc])
    covered = numpy.zeros(len(doc), dtype=bool)
    for win in windows:
        assert len(win.input_ids) <= backbone.max_length
        covered[win.token_index[win.token_index >= 0]] = True
    assert covered.all() and len(windows) > 10
    doc = trained(doc)
    assert all(t.ent_iob_ in ("O", "B", "I") for t in doc)
    # the same sentence gets the same entities at the start and deep inside the doc
    first = [(e.start, e.label_) for e in doc.ents if e.end <= 11]
    middle = [(e.start - 1100, e.label_) for e in doc.ents if 1100 <= e.start and e.end <= 1111]
    assert first == middle


def test_embedded_tokenizer_settings_never_truncate_windows():
    """all-MiniLM's tokenizer.json truncates and pads at 128 wordpieces: the windows
    must ignore that and still give every wordpiece of a 128-token window."""
    from spacy_posattn_ner.architectures import build_frozen_backbone

    nlp = spacy.blank("en")
    words = ["Ahmadinejad"] * 128  # several wordpieces each: far more than 128 in one window
    doc = Doc(nlp.vocab, words=words)
    backbone = build_frozen_backbone().attrs["backbone"]
    assert backbone.tokenizer.backend_tokenizer.truncation is not None  # the setting is there
    windows = backbone.windows([doc])
    # (the transformers wrapper switches the setting off on the shared tokenizer when called)
    expected = backbone.tokenizer(words, is_split_into_words=True, add_special_tokens=False, truncation=False)
    pieces = sum(len(w.input_ids) - 2 for w in windows)
    assert pieces == len(expected["input_ids"]) > 256
    covered = numpy.concatenate([w.token_index[w.token_index >= 0] for w in windows])
    assert set(covered.tolist()) == set(range(len(doc)))


def test_preset_entities_are_kept(trained):
    text = "Mahmoud Ahmadinejad met British troops in New York on Tuesday ."
    predicted = ents_of(trained(text))
    assert (0, 2, "per") in predicted
    doc = trained.make_doc(text)
    doc.set_ents([spacy.tokens.Span(doc, 1, 2, label="CUSTOM")])  # inside a predicted entity
    doc = trained.get_pipe("posattn_ner")(doc)
    assert ents_of(doc) == [(1, 2, "CUSTOM")] + [e for e in predicted if e[0] >= 2]


def _same_predictions(nlp1, nlp2):
    assert [ents_of(d) for d in nlp1.pipe(TEXTS)] == [ents_of(d) for d in nlp2.pipe(TEXTS)]


def test_to_from_bytes(trained, tiny_backbone):
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("posattn_ner", config=pipe_config(tiny_backbone))
    nlp2.from_bytes(trained.to_bytes())
    assert nlp2.get_pipe("posattn_ner").labels == trained.get_pipe("posattn_ner").labels
    _same_predictions(trained, nlp2)


def test_to_disk_and_spacy_load_offline(tmp_path, tiny_backbone, monkeypatch):
    """A saved pipeline carries its backbone: it loads after the source is gone."""
    import shutil

    source = tmp_path / "backbone-copy"
    shutil.copytree(tiny_backbone, source)
    nlp = make_nlp(str(source))
    train(nlp, toy_examples(nlp), n_iter=20)
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(source)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = spacy.load(tmp_path / "pipeline")
    _same_predictions(nlp, loaded)
