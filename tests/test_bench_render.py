"""metrics/*.json -> markdown (scripts/bench/render.py): fixture reports render to the
expected text, and the committed BENCHMARKS.md and README headline are what metrics/ says."""
import copy
import json
from pathlib import Path

import pytest

from scripts.bench.render import (
    confidence_section,
    exit_section,
    load_metrics,
    plot_all,
    plot_exit,
    render_benchmarks,
    render_headline,
    replace_marked,
    speed_section,
    train_results,
    train_section,
)

from .conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


@pytest.fixture(scope="module")
def fixtures():
    return load_metrics(FIXTURES)


def expected(name: str) -> str:
    return (FIXTURES / f"{name}.md").read_text(encoding="utf8").rstrip("\n")


def test_speed_report_renders_to_the_expected_table(fixtures):
    assert speed_section(fixtures["benchmark_speed"]) == expected("benchmark_speed")


def test_exit_report_renders_to_the_expected_table(fixtures):
    assert exit_section(fixtures["benchmark_exit"]) == expected("benchmark_exit")


def test_training_reports_render_side_by_side(fixtures):
    assert train_section(train_results(fixtures)) == expected("benchmark_train")


def test_training_reports_on_different_subsets_are_refused(fixtures):
    results = copy.deepcopy(train_results(fixtures))
    results[1]["settings"]["limit"] = 0
    with pytest.raises(ValueError, match="different subsets"):
        train_section(results)


def test_a_peer_that_was_left_out_renders_as_not_measured(fixtures):
    report = copy.deepcopy(fixtures["benchmark_speed"])
    report["rows"] = [r for r in report["rows"] if r["system"] != "cnn"]
    report["systems"]["cnn"] = {"model": None, "left_out": "not given"}
    text = speed_section(report)
    assert "spaCy CNN `ner` (not given)" in text and "Fastest posattn_ner / spaCy CNN, words/s: n/a" in text
    assert "| 4,000 | n/a |" in text  # no × CNN without the CNN


def test_committed_benchmarks_and_headline_are_rendered_from_metrics():
    metrics = load_metrics(ROOT / "metrics")
    assert render_benchmarks(metrics) == (ROOT / "BENCHMARKS.md").read_text(encoding="utf8")
    readme = (ROOT / "README.md").read_text(encoding="utf8")
    assert replace_marked(readme, "headline", render_headline(metrics)) == readme


def test_every_transcribed_figure_says_where_it_came_from():
    for path in (ROOT / "metrics" / "transcribed").glob("*.json"):
        assert json.loads(path.read_text(encoding="utf8"))["source"], path


def test_replace_marked_needs_one_pair_of_markers():
    text = "a\n<!-- x:start -->\nold\n<!-- x:end -->\nb\n"
    assert replace_marked(text, "x", "new\n") == "a\n<!-- x:start -->\nnew\n<!-- x:end -->\nb\n"
    with pytest.raises(ValueError):
        replace_marked("no markers", "x", "new\n")


def test_exit_plot_is_a_png(fixtures, tmp_path):
    plot_exit(fixtures["benchmark_exit"], tmp_path / "exit.png")
    assert (tmp_path / "exit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confidence_reports_render_to_the_expected_section(fixtures):
    section = confidence_section(fixtures["calibrate_confidence"], fixtures["benchmark_confidence"])
    assert section == expected("benchmark_confidence")
    at_edge = dict(fixtures["calibrate_confidence"], at_range_edge=True)
    assert "**1.500** (at an edge of the range searched, so the least log-loss may lie beyond it), fitted on" in (
        confidence_section(at_edge, fixtures["benchmark_confidence"]))


def test_confidence_section_says_how_to_get_the_speed_back_when_scores_cost_too_much(fixtures):
    report = copy.deepcopy(fixtures["benchmark_confidence"])
    report["speed"]["scores_on"]["words_per_second"] = 3000.0
    report["speed"]["overhead"] = 1.0 - 3000.0 / 3900.0
    text = confidence_section(None, report)
    assert "an overhead of **23.1%** (above the 10 % budget: where the scores are not needed, set the runtime setting `scores = false`" in text
    assert "Temperature 1.500, as saved in the pipeline (no calibrate-confidence report)." in text
    assert "Commands: `python -m scripts.confidence benchmark" in text and "(dev)" not in text


def test_the_confidence_section_ends_benchmarks_once_its_reports_exist(fixtures):
    metrics = {k: v for k, v in load_metrics(ROOT / "metrics").items() if not k.endswith("_confidence")}
    without = render_benchmarks(metrics)
    with_reports = render_benchmarks({**metrics, "calibrate_confidence": fixtures["calibrate_confidence"],
                                      "benchmark_confidence": fixtures["benchmark_confidence"]})  # fmt: skip
    assert "## Entity scores" not in without
    section = "\n\n" + expected("benchmark_confidence")
    assert section in with_reports and with_reports.replace(section, "", 1) == without  # other sections may follow


def test_confidence_plots_are_pngs(fixtures, tmp_path):
    drawn = plot_all(fixtures, tmp_path)
    names = ["benchmark_exit.png", "benchmark_confidence_reliability.png", "benchmark_confidence_pr.png"]
    assert [p.name for p in drawn] == names
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in drawn)
    without = {k: v for k, v in fixtures.items() if k != "benchmark_confidence"}
    assert [p.name for p in plot_all(without, tmp_path / "only-exit")] == names[:1]


def test_targets_table_gives_each_verdict_from_the_reports(fixtures):
    """The #16 targets table: each verdict follows the figure it names, so a better
    report turns "not met" into "met" without editing any text."""
    from scripts.bench.targets_section import targets_section

    exit_report = copy.deepcopy(fixtures["benchmark_exit"])
    speed = copy.deepcopy(fixtures["benchmark_speed"])
    reports = {"benchmark_exit": exit_report, "benchmark_exit_docs8": copy.deepcopy(exit_report),
               "benchmark_speed": speed, "benchmark_speed_docs8": copy.deepcopy(speed),
               "workflow_all": {"wall_seconds": 1500.0}}  # fmt: skip
    assert targets_section({k: v for k, v in reports.items() if k != "workflow_all"}) is None  # not all there yet
    text = targets_section(reports)
    lines = text.splitlines()
    assert len(lines) == 2 + 8
    assert lines[-1].endswith("| 25 min 0 s | **not met** |")
    reports["workflow_all"]["wall_seconds"] = 1100.0
    for row in reports["benchmark_exit"]["rows"]:
        row["ents_f"] = 0.86  # every threshold, so full depth and calibrated both pass
    text = targets_section(reports)
    one_sentence = [line for line in text.splitlines() if "(one-sentence docs)" in line and "F1" in line]
    assert len(one_sentence) == 2 and all(line.endswith("| 0.8600 | met |") for line in one_sentence)
    assert text.splitlines()[-1].endswith("| 18 min 20 s | met |")
