"""Early exit, speed against F1: measure() on the test split at thresholds from
never-exit (1.0) to always-first-exit (0.0), plus the pipeline's own (calibrated) one.
Writes JSON only; render-benchmarks turns it into BENCHMARKS.md's section and the plot.

    python -m scripts.benchmark_exit training/posattn_ner_exit/model-calibrated corpus/test.spacy \\
        --n-threads 2 --output metrics/benchmark_exit.json
"""
from pathlib import Path
from typing import Optional

import srsly
import typer
from wasabi import msg

from scripts.bench.data import read_gold
from scripts.bench.env import machine_info, this_command, utc_now
from scripts.bench.exits import ALWAYS_FIRST, NEVER_EXIT, NoExitLayersError, load_exit_pipeline, parse_thresholds, run_grid
from scripts.bench.measure import SPEED_DEFINITION

app = typer.Typer(add_completion=False)


@app.command()
def main(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Saved pipeline (PosAttnTagger.v2 or .v3)"),
    test_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Test .spacy file"),
    thresholds: Optional[str] = typer.Option(None, "--thresholds", help="Comma-separated (0, 1 and the pipeline's added)"),
    n_threads: int = typer.Option(2, "--n-threads", min=1, help="torch threads"),
    limit: int = typer.Option(0, "--limit", min=0, help="Test docs, the first in file order (0 = all)"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="nlp.pipe batch size"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timed passes per threshold (best kept)"),
    output: Path = typer.Option(Path("metrics/benchmark_exit.json"), "--output", help="JSON report"),
) -> None:
    """Test F1 and CPU words/s from never-exit to always-exit, the calibrated threshold marked."""
    import torch

    torch.set_num_threads(n_threads)
    command = this_command("scripts.benchmark_exit")
    try:
        nlp, pipe = load_exit_pipeline(model_dir)
    except NoExitLayersError as err:
        msg.fail(str(err), exits=1)
    calibrated = pipe.exit_threshold
    grid = parse_thresholds(thresholds, include=(NEVER_EXIT, ALWAYS_FIRST, calibrated))
    refs = read_gold(nlp, test_path, limit)
    rows = run_grid(nlp, pipe, refs, grid, batch_size, repeats)
    for row in rows:
        row["calibrated"] = row["threshold"] == calibrated
    report = {
        "date": utc_now(),
        "command": command,
        "machine": machine_info(),
        "speed_definition": SPEED_DEFINITION,
        "torch_threads": torch.get_num_threads(),
        "model": str(model_dir),
        "test": str(test_path),
        "n_docs": len(refs),
        "n_words": rows[0]["n_words"],
        "batch_size": batch_size,
        "repeats": repeats,
        "exit_layers": list(pipe.exit_layers),
        "calibrated_threshold": calibrated,
        "rows": rows,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(f"Wrote {output} ({len(rows)} thresholds); `spacy project run render-benchmarks` renders it")


if __name__ == "__main__":
    app()
