"""metrics/*.json -> markdown (scripts/render_benchmarks.py and its templates): fixture
reports render to the expected text, and the committed BENCHMARKS.md and README headline
are what metrics/ says."""
import copy
import json
from pathlib import Path

import pytest

from scripts.render_benchmarks import (
    load_metrics,
    plot_all,
    render_benchmarks,
    render_headline,
    render_section,
    replace_marked,
    train_reports,
)

from .conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


@pytest.fixture(scope="module")
def fixtures():
    return load_metrics(FIXTURES)


def expected(name: str) -> str:
    return (FIXTURES / f"{name}.md").read_text(encoding="utf8").rstrip("\n")


def test_speed_report_renders_to_the_expected_table(fixtures):
    assert render_section("speed_table", fixtures["benchmark_speed"]) == expected("benchmark_speed")


def test_exit_report_renders_to_the_expected_table(fixtures):
    assert render_section("exit_table", fixtures["benchmark_exit"]) == expected("benchmark_exit")


def test_training_reports_render_side_by_side_with_ratios(fixtures):
    text = render_section("train_table", train_reports(fixtures))
    assert "| posattn_ner (frozen MiniLM, cached features) | 100 | 1.50 (step 40) | 30.0s | 1m30s | 0.7500 | 0.7400 | 3,000 |" in text
    assert "- ours / trf: time to best dev F1 0.10, total time 0.25, epochs to best 0.25." in text  # 30 s / 300 s, 90 s / 360 s, 1.5 / 6 in text
    assert "ours / cnn" not in text  # no CNN report among the fixtures
    assert text.count("`python -m scripts.benchmark_train") == 2


def test_training_reports_on_different_subsets_are_refused(fixtures):
    metrics = copy.deepcopy(fixtures)
    metrics["benchmark_train_trf"]["settings"]["limit"] = 0
    with pytest.raises(ValueError, match="different subsets"):
        train_reports(metrics)


def test_a_peer_that_was_left_out_renders_as_not_measured(fixtures):
    report = copy.deepcopy(fixtures["benchmark_speed"])
    report["rows"] = [r for r in report["rows"] if r["system"] != "cnn"]
    report["systems"]["cnn"] = {"model": None, "left_out": "not given"}
    text = render_section("speed_table", report)
    assert "Left out: spaCy CNN `ner` (not given)." in text
    assert "| 4,000 | n/a |" in text  # no × CNN without the CNN


def test_committed_benchmarks_and_headline_are_rendered_from_metrics():
    metrics = load_metrics(ROOT / "metrics")
    assert render_benchmarks(metrics) == (ROOT / "BENCHMARKS.md").read_text(encoding="utf8")
    readme = (ROOT / "README.md").read_text(encoding="utf8")
    assert replace_marked(readme, "headline", render_headline(metrics)) == readme


def test_benchmarks_is_one_section_per_question_within_250_lines():
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf8")
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["Accuracy", "Speed", "Exit curve", "Exit policies", "The distilled student", "Training cost",
                        "Calibration", "Annotation at scale"]  # fmt: skip
    assert len(text.splitlines()) <= 250
    assert text.count("Machine: ") >= 8 and "AVX512-BF16" in text


def test_every_transcribed_figure_says_where_it_came_from():
    for path in [*(ROOT / "metrics" / "transcribed").glob("*.json"), ROOT / "metrics" / "workflow_all.json"]:
        assert json.loads(path.read_text(encoding="utf8"))["source"], path


def test_replace_marked_needs_one_pair_of_markers():
    text = "a\n<!-- x:start -->\nold\n<!-- x:end -->\nb\n"
    assert replace_marked(text, "x", "new\n") == "a\n<!-- x:start -->\nnew\n<!-- x:end -->\nb\n"
    with pytest.raises(ValueError):
        replace_marked("no markers", "x", "new\n")


def test_confidence_reports_render_to_the_expected_section(fixtures):
    section = render_section("confidence", fixtures["calibrate_confidence"], fixtures["benchmark_confidence"])
    assert section == expected("benchmark_confidence")
    at_edge = dict(fixtures["calibrate_confidence"], at_range_edge=True)
    assert "**1.500** (at an edge of the range searched, so the least log-loss may lie beyond it), fitted on" in (
        render_section("confidence", at_edge, fixtures["benchmark_confidence"]))


def test_confidence_section_says_how_to_get_the_speed_back_when_scores_cost_too_much(fixtures):
    report = copy.deepcopy(fixtures["benchmark_confidence"])
    report["speed"]["scores_on"]["words_per_second"] = 3000.0
    report["speed"]["overhead"] = 1.0 - 3000.0 / 3900.0
    text = render_section("confidence", None, report)
    assert "an overhead of **23.1%** (above the 10 % budget: where the scores are not needed, set the runtime setting `scores = false`" in text
    assert "Temperature 1.500, as saved in the pipeline (no calibrate-confidence report)." in text
    assert "Commands: `python -m scripts.benchmark_confidence" in text and "(dev)" not in text


def test_plots_are_pngs(fixtures, tmp_path):
    drawn = plot_all(fixtures, tmp_path)
    names = ["benchmark_exit.png", "benchmark_confidence_reliability.png", "benchmark_confidence_pr.png"]
    assert [p.name for p in drawn] == names
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in drawn)
    without = {k: v for k, v in fixtures.items() if k != "benchmark_confidence"}
    assert [p.name for p in plot_all(without, tmp_path / "only-exit")] == names[:1]
