"""The default model's targets (#16) against what its reports measured: one row per
target, each figure looked up in the reports, so the verdicts follow the JSON."""
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .exits import f1_loss_points, reference_row
from .markdown import fmt_f1, fmt_int, fmt_minutes, fmt_points, fmt_threshold, fmt_x, table
from .sections import row_of

FULL_DEPTH_F1 = 0.855
CALIBRATED_F1 = 0.85
TIMES_CNN = 2.5
SAVINGS_MAX_LOSS = 0.3  # F1 points an exit-curve point may lose and still count as a saving
WORKFLOW_MINUTES = 20


def calibrated_row(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return next(r for r in report["rows"] if r.get("calibrated"))


def speed_row(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """posattn_ner as it is served: precision auto, the calibrated threshold."""
    return next(r for r in report["rows"] if r["system"] == "ours" and r["precision"] == "auto" and r["exit"] == "calibrated")


def best_saving(rows: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The fastest point of an exit curve within SAVINGS_MAX_LOSS points of never-exit
    that exits early somewhere between "all at the first exit" and "none"."""
    first, last = min(r["mean_exit_layer"] for r in rows), max(r["mean_exit_layer"] for r in rows)
    inner = [r for r in rows if first < r["mean_exit_layer"] < last and f1_loss_points(r, rows) <= SAVINGS_MAX_LOSS]
    return max(inner, key=lambda r: r["words_per_second"]) if inner else None


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def targets_table(reports: Mapping[str, Any]) -> str:
    """The #16 targets, measured: ``reports`` is the metrics sub-folder's reports by name."""
    one, docs = reports["benchmark_exit"], reports["benchmark_exit_docs8"]
    rows: List[List[str]] = []
    for label, report in (("one-sentence docs", one), ("8-sentence docs", docs)):
        f1 = reference_row(report["rows"])["ents_f"]
        rows.append([f"full-depth test F1 ≥ {FULL_DEPTH_F1} ({label})", fmt_f1(f1), verdict(f1 >= FULL_DEPTH_F1)])
    for label, report in (("one-sentence docs", one), ("8-sentence docs", docs)):
        row = calibrated_row(report)
        rows.append([f"calibrated (threshold {fmt_threshold(row['threshold'])}) test F1 ≥ {CALIBRATED_F1} ({label})",
                     fmt_f1(row["ents_f"]), verdict(row["ents_f"] >= CALIBRATED_F1)])  # fmt: skip
    for label, key in (("one-sentence docs", "benchmark_speed"), ("8-sentence docs", "benchmark_speed_docs8")):
        report = reports[key]
        ours, cnn = speed_row(report), row_of(report, "cnn")
        x = ours["words_per_second"] / cnn["words_per_second"]
        rows.append([f"calibrated words/s ≥ {TIMES_CNN}× spaCy's CNN, same run ({label})",
                     f"{fmt_int(ours['words_per_second'])} vs {fmt_int(cnn['words_per_second'])}: {fmt_x(x)}×",
                     verdict(x >= TIMES_CNN)])  # fmt: skip
    saving = best_saving(docs["rows"])
    never = reference_row(docs["rows"])
    if saving is None:
        rows.append([f"exit curve on 8-sentence docs: a saving within {SAVINGS_MAX_LOSS} F1 points", "none", verdict(False)])
    else:
        rows.append([
            f"exit curve on 8-sentence docs: a saving within {SAVINGS_MAX_LOSS} F1 points",
            f"threshold {fmt_threshold(saving['threshold'])}: mean exit layer {saving['mean_exit_layer']:.2f} of "
            f"{never['mean_exit_layer']:.0f}, {fmt_x(saving['words_per_second'] / never['words_per_second'])}× never-exit's "
            f"words/s, {fmt_points(-f1_loss_points(saving, docs['rows']))} points",
            verdict(True),
        ])
    wall = reports["workflow_all"]["wall_seconds"]
    rows.append([f"`spacy project run all` ≤ {WORKFLOW_MINUTES} min", fmt_minutes(wall), verdict(wall <= WORKFLOW_MINUTES * 60)])
    return table(["target", "measured", ""], rows, "llr")


def targets_section(reports: Optional[Dict[str, Any]]) -> Optional[str]:
    """None until every report the table needs is there."""
    needed = ("benchmark_exit", "benchmark_exit_docs8", "benchmark_speed", "benchmark_speed_docs8", "workflow_all")
    if not reports or any(name not in reports for name in needed):
        return None
    return targets_table(reports)
