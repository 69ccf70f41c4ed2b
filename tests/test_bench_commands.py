"""Each measuring command end to end on a tiny pipeline and corpus: it runs, writes the
JSON report render-benchmarks reads, and that report renders."""
import json
import shutil

import pytest
import spacy
from spacy.util import load_config
from typer.testing import CliRunner

from scripts import benchmark_speed, benchmark_train
from scripts.render_benchmarks import render_section
from spacy_posattn_ner.cli import app as cli_app

from .conftest import SMALL_HEAD, toy_examples

runner = CliRunner()
REPORT_HEAD = {"date", "command", "machine", "torch_threads"}
MEASURED_ROW = {"ents_f", "ents_p", "ents_r", "words_per_second", "pass_seconds", "n_docs", "n_words", "mean_exit_layer"}


def run(app, *args: str) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture
def model_dir(tiny_exit_pipeline, tmp_path):
    """A private copy of the tiny exit pipeline (exits after layers 1 and 2)."""
    return shutil.copytree(tiny_exit_pipeline, tmp_path / "model")


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory):
    """spaCy's own CNN ner, trained for a few updates on the toy docs."""
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    examples = toy_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer, losses={})
    path = tmp_path_factory.mktemp("cnn") / "model"
    nlp.to_disk(path)
    return path


def test_benchmark_exit_runs_the_extremes_and_the_pipelines_own_threshold(model_dir, toy_corpus, tmp_path):
    """benchmark-exit is calibrate-exit without --save-to (on test): it measures and saves
    nothing, and its report renders (choosing and saving: test_cli.py)."""
    nlp = spacy.load(model_dir)
    nlp.get_pipe("posattn_ner").exit_threshold = 0.7
    nlp.to_disk(model_dir)
    before = (model_dir / "config.cfg").read_text()
    out = tmp_path / "exit.json"
    run(cli_app, "calibrate-exit", model_dir, toy_corpus, "--thresholds", "0.9", "--n-threads", "1",
        "--batch-size", "4", "--output", out)  # fmt: skip
    report = json.loads(out.read_text())
    assert REPORT_HEAD <= set(report) and "chosen" not in report and report["torch_threads"] == 1
    assert report["speed_definition"] == "nlp.pipe" and report["n_docs"] == 12
    rows = report["rows"]
    assert [(r["threshold"], r["calibrated"]) for r in rows] == [(0.0, False), (0.7, True), (0.9, False), (1.0, False)]
    assert all(MEASURED_ROW <= set(r) for r in rows)
    assert rows[0]["exit_layer_share"] == {"1": 1.0, "2": 0.0} and rows[-1]["mean_exit_layer"] == 2
    assert (model_dir / "config.cfg").read_text() == before
    assert "**0.7 (calibrated)**" in render_section("exit_table", report)


def test_benchmark_speed_beside_the_cnn_with_the_transformer_missing(model_dir, cnn_dir, toy_corpus, tmp_path):
    out, missing = tmp_path / "speed.json", tmp_path / "no-trf"
    run(benchmark_speed.app, toy_corpus, "--ours", model_dir, "--cnn", cnn_dir, "--trf", missing,
        "--precisions", "fp32,int8", "--n-threads", "1", "--batch-size", "4", "--repeats", "1",
        "--no-spacy-benchmark", "--output", out)  # fmt: skip
    report = json.loads(out.read_text())
    assert REPORT_HEAD | {"ours", "systems", "rows", "spacy_benchmark"} <= set(report)
    assert [(r["system"], r["precision"], r["exit"]) for r in report["rows"]] == [
        ("ours", "fp32", "off"), ("ours", "int8", "off"), ("cnn", "fp32", None)
    ]  # the tiny pipeline's threshold is 1, so there is no calibrated row  # fmt: skip
    assert all(MEASURED_ROW <= set(r) for r in report["rows"])
    assert report["systems"]["trf"]["left_out"] == f"`{missing}` not found"
    assert all(r["resolved_precision"] in ("fp32", "bf16", "int8") for r in report["rows"])
    assert f"`{missing}` not found" in render_section("speed_table", report)


