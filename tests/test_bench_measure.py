"""The harness's measurement: gold docs in, one words/s and F1 out (scripts/bench)."""
import pytest
import spacy
import torch
from spacy.training import Example

from scripts.bench.data import fresh_docs, read_gold, write_prefix
from scripts.bench.exits import choose_threshold
from scripts.bench.measure import measure

from .conftest import toy_examples

LAST_EXIT = 2  # the tiny backbone has 2 layers: exits [1, 2]


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


def test_measure_counts_the_words_it_times_and_scores_like_evaluate(exit_nlp, toy_corpus):
    ner = exit_nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 1.0
    refs = read_gold(exit_nlp, toy_corpus)
    row = measure(exit_nlp, refs, batch_size=4, repeats=3, layer_keys=ner.exit_layers)
    assert row["n_docs"] == 12 and row["n_words"] == sum(len(doc) for doc in refs)
    assert len(row["pass_seconds"]) == 3
    assert row["words_per_second"] == pytest.approx(row["n_words"] / min(row["pass_seconds"]))
    expected = exit_nlp.evaluate([Example(doc, ref) for doc, ref in zip(fresh_docs(refs), refs)], batch_size=4)
    assert (row["ents_p"], row["ents_r"], row["ents_f"]) == pytest.approx(
        (expected["ents_p"], expected["ents_r"], expected["ents_f"])
    )
    assert row["mean_exit_layer"] == LAST_EXIT and row["exit_layer_share"] == {"1": 0.0, "2": 1.0}


def test_measure_reads_the_layers_run_from_each_doc(exit_nlp, toy_corpus):
    ner = exit_nlp.get_pipe("posattn_ner")
    refs = read_gold(exit_nlp, toy_corpus)
    ner.exit_threshold = 0.0
    first = measure(exit_nlp, refs, batch_size=4, layer_keys=ner.exit_layers)
    assert first["mean_exit_layer"] == 1 and first["exit_layer_share"] == {"1": 1.0, "2": 0.0}
    ner.exit_threshold = 0.9
    docs = list(exit_nlp.pipe(fresh_docs(refs)))
    mid = measure(exit_nlp, refs, batch_size=4, layer_keys=ner.exit_layers)
    layers = [doc._.exit_layer for doc in docs]
    assert mid["mean_exit_layer"] == pytest.approx(sum(layers) / len(layers))
    assert mid["exit_layer_share"]["1"] == pytest.approx(layers.count(1) / len(layers))


def test_measure_a_pipeline_without_posattn(toy_corpus):
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    nlp.initialize(lambda: toy_examples(nlp))
    row = measure(nlp, read_gold(nlp, toy_corpus), batch_size=8)
    assert row["mean_exit_layer"] is None and "exit_layer_share" not in row
    assert row["n_words"] > 0 and row["words_per_second"] > 0


def test_choose_threshold_takes_the_fastest_within_the_loss():
    def row(t, f, wps, layer):
        return {"threshold": t, "ents_f": f, "words_per_second": wps, "mean_exit_layer": layer}

    rows = [row(0.0, 0.70, 900, 1.0), row(0.9, 0.797, 700, 2.5), row(0.99, 0.799, 500, 4.0), row(1.0, 0.80, 300, 6.0)]
    assert choose_threshold(rows, 0.5)["threshold"] == 0.9  # 0.0 is fastest but loses 10 points
    assert choose_threshold(rows, 0.1)["threshold"] == 0.99
    assert choose_threshold(rows, 0.0)["threshold"] == 1.0
    assert choose_threshold(rows, 20)["threshold"] == 0.0
    with pytest.raises(ValueError, match="1.0"):
        choose_threshold(rows[:3], 0.5)


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
