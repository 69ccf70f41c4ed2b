"""The one inference path: the same answers however the pipeline was made, settings
that persist, encoders run layer by layer, tensors kept on the device, threads."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import spacy
import torch

from spacy_posattn_ner.backbone import FrozenBackbone
from spacy_posattn_ner.backbone.layerwise import LayerRunner, WholeModelRunner, is_layerwise, make_runner

from .conftest import ents_of, exit_config, toy_examples, train, trained_exit_nlp
from .test_early_exit import TEXTS as SHORT_TEXTS

TEXTS = SHORT_TEXTS + [
    " ".join(["Iran 's President Mahmoud Ahmadinejad spoke in London on Tuesday ."] * 12),  # several windows
]


@pytest.fixture(scope="module")
def trained_exit(tiny_backbone, tmp_path_factory):
    """An early-exit pipeline trained in this process, and the same saved and loaded."""
    nlp = trained_exit_nlp(tiny_backbone, n_iter=25, precision=None)
    path = tmp_path_factory.mktemp("engine") / "p"
    nlp.to_disk(path)
    return nlp, spacy.load(path)


def _answers(nlp):
    return [(ents_of(d), d._.exit_layer) for d in nlp.pipe(TEXTS, batch_size=4)]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "auto"])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_in_process_and_loaded_pipelines_answer_alike(trained_exit, precision, threshold):
    in_process, loaded = trained_exit
    for nlp in (in_process, loaded):
        ner = nlp.get_pipe("posattn_ner")
        ner.precision, ner.exit_threshold = precision, threshold
    answers = _answers(in_process)
    assert answers == _answers(loaded)
    assert [a for a in answers if a[1] is not None]  # there was something to compare
    assert [single for text in TEXTS for single in [(ents_of(in_process(text)), in_process(text)._.exit_layer)]] == answers


def test_runtime_settings_are_saved_and_overridable(trained_exit, tmp_path):
    nlp, _ = trained_exit
    ner = nlp.get_pipe("posattn_ner")
    ner.exit_threshold, ner.precision = 0.7, "int8"
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p").get_pipe("posattn_ner")
    assert (loaded.exit_threshold, loaded.precision) == (0.7, "int8")
    override = {"components": {"posattn_ner": {"precision": "fp32"}}}
    loaded = spacy.load(tmp_path / "p", config=override).get_pipe("posattn_ner")
    assert (loaded.exit_threshold, loaded.precision) == (0.7, "fp32")
    # bytes, into a pipeline made from the saved config
    again = spacy.blank("en").from_config(nlp.config)
    again.from_bytes(nlp.to_bytes())
    assert (again.get_pipe("posattn_ner").exit_threshold, again.get_pipe("posattn_ner").precision) == (0.7, "int8")


@pytest.mark.parametrize("path", ["device", "host"])
def test_no_layer_is_copied_to_the_host(trained_exit, monkeypatch, path):
    """From wordpieces to decoded tags nothing goes to the host but one boolean per
    doc per exit and the decoded result (the device path, what a GPU runs, keeps its
    tensors; a CPU batch is decoded in numpy from the log-probs in place, with no copy)."""
    from spacy_posattn_ner.decoding.predictions import Decoder

    if path == "device":
        monkeypatch.setattr(Decoder, "__call__", lambda self, scores, docs, **kw: self._on_device(
            scores, docs, kw["with_scores"], kw["candidate_threshold"], kw["temperature"]))
    nlp, _ = trained_exit
    ner = nlp.get_pipe("posattn_ner")
    ner.precision, ner.exit_threshold = "fp32", 0.5
    ner.scores = False  # entity scores add one more transfer: their own (n_entities,) vector
    calls = []
    original = torch.Tensor.cpu

    def spy(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", spy)
    docs = list(nlp.pipe(TEXTS, batch_size=len(TEXTS)))
    n_docs = sum(1 for d in docs if len(d))
    exits_run = 2  # exit after layer 1, then layer 2
    assert len(calls) <= exits_run + 2  # per exit: which segments go on; then tag ids and segment exit layers
    assert all(len(shape) <= 2 for shape in calls) and max(len(s) for s in calls) == (2 if path == "device" else 1)
    assert all(shape[0] <= len(TEXTS) for shape in calls) and n_docs == 5
    ner.scores = True


def test_runner_yields_tensors_on_the_encoders_device(tiny_backbone):
    backbone = FrozenBackbone(tiny_backbone, lambda docs: [[d[:]] for d in docs], "whole", 8192)
    doc = spacy.blank("en")("Thousands marched through London .")
    windows = backbone.windows([doc])
    runner = backbone.runner(windows, "fp32", training=False)
    for _ in range(backbone.n_layers):
        hidden = runner.next_layer()
        assert hidden.device == backbone.device and hidden.dtype == torch.float32


def _tiny(config_cls, model_cls, **kwargs):
    torch.manual_seed(0)
    return model_cls(config_cls(**kwargs)).eval()


def _layers_by_runner(runner: LayerRunner, n: int):
    return [runner.next_layer() for _ in range(n)]


@pytest.mark.parametrize("kind", ["Bert", "MPNet"])
def test_layerwise_fast_path_equals_the_models_own_forward(kind):
    """BERT and MPNet run a layer per call; MPNet's layers need the relative-position
    bias its encoder computes (without it every layer after the embeddings differs)."""
    import transformers

    config_cls, model_cls = getattr(transformers, f"{kind}Config"), getattr(transformers, f"{kind}Model")
    model = _tiny(config_cls, model_cls, vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    runner = make_runner(model, ids, mask)
    assert is_layerwise(model) and type(runner) is LayerRunner
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    got = _layers_by_runner(runner, 4)
    for k, (a, b) in enumerate(zip(got, expected)):
        valid = mask.bool()
        torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=1e-5, msg=f"layer {k}")
    # rows dropped mid-way continue exactly as they would have
    runner = make_runner(model, ids, mask)
    runner.next_layer()
    runner.keep(torch.tensor([0, 2]))
    rest = [runner.next_layer() for _ in range(3)]
    for k, layer in enumerate(rest, start=1):
        torch.testing.assert_close(layer[1][:3], expected[k][2][:3], atol=1e-5, rtol=1e-5)


def test_generic_path_for_a_non_bert_encoder_equals_output_hidden_states(tmp_path, tiny_backbone):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    model = _tiny(DistilBertConfig, DistilBertModel, vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    assert not is_layerwise(model)
    ids = torch.randint(5, 1000, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    runner = make_runner(model, ids, mask)
    assert type(runner) is WholeModelRunner
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for a, b in zip(_layers_by_runner(runner, 3), expected):
        assert torch.equal(a, b)
    # and a whole pipeline runs on it, early exit included
    model.save_pretrained(tmp_path / "distil")
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(tmp_path / "distil")
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=exit_config(str(tmp_path / "distil")))
    train(nlp, toy_examples(nlp), n_iter=30)
    ner = nlp.get_pipe("posattn_ner")
    ner.precision = "fp32"
    for threshold, layer in ((0.0, 1), (1.0, 2)):
        ner.exit_threshold = threshold
        docs = list(nlp.pipe(eg.reference.text for eg in toy_examples(nlp)))
        assert {d._.exit_layer for d in docs} == {layer}
    assert [ents_of(d) for d in docs] == [ents_of(eg.reference) for eg in toy_examples(nlp)]


def test_threads_get_exactly_the_single_threaded_answers(trained_exit):
    """A web server's thread pool calls nlp(text) concurrently: every answer must be
    the one a single thread gets (shared tables once mixed states up)."""
    import random

    nlp, _ = trained_exit
    ner = nlp.get_pipe("posattn_ner")
    ner.precision, ner.exit_threshold = "fp32", 0.5
    torch.set_num_threads(1)  # eight Python threads on two cores: no intra-op pools on top

    rng = random.Random(0)
    base = [eg.reference.text for eg in toy_examples(nlp)] + TEXTS
    # made-up words keep the per-word wordpiece table growing while threads read it
    texts = [f"{rng.choice(base)} Zq{rng.randrange(10**6)}x {rng.choice(base)}" for _ in range(200)]
    table = ner.model.get_ref("backbone").attrs["backbone"].windower.table
    table.clear()
    expected = [(ents_of(d), d._.exit_layer) for d in (nlp(t) for t in texts)]
    table.clear()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: (lambda d: (ents_of(d), d._.exit_layer))(nlp(t)), texts))
    assert got == expected
