"""Inference precision of the backbone: fp32, bf16, int8, auto."""
import numpy
import pytest
import spacy
import torch

from spacy_posattn_ner.backbone import resolve_precision, resolve_train_precision
from spacy_posattn_ner.model.nodes import get_backbone

from .conftest import TOY, ents_of, make_nlp, toy_examples, train

TEXTS = [text for text, _ in TOY]


@pytest.fixture(scope="module")
def trained(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    train(nlp, toy_examples(nlp), n_iter=40)
    nlp.get_pipe("posattn_ner").precision = "fp32"
    return nlp


def test_auto_resolves_to_a_concrete_precision():
    # never int8: it changes the answers, so it is only ever an explicit choice
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="'fp8' is not one of"):
        resolve_precision("fp8", torch.device("cpu"))


def test_bad_precision_names_it(trained):
    with pytest.raises(ValueError, match="precision 'half' is not one of auto, fp32, bf16, int8"):
        trained.get_pipe("posattn_ner").precision = "half"


@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_reduced_precision_keeps_predictions(trained, precision):
    ner = trained.get_pipe("posattn_ner")
    ner.precision = "fp32"
    reference = [ents_of(d) for d in trained.pipe(TEXTS)]
    ner.precision = precision
    try:
        assert [ents_of(d) for d in trained.pipe(TEXTS)] == reference
        docs = [trained.make_doc(t) for t in TEXTS]
        backbone = get_backbone(ner.model)
        low = backbone.features(docs, precision=precision, training=False)
        full = backbone.features(docs, precision="fp32", training=False)
        diffs = [numpy.abs(a.astype("f") - b.astype("f")).max() for a, b in zip(low, full)]
        if resolve_precision(precision, backbone.device) == "fp32":  # auto without native bf16
            assert max(diffs) == 0
        else:
            assert 0 < max(diffs) < 0.5  # really computed differently, and close
    finally:
        ner.precision = "fp32"


def test_training_features_stay_fp32(trained):
    ner = trained.get_pipe("posattn_ner")
    ner.precision = "int8"
    try:
        doc = trained.make_doc("Thousands marched through Basra .")
        backbone = get_backbone(ner.model)
        via_model, _ = ner.model.get_ref("backbone")([doc], is_train=True)
        assert numpy.array_equal(via_model[0], backbone.features([doc], precision="fp32")[0])
    finally:
        ner.precision = "fp32"


def test_bf16_inference_on_cpu_runs_a_bf16_copy_and_training_keeps_fp32_weights(trained):
    ner = trained.get_pipe("posattn_ner")
    backbone = get_backbone(ner.model)
    doc = trained.make_doc("Thousands marched through Basra .")
    before = backbone.features([doc], precision="bf16", training=True)[0]
    ner.precision = "bf16"
    try:
        reference = [ents_of(d) for d in trained.pipe(TEXTS)]
        model, precision, autocast = backbone.inference_model("bf16")
        assert precision == "bf16" and not autocast and model is not backbone.model
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        # the weights that training and the feature cache use are untouched
        assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}
        model, precision, autocast = backbone.inference_model("bf16", training=True)
        assert model is backbone.model and autocast
        assert numpy.array_equal(backbone.features([doc], precision="bf16", training=True)[0], before)
        assert [ents_of(d) for d in trained.pipe(TEXTS)] == reference
    finally:
        ner.precision = "fp32"


def test_train_precision_sets_the_training_features_and_their_cache_key(trained):
    ner = trained.get_pipe("posattn_ner")
    backbone = get_backbone(ner.model)
    doc = trained.make_doc("Thousands marched through Basra .")
    fp32_key = backbone.train_key(ner.train_precision)
    ner.train_precision = "bf16"
    try:
        assert backbone.train_key(ner.train_precision) != fp32_key  # cached fp32 features are never served for bf16
        via_model, _ = ner.model.get_ref("backbone")([doc], is_train=True)
        assert numpy.array_equal(via_model[0], backbone.features([doc], precision="bf16", training=True)[0])
        assert not numpy.array_equal(via_model[0], backbone.features([doc], precision="fp32")[0])
    finally:
        ner.train_precision = "fp32"
    with pytest.raises(ValueError, match="train_precision 'int8' is not one of fp32, bf16, auto"):
        ner.train_precision = "int8"
    ner.train_precision = "auto"  # never int8: bf16 where native, else fp32
    try:
        resolved = resolve_train_precision("auto", torch.device("cpu"))
        assert resolved == resolve_precision("auto", torch.device("cpu")).replace("int8", "fp32")
        assert backbone.train_key(ner.train_precision).endswith(":" + resolved)
    finally:
        ner.train_precision = "fp32"
    nlp = make_nlp(get_backbone(ner.model).name)
    assert nlp.get_pipe("posattn_ner").train_precision == "fp32"


def test_precision_set_at_load(trained, tmp_path):
    trained.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p", config={"components": {"posattn_ner": {"precision": "int8"}}})
    assert loaded.get_pipe("posattn_ner").precision == "int8"
    assert [ents_of(d) for d in loaded.pipe(TEXTS)] == [ents_of(d) for d in trained.pipe(TEXTS)]
