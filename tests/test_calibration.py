"""spacy_posattn_ner.calibration: the measurement (F1, words/s, exit layers), exit-threshold
choice, temperature fit, log-loss and ECE."""
import math
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.training import Example

from spacy_posattn_ner.calibration import (
    TEMPERATURE_GRID, CalibrationError, calibrate_temperature, choose_exit_threshold, expected_calibration_error,
    fit_temperature, fresh_docs, log_loss, measure, parse_thresholds, read_gold, reliability, run_exit_grid,
)

from .conftest import toy_examples

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pipelines_3b33c82" / "v3_sentences"
LAST_EXIT = 2  # the tiny backbone has 2 layers: exits [1, 2]


@pytest.fixture
def exit_nlp(tiny_exit_pipeline):
    torch.set_num_threads(1)  # a tiny model: one thread is faster on a busy machine (keep_torch_threads restores)
    return spacy.load(tiny_exit_pipeline)


def row(threshold, f1, wps, layer):
    return {"threshold": threshold, "ents_f": f1, "words_per_second": wps, "mean_exit_layer": layer}


def test_choose_exit_threshold_is_the_fastest_within_the_loss():
    rows = [row(1.0, 0.80, 100, 6), row(0.9, 0.798, 150, 4), row(0.5, 0.79, 300, 1), row(0.0, 0.70, 320, 1)]
    assert choose_exit_threshold(rows, 0.5)["threshold"] == 0.9
    assert choose_exit_threshold(rows, 1.0)["threshold"] == 0.5
    assert choose_exit_threshold(rows, 0.0)["threshold"] == 1.0
    assert choose_exit_threshold(rows, 20)["threshold"] == 0.0  # 10 points lost: allowed here
    with pytest.raises(CalibrationError, match="1.0"):
        choose_exit_threshold(rows[1:], 0.5)  # no never-exit row to measure the loss against


def test_parse_thresholds():
    assert parse_thresholds("0.9, 0.5", (1.0, 0.0)) == [0.0, 0.5, 0.9, 1.0]
    with pytest.raises(CalibrationError, match="'x' is not a number"):
        parse_thresholds("0.5,x")
    with pytest.raises(CalibrationError, match="must be >= 0"):
        parse_thresholds("-1")


def test_ece_and_bins_equal_the_hand_computed_ones():
    score = numpy.array([0.05, 0.15, 0.18, 0.55, 0.95, 0.97])
    correct = numpy.array([False, False, True, True, True, False])
    found = reliability(score, correct)
    # bins [0, .1): 1 entity, gap .05; [.1, .2): 2, mean .165, half right; [.5, .6): 1, gap .45; [.9, 1]: 2, gap .46
    assert [b["n"] for b in found["bins"]] == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    assert found["bins"][1]["confidence"] == pytest.approx(0.165) and found["bins"][1]["accuracy"] == 0.5
    assert found["bins"][2]["confidence"] is None and found["bins"][9]["hi"] == 1.0
    assert found["ece"] == pytest.approx((0.05 + 2 * 0.335 + 0.45 + 2 * 0.46) / 6)
    assert expected_calibration_error(score, correct) == found["ece"]
    edges = reliability(numpy.array([0.0, 1.0]), numpy.array([False, True]))  # 0 in the first bin, 1 in the last
    assert edges["ece"] == 0.0 and [b["n"] for b in edges["bins"]][::9] == [1, 1]


def test_log_loss_is_the_mean_binary_cross_entropy():
    assert log_loss(numpy.array([0.8, 0.4]), numpy.array([True, False])) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss(numpy.array([1.0]), numpy.array([False])) == pytest.approx(-math.log(1e-7))  # clipped, finite
    with pytest.raises(CalibrationError, match="no entities"):
        log_loss(numpy.zeros(0), numpy.zeros(0, dtype=bool))


def test_temperature_search_finds_the_minimum_and_keeps_one_when_it_is_best():
    best, tried = fit_temperature(lambda t: (math.log(t) - math.log(1.7)) ** 2)
    assert best == pytest.approx(1.7, rel=2e-3) and len(TEMPERATURE_GRID) < len(tried) < 40
    assert [t for t, _ in tried] == sorted(t for t, _ in tried) and set(TEMPERATURE_GRID) <= {t for t, _ in tried}
    assert fit_temperature(lambda t: math.log(t) ** 2)[0] == 1.0
    assert fit_temperature(lambda t: t)[0] == min(TEMPERATURE_GRID)  # at the edge of the range: the edge


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


def test_grid_and_temperature_on_the_tiny_pipeline(toy_corpus):
    nlp = spacy.load(FIXTURE)
    ner = nlp.get_pipe("posattn_ner")
    refs = read_gold(nlp, toy_corpus)
    rows = run_exit_grid(nlp, ner, refs, [0.0, 1.0], batch_size=4)
    assert ner.exit_threshold == 1.0  # restored
    assert [r["threshold"] for r in rows] == [0.0, 1.0]
    assert rows[0]["mean_exit_layer"] == 1 and rows[1]["mean_exit_layer"] == 2
    found = calibrate_temperature(nlp, ner, refs, batch_size=4)
    assert ner.temperature == found["temperature"] > 0
    assert found["after"]["log_loss"] <= found["before"]["log_loss"]
