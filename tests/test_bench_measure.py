"""The benchmarks' harness (scripts/bench/data.py): gold docs in, fresh docs out, the one
pipeline loader and the settings override (the measurement itself: test_calibration.py)."""
import pytest
import spacy
import torch

from scripts.bench.data import fresh_docs, read_gold, write_prefix
from spacy_posattn_ner.calibration import measure


@pytest.fixture
def exit_nlp(tiny_exit_pipeline):
    torch.set_num_threads(1)  # a tiny model: one thread is faster on a busy machine (keep_torch_threads restores)
    return spacy.load(tiny_exit_pipeline)


def test_read_gold_skips_empty_docs_and_keeps_the_prefix(toy_corpus, tmp_path):
    nlp = spacy.blank("en")
    refs = read_gold(nlp, toy_corpus)
    assert len(refs) == 12 and all(len(doc) for doc in refs)  # the toy corpus's 13th doc is empty
    assert [d.text for d in read_gold(nlp, toy_corpus, limit=5)] == [d.text for d in refs[:5]]
    assert write_prefix(nlp, toy_corpus, tmp_path / "p.spacy", 3) == 3
    assert [d.text for d in read_gold(nlp, tmp_path / "p.spacy")] == [d.text for d in refs[:3]]


def test_fresh_docs_have_the_gold_words_and_nothing_else(toy_corpus):
    refs = read_gold(spacy.blank("en"), toy_corpus)
    docs = fresh_docs(refs)
    assert [d.text for d in docs] == [r.text for r in refs] and [len(d) for d in docs] == [len(r) for r in refs]
    assert any(r.ents for r in refs) and not any(d.ents for d in docs)


def test_load_pipeline_names_the_path_and_the_missing_component(tiny_exit_pipeline, tmp_path):
    from scripts.bench.data import load_pipeline

    assert "posattn_ner" in load_pipeline(tiny_exit_pipeline).pipe_names
    with pytest.raises(ValueError, match=rf"{tmp_path / 'nope'}: could not be loaded as a spaCy pipeline"):
        load_pipeline(tmp_path / "nope")
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'blank'}: no 'posattn_ner' component \(pipeline: empty\)"):
        load_pipeline(tmp_path / "blank")
    assert load_pipeline(tmp_path / "blank", need=None).pipe_names == []


def test_override_restores_the_settings_even_when_the_block_fails(exit_nlp, toy_corpus):
    from scripts.bench.data import override

    pipe = exit_nlp.get_pipe("posattn_ner")
    before = (pipe.exit_threshold, pipe.precision)
    refs = read_gold(exit_nlp, toy_corpus)
    with override(pipe, exit_threshold=0.0, precision="fp32"):
        assert (pipe.exit_threshold, pipe.precision) == (0.0, "fp32")
        first = measure(exit_nlp, refs, batch_size=4)
    assert first["mean_exit_layer"] == 1.0  # every segment left at the first exit inside the block
    with pytest.raises(RuntimeError, match="boom"):
        with override(pipe, exit_threshold=0.0):
            raise RuntimeError("boom")
    assert (pipe.exit_threshold, pipe.precision) == before
