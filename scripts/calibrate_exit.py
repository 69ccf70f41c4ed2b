"""Calibrate the early-exit threshold of a posattn_ner pipeline on dev data.

measure() runs the dev set at never-exit (1.0, the reference F1) and at every threshold
of a grid; the fastest threshold whose F1 is at most ``--max-loss`` points below the
reference is set on the pipeline, which is saved to ``--save-to`` (``nlp.to_disk``
keeps the threshold, so ``spacy.load`` uses it; the input pipeline stays as trained).
Writes the measurements as JSON; BENCHMARKS.md is rendered from it by render-benchmarks.

    python -m scripts.calibrate_exit training/posattn_ner_exit/model-best corpus/dev.spacy \\
        --max-loss 0.5 --save-to training/posattn_ner_exit/model-calibrated --output metrics/calibrate_exit.json
"""
from pathlib import Path
from typing import Optional

import srsly
import typer
from wasabi import msg

from scripts.bench.data import read_gold
from scripts.bench.env import machine_info, this_command, utc_now
from scripts.bench.exits import (
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


@app.command()
def main(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Saved pipeline (PosAttnTagger.v2 or .v3)"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev .spacy file"),
    max_loss: float = typer.Option(0.5, "--max-loss", min=0.0, help="Largest F1 loss vs never-exit, in F1 points"),
    thresholds: Optional[str] = typer.Option(None, "--thresholds", help="Comma-separated (1 is always added)"),
    limit: int = typer.Option(0, "--limit", min=0, help="Dev docs, the first in file order (0 = all)"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="nlp.pipe batch size"),
    n_threads: int = typer.Option(0, "--n-threads", min=0, help="torch threads (0 = torch's default)"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timed passes per threshold (best kept)"),
    output: Path = typer.Option(Path("metrics/calibrate_exit.json"), "--output", help="JSON report"),
    save_to: Optional[Path] = typer.Option(None, "--save-to", file_okay=False, help="Save the calibrated pipeline here"),
) -> None:
    """Pick the fastest exit threshold within --max-loss F1 points of never-exit."""
    import torch

    if n_threads:
        torch.set_num_threads(n_threads)
    grid = parse_thresholds(thresholds, include=(NEVER_EXIT,))
    command = this_command("scripts.calibrate_exit")
    try:
        nlp, pipe = load_exit_pipeline(model_dir)
    except NoExitLayersError as err:
        msg.fail(str(err), exits=1)
    refs = read_gold(nlp, dev_path, limit)
    rows = run_grid(nlp, pipe, refs, grid, batch_size, repeats)
    chosen = choose_threshold(rows, max_loss)
    if save_to is not None:
        pipe.exit_threshold = chosen["threshold"]
        nlp.to_disk(save_to)
    report = {
        "date": utc_now(),
        "command": command,
        "machine": machine_info(),
        "speed_definition": SPEED_DEFINITION,
        "model": str(model_dir),
        "dev": str(dev_path),
        "n_docs": len(refs),
        "n_words": rows[0]["n_words"],
        "batch_size": batch_size,
        "exit_layers": list(pipe.exit_layers),
        "max_loss_points": max_loss,
        "reference_f1": reference_row(rows)["ents_f"],
        "saved_to": str(save_to) if save_to is not None else None,
        "chosen": chosen,
        "rows": rows,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(
        f"Exit threshold {fmt_threshold(chosen['threshold'])}: dev F1 {chosen['ents_f']:.4f} "
        f"({-f1_loss_points(chosen, rows):+.2f} points vs never-exit), {chosen['words_per_second']:,.0f} words/s"
        + (f"; saved to {save_to}" if save_to is not None else "; not saved (no --save-to)")
        + f"; report {output}"
    )


if __name__ == "__main__":
    app()
