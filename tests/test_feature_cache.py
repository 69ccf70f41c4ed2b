"""Frozen features once per distinct doc: the cache, its keys, and training with it."""
import io
import json
import shutil

import numpy
import pytest
import torch
import spacy
from spacy.tokens import Doc, DocBin

from spacy_posattn_ner.model.nodes import get_backbone, get_head
from spacy_posattn_ner.feature_cache import DEFAULT_MAX_DISK_MB, FeatureCache, FeatureCacheFullError, doc_key

from .conftest import ROOT, ents_of, make_nlp, pipe_config, toy_examples, train


def _array(seed, shape=(3, 5, 8)):
    return numpy.random.default_rng(seed).standard_normal(shape).astype("float16")


def test_ram_then_memory_mapped_spill(tmp_path):
    one = _array(0)
    cache = FeatureCache(max_ram_mb=2.5 * one.nbytes / 2**20, directory=str(tmp_path))
    arrays = {f"k{i}": _array(i) for i in range(6)}
    for key, value in arrays.items():
        cache.put(key, value)
    assert len(cache) == 6
    assert cache.disk_bytes == 4 * one.nbytes  # two fit in RAM, four spilled
    assert list(tmp_path.iterdir())
    for key, value in arrays.items():
        assert numpy.array_equal(cache.get(key), value)
    assert cache.get("missing") is None
    cache.clear()
    assert len(cache) == 0 and not list(tmp_path.iterdir())


def test_keys_change_with_backbone_text_and_tokenization():
    nlp = spacy.blank("en")
    a = Doc(nlp.vocab, words=["New", "York"])
    same = Doc(nlp.vocab, words=["New", "York"])
    retokenized = Doc(nlp.vocab, words=["New", " York"], spaces=[False, False])
    other_text = Doc(nlp.vocab, words=["New", "Yorks"])
    assert doc_key(a, "fp1") == doc_key(same, "fp1")
    assert doc_key(a, "fp1") != doc_key(a, "fp2")
    assert doc_key(a, "fp1") != doc_key(other_text, "fp1")
    assert doc_key(a, "fp1") != doc_key(retokenized, "fp1")


def test_keys_change_with_sentence_starts():
    """Sentence windows (FrozenBackbone.v2) give other features when the starts move."""
    nlp = spacy.blank("en")
    words = ["Rain", ".", "Snow", "."]
    plain = Doc(nlp.vocab, words=words)
    two = Doc(nlp.vocab, words=words, sent_starts=[True, False, True, False])
    one = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, False])
    assert len({doc_key(plain, "fp"), doc_key(two, "fp"), doc_key(one, "fp")}) == 3
    assert doc_key(two, "fp") == doc_key(Doc(nlp.vocab, words=words, sent_starts=[True, False, True, False]), "fp")


def test_fingerprint_depends_on_weights_and_windows(tiny_backbone):
    fp = get_backbone(make_nlp(tiny_backbone).get_pipe("posattn_ner").model).fingerprint
    nlp2 = spacy.blank("en")
    cfg = pipe_config(tiny_backbone)
    cfg["model"]["backbone"]["stride"] = 8
    nlp2.add_pipe("posattn_ner", config=cfg)
    assert get_backbone(nlp2.get_pipe("posattn_ner").model).fingerprint != fp
    nlp3 = make_nlp(tiny_backbone)
    backbone = get_backbone(nlp3.get_pipe("posattn_ner").model)
    with torch.no_grad():
        next(backbone.model.parameters()).add_(1.0)
    backbone._fingerprint = None
    assert backbone.fingerprint != fp


def test_get_or_compute_runs_backbone_once_per_distinct_doc():
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in ["a b", "c", "a b", "d e f"]]
    calls = []

    def compute(batch):
        calls.append([d.text for d in batch])
        return [numpy.full((2, len(d), 4), len(d), dtype="float16") for d in batch]

    cache = FeatureCache()
    first = cache.get_or_compute(docs, "fp", compute)
    again = cache.get_or_compute(list(reversed(docs)), "fp", compute)
    assert calls == [["a b", "c", "d e f"]]
    assert [f.shape[1] for f in first] == [2, 1, 2, 3]
    assert [f.shape[1] for f in again] == [3, 2, 1, 2]


