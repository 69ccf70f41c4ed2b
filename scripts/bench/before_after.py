"""The section of a two-checkout comparison (scripts/experiments/engine_before_after.py):
per setting, each side's words/s in every round, the ratio of the bests, F1 and how
many docs got the same answer from both."""
from typing import Any, List, Mapping

from .markdown import fmt_f1, fmt_int, fmt_threshold, fmt_x, ratio, table


def before_after_section(report: Mapping[str, Any]) -> str:
    names = list(report["results"])
    runs = [report["results"][name] for name in names]
    rows: List[List[str]] = []
    for i, (precision, threshold) in enumerate(report["settings"]):
        speeds = [[run["rows"][i]["words_per_second"] for run in side] for side in runs]
        f1s = {round(run["rows"][i]["ents_f"], 6) for side in runs for run in side}
        rows.append(
            [f"{precision}, threshold {fmt_threshold(threshold)}"]
            + [" / ".join(fmt_int(s) for s in side) for side in speeds]
            + [fmt_x(ratio(max(speeds[1]), max(speeds[0]))), " = ".join(fmt_f1(f) for f in sorted(f1s)),
               f"{report['identical_docs'][i]:,} / {report['n_docs']:,}"]  # fmt: skip
        )
    header = ["setting"] + [f"{name} words/s (each round)" for name in names]
    header += [f"best {names[1]} / best {names[0]}", "test F1 (both)", "docs with identical entities"]
    spread = max(max(r) / min(r) - 1 for i in range(len(report["settings"])) for r in
                 ([run["rows"][i]["words_per_second"] for run in side] for side in runs))  # fmt: skip
    loads = ", ".join(f"{run['load_before'][0]:.2f}" for side in runs for run in side)
    return "\n".join([
        table(header, rows, "lrrrrr"),
        "",
        f"Two rounds of the same checkout differ by up to {spread:.0%} in words/s: read a ratio within that "
        "as no change.",
        "",
        f"Model: {report['model']}. Data: {report['data']}. Machine: {report['machine']} "
        f"(1-minute load before each child: {loads}). Command: `{report['command']}`. Date: {report['date']}.",
    ])  # fmt: skip
