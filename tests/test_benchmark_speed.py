"""scripts/benchmark_speed.py on a tiny trained early-exit pipeline and a tiny spaCy CNN ner."""
import json
from itertools import product

import pytest
import spacy
import torch
from typer.testing import CliRunner


from .conftest import make_nlp, toy_examples, train
from .test_exit_scripts import load_script

runner = CliRunner()
LAST_EXIT = 2  # the tiny backbone has 2 layers: exits [1, 2]
CALIBRATED = 0.7
ALL_PRECISIONS = ["fp32", "bf16", "int8", "auto"]


@pytest.fixture(scope="module")
def speed():
    return load_script("benchmark_speed")


@pytest.fixture(scope="module")
def ours_dir(tiny_exit_pipeline, tmp_path_factory):
    """The tiny exit pipeline with a calibrated threshold in its config (as
    calibrate_exit.py writes it)."""
    import shutil

    path = shutil.copytree(tiny_exit_pipeline, tmp_path_factory.mktemp("speed-ours") / "model")
    _save_threshold(path, CALIBRATED)
    return path


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory):
    """spaCy's own CNN ner, trained for a few updates on the same toy docs."""
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    examples = toy_examples(nlp)
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer, losses={})
    path = tmp_path_factory.mktemp("speed-cnn") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def corpus(toy_corpus):
    return toy_corpus


def invoke(speed, corpus, ours, out, md, *extra):
    args = [str(corpus), "--ours", str(ours), "--n-threads", "1", "--batch-size", "4", "--repeats", "1",
            "--output-json", str(out), "--benchmarks-md", str(md), *extra]  # fmt: skip
    return runner.invoke(speed.app, args)


def test_rows_ratios_and_section(speed, ours_dir, cnn_dir, corpus, tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    exit_section = "<!-- benchmark-exit:start -->\n## Early exit\n\n| a | b |\n<!-- benchmark-exit:end -->"
    md.write_text(f"# Benchmarks\n\nintro\n\n{exit_section}\n\n{speed.MARK_START}\nold\n{speed.MARK_END}\n\ntail\n")
    out = tmp_path / "m" / "speed.json"
    result = invoke(speed, corpus, ours_dir, out, md, "--cnn", str(cnn_dir), "--precisions", ",".join(ALL_PRECISIONS),
                    "--no-spacy-benchmark")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["torch_threads"] == 1 and report["n_docs"] == 13 and report["n_words"] > 0
    assert report["ours"]["exit_layers"] == [1, LAST_EXIT] and report["ours"]["calibrated_threshold"] == CALIBRATED
    assert report["spacy_benchmark"] == {"skipped": True}
    assert report["systems"]["trf"]["left_out"] == "not given" and report["systems"]["cnn"]["model"] == str(cnn_dir)

    rows = report["rows"]
    ours = [r for r in rows if r["system"] == "ours"]
    assert [(r["precision"], r["exit"]) for r in ours] == list(product(ALL_PRECISIONS, ["calibrated", "off"]))
    assert [r["system"] for r in rows[len(ours):]] == ["cnn"]  # no trf row
    cnn = rows[-1]
    for row in rows:
        assert 0.0 <= row["ents_f"] <= 1.0 and row["words_per_second"] > 0
        assert row["n_words"] == report["n_words"] and len(row["pass_seconds"]) == 1
        assert row["x_cnn"] == pytest.approx(row["words_per_second"] / cnn["words_per_second"])
    assert cnn["x_cnn"] == pytest.approx(1.0) and cnn["mean_exit_layer"] is None
    for row in ours:
        assert row["exit_threshold"] == (CALIBRATED if row["exit"] == "calibrated" else 1.0)
        assert row["resolved_precision"] in ("fp32", "bf16", "int8")
        assert 1 <= row["mean_exit_layer"] <= LAST_EXIT
        if row["exit"] == "off":
            assert row["mean_exit_layer"] == LAST_EXIT and row["exit_layer_share"] == {"1": 0.0, str(LAST_EXIT): 1.0}
        assert sum(row["exit_layer_share"].values()) == pytest.approx(1.0)
        fp32 = next(r for r in ours if r["precision"] == "fp32" and r["exit"] == row["exit"])
        if row["precision"] == "fp32":
            assert row["f1_change_vs_fp32_points"] is None
        else:
            assert row["f1_change_vs_fp32_points"] == pytest.approx((row["ents_f"] - fp32["ents_f"]) * 100)
    ratios = report["ratios"]
    best = max(ours, key=lambda r: r["words_per_second"])
    assert ratios["ours_best"]["words_per_second"] == best["words_per_second"]
    assert ratios["ours_best_over_cnn"] == pytest.approx(best["words_per_second"] / cnn["words_per_second"])
    assert ratios["ours_best_over_trf"] is None and ratios["cnn_over_trf"] is None
    assert len(ratios["f1_change_vs_fp32_points"]) == 6

    text = md.read_text()
    assert text.count(speed.MARK_START) == 1 and text.count(speed.MARK_END) == 1 and "\nold\n" not in text
    assert exit_section in text and text.startswith("# Benchmarks\n\nintro") and text.rstrip().endswith("tail")
    assert "| system | precision | exit threshold | mean exit layer | test F1 | words/s | × CNN |" in text
    assert text.count("| posattn_ner |") == 8 and text.count("| spaCy CNN `ner` |") == 1
    assert f"{CALIBRATED:g} (calibrated)" in text and "1 (exit off)" in text
    assert "spacy-transformers `ner` (not given)" in text  # the left-out system is named
    assert f"--cnn {cnn_dir}" in text and "--precisions fp32,bf16,int8,auto" in text and "--no-spacy-benchmark" in text
    assert "torch threads 1" in text and "Machine: " in text and "Date: " in text
    cnn_line = next(line for line in text.splitlines() if line.startswith("| spaCy CNN"))
    assert cnn_line.endswith("| 1.00 |")

    # a second run replaces the section; a --trf that does not exist is left out, and said so
    missing = tmp_path / "no-such-trf"
    result = invoke(speed, corpus, ours_dir, out, md, "--cnn", str(cnn_dir), "--trf", str(missing),
                    "--precisions", "int8", "--no-spacy-benchmark")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(r["system"], r["precision"], r["exit"]) for r in report["rows"]] == [
        ("ours", "int8", "calibrated"), ("ours", "int8", "off"), ("cnn", "fp32", None)
    ]  # fmt: skip
    assert report["ratios"]["f1_change_vs_fp32_points"] == []  # no fp32 row to compare with
    text = md.read_text()
    assert text.count(speed.MARK_START) == 1 and text.count(speed.MARK_END) == 1
    assert "--precisions int8 " in text and "--precisions fp32,bf16" not in text
    assert f"`{missing}` not found" in text and exit_section in text and "intro" in text and "tail" in text


