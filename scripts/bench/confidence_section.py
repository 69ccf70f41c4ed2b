"""The entity-scores section of BENCHMARKS.md and its two plots, pure functions of
metrics/calibrate_confidence.json (dev, optional) and metrics/benchmark_confidence.json (test):
see scripts/confidence.py for what they measure."""
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence

from .markdown import NA, fmt_f1, fmt_int, fmt_threshold, fmt_x, table
from .sections import machine_line

OVERHEAD_BUDGET = 0.10  # issue #15: scores may cost at most 10 % of words/s
TABLE_THRESHOLDS = (0.0, 0.5, 0.7, 0.9, 0.95, 0.99)
RELIABILITY_PNG = "benchmark_confidence_reliability.png"
PR_PNG = "benchmark_confidence_pr.png"


def fmt_share(value: Optional[float]) -> str:
    return NA if value is None else f"{value:.1%}"


def score_rows(report: Mapping[str, Any]) -> List[List[str]]:
    """ECE, log-loss and mean scores of right and wrong entities, at T = 1 and calibrated."""
    before, after = report["before"], report["after"]

    def row(name: str, key: str, fmt=fmt_f1, bold: bool = False) -> List[str]:
        value = fmt(after[key])
        return [name, fmt(before[key]), f"**{value}**" if bold and after[key] is not None else value]

    return [
        row("expected calibration error (10 equal-width bins)", "ece", bold=True),
        row("log-loss of entity correctness", "log_loss"),
        row("mean score of the right entities", "mean_score_correct", lambda v: fmt_x(v, 3)),
        row("mean score of the wrong entities", "mean_score_wrong", lambda v: fmt_x(v, 3)),
    ]


def pr_rows(points: Sequence[Mapping[str, Any]]) -> List[List[str]]:
    by = {p["threshold"]: p for p in points}
    return [[fmt_threshold(t) + (" (all entities)" if t == 0.0 else ""), fmt_f1(by[t]["precision"]),
             fmt_f1(by[t]["recall"]), fmt_int(by[t]["kept"])] for t in TABLE_THRESHOLDS if t in by]  # fmt: skip


def recall_line(at: Mapping[str, Any]) -> str:
    if at["threshold"] is None:
        return f"precision ≥ {at['precision']:.2f}: no threshold reaches it"
    return (f"precision ≥ {at['precision']:.2f}: recall **{fmt_f1(at['recall'])}** (entities scored ≥ "
            f"{at['threshold']:.4f} kept, {fmt_int(at['kept'])} of them)")  # fmt: skip


def dev_line(cal: Optional[Mapping[str, Any]], temperature: float) -> str:
    if cal is None:
        return f"Temperature {temperature:.3f}, as saved in the pipeline (no calibrate-confidence report)."
    before, after = cal["before"], cal["after"]
    same = "" if cal["temperature"] == temperature else f" (that report fitted {cal['temperature']:.3f}: another pipeline?)"
    if cal.get("at_range_edge"):
        same += " (at an edge of the range searched, so the least log-loss may lie beyond it)"
    return (f"Temperature **{temperature:.3f}**{same}, fitted on `{cal['data']}` by calibrate-confidence "
            f"({fmt_int(cal['n_docs'])} docs, {fmt_int(after['n_entities'])} predicted entities): the temperature "
            f"with the least log-loss of entity correctness (dev log-loss {fmt_f1(before['log_loss'])} → "
            f"{fmt_f1(after['log_loss'])}, dev ECE {fmt_f1(before['ece'])} → {fmt_f1(after['ece'])}).")  # fmt: skip


def cost_lines(report: Mapping[str, Any]) -> List[str]:
    speed = report["speed"]
    on, off, cost = speed["scores_on"], speed["scores_off"], speed["overhead"]
    verdict = ("above the 10 % budget: where the scores are not needed, set the runtime setting `scores = false` "
               "to get the speed back" if cost > OVERHEAD_BUDGET else  # fmt: skip
               "within the 10 % budget; where the scores are not needed, the runtime setting `scores = false` saves it")
    return [
        f"Cost, in one run on CPU (torch threads {report['torch_threads']}): scores on {fmt_int(on['words_per_second'])} "
        f"words/s, off {fmt_int(off['words_per_second'])} words/s, an overhead of **{fmt_share(cost)}** ({verdict}). "
        f"The two settings were measured alternately, {report['repeats']} timed pass(es) each, the best counting "
        f"(words/s as defined at the top of this file, batch size {report['batch_size']}, candidates off); "
        f"test F1 {fmt_f1(on['ents_f'])} with scores on, {fmt_f1(off['ents_f'])} off (scores do not change the entities).",
    ]


