"""Entity confidence end to end on the tiny trained pipeline: ``spacy-posattn-ner
calibrate-confidence`` (spacy_posattn_ner/cli.py) and scripts/benchmark_confidence.py,
checked against the scores users read from doc.spans; the benchmark's own metrics
(precision/recall over a score threshold) on hand-made examples. The package's metrics
(ECE, log-loss, the temperature search): test_calibration.py."""
import json
import shutil

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from typer.testing import CliRunner

from scripts import benchmark_confidence
from scripts.benchmark_confidence import pr_curve, recall_at
from scripts.render_benchmarks import render_section
from spacy_posattn_ner.calibration import TEMPERATURE_GRID, fresh_docs, log_loss, read_gold, reliability
from spacy_posattn_ner.cli import app as cli_app

from .conftest import TOY

runner = CliRunner()
KEY = "posattn_ner"
# the toy sentences again, two gold labels changed: the model (trained on TOY) gets them wrong
RELABELLED = {("London", "geo"): "org", ("New York", "geo"): "gpe"}


def run(app, *args) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def calibrate(*args) -> None:
    run(cli_app, "calibrate-confidence", *args)


# -- the benchmark's metrics on hand-made examples -------------------------------------
def test_pr_curve_keeps_the_entities_scored_at_least_t():
    score, correct = numpy.array([0.9, 0.8, 0.7, 0.6]), numpy.array([True, False, True, True])
    points = pr_curve(score, correct, n_gold=5, thresholds=(0.0, 0.75, 0.8, 0.95))
    assert points == [
        {"threshold": 0.0, "precision": 0.75, "recall": 0.6, "kept": 4},
        {"threshold": 0.75, "precision": 0.5, "recall": 0.2, "kept": 2},
        {"threshold": 0.8, "precision": 0.5, "recall": 0.2, "kept": 2},  # >= t: 0.8 itself is kept
    ]  # 0.95 keeps nothing: no point


def test_recall_at_a_precision_tries_every_score_as_threshold():
    score, correct = numpy.array([0.6, 0.9, 0.7, 0.8]), numpy.array([True, True, True, False])
    assert recall_at(score, correct, 5, 0.9) == {"precision": 0.9, "recall": 0.2, "threshold": 0.9, "kept": 1}
    assert recall_at(score, correct, 5, 0.7) == {"precision": 0.7, "recall": 0.6, "threshold": 0.6, "kept": 4}
    # tied scores are kept or dropped together: cutting inside the tie would be no threshold
    tied = recall_at(numpy.array([0.9, 0.9, 0.5]), numpy.array([True, False, True]), 2, 0.9)
    assert tied == {"precision": 0.9, "recall": 0.0, "threshold": None, "kept": 0}


# -- calibrate and benchmark on the tiny trained pipeline ------------------------------
@pytest.fixture(scope="module")
def dev_corpus(tmp_path_factory):
    """The toy sentences as trained, then again with two gold labels changed: some
    predicted entities are right, some wrong, as on a real dev set."""
    nlp = spacy.blank("en")
    docs = []
    for relabel in (False, True):
        for text, ents in TOY:
            spans = []
            for surface, label in ents:
                start = text.index(surface)
                spans.append((start, start + len(surface), RELABELLED.get((surface, label), label) if relabel else label))
            docs.append(Example.from_dict(nlp.make_doc(text), {"entities": spans}).reference)
    path = tmp_path_factory.mktemp("confidence") / "dev.spacy"
    DocBin(docs=docs).to_disk(path)
    return path


@pytest.fixture(scope="module")
def calibrated(tiny_exit_pipeline, dev_corpus, tmp_path_factory):
    """calibrate-confidence run on a copy of the tiny pipeline, saving over that copy (as the project
    command does): (pipeline dir, report)."""
    model = shutil.copytree(tiny_exit_pipeline, tmp_path_factory.mktemp("calibrated") / "model")
    out = model.parent / "calibrate_confidence.json"
    calibrate(model, dev_corpus, "--save-to", model, "--output", out, "--n-threads", "1", "--batch-size", "4")
    return model, json.loads(out.read_text())


def user_view(nlp, path, temperature=None):
    """(score, right) of every entity in doc.spans, as a user of the pipeline reads them."""
    ner = nlp.get_pipe("posattn_ner")
    refs = read_gold(nlp, path)
    scores, right = [], []
    with ner.settings.override(temperature=ner.temperature if temperature is None else temperature):
        for doc, ref in zip(nlp.pipe(fresh_docs(refs), batch_size=4), refs):
            gold = {(e.start, e.end, e.label_) for e in ref.ents}
            group = doc.spans[KEY]
            assert [(s.start, s.end, s.label_) for s in group] == [(e.start, e.end, e.label_) for e in doc.ents]
            scores += group.attrs["scores"].tolist()
            right += [(s.start, s.end, s.label_) in gold for s in group]
    return numpy.asarray(scores, dtype="float64"), numpy.asarray(right, dtype=bool)


