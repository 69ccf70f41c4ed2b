"""scripts/calibrate_exit.py and scripts/benchmark_exit.py on a tiny trained early-exit pipeline."""
import importlib.util
import json
import shutil

import pytest
import spacy
import torch
from spacy.util import load_config
from typer.testing import CliRunner


from .conftest import ROOT, make_nlp, toy_examples, train

runner = CliRunner()
LAST_EXIT = 2  # the tiny backbone has 2 layers: exits [1, 2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def calibrate():
    return load_script("calibrate_exit")


@pytest.fixture(scope="module")
def benchmark():
    return load_script("benchmark_exit")


@pytest.fixture
def model_dir(tiny_exit_pipeline, tmp_path):
    """A private copy (the scripts write config.cfg)."""
    return shutil.copytree(tiny_exit_pipeline, tmp_path / "model")


@pytest.fixture(scope="module")
def corpus(toy_corpus):
    return toy_corpus


def row_for(rows, threshold):
    return next(r for r in rows if r["threshold"] == threshold)


def test_calibrate_saves_the_fastest_acceptable_threshold(calibrate, model_dir, corpus, tmp_path):
    out = tmp_path / "metrics" / "calibrate.json"
    args = [str(model_dir), str(corpus), "--max-loss", "0.5", "--thresholds", "0,0.5,0.9", "--output", str(out)]
    args += ["--n-threads", "1"]
    result = runner.invoke(calibrate.app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["threshold"] for r in rows] == [0.0, 0.5, 0.9, 1.0]  # 1.0, the reference, is always added
    assert report["n_docs"] == 13 and rows[0]["n_words"] == report["n_words"] > 0
    first, never = row_for(rows, 0.0), row_for(rows, 1.0)
    assert first["mean_exit_layer"] == 1 and first["exit_layer_share"] == {"1": 1.0, "2": 0.0}
    assert never["mean_exit_layer"] == LAST_EXIT and never["exit_layer_share"] == {"1": 0.0, "2": 1.0}
    assert report["reference_f1"] == never["ents_f"] and never["f1_loss_points"] == 0.0
    for row in rows:
        assert row["words_per_second"] > 0 and 0.0 <= row["ents_f"] <= 1.0
        assert row["f1_loss_points"] == pytest.approx((never["ents_f"] - row["ents_f"]) * 100)
    chosen = report["chosen"]
    allowed = [r for r in rows if r["f1_loss_points"] <= 0.5 + 1e-9]
    assert chosen in allowed
    assert chosen["words_per_second"] == max(r["words_per_second"] for r in allowed)
    assert "<- chosen" in result.output

    # written into config.cfg, and what a reload uses
    cfg = load_config(model_dir / "config.cfg", interpolate=False)
    assert cfg["components"]["posattn_ner"]["exit_threshold"] == chosen["threshold"]
    nlp = spacy.load(model_dir)
    ner = nlp.get_pipe("posattn_ner")
    assert ner.exit_threshold == chosen["threshold"]
    scores = nlp.evaluate(calibrate.read_examples(nlp, corpus))
    assert scores["ents_f"] == pytest.approx(chosen["ents_f"])
    layers = [d._.exit_layer for d in nlp.pipe(eg.reference.text for eg in calibrate.read_examples(nlp, corpus))]
    ran = [layer for layer in layers if layer is not None]
    assert len(ran) == 12 and sum(ran) / len(ran) == pytest.approx(chosen["mean_exit_layer"])


