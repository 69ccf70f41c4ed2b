"""The two-checkout comparison renders each side's rounds, the ratio of the bests,
the spread of one side's rounds and the docs both answered alike."""
from scripts.bench.before_after import before_after_section


def _run(wps, load=0.5):
    return {"load_before": [load, load, load], "rows": [{"words_per_second": w, "ents_f": 0.8} for w in wps]}


def test_before_after_section_from_a_report():
    report = {
        "settings": [["fp32", 1.0], ["int8", 0.0]],
        "results": {"old": [_run([1000, 8000]), _run([1100, 8000])], "new": [_run([1200, 7000]), _run([1000, 7200])]},
        "identical_docs": [10, 9], "n_docs": 10, "model": "m", "data": "d", "machine": "box",
        "command": "python x", "date": "2026-11-25",
    }
    text = before_after_section(report)
    lines = text.splitlines()
    assert lines[2] == "| fp32, threshold 1 | 1,000 / 1,100 | 1,200 / 1,000 | 1.09 | 0.8000 | 10 / 10 |"
    assert lines[3] == "| int8, threshold 0 | 8,000 / 8,000 | 7,000 / 7,200 | 0.90 | 0.8000 | 9 / 10 |"
    assert "differ by up to 20% in words/s" in text  # 1,200 vs 1,000
    assert "Command: `python x`" in text