def test_calibrate_fits_the_temperature_with_the_least_dev_log_loss(calibrated, dev_corpus):
    model, report = calibrated
    t = report["temperature"]
    assert {"date", "command", "machine", "torch_threads", "search", "before", "after"} <= set(report)
    assert report["torch_threads"] == 1 and report["n_docs"] == 8 and report["saved_to"] == str(model)
    assert report["at_range_edge"] == (t in (TEMPERATURE_GRID[0], TEMPERATURE_GRID[-1]))
    assert report["command"].startswith("spacy-posattn-ner ")
    assert 0 < report["after"]["n_correct"] < report["after"]["n_entities"]  # right and wrong entities both
    nlp = spacy.load(model)
    # the report's log-losses are those of the scores users read, at T = 1 and at the fitted T
    at_one, at_t = log_loss(*user_view(nlp, dev_corpus, 1.0)), log_loss(*user_view(nlp, dev_corpus, t))
    assert report["before"]["log_loss"] == pytest.approx(at_one, abs=1e-5)
    assert report["after"]["log_loss"] == pytest.approx(at_t, abs=1e-5)
    assert at_t <= at_one and (t == 1.0 or at_t < at_one)
    if TEMPERATURE_GRID[0] < t < TEMPERATURE_GRID[-1]:  # a minimum: both neighbours are worse
        assert at_t <= log_loss(*user_view(nlp, dev_corpus, t * 1.05)) + 1e-9
        assert at_t <= log_loss(*user_view(nlp, dev_corpus, t / 1.05)) + 1e-9
    assert min(r["log_loss"] for r in report["search"]) == pytest.approx(report["after"]["log_loss"])


def test_the_fitted_temperature_is_saved_and_restored_by_spacy_load(calibrated, tiny_exit_pipeline):
    model, report = calibrated
    nlp = spacy.load(model)
    assert nlp.get_pipe("posattn_ner").temperature == report["temperature"] != 1.0
    assert nlp.config["components"]["posattn_ner"]["temperature"] == report["temperature"]
    assert spacy.load(tiny_exit_pipeline).get_pipe("posattn_ner").temperature == 1.0  # the source was a copy


def test_calibrate_without_save_to_saves_nothing(tiny_exit_pipeline, dev_corpus, tmp_path):
    model = shutil.copytree(tiny_exit_pipeline, tmp_path / "model")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in model.rglob("*"))
    calibrate(model, dev_corpus, "--output", tmp_path / "c.json", "--n-threads", "1", "--batch-size", "4")
    assert json.loads((tmp_path / "c.json").read_text())["saved_to"] is None
    assert sorted((p.name, p.stat().st_mtime_ns) for p in model.rglob("*")) == before


def test_benchmark_reports_calibration_precision_recall_and_cost(calibrated, dev_corpus, tmp_path):
    model, cal = calibrated
    out = tmp_path / "benchmark_confidence.json"
    run(benchmark_confidence.app, model, dev_corpus, "--output", out, "--n-threads", "1", "--batch-size", "4", "--repeats", "2")
    report = json.loads(out.read_text())
    n_gold = 2 * sum(len(ents) for _, ents in TOY)
    assert report["temperature"] == cal["temperature"] and report["n_gold"] == n_gold and report["torch_threads"] == 1
    nlp = spacy.load(model)
    for key, temperature in (("before", 1.0), ("after", None)):
        score, right = user_view(nlp, dev_corpus, temperature)
        summary = report[key]
        assert summary["n_entities"] == len(score) and summary["n_correct"] == int(right.sum())
        assert summary["ece"] == pytest.approx(reliability(score, right)["ece"], abs=1e-5)
        assert 0.0 <= summary["ece"] <= 1.0 and sum(b["n"] for b in summary["bins"]) == len(score)
        assert 0.0 < summary["mean_score_wrong"] <= 1.0 and 0.0 < summary["mean_score_correct"] <= 1.0
    curve = report["pr_curve"]
    assert curve[0]["threshold"] == 0.0 and curve[0]["kept"] == report["after"]["n_entities"]
    assert curve[0]["recall"] == pytest.approx(report["after"]["n_correct"] / n_gold)
    for a, b in zip(curve, curve[1:]):
        assert a["threshold"] < b["threshold"] and a["kept"] >= b["kept"] and a["recall"] >= b["recall"]
    assert all(0.0 <= p["precision"] <= 1.0 and 0.0 <= p["recall"] <= 1.0 for p in curve)
    assert [r["precision"] for r in report["recall_at"]] == [0.90, 0.95]
    assert all(0.0 <= r["recall"] <= curve[0]["recall"] for r in report["recall_at"])
    score, right = user_view(nlp, dev_corpus)
    assert report["candidates"]["n_correct"] >= int(right[score >= 0.05].sum())  # candidates ⊇ entities scored >= 0.05
    speed = report["speed"]
    assert len(speed["scores_on"]["passes"]) == len(speed["scores_off"]["passes"]) == 2
    assert speed["scores_on"]["words_per_second"] == max(speed["scores_on"]["passes"]) > 0
    assert speed["scores_on"]["ents_f"] == speed["scores_off"]["ents_f"]  # scores change no entity
    assert speed["overhead"] == pytest.approx(1 - speed["scores_on"]["words_per_second"] / speed["scores_off"]["words_per_second"])
    text = render_section("confidence", cal, report)
    assert text.startswith(f"`{report['model']}` on `{report['data']}`") and report["command"] in text and cal["command"] in text
