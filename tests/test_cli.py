"""The console commands calibrate-exit and calibrate-confidence (spacy_posattn_ner/cli.py)."""
import json
from pathlib import Path

import spacy
from typer.testing import CliRunner

from spacy_posattn_ner.cli import app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pipelines_3b33c82"


def test_calibrate_exit_writes_the_report_and_saves_the_threshold(toy_corpus, tmp_path):
    out, saved = tmp_path / "calibrate_exit.json", tmp_path / "model-calibrated"
    result = CliRunner().invoke(app, ["calibrate-exit", str(FIXTURE / "v3_sentences"), str(toy_corpus), "--output",
                                      str(out), "--save-to", str(saved), "--thresholds", "0.5,0.9", "--max-loss", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {"speed_definition", "model", "data", "n_docs", "n_words", "exit_layers", "rows", "max_loss_points",
            "reference_f1", "saved_to", "chosen", "calibrated_threshold", "machine", "command"} <= set(report)
    assert [r["threshold"] for r in report["rows"]] == [0.0, 0.5, 0.9, 1.0]
    chosen = report["chosen"]["threshold"]
    assert report["calibrated_threshold"] == chosen and sum(r["calibrated"] for r in report["rows"]) == 1
    assert spacy.load(saved).get_pipe("posattn_ner").exit_threshold == chosen
    assert spacy.load(FIXTURE / "v3_sentences").get_pipe("posattn_ner").exit_threshold == 1.0  # input untouched


def test_calibrate_exit_with_another_exit_policy_saves_it(toy_corpus, tmp_path):
    out, saved = tmp_path / "entropy.json", tmp_path / "model-entropy"
    policy = "spacy-posattn-ner.max_token_entropy.v1"
    result = CliRunner().invoke(app, ["calibrate-exit", str(FIXTURE / "v3_sentences"), str(toy_corpus), "--output", str(out),
                                      "--save-to", str(saved), "--thresholds", "0.5", "--exit-policy", policy])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["exit_policy"] == policy
    nlp = spacy.load(saved)
    assert nlp.config["components"]["posattn_ner"]["exit_policy"] == {"@misc": policy}
    assert nlp.get_pipe("posattn_ner").exit_policy.registry_name == policy
    bad = CliRunner().invoke(app, ["calibrate-exit", str(FIXTURE / "v3_sentences"), str(toy_corpus), "--output",
                                   str(tmp_path / "x.json"), "--exit-policy", "no-such-policy.v1"])
    assert bad.exit_code == 1 and "exit_policy 'no-such-policy.v1' is not a registered" in bad.output


def test_calibrate_exit_refuses_a_pipeline_without_exits(toy_corpus, tmp_path):
    result = CliRunner().invoke(app, ["calibrate-exit", str(FIXTURE / "v1"), str(toy_corpus), "--output",
                                      str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "has no exit layers" in result.output


def test_calibrate_confidence_saves_the_temperature(toy_corpus, tmp_path):
    out, saved = tmp_path / "calibrate_confidence.json", tmp_path / "model"
    result = CliRunner().invoke(app, ["calibrate-confidence", str(FIXTURE / "v1"), str(toy_corpus), "--output",
                                      str(out), "--save-to", str(saved)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {"temperature", "at_range_edge", "search", "before", "after", "saved_to", "n_docs"} <= set(report)
    assert spacy.load(saved).get_pipe("posattn_ner").temperature == report["temperature"]