def test_calibrate_limit_and_no_save(calibrate, model_dir, corpus, tmp_path):
    before = (model_dir / "config.cfg").read_text()
    out = tmp_path / "c.json"
    args = [str(model_dir), str(corpus), "--thresholds", "0", "--limit", "5", "--no-save", "--output", str(out)]
    args += ["--n-threads", "1"]
    result = runner.invoke(calibrate.app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_docs"] == 5 and [r["threshold"] for r in report["rows"]] == [0.0, 1.0]
    assert (model_dir / "config.cfg").read_text() == before


def test_choose_threshold(calibrate):
    def row(t, f, wps, layer):
        return {"threshold": t, "ents_f": f, "words_per_second": wps, "mean_exit_layer": layer}

    rows = [row(0.0, 0.70, 900, 1.0), row(0.9, 0.797, 700, 2.5), row(0.99, 0.799, 500, 4.0), row(1.0, 0.80, 300, 6.0)]
    assert calibrate.choose_threshold(rows, 0.5)["threshold"] == 0.9  # 0.0 is fastest but loses 10 points
    assert calibrate.choose_threshold(rows, 0.1)["threshold"] == 0.99
    assert calibrate.choose_threshold(rows, 0.0)["threshold"] == 1.0
    assert calibrate.choose_threshold(rows, 20)["threshold"] == 0.0
    with pytest.raises(ValueError, match="1.0"):
        calibrate.choose_threshold(rows[:3], 0.5)
    assert calibrate.parse_thresholds("0.9, 0,0.9", include=(1.0,)) == [0.0, 0.9, 1.0]
    assert calibrate.parse_thresholds(None)[0] == 0.0 and calibrate.parse_thresholds(None)[-1] == 1.0


def test_benchmark_marks_calibrated_and_replaces_its_section(benchmark, model_dir, corpus, tmp_path):
    _save_threshold(model_dir, 0.7)  # as calibrate_exit.py would
    md = tmp_path / "BENCHMARKS.md"
    train_section = "<!-- benchmark-train:start -->\n## Training cost\n\n| a | b |\n<!-- benchmark-train:end -->"
    md.write_text(f"# Benchmarks\n\nintro\n\n{train_section}\n\ntail\n")
    out, png = tmp_path / "m" / "bench.json", tmp_path / "m" / "bench.png"

    def run(thresholds):
        args = [
            str(model_dir), str(corpus), "--thresholds", thresholds, "--n-threads", "1",
            "--output-json", str(out), "--plot", str(png), "--benchmarks-md", str(md),
        ]  # fmt: skip
        result = runner.invoke(benchmark.app, args)
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())

    report = run("0.5")
    rows = report["rows"]
    assert [r["threshold"] for r in rows] == [0.0, 0.5, 0.7, 1.0]  # 0, 1 and the calibrated one added
    assert report["calibrated_threshold"] == 0.7 and report["torch_threads"] == 1
    assert [r["calibrated"] for r in rows] == [False, False, True, False]
    assert row_for(rows, 0.0)["mean_exit_layer"] == 1 and row_for(rows, 1.0)["mean_exit_layer"] == LAST_EXIT
    assert row_for(rows, 1.0)["speedup_vs_never_exit"] == 1.0
    for row in rows:
        assert row["speedup_vs_never_exit"] == pytest.approx(
            row["words_per_second"] / row_for(rows, 1.0)["words_per_second"]
        )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert text.count(benchmark.MARK_START) == 1 and text.count(benchmark.MARK_END) == 1
    assert train_section in text and text.startswith("# Benchmarks\n\nintro") and "tail" in text
    assert "--thresholds 0,0.5,0.7,1" in text and "torch threads 1" in text and "Date: " in text
    assert "**0.7 (calibrated)**" in text and "1 (never exit)" in text and "0 (always first exit)" in text

    png.unlink()
    run("0.9")  # a second run replaces the section
    text = md.read_text()
    assert text.count(benchmark.MARK_START) == 1 and text.count(benchmark.MARK_END) == 1
    assert "--thresholds 0,0.7,0.9,1" in text and "--thresholds 0,0.5,0.7,1" not in text
    assert train_section in text and "intro" in text and "tail" in text and png.exists()
    # the benchmark leaves the calibrated threshold in the config alone
    assert spacy.load(model_dir).get_pipe("posattn_ner").exit_threshold == 0.7


def test_benchmark_writes_only_what_it_is_asked_to(benchmark, model_dir, corpus, tmp_path, monkeypatch):
    # an ad-hoc run (say on another model) must not overwrite BENCHMARKS.md or the plot
    work = tmp_path / "adhoc"
    work.mkdir()
    monkeypatch.chdir(work)
    out = work / "adhoc.json"
    result = runner.invoke(benchmark.app, [str(model_dir), str(corpus), "--thresholds", "1", "--n-threads", "1",
                                           "--output-json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in work.rglob("*")) == ["adhoc.json"]
    assert "--benchmarks-md" not in json.loads(out.read_text())["command"]


def test_pipeline_without_exits_is_a_clear_error(calibrate, benchmark, tiny_backbone, corpus, tmp_path):
    torch.set_num_threads(1)  # restored by keep_torch_threads
    nlp = make_nlp(tiny_backbone)  # PosAttnTagger.v1: no exit heads
    train(nlp, toy_examples(nlp), n_iter=1)
    path = tmp_path / "v1-model"
    nlp.to_disk(path)
    for app, extra in ((calibrate.app, ["--output", str(tmp_path / "c.json")]),
                       (benchmark.app, ["--output-json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"),
                                        "--benchmarks-md", str(tmp_path / "B.md")])):  # fmt: skip
        result = runner.invoke(app, [str(path), str(corpus)] + extra)
        assert result.exit_code == 1
        assert str(path) in result.output and "no exit layers" in result.output
        assert "PosAttnTagger.v2" in result.output
    assert not any((tmp_path / name).exists() for name in ("c.json", "b.json", "b.png", "B.md"))
    cfg = load_config(path / "config.cfg", interpolate=False)
    assert cfg["components"]["posattn_ner"]["exit_threshold"] == 1.0


def _save_threshold(path, threshold: float) -> None:
    """Set a saved pipeline's exit threshold as calibrate_exit.py does: on the
    component, then saved (the setting travels with the pipeline)."""
    nlp = spacy.load(path)
    nlp.get_pipe("posattn_ner").exit_threshold = threshold
    nlp.to_disk(path)
