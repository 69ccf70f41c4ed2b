"""The optimizer's two halves on the head's torch parameters: the step in place, and
``use_params`` with the optimizer's averages (what spaCy's loop scores dev and saves with)."""
import numpy
import pytest
import torch
from thinc.api import Adam, Model, PyTorchShim

from spacy_posattn_ner.model.build import get_head
from spacy_posattn_ner.model.optimizer import use_params
from spacy_posattn_ner.student.net import MaxoutWindow

from ..conftest import make_nlp, toy_examples


def _head_params(nlp):
    return {name: p.detach().clone() for name, p in get_head(nlp.get_pipe("posattn_ner").model).named_parameters()}


def _log_probs(nlp, docs):
    ner = nlp.get_pipe("posattn_ner")
    return ner.model.predict(docs).log_probs.numpy().copy()


def _trained_with_averages(backbone, steps):
    nlp = make_nlp(backbone)
    examples = toy_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01, use_averages=True)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp, examples, optimizer


def test_use_averages_takes_effect_and_the_trained_weights_come_back(tiny_backbone):
    nlp, examples, optimizer = _trained_with_averages(tiny_backbone, 5)
    docs = [nlp.make_doc(eg.reference.text) for eg in examples]
    trained, trained_scores = _head_params(nlp), _log_probs(nlp, docs)

    with nlp.use_params(optimizer.averages):
        inside = _head_params(nlp)
        inside_scores = _log_probs(nlp, docs)
    # inside the block: the averages, not the trained values (they differ after 5 steps)
    shim = nlp.get_pipe("posattn_ner").model.get_ref("head").shims[0]
    averaged = {name: optimizer.averages[(shim.id, name)] for name in trained if (shim.id, name) in optimizer.averages}
    assert set(averaged) == set(trained)  # every head parameter has its average
    for name, value in averaged.items():
        numpy.testing.assert_array_equal(inside[name].numpy(), numpy.asarray(value))
    assert any(not torch.equal(inside[k], trained[k]) for k in trained)
    assert not numpy.allclose(inside_scores, trained_scores)
    # after it: the trained weights, bit for bit, and the same answers
    after = _head_params(nlp)
    for key, value in trained.items():
        assert torch.equal(after[key], value), key
    numpy.testing.assert_array_equal(_log_probs(nlp, docs), trained_scores)


def test_use_params_restores_the_weights_after_an_error(tiny_backbone):
    nlp, _, optimizer = _trained_with_averages(tiny_backbone, 3)
    trained = _head_params(nlp)
    with pytest.raises(RuntimeError, match="inside"):
        with nlp.use_params(optimizer.averages):
            raise RuntimeError("inside")
    after = _head_params(nlp)
    assert all(torch.equal(after[k], v) for k, v in trained.items())


def test_use_params_refuses_averages_of_another_shape():
    layer = torch.nn.Linear(3, 2)
    model = Model("m", lambda m, X, is_train: (X, lambda d: d), shims=[PyTorchShim(layer)])
    shim_id = model.shims[0].id
    before = layer.weight.detach().clone()
    with pytest.raises(ValueError, match=r"averaged parameter weight has shape \(3, 3\), the model's \(2, 3\)"):
        with use_params(model, {(shim_id, "weight"): numpy.zeros((3, 3), dtype="float32")}):
            pass
    assert torch.equal(layer.weight, before)


def test_the_students_window_matrix_follows_averaged_weights():
    """The student caches its convolution as a matrix while the weights do not change:
    swapping the averages in (and the trained weights back) must be seen by inference."""
    torch.manual_seed(0)
    layer = MaxoutWindow(width=8, window=1, pieces=2, dropout=0.0).eval()
    model = Model("m", lambda m, X, is_train: (X, lambda d: d), shims=[PyTorchShim(layer)])
    shim_id = model.shims[0].id
    x = torch.randn(2, 7, 8)

    def conv(inputs):
        return layer.conv(inputs.transpose(1, 2)).transpose(1, 2)

    with torch.inference_mode():
        trained = layer._window_linear(x).clone()  # the matrix is cached now
    averages = {(shim_id, "conv.weight"): numpy.asarray(torch.randn_like(layer.conv.weight).numpy())}
    with use_params(model, averages):
        with torch.inference_mode():
            inside = layer._window_linear(x).clone()
            torch.testing.assert_close(inside, conv(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(inside, trained)
    with torch.inference_mode():
        torch.testing.assert_close(layer._window_linear(x), trained, rtol=0, atol=0)
