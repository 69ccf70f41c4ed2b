#!/usr/bin/env python
"""Early-exit speed/accuracy benchmark of a posattn_ner pipeline on test data.

For thresholds from never-exit (1.0) to always-exit-first (0.0), plus the threshold
calibrated into the model's config (``scripts/calibrate_exit.py``), the test set is
run once per threshold through ``Language.evaluate`` on CPU with ``--n-threads``
torch threads, on the real layer-by-layer path. Reports
test entity F1, words/s (wall time of tokenizing and ``nlp.pipe``, after one warm-up
batch), words/s relative to never-exit, the mean exit layer and the share of docs
per exit layer. Writes a JSON report, a PNG plot (words/s against F1, one point per
threshold) and the section between ``<!-- benchmark-exit:start -->`` and
``<!-- benchmark-exit:end -->`` in BENCHMARKS.md.

Usage:
    python scripts/benchmark_exit.py training/model-best corpus/test.spacy [--thresholds 0,0.9,1] \\
        [--n-threads 2] [--output-json metrics/benchmark_exit.json] [--plot metrics/benchmark_exit.png] \\
        [--benchmarks-md BENCHMARKS.md]
"""
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

if str(Path(__file__).resolve().parent) not in sys.path:  # scripts/ helpers, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import replace_section, report_footer  # noqa: E402
from calibrate_exit import (  # noqa: E402
    NEVER_EXIT,
    NoExitLayersError,
    command_line,
    fmt_layer,
    fmt_shares,
    fmt_threshold,
    load_exit_pipeline,
    machine_info,
    parse_thresholds,
    read_examples,
    run_grid,
    utc_now,
)

app = typer.Typer(add_completion=False)

MARK_START = "<!-- benchmark-exit:start -->"
MARK_END = "<!-- benchmark-exit:end -->"
ALWAYS_FIRST = 0.0


def threshold_label(threshold: float, calibrated: float) -> str:
    text = fmt_threshold(threshold)
    notes = []
    if threshold >= NEVER_EXIT:
        notes.append("never exit")
    if threshold == ALWAYS_FIRST:
        notes.append("always first exit")
    if threshold == calibrated:
        notes.append("calibrated")
    return text + (f" ({', '.join(notes)})" if notes else "")