def test_batches_are_length_bucketed(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    backbone = get_backbone(nlp.get_pipe("posattn_ner").model).load()
    backbone.batch_wordpieces = 60
    docs = [nlp.make_doc(" ".join(["word"] * n)) for n in (3, 20, 5, 14, 2, 9)]
    windows = backbone.windows(docs)
    batches = list(backbone.batches(windows))
    lengths = [len(w.input_ids) for batch in batches for w in batch]
    assert lengths == sorted(lengths) and len(lengths) == len(windows)
    for batch in batches:
        assert max(len(w.input_ids) for w in batch) * len(batch) <= 60 or len(batch) == 1


def _corpus(nlp, tmp_path):
    examples = toy_examples(nlp)
    train_path, dev_path = tmp_path / "train.spacy", tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in examples]).to_disk(train_path)
    DocBin(docs=[eg.reference for eg in examples[:2]]).to_disk(dev_path)
    return train_path, dev_path


def test_spacy_train_runs_backbone_once_per_distinct_doc(tiny_backbone, tmp_path):
    """A whole `spacy train` run of several epochs: one backbone pass per distinct doc."""
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop

    train_path, dev_path = _corpus(spacy.blank("en"), tmp_path)
    overrides = {
        "paths.train": str(train_path),
        "paths.dev": str(dev_path),
        "training.max_epochs": 5,
        "training.eval_frequency": 2,
        "training.batcher.size.start": 20,
        "training.batcher.size.stop": 20,
        "training.logger.logger.progress_bar": False,
        "components.posattn_ner.model.backbone.name": tiny_backbone,
        "components.posattn_ner.model.width": 32,
        "components.posattn_ner.model.depth": 1,
        "components.posattn_ner.model.n_heads": 2,
        "components.posattn_ner.model.exit_layers": [1, -1],  # the tiny backbone has 2 layers
    }
    config = spacy.util.load_config(ROOT / "configs" / "posattn_ner.cfg", overrides=overrides)
    nlp = init_nlp(config)
    backbone = get_backbone(nlp.get_pipe("posattn_ner").model)
    (tmp_path / "out").mkdir()
    log = io.StringIO()
    train_loop(nlp, tmp_path / "out", stdout=log)
    assert log.getvalue().count("\n") > 5  # several evaluations were logged
    n_distinct = len(toy_examples(nlp))
    # training features: computed once per distinct doc, read back every later epoch
    assert backbone.cache.misses == n_distinct
    assert backbone.cache.hits >= 4 * n_distinct


def test_cache_does_not_change_what_is_learned(tiny_backbone):
    texts = [eg.reference.text for eg in toy_examples(spacy.blank("en"))] + ["Ahmadinejad left London ."]
    with_cache = make_nlp(tiny_backbone)
    train(with_cache, toy_examples(with_cache), n_iter=15, seed=3)
    without = make_nlp(tiny_backbone)
    backbone = get_backbone(without.get_pipe("posattn_ner").model)
    backbone.cache = None
    computed = []
    features = backbone.features
    backbone.features = lambda docs, **kw: computed.extend(docs) or features(docs, **kw)
    train(without, toy_examples(without), n_iter=15, seed=3)
    assert len(computed) == 15 * 4  # every update ran the backbone
    head_a = get_head(with_cache.get_pipe("posattn_ner").model).state_dict()
    head_b = get_head(without.get_pipe("posattn_ner").model).state_dict()
    for key in head_a:
        assert numpy.array_equal(head_a[key].numpy(), head_b[key].numpy()), key
    assert [ents_of(with_cache(t)) for t in texts] == [ents_of(without(t)) for t in texts]


# -- the spill file's bound (cache_max_disk_mb) ------------------------------------------
def _mb(n_bytes: float) -> float:
    return n_bytes / 2**20


def test_spill_past_cache_max_disk_mb_raises_naming_the_setting(tmp_path):
    """A full spill file is an error, not eviction (FeatureCacheFullError says why):
    the entry is not stored, nothing is written, and what was stored stays readable."""
    one = _array(0)
    cache = FeatureCache(max_ram_mb=_mb(1.5 * one.nbytes), directory=str(tmp_path), max_disk_mb=_mb(2.5 * one.nbytes))
    arrays = {f"k{i}": _array(i) for i in range(4)}
    for key in ("k0", "k1", "k2"):  # one in RAM, two on disk
        cache.put(key, arrays[key])
    assert cache.disk_bytes == 2 * one.nbytes
    with pytest.raises(FeatureCacheFullError) as err:
        cache.put("k3", arrays["k3"])
    message = str(err.value)
    (spill,) = tmp_path.iterdir()
    assert "cache_max_disk_mb" in message and str(spill) in message
    assert f"to {3 * one.nbytes:,} bytes" in message and f"({int(_mb(2.5 * one.nbytes) * 2**20):,} bytes" in message
    assert "k3" not in cache and len(cache) == 3
    for key in ("k0", "k1", "k2"):
        assert numpy.array_equal(cache.get(key), arrays[key])
    assert cache.disk_bytes == spill.stat().st_size == 2 * one.nbytes  # (flushed by the reads) nothing more was written
    cache.put("k1", arrays["k1"])  # already stored: no growth, no error
    cache.clear()