def test_benchmark_speed_refuses_a_pipeline_without_posattn(cnn_dir, toy_corpus, tmp_path):
    result = runner.invoke(benchmark_speed.app, [str(toy_corpus), "--ours", str(cnn_dir), "--output", str(tmp_path / "s.json")])
    assert result.exit_code == 1 and "no 'posattn_ner' component" in result.output
    result = runner.invoke(benchmark_speed.app, [str(toy_corpus), "--ours", str(cnn_dir), "--precisions", "fp16"])
    assert result.exit_code == 2 and "'fp16' is not one of" in result.output


def test_benchmark_speed_runs_spacys_own_harness_in_a_child(model_dir, toy_corpus, tmp_path):
    out = tmp_path / "speed.json"
    run(benchmark_speed.app, toy_corpus, "--ours", model_dir, "--precisions", "fp32", "--n-threads", "1",
        "--batch-size", "4", "--repeats", "1", "--limit", "5", "--spacy-batches", "30", "--spacy-warmup", "0",
        "--output", out)  # fmt: skip
    bench = json.loads(out.read_text())["spacy_benchmark"]
    assert bench["error"] is None and bench["ci95_low"] <= bench["mean_words_per_second"] <= bench["ci95_high"]
    assert bench["env"]["OMP_NUM_THREADS"] == 1 and "--batches 30" in bench["command"]


@pytest.fixture(scope="module")
def ours_config(tiny_backbone, tmp_path_factory):
    """configs/posattn_ner.cfg on the tiny backbone with tiny heads."""
    from .conftest import ROOT

    config = load_config(ROOT / "configs" / "posattn_ner.cfg", interpolate=False)
    config["components"]["posattn_ner"]["model"].update(SMALL_HEAD, exit_layers=[1, -1])  # the tiny backbone has 2 layers
    config["components"]["posattn_ner"]["model"]["backbone"]["name"] = tiny_backbone
    path = tmp_path_factory.mktemp("configs") / "ours.cfg"
    config.to_disk(path)
    return path


@pytest.mark.parametrize("system", ["ours", "cnn", "trf"])
def test_benchmark_train_one_system(system, ours_config, tiny_backbone, toy_corpus, tmp_path):
    from .conftest import ROOT

    config = ours_config if system == "ours" else ROOT / "configs" / f"{system}_ner.cfg"
    out = tmp_path / f"train_{system}.json"
    run(benchmark_train.app, system, toy_corpus, toy_corpus, toy_corpus, "--config", config, "--limit", "8",
        "--max-steps", "4", "--eval-frequency", "2", "--backbone-dir", tiny_backbone, "--output-dir", tmp_path / "runs",
        "--output", out)  # fmt: skip
    report = json.loads(out.read_text())
    assert REPORT_HEAD | {"settings", "system", "best_dev_f1", "test_f1", "epochs_to_best", "wall_seconds_to_best",
                          "total_wall_seconds", "peak_rss_mib", "dev_curve"} <= set(report)  # fmt: skip
    assert report["settings"]["train_sentences"] == 8 and report["settings"]["schedule_fraction"] == pytest.approx(8 / 13)
    assert [p["step"] for p in report["dev_curve"]] == [0, 2, 4] and report["evaluations"] == 3  # spaCy also evaluates at 0
    assert 0 < report["wall_seconds_to_best"] <= report["total_wall_seconds"] and report["peak_rss_mib"] > 100
    # the CNN's rate is constant and ours follows the corpus it is given ([schedule]): only trf's is scaled
    assert (system == "trf") == (report["schedule_scaled"] is not None)
    assert render_section("train_table", [report]).count(f"| {report['settings']['train_sentences']} |") == 1


def test_n_process_compares_answers_and_times_both(model_dir, toy_corpus, tmp_path):
    from scripts.bench import n_process

    out = tmp_path / "n_process.json"
    run(n_process.app, model_dir, toy_corpus, "--limit", "8", "--batch-size", "2", "--rounds", "1", "--n-threads", "1",
        "--output", out)  # fmt: skip
    report = json.loads(out.read_text())
    assert REPORT_HEAD <= set(report)
    assert report["entities_identical"] is True and report["max_score_diff"] <= 1e-4 and report["texts"] == 8
    assert len(report["seconds"]["1"]) == len(report["seconds"]["2"]) == 1 and report["ratio_best"] > 0
