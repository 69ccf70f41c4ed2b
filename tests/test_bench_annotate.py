"""benchmark-annotate: the command measures every engine on both inputs and records the
ratios against the targets; its report renders to the BENCHMARKS.md section (the table,
the ratios met or not, the command and machine, N machines on paper).

The fixture report is a real run: the tiny exit pipeline on the toy corpus and 5 copies of
it, all six engines (Ray included), on a busy 2-core machine."""
import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts import benchmark_annotate
from scripts.render_benchmarks import fixed_cost, load_metrics, render_benchmarks, render_section

from .conftest import ROOT

def annotate_section(report):
    return render_section("annotate", report)


FIXTURE = Path(__file__).parent / "fixtures" / "bench" / "benchmark_annotate.json"
runner = CliRunner()


@pytest.fixture
def report():
    return json.loads(FIXTURE.read_text(encoding="utf8"))


def _run(engine, words, seconds, entities=10):
    return {"engine": engine, "documents": 4, "words": words, "entities": entities, "errors": 0, "seconds": seconds,
            "wall_seconds": seconds, "words_per_second": words / seconds, "load_before": [0.5, 0.5, 0.5]}  # fmt: skip


def test_the_fixture_report_renders_the_table_ratios_and_machine(report):
    text = annotate_section(report)
    lines = text.splitlines()
    assert lines[0] == "| input | engine | documents | words | entities | seconds | words/s | 1-min load before |"
    assert "| toy x5 | annotate, Ray, 2 workers | 60 | 465 | 135 | 30.31 | 15 | 6.53 |" in lines
    assert "| toy | `nlp.pipe`, 1 process | 12 | 93 | 27 | 0.16 | 588 | 4.72 |" in lines
    assert ("- Overhead of annotate over `nlp.pipe` (1 − annotate local 1-process words/s ÷ `nlp.pipe` 1-process "
            "words/s; target ≤ 10%): toy 25.3% (not met), toy x5 14.7% (not met).") in lines  # fmt: skip
    assert "- annotate on Ray, 2 workers / 1, words/s (target ≥ 1.7×): toy 1.48× (not met), toy x5 0.34× (not met)." in lines
    assert "- `nlp.pipe`, 2 processes / 1, words/s (target ≥ 1.7×): toy 0.39× (not met), toy x5 0.25× (not met)." in lines
    assert "- Entity counts: all 6 engines agree on every input (toy 27, toy x5 135)." in lines
    assert f"Command: `{report['command']}`." in text and "2 CPUs (2 usable)" in text
    assert text.splitlines()[-2].startswith("**On N machines, on paper.**")
    # ray1 was slower on toy than on 5 copies of it (warm-up on a busy machine): no fit; ray2 gives one
    assert fixed_cost(report["inputs"], "ray1") is None
    assert "annotate, Ray, 2 workers had a fixed cost of about 11.6 s, then 25 words/s" in text
    assert "11.6 + W / (N × 25) seconds" in text


def test_targets_met_missing_engines_and_disagreement(report):
    report = copy.deepcopy(report)
    big = report["inputs"][-1]
    big["overhead"], big["ratios"]["local2_over_local1"], big["ratios"]["ray2_over_ray1"] = 0.04, 1.85, None
    big["entities"]["ray2"], big["entities_agree"] = 134, False
    text = annotate_section(report)
    assert "toy 25.3% (not met), toy x5 4.0% (met)." in text
    assert "annotate local, 2 processes / 1, words/s (target ≥ 1.7×): toy 0.58× (not met), toy x5 1.85× (met)." in text
    assert "toy 1.48× (not met), toy x5 n/a (not measured)." in text
    assert "- Entity counts: the engines **disagree** (toy x5: pipe1 135, " in text and "ray2 134)." in text


def test_fixed_cost_separates_start_up_from_the_rate():
    inputs = [{"runs": [_run("ray2", 100, 3.0)]}, {"runs": [_run("ray2", 1000, 12.0)]}]  # 2 s + words / 100
    fixed, rate = fixed_cost(inputs, "ray2")
    assert fixed == pytest.approx(2.0) and rate == pytest.approx(100.0)
    assert fixed_cost(inputs, "ray1") is None


def test_the_section_closes_benchmarks_with_the_report_given(report):
    metrics = load_metrics(ROOT / "metrics")
    text = render_benchmarks({**metrics, "benchmark_annotate": report})
    assert text.endswith("## Annotation at scale" + text.split("## Annotation at scale")[1])
    assert text.endswith(annotate_section(report) + "\n")


def test_summarize_ratios_and_agreement():
    runs = {e: _run(e, 1000, s) for e, s in [("pipe1", 1.0), ("pipe2", 0.5), ("local1", 1.25), ("local2", 0.8)]}
    out = benchmark_annotate.summarize(runs)
    assert out["ratios"]["local1_over_pipe1"] == pytest.approx(0.8) and out["overhead"] == pytest.approx(0.2)
    assert out["ratios"]["pipe2_over_pipe1"] == pytest.approx(2.0)
    assert out["ratios"]["local2_over_local1"] == pytest.approx(1.5625)
    assert out["ratios"]["ray2_over_ray1"] is None
    assert out["entities_agree"] and out["counts_agree"]
    runs["local2"]["entities"] = 9
    assert not benchmark_annotate.summarize(runs)["entities_agree"]


@pytest.mark.parametrize("args, error", [(["--engines", "pipe1,spark"], "spark"),
                                         (["--batch-size", "4", "--shard-size", "10"], "not a multiple")])  # fmt: skip
def test_bad_engines_and_shard_sizes_stop_before_measuring(tiny_exit_pipeline, toy_corpus, tmp_path, args, error):
    result = runner.invoke(benchmark_annotate.app, [str(tiny_exit_pipeline), str(toy_corpus), *args,
                                                    "--output", str(tmp_path / "out.json")])  # fmt: skip
    assert result.exit_code != 0 and error in result.output
    assert not (tmp_path / "out.json").exists()


def test_the_command_measures_every_engine_on_both_inputs(tiny_exit_pipeline, toy_corpus, tmp_path):
    """One Ray worker too where Ray is installed (a local Ray: some seconds)."""
    engines = ["pipe1", "local1", "local2"] + (["ray1"] if importlib.util.find_spec("ray") else [])
    model = shutil.copytree(tiny_exit_pipeline, tmp_path / "model")
    out = tmp_path / "annotate.json"
    args = [model, toy_corpus, "--repeat", "2", "--engines", ",".join(engines), "--batch-size", "4",
            "--shard-size", "8", "--output", out]  # fmt: skip
    result = runner.invoke(benchmark_annotate.app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {"date", "command", "machine", "torch_threads", "pipeline_load_seconds", "targets"} <= set(report)
    assert report["command"].startswith("python -m scripts.benchmark_annotate") and report["torch_threads"] == 1
    assert (report["ray_start_seconds"] is None) == ("ray1" not in engines)
    assert [(i["name"], i["documents"]) for i in report["inputs"]] == [("toy", 12), ("toy x2", 24)]  # no empty doc
    for item in report["inputs"]:
        assert [r["engine"] for r in item["runs"]] == engines
        assert item["counts_agree"] and item["ratios"]["ray2_over_ray1"] is None
        for run in item["runs"]:
            assert run["documents"] == item["documents"] and run["errors"] == 0 and len(run["load_before"]) == 3
            assert run["words_per_second"] == pytest.approx(run["words"] / run["seconds"])
    assert "| toy x2 | annotate, local, 2 processes | 24 |" in annotate_section(report)
