"""metrics/*.json -> BENCHMARKS.md, the README's headline and the plots.

One mechanism: the Jinja templates in scripts/bench/templates own every word; this
module loads the JSON and hands the templates numbers (row lookups, ratios, fits) and
number formats, never prose. A pure function of the JSON: the same metrics/ always
renders the same text, so ``--check`` (exit 1 if a file would change) tells whether the
committed text is what the measurements say.

    python -m scripts.render_benchmarks metrics --benchmarks BENCHMARKS.md --readme README.md
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jinja2
import typer
from wasabi import msg

from scripts.bench import markdown

TEMPLATES = Path(__file__).parent / "bench" / "templates"
app = typer.Typer(add_completion=False)


def load_metrics(metrics_dir: Path) -> Dict[str, Any]:
    """Every JSON under ``metrics_dir``, keyed by its path without suffix
    ("benchmark_speed", "transcribed/workflow_all")."""
    return {
        path.relative_to(metrics_dir).with_suffix("").as_posix(): json.loads(path.read_text(encoding="utf8"))
        for path in sorted(metrics_dir.rglob("*.json"))
    }


# -- numbers the templates ask for ------------------------------------------------
def find(rows: Sequence[Mapping[str, Any]], **attrs: Any) -> Optional[Mapping[str, Any]]:
    """The first row whose fields equal ``attrs``; None if there is none (a system left out)."""
    return next((r for r in rows if all(r.get(k) == v for k, v in attrs.items())), None)


def never_exit(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The exit curve's reference row: the highest threshold (1 = never exit)."""
    return max(rows, key=lambda r: r["threshold"])


def train_reports(metrics: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    """The benchmark-train reports present (ours, cnn, trf); refused unless all trained on one subset."""
    results = [metrics[f"benchmark_train_{s}"] for s in ("ours", "cnn", "trf") if f"benchmark_train_{s}" in metrics]
    scopes = {(r["settings"]["limit"], r["settings"]["eval_limit"]) for r in results}
    if len(scopes) > 1:
        raise ValueError(f"the training reports use different subsets {sorted(scopes)}: not comparable")
    return results


def fixed_cost(inputs: Sequence[Mapping[str, Any]], engine: str) -> Optional[Tuple[float, float]]:
    """(fixed seconds, words/s after them) of ``engine`` from its seconds on the smallest and
    largest input: seconds = fixed + words / rate. None if missing or if the two do not
    separate them (the larger input no slower, or a negative fixed cost: noise)."""
    runs = [find(item["runs"], engine=engine) for item in (inputs[0], inputs[-1])]
    if None in runs:
        return None
    small, big = runs
    words, seconds = big["words"] - small["words"], big["seconds"] - small["seconds"]
    if words <= 0 or seconds <= 0:
        return None
    rate = words / seconds
    fixed = small["seconds"] - small["words"] / rate
    return (fixed, rate) if fixed >= 0 else None


# -- documents ----------------------------------------------------------------------
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    md = markdown
    env.filters.update(int=md.fmt_int, f1=md.fmt_f1, x=md.fmt_x, pct=md.fmt_pct, points=md.fmt_points,
                       threshold=md.fmt_threshold, layer=md.fmt_layer, shares=md.fmt_shares,
                       duration=md.fmt_duration, minutes=md.fmt_minutes)  # fmt: skip
    env.globals.update(ratio=md.ratio, find=find, never_exit=never_exit, fixed_cost=fixed_cost)
    return env


def render_section(name: str, *args: Any) -> str:
    """One macro of sections.md.jinja (a table and its notes) on the given reports."""
    return str(getattr(environment().get_template("sections.md.jinja").module, name)(*args)).strip("\n")


def render_benchmarks(metrics: Mapping[str, Any]) -> str:
    """BENCHMARKS.md, whole."""
    return environment().get_template("BENCHMARKS.md.jinja").render(m=metrics, train=train_reports(metrics))


def render_headline(metrics: Mapping[str, Any]) -> str:
    """The README's headline figures (between its headline markers)."""
    return environment().get_template("headline.md.jinja").render(m=metrics)


def replace_marked(text: str, name: str, body: str) -> str:
    """``text`` with what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced."""
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start.strip()} before one {end}")
    head, rest = text.split(start)
    return head + start + body + end + rest.split(end, 1)[1]


# -- plots ----------------------------------------------------------------------------
def plot_all(metrics: Mapping[str, Any], metrics_dir: Path) -> List[Path]:
    """The exit curve and, once benchmark-confidence ran, the reliability diagram and the
    precision/recall curve, drawn under ``metrics_dir``; the paths drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(name: str, series: Sequence[Tuple[str, Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
             labels: Sequence[str] = ()) -> Path:  # fmt: skip
        fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
        for label, xs, ys in series:
            ax.plot(xs, ys, "o-", label=label, markersize=4)
        for text, x, y in zip(labels, series[0][1], series[0][2]):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = metrics_dir / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata={"Software": None})
        plt.close(fig)
        return path

    rows = sorted(metrics["benchmark_exit"]["rows"], key=lambda r: r["threshold"])
    drawn = [draw("benchmark_exit", [("by exit threshold", [r["ents_f"] for r in rows],
                                      [r["words_per_second"] for r in rows])],
                  "test F1 (ents_f)", "words/s (CPU)", [markdown.fmt_threshold(r["threshold"]) for r in rows])]  # fmt: skip
    report = metrics.get("benchmark_confidence")
    if report:
        bins = {key: [b for b in report[key]["bins"] if b["n"]] for key in ("before", "after")}
        drawn.append(draw("benchmark_confidence_reliability", [("perfectly calibrated", [0, 1], [0, 1])] + [
            (f"{name}: ECE {report[key]['ece']:.4f}", [b["confidence"] for b in bins[key]], [b["accuracy"] for b in bins[key]])
            for key, name in (("before", "T = 1"), ("after", f"T = {report['temperature']:.3f}"))],
            "mean score in the bin", "share of right entities"))  # fmt: skip
        curve = report["pr_curve"]
        drawn.append(draw("benchmark_confidence_pr", [("calibrated scores", [p["recall"] for p in curve],
                                                       [p["precision"] for p in curve])], "recall", "precision"))  # fmt: skip
    return drawn


@app.command()
def main(
    metrics_dir: Path = typer.Argument(Path("metrics"), exists=True, file_okay=False, help="The JSON reports"),
    benchmarks: Path = typer.Option(Path("BENCHMARKS.md"), "--benchmarks", help="Rendered whole"),
    readme: Path = typer.Option(Path("README.md"), "--readme", help="Its <!-- headline --> block is rendered"),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Also draw the plots (METRICS_DIR/*.png)"),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if a text file is out of date"),
) -> None:
    """metrics/*.json -> BENCHMARKS.md, the README headline and the plots."""
    metrics = load_metrics(metrics_dir)
    texts: Dict[Path, str] = {
        benchmarks: render_benchmarks(metrics),
        readme: replace_marked(readme.read_text(encoding="utf8"), "headline", render_headline(metrics)),
    }
    stale = [path for path, text in texts.items() if not path.exists() or path.read_text(encoding="utf8") != text]
    if check:
        if stale:
            msg.fail(f"Out of date with {metrics_dir}: {', '.join(map(str, stale))}", exits=1)
        msg.good(f"{', '.join(map(str, texts))} match {metrics_dir}")
        return
    for path in stale:
        path.write_text(texts[path], encoding="utf8")
    drawn = plot_all(metrics, metrics_dir) if plot else []
    msg.good(f"Rendered {', '.join(map(str, [*texts, *drawn]))}")


if __name__ == "__main__":
    app()
