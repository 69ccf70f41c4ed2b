"""Early exit, speed against F1: measure() a posattn_ner pipeline at exit thresholds
from never-exit (1.0) to always-first-exit (0.0) and at its own (configured) threshold.

Two project commands run it: benchmark-exit on the test split with the calibrated
pipeline, and calibrate-exit on dev with ``--save-to``, which picks the fastest
threshold whose F1 is at most ``--max-loss`` points below never-exit, sets it on the
pipeline and saves it there (``nlp.to_disk`` keeps the threshold, so ``spacy.load``
uses it; the input pipeline stays as trained). Writes JSON only; render-benchmarks
turns the reports into BENCHMARKS.md and the plot.

    python -m scripts.exit_thresholds training/posattn_ner/model-best corpus/dev.spacy \\
        --max-loss 0.5 --save-to training/posattn_ner/model-calibrated --output metrics/calibrate_exit.json
    python -m scripts.exit_thresholds training/posattn_ner/model-calibrated corpus/test.spacy \\
        --n-threads 2 --output metrics/benchmark_exit.json
"""
from pathlib import Path
from typing import Any, Dict, Optional

import srsly
import typer
from wasabi import msg

from scripts.bench.cli import BatchSize, DocsFile, Limit, Output, Pipeline, Repeats, Threads, Thresholds, report_head
from scripts.bench.data import read_gold
from scripts.bench.exits import (
    ALWAYS_FIRST,
    NEVER_EXIT,
    NoExitLayersError,
    choose_threshold,
    f1_loss_points,
    load_exit_pipeline,
    parse_thresholds,
    reference_row,
    run_grid,
)
from scripts.bench.markdown import fmt_threshold
from scripts.bench.measure import SPEED_DEFINITION

app = typer.Typer(add_completion=False)


def calibrate(nlp: Any, pipe: Any, rows: list, max_loss: float, save_to: Path) -> Dict[str, Any]:
    """Set the chosen threshold on the pipe and save the pipeline; what the report says of it."""
    chosen = choose_threshold(rows, max_loss)
    pipe.exit_threshold = chosen["threshold"]
    nlp.to_disk(save_to)
    msg.good(f"Exit threshold {fmt_threshold(chosen['threshold'])}: dev F1 {chosen['ents_f']:.4f} "
             f"({-f1_loss_points(chosen, rows):+.2f} points vs never-exit); saved to {save_to}")  # fmt: skip
    return {"max_loss_points": max_loss, "reference_f1": reference_row(rows)["ents_f"], "saved_to": str(save_to),
            "chosen": chosen}  # fmt: skip


@app.command()
def main(
    ctx: typer.Context,
    model_dir: Pipeline,
    data_path: DocsFile,
    thresholds: Thresholds = None,
    n_threads: Threads = 0,
    limit: Limit = 0,
    batch_size: BatchSize = 256,
    repeats: Repeats = 1,
    max_loss: float = typer.Option(0.5, "--max-loss", min=0.0, help="With --save-to: largest F1 loss, in points"),
    save_to: Optional[Path] = typer.Option(None, "--save-to", file_okay=False,
                                           help="Calibrate: save the pipeline with the chosen threshold here"),  # fmt: skip
    output: Output = Path("metrics/benchmark_exit.json"),
) -> None:
    """Test F1 and CPU words/s at each exit threshold (0, 1 and the pipeline's own always run)."""
    head = report_head(ctx, "scripts.exit_thresholds", n_threads)
    try:
        nlp, pipe = load_exit_pipeline(model_dir)
    except NoExitLayersError as err:
        msg.fail(str(err), exits=1)
    own = pipe.exit_threshold
    refs = read_gold(nlp, data_path, limit)
    rows = run_grid(nlp, pipe, refs, parse_thresholds(thresholds, (NEVER_EXIT, ALWAYS_FIRST, own)), batch_size, repeats)
    report = {**head, "speed_definition": SPEED_DEFINITION, "model": str(model_dir), "data": str(data_path),
              "n_docs": len(refs), "n_words": rows[0]["n_words"], "batch_size": batch_size, "repeats": repeats,
              "exit_layers": list(pipe.exit_layers), "rows": rows}  # fmt: skip
    if save_to is not None:
        report.update(calibrate(nlp, pipe, rows, max_loss, save_to))
    calibrated = pipe.exit_threshold  # the chosen one, or the one the pipeline was saved with
    report["calibrated_threshold"] = calibrated
    for row in rows:
        row["calibrated"] = row["threshold"] == calibrated
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(f"Wrote {output} ({len(rows)} thresholds); `spacy project run render-benchmarks` renders it")


if __name__ == "__main__":
    app()