def test_cache_max_disk_mb_zero_never_spills(tmp_path):
    one = _array(0)
    cache = FeatureCache(max_ram_mb=_mb(1.5 * one.nbytes), directory=str(tmp_path), max_disk_mb=0)
    cache.put("k0", one)
    with pytest.raises(FeatureCacheFullError, match="cache_max_disk_mb = 0 MiB"):
        cache.put("k1", _array(1))
    assert not list(tmp_path.iterdir())  # no spill file was even created


@pytest.mark.parametrize("bad", [None, -1, float("nan"), "20480", True])
def test_cache_max_disk_mb_must_be_a_bound(bad):
    with pytest.raises(ValueError, match="cache_max_disk_mb must be a number of MiB >= 0"):
        FeatureCache(max_disk_mb=bad)


def test_factory_setting_cache_max_disk_mb(tiny_backbone):
    nlp = make_nlp(tiny_backbone)
    assert nlp.get_pipe_config("posattn_ner")["cache_max_disk_mb"] == DEFAULT_MAX_DISK_MB
    assert get_backbone(nlp.get_pipe("posattn_ner").model).cache.max_disk_mb == DEFAULT_MAX_DISK_MB
    with pytest.raises(Exception, match="cache_max_disk_mb"):  # None (unbounded) is refused by the config
        spacy.blank("en").add_pipe("posattn_ner", config={**pipe_config(tiny_backbone), "cache_max_disk_mb": None})


def test_training_past_a_small_disk_bound_stops_with_the_error(tiny_backbone, tmp_path):
    """End to end through the factory: no RAM, a spill file too small for the toy
    corpus' features. The first update says which setting to change."""
    nlp = spacy.blank("en")
    config = {**pipe_config(tiny_backbone), "cache_max_ram_mb": 0, "cache_dir": str(tmp_path), "cache_max_disk_mb": 0.003}
    nlp.add_pipe("posattn_ner", config=config)
    examples = toy_examples(nlp)
    nlp.initialize(lambda: examples)
    with pytest.raises(FeatureCacheFullError, match="cache_max_disk_mb"):
        nlp.update(examples)
    cache = get_backbone(nlp.get_pipe("posattn_ner").model).cache
    assert 0 < cache.disk_bytes <= 0.003 * 2**20 and 0 < len(cache) < len(examples)


def test_saved_config_without_cache_max_disk_mb_loads_with_the_default(tiny_exit_pipeline, tmp_path):
    path = shutil.copytree(tiny_exit_pipeline, tmp_path / "p")
    config = (path / "config.cfg").read_text()
    assert "cache_max_disk_mb" in config
    (path / "config.cfg").write_text("\n".join(l for l in config.splitlines() if not l.startswith("cache_max_disk_mb")))
    nlp = spacy.load(path)
    assert get_backbone(nlp.get_pipe("posattn_ner").model).cache.max_disk_mb == DEFAULT_MAX_DISK_MB


# -- the tokenizer is part of the key ------------------------------------------------------
def test_backbones_differing_only_in_tokenizer_get_different_keys(tiny_backbone, tmp_path):
    """Same weights and config, one wordpiece renamed in tokenizer.json: the
    fingerprints differ, so one cache never hands one backbone's features to the other."""
    other = shutil.copytree(tiny_backbone, tmp_path / "other-tokenizer")
    tokenizer_json = json.loads((other / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    vocab["l0ndon"] = vocab.pop("london")
    (other / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    a = get_backbone(make_nlp(tiny_backbone).get_pipe("posattn_ner").model).load()
    b = get_backbone(make_nlp(str(other)).get_pipe("posattn_ner").model).load()
    assert a.model.config.to_json_string() == b.model.config.to_json_string()
    for key, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[key]), key
    assert a.fingerprint != b.fingerprint
    doc = spacy.blank("en").make_doc("Thousands marched through London .")
    cache = FeatureCache()
    a.cache = b.cache = cache
    feats_a = a.train_features([doc], "fp32")[0]
    feats_b = b.train_features([doc], "fp32")[0]
    assert cache.misses == 2 and cache.hits == 0 and len(cache) == 2
    assert not numpy.array_equal(feats_a, feats_b)  # the renamed wordpiece changed London's features
    assert numpy.array_equal(a.train_features([doc], "fp32")[0], feats_a) and cache.hits == 1