def test_pipeline_without_exits_gets_exit_off_rows_only(speed, tiny_backbone, corpus, tmp_path):
    torch.set_num_threads(1)  # restored by keep_torch_threads
    nlp = make_nlp(tiny_backbone)  # PosAttnTagger.v1: no exit heads
    train(nlp, toy_examples(nlp), n_iter=1)
    path = tmp_path / "v1-model"
    nlp.to_disk(path)
    out, md = tmp_path / "s.json", tmp_path / "B.md"
    result = invoke(speed, corpus, path, out, md, "--precisions", "fp32,int8", "--no-spacy-benchmark")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["ours"]["exit_layers"] is None
    assert [(r["precision"], r["exit"]) for r in report["rows"]] == [("fp32", "off"), ("int8", "off")]
    assert all(r["x_cnn"] is None for r in report["rows"])
    text = md.read_text()
    assert text.startswith("# Benchmarks\n") and "1 (no exit layers)" in text and "not given" in text


def test_not_a_posattn_pipeline_is_a_clear_error(speed, cnn_dir, ours_dir, corpus, tmp_path):
    out, md = tmp_path / "s.json", tmp_path / "B.md"
    result = invoke(speed, corpus, cnn_dir, out, md, "--no-spacy-benchmark")
    assert result.exit_code == 1
    assert str(cnn_dir) in result.output and "no 'posattn_ner' component" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(speed, corpus, empty, out, md, "--no-spacy-benchmark")
    assert result.exit_code == 1 and str(empty) in result.output and "could not be loaded" in result.output
    result = invoke(speed, corpus, ours_dir, out, md, "--cnn", str(ours_dir), "--no-spacy-benchmark")
    assert result.exit_code == 1 and str(ours_dir) in result.output and "no 'ner' component" in result.output
    assert not out.exists() and not md.exists()
    result = invoke(speed, corpus, ours_dir, out, md, "--precisions", "fp16")
    assert result.exit_code == 2 and "'fp16' is not one of" in result.output


def test_spacy_benchmark_subprocess(speed, ours_dir, corpus, tmp_path):
    out, md = tmp_path / "s.json", tmp_path / "B.md"
    result = invoke(speed, corpus, ours_dir, out, md, "--precisions", "fp32", "--limit", "5",
                    "--spacy-batches", "30", "--spacy-warmup", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    bench = report["spacy_benchmark"]
    assert bench["error"] is None and bench["returncode"] == 0, bench
    mean = bench["mean_words_per_second"]
    assert mean > 0 and bench["ci95_low"] <= mean <= bench["ci95_high"]
    assert bench["batch_size"] == 4 and bench["n_batches"] == 30 and bench["env"]["OMP_NUM_THREADS"] == 1
    assert "--batches 30" in bench["command"] and "--warmup 0" in bench["command"]
    assert report["n_docs"] == 5 and report["ratios"]["spacy_benchmark_over_cnn"] is None
    text = md.read_text()
    line = next(line for line in text.splitlines() if line.startswith("| posattn_ner, `spacy benchmark speed`"))
    assert "95% CI" in line and f"{bench['mean_words_per_second']:,.0f}" in line and "(as saved)" in line
    assert "--spacy-benchmark --spacy-batches 30 --spacy-warmup 0" in text


def test_parse_spacy_benchmark_output(speed):
    printed = "Outliers: 2.0%, extreme outliers: 0.0%\nMean: 4321.5 words/s (95% CI: -80.2 +75.9)\n"
    match = speed.SPACY_MEAN_RE.search(printed)
    assert [float(x) for x in match.groups()] == [4321.5, -80.2, 75.9]


def _save_threshold(path, threshold: float) -> None:
    """Set a saved pipeline's exit threshold as calibrate_exit.py does: on the
    component, then saved (the setting travels with the pipeline)."""
    nlp = spacy.load(path)
    nlp.get_pipe("posattn_ner").exit_threshold = threshold
    nlp.to_disk(path)
