"""spacy_posattn_ner.calibration: exit-threshold choice, temperature fit, ECE."""
import math
from pathlib import Path

import numpy
import pytest
import spacy

from spacy_posattn_ner.calibration import (
    CalibrationError, calibrate_temperature, choose_exit_threshold, expected_calibration_error, fit_temperature,
    parse_thresholds, read_gold, reliability, run_exit_grid,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pipelines_3b33c82" / "v3_sentences"


def row(threshold, f1, wps, layer):
    return {"threshold": threshold, "ents_f": f1, "words_per_second": wps, "mean_exit_layer": layer}


def test_choose_exit_threshold_is_the_fastest_within_the_loss():
    rows = [row(1.0, 0.80, 100, 6), row(0.9, 0.798, 150, 4), row(0.5, 0.79, 300, 1), row(0.0, 0.70, 320, 1)]
    assert choose_exit_threshold(rows, 0.5)["threshold"] == 0.9
    assert choose_exit_threshold(rows, 1.0)["threshold"] == 0.5
    assert choose_exit_threshold(rows, 0.0)["threshold"] == 1.0


def test_parse_thresholds():
    assert parse_thresholds("0.9, 0.5", (1.0, 0.0)) == [0.0, 0.5, 0.9, 1.0]
    with pytest.raises(CalibrationError, match="'x' is not a number"):
        parse_thresholds("0.5,x")
    with pytest.raises(CalibrationError, match="must be >= 0"):
        parse_thresholds("-1")


def test_ece_and_bins():
    score = numpy.asarray([0.95, 0.95, 0.15, 0.15])
    correct = numpy.asarray([True, False, False, False])
    # bin [0.9, 1]: accuracy 0.5 vs 0.95; bin [0.1, 0.2): 0 vs 0.15 -> 0.5 * 0.45 + 0.5 * 0.15
    assert expected_calibration_error(score, correct) == pytest.approx(0.3)
    assert [b["n"] for b in reliability(score, correct)["bins"]] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]


def test_fit_temperature_finds_the_minimum():
    best, seen = fit_temperature(lambda t: (math.log(t) - math.log(1.7)) ** 2)
    assert best == pytest.approx(1.7, rel=2e-3) and len(seen) > 16


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