def render_section(report: Dict[str, Any]) -> str:
    machine = report["machine"]
    calibrated = report["calibrated_threshold"]
    rows = sorted(report["rows"], key=lambda r: -r["threshold"])
    out = [
        MARK_START,
        "## Early exit: speed against F1",
        "",
        f"`{report['model']}` on `{report['test']}` ({report['n_docs']:,} docs, {report['n_words']:,} words), "
        f"exit layers {report['exit_layers']}, on CPU (torch threads: {report['torch_threads']}). "
        f"Calibrated threshold (the model's config): **{fmt_threshold(calibrated)}**"
        + (" (1 = never exit: not calibrated, or no faster threshold kept F1)" if calibrated >= NEVER_EXIT else "")
        + ".",
        "",
        "| exit threshold | test F1 | ΔF1 vs never-exit (points) | words/s | × never-exit | mean exit layer "
        "| docs per exit layer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        label = threshold_label(r["threshold"], calibrated)
        if r["calibrated"]:
            label = f"**{label}**"
        speedup = "n/a" if r["speedup_vs_never_exit"] is None else f"{r['speedup_vs_never_exit']:.2f}"
        out.append(
            f"| {label} | {r['ents_f']:.4f} | {0.0 - r['f1_loss_points']:+.2f} | {r['words_per_second']:,.0f} "
            f"| {speedup} | {fmt_layer(r['mean_exit_layer'])} | {fmt_shares(r['exit_layer_share'])} |"
        )
    out += [
        "",
        "One timed pass per threshold through `Language.evaluate` (tokenizing + `nlp.pipe`, batch size "
        f"{report['batch_size']}), after one warm-up batch; the backbone runs layer by layer and a doc leaves "
        "at its first exit whose confidence (its least sure token's top probability) reaches the threshold. "
        "F1 is spaCy's entity-level micro F1 (`ents_f`). Exit layer k = after the backbone's k-th transformer "
        "layer.",
    ]
    out += report_footer(report, machine, report["torch_threads"]) + [MARK_END]
    return "\n".join(out)


def update_benchmarks_md(path: Path, section: str) -> None:
    replace_section(path, section, MARK_START, MARK_END)


def plot(report: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["rows"], key=lambda r: r["threshold"])
    xs = [r["ents_f"] for r in rows]
    ys = [r["words_per_second"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(xs, ys, "-", color="0.75", zorder=1)
    ax.scatter(xs, ys, color="tab:blue", zorder=2)
    for r in rows:
        if r["calibrated"]:
            ax.scatter([r["ents_f"]], [r["words_per_second"]], marker="*", s=220, color="tab:red", zorder=3,
                       label=f"calibrated ({fmt_threshold(r['threshold'])})")
        ax.annotate(fmt_threshold(r["threshold"]), (r["ents_f"], r["words_per_second"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("test F1 (ents_f)")
    ax.set_ylabel(f"words/s (CPU, {report['torch_threads']} torch threads)")
    ax.set_title("posattn_ner early exit: speed against F1, by exit threshold", fontsize=10)
    ax.grid(True, alpha=0.3)
    if any(r["calibrated"] for r in rows):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


# -- CLI --------------------------------------------------------------------------
@app.command()
def main(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Saved pipeline (PosAttnTagger.v2 or .v3)"),
    test_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Test .spacy file"),
    thresholds: Optional[str] = typer.Option(
        None, "--thresholds", help="Comma-separated thresholds (0, 1 and the calibrated one are always added)"
    ),
    n_threads: int = typer.Option(2, "--n-threads", min=1, help="torch threads (torch.set_num_threads)"),
    limit: int = typer.Option(0, "--limit", min=0, help="Test docs, the first in file order (0 = all)"),
    batch_size: int = typer.Option(0, "--batch-size", min=0, help="nlp.pipe batch size (0 = the pipeline's)"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timed passes per threshold (best speed kept)"),
    output_json: Path = typer.Option(Path("metrics/benchmark_exit.json"), "--output-json"),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write the F1 / words/s plot here (default: none)"),
    benchmarks_md: Optional[Path] = typer.Option(
        None, "--benchmarks-md", help="Write this section into that markdown file (project.yml: BENCHMARKS.md; default: none)"
    ),
) -> None:
    """Test F1 and CPU words/s from never-exit to always-exit, the calibrated threshold marked."""
    import torch

    try:
        nlp, pipe, exit_layers = load_exit_pipeline(model_dir, n_threads)
    except NoExitLayersError as err:
        msg.fail(str(err), exits=1)
    calibrated = float(pipe.exit_threshold)  # from the model's config.cfg
    grid = parse_thresholds(thresholds, include=(NEVER_EXIT, ALWAYS_FIRST, calibrated))
    command = command_line(
        "scripts/benchmark_exit.py",
        [model_dir, test_path],
        [
            ("--thresholds", ",".join(fmt_threshold(t) for t in grid)),
            ("--n-threads", n_threads),
            ("--limit", limit),
            ("--batch-size", batch_size),
            ("--repeats", repeats),
            ("--output-json", output_json),
            ("--plot", plot_path),
            ("--benchmarks-md", benchmarks_md),
        ],
    )
    examples = read_examples(nlp, test_path, limit)
    n_words = sum(len(eg.reference) for eg in examples)
    machine = machine_info()
    msg.info(
        f"{model_dir}: exit layers {exit_layers}, calibrated threshold {fmt_threshold(calibrated)}; "
        f"test {len(examples):,} docs, {n_words:,} words; torch threads {torch.get_num_threads()}"
    )
    rows: List[Dict[str, Any]] = run_grid(nlp, pipe, examples, exit_layers, grid, batch_size or None, repeats)
    for row in rows:
        row["calibrated"] = row["threshold"] == calibrated
    pipe.exit_threshold = calibrated
    report: Dict[str, Any] = {
        "date": utc_now(),
        "command": command,
        "machine": machine,
        "torch_threads": torch.get_num_threads(),
        "model": str(model_dir),
        "test": str(test_path),
        "n_docs": len(examples),
        "n_words": n_words,
        "batch_size": batch_size or nlp.batch_size,
        "exit_layers": exit_layers,
        "calibrated_threshold": calibrated,
        "rows": rows,
    }
    output_json.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_json, report)
    written = [str(output_json)]
    if plot_path is not None:
        plot(report, plot_path)
        written.append(str(plot_path))
    section = render_section(report)
    if benchmarks_md is not None:
        update_benchmarks_md(benchmarks_md, section)
        written.append(f"the benchmark-exit section of {benchmarks_md}")
    msg.divider("benchmark-exit")
    print(section)
    msg.good("Wrote " + ", ".join(written))


if __name__ == "__main__":
    app()
