"""Render BENCHMARKS.md, the README's headline figures and the plots from metrics/*.json.

A pure function of the JSON: the same metrics/ always gives the same files, so
``--check`` (exit 1 if a file would change) tells whether the committed text is what
the measurements say.

    python -m scripts.render_benchmarks metrics --benchmarks BENCHMARKS.md --readme README.md
"""
from pathlib import Path
from typing import Dict

import typer
from wasabi import msg

from scripts.bench.render import load_metrics, plot_all, render_benchmarks, render_headline, replace_marked

app = typer.Typer(add_completion=False)


@app.command()
def main(
    metrics_dir: Path = typer.Argument(Path("metrics"), exists=True, file_okay=False, help="The JSON reports"),
    benchmarks: Path = typer.Option(Path("BENCHMARKS.md"), "--benchmarks", help="Rendered whole"),
    readme: Path = typer.Option(Path("README.md"), "--readme", help="Its <!-- headline --> block is rendered"),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Also draw the plots (METRICS_DIR/*.png)"),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if a text file is out of date"),
) -> None:
    """metrics/*.json -> BENCHMARKS.md, the README headline and the plots (early exit; entity scores once measured)."""
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