def confidence_section(cal: Optional[Mapping[str, Any]], report: Mapping[str, Any]) -> str:
    """Calibration before/after, precision/recall over a score threshold, and the cost of scores."""
    after, cands = report["after"], report["candidates"]
    all_cands = next((p for p in cands["pr_curve"] if p["threshold"] == 0.0), None)
    out = [
        "## Entity scores: calibration, precision against recall, cost",
        "",
        f"`{report['model']}` on `{report['data']}` ({fmt_int(report['n_docs'])} docs, {fmt_int(report['n_words'])} "
        f"words, {fmt_int(report['n_gold'])} gold entities): {fmt_int(after['n_entities'])} predicted entities, "
        f"{fmt_int(after['n_correct'])} right (exact span and label). An entity's score is its probability under the "
        "model (forward–backward over the constrained BILUO lattice), in `doc.spans[\"posattn_ner\"]`. "
        + dev_line(cal, report["temperature"]),
        "",
        table(["test split", "T = 1 (uncalibrated)", f"T = {report['temperature']:.3f} (calibrated)"],
              score_rows(report), "lrr"),  # fmt: skip
        "",
        "ECE: the entities are put in 10 bins by score; each bin adds its share of the entities times the gap between "
        "its mean score and its share of right entities. "
        f"Reliability diagram: [`metrics/{RELIABILITY_PNG}`](metrics/{RELIABILITY_PNG}).",
        "",
        "Keeping only the entities scored at least t (calibrated scores; recall over all gold entities):",
        "",
        table(["threshold t", "precision", "recall", "entities kept"], pr_rows(report["pr_curve"]), "lrrr"),
        "",
    ]
    out += [f"- Recall at {recall_line(at)}." for at in report["recall_at"]]
    if all_cands is not None:
        out.append(f"- High-recall mode (`candidate_threshold = {fmt_threshold(cands['threshold'])}`: every span, "
                   f"overlapping ones included, with probability ≥ {fmt_threshold(cands['threshold'])}): "
                   f"{fmt_int(cands['n_spans'])} spans, recall {fmt_f1(all_cands['recall'])} at precision "
                   f"{fmt_f1(all_cands['precision'])}.")  # fmt: skip
    out += ["", f"Precision against recall: [`metrics/{PR_PNG}`](metrics/{PR_PNG}).", ""]
    out += cost_lines(report)
    commands = ([f"`{cal['command']}` (dev)"] if cal else []) + [f"`{report['command']}` (test)"]
    out += ["", "Commands: " + " then ".join(commands), "", machine_line(report["machine"], report["torch_threads"]),
            "", f"Date: {report['date']}" + (f" (calibration: {cal['date']})" if cal else "")]  # fmt: skip
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    _pyplot().close(fig)


def plot_reliability(report: Mapping[str, Any], path: Path) -> None:
    """Share of right entities against mean score per bin, at T = 1 and calibrated, over
    the diagonal of perfect calibration; below, how many entities each bin holds."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6.5, 6.5), dpi=120, sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="0.6", label="perfectly calibrated")
    width = 1.0 / len(report["after"]["bins"])
    for key, label, color, shift in (("before", "T = 1", "tab:orange", -0.2), ("after", None, "tab:blue", 0.2)):
        summary = report[key]
        name = label or f"T = {report['temperature']:.3f} (calibrated)"
        bins = [b for b in summary["bins"] if b["n"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=color,
                label=f"{name}: ECE {summary['ece']:.4f}")  # fmt: skip
        counts.bar([b["lo"] + width * (0.5 + shift) for b in summary["bins"]], [b["n"] for b in summary["bins"]],
                   width=width * 0.4, color=color)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of entities that are right")
    ax.set_title("posattn_ner entity scores on the test split: reliability", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    counts.set_yscale("log")
    counts.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    counts.yaxis.set_minor_formatter(NullFormatter())
    counts.set_xlabel("entity score (bin mean above; bins of width 0.1 below)")
    counts.set_ylabel("entities")
    counts.grid(True, alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_pr(report: Mapping[str, Any], path: Path) -> None:
    """Precision against recall as the score threshold rises, for the entities and for the
    high-recall mode's candidate spans; the thresholds 0.5, 0.9 and 0.95 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for points, label, color in ((report["pr_curve"], "entities (Viterbi), calibrated scores", "tab:blue"),
                                 (report["candidates"]["pr_curve"], "candidate spans (high-recall mode)", "0.6")):  # fmt: skip
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points], "-", color=color, label=label)
    for p in report["pr_curve"]:
        if p["threshold"] in (0.5, 0.9, 0.95):
            ax.scatter([p["recall"]], [p["precision"]], color="tab:blue", zorder=3)
            ax.annotate(f"t={fmt_threshold(p['threshold'])}", (p["recall"], p["precision"]), textcoords="offset points",
                        xytext=(5, -12), fontsize=8)  # fmt: skip
    for level in (0.90, 0.95):
        ax.axhline(level, linestyle=":", color="tab:red", linewidth=0.8, label="precision 0.90 and 0.95" if level == 0.90 else None)
    ax.set_xlabel("recall (over all gold entities)")
    ax.set_ylabel("precision")
    ax.set_title("posattn_ner: precision against recall over an entity-score threshold", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
