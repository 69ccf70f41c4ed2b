"""metrics/*.json -> markdown (scripts/bench/render.py): fixture reports render to the
expected text, and the committed BENCHMARKS.md and README headline are what metrics/ says."""
import copy
import json
from pathlib import Path

import pytest

from scripts.bench.render import (
    exit_section,
    load_metrics,
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
