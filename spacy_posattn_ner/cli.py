"""The ``spacy-posattn-ner`` console script: ``annotate`` (annotate/cli.py) plus the
calibration commands, which run on dev and save a calibrated copy of a pipeline:

    spacy-posattn-ner calibrate-exit MODEL DEV --output metrics/calibrate_exit.json \\
        --save-to training/X/model-calibrated [--thresholds 0.5,0.7,0.9,0.99] [--max-loss 0.5] [--n-threads 2]
    spacy-posattn-ner calibrate-confidence MODEL DEV --output metrics/calibrate_confidence.json [--save-to DIR]

Without ``--save-to``, calibrate-exit only measures: the project's benchmark-exit runs it so
on test. The project's render-benchmarks reads their JSON reports.
"""
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import typer
from wasabi import msg

from .annotate.cli import app
from .calibration import (
    ALWAYS_FIRST, NEVER_EXIT, SPEED_DEFINITION, CalibrationError, calibrate_temperature, choose_exit_threshold,
    f1_loss_points, get_component, parse_thresholds, read_gold, reference_row, run_exit_grid,
)
from .model.exit_policies import policy_name
from .student.cli import register as _register_distill

_register_distill(app)  # spacy-posattn-ner distill
MODEL = typer.Argument(..., exists=True, file_okay=False, help="Saved spaCy pipeline with a posattn_ner")
DEV = typer.Argument(..., exists=True, dir_okay=False, help=".spacy file of gold docs (dev)")
THREADS = typer.Option(0, "--n-threads", min=0, help="torch threads (0 = torch's default)")
LIMIT = typer.Option(0, "--limit", min=0, help="Docs, the first in file order (0 = all)")


def _report(default: str) -> Path:
    return typer.Option(Path(default), "--output", help="The JSON report")


def _save_to(what: str) -> Optional[Path]:
    return typer.Option(None, "--save-to", file_okay=False, help=f"Save the pipeline with {what} here")


def _head(n_threads: int) -> Dict[str, Any]:
    """Date, command and machine of a run, taken before it measures; sets torch's threads first."""
    import spacy
    import torch

    if n_threads:
        torch.set_num_threads(n_threads)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "python": platform.python_version(), "cpu_count": os.cpu_count(),
               "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "spacy": spacy.__version__, "torch": torch.__version__,
               "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}  # fmt: skip
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join(["spacy-posattn-ner", *sys.argv[1:]]), "machine": machine,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def _load(model_dir: Path, need_exits: bool):
    import spacy

    nlp = spacy.load(model_dir)
    try:
        return nlp, get_component(nlp, str(model_dir), need_exits)
    except CalibrationError as err:
        msg.fail(str(err), exits=1)


def _write(path: Path, report: Dict[str, Any]) -> None:
    """Floats exact (srsly rounds to 10 digits: the report would differ from the pipeline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")


@app.command("calibrate-exit")
def calibrate_exit(
    model_dir: Path = MODEL,
    dev_path: Path = DEV,
    output: Path = _report("metrics/calibrate_exit.json"),
    save_to: Optional[Path] = _save_to("the chosen threshold"),
    thresholds: Optional[str] = typer.Option(None, "--thresholds", help="Comma-separated exit thresholds (0, 1 and the pipeline's own are always tried)"),
    max_loss: float = typer.Option(0.5, "--max-loss", min=0.0, help="Largest F1 loss against never-exit, in points"),
    n_threads: int = THREADS,
    limit: int = LIMIT,
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="nlp.pipe batch size"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timed passes per threshold (the best counts)"),
    exit_policy: Optional[str] = typer.Option(None, "--exit-policy", help="A registered exit policy to use instead of the pipeline's (e.g. spacy-posattn-ner.max_token_entropy.v1); saved with --save-to"),
) -> None:
    """Pick the fastest exit threshold whose dev F1 is at most --max-loss points below never-exit."""
    head = _head(n_threads)
    nlp, ner = _load(model_dir, need_exits=True)
    try:
        if exit_policy is not None:
            ner.exit_policy = exit_policy
        grid = parse_thresholds(thresholds, (NEVER_EXIT, ALWAYS_FIRST, ner.exit_threshold))
        refs = read_gold(nlp, dev_path, limit)
    except (CalibrationError, ValueError) as err:
        msg.fail(str(err), exits=1)
    rows = run_exit_grid(nlp, ner, refs, grid, batch_size, repeats, log=msg.text)
    report = {**head, "speed_definition": SPEED_DEFINITION, "model": str(model_dir), "data": str(dev_path),
              "exit_policy": policy_name(ner.exit_policy),
              "n_docs": len(refs), "n_words": rows[0]["n_words"], "batch_size": batch_size, "repeats": repeats,
              "exit_layers": list(ner.exit_layers), "rows": rows}  # fmt: skip
    if save_to is not None:
        chosen = choose_exit_threshold(rows, max_loss)
        ner.exit_threshold = chosen["threshold"]
        nlp.to_disk(save_to)
        msg.good(f"Exit threshold {chosen['threshold']:g}: dev F1 {chosen['ents_f']:.4f} "
                 f"({-f1_loss_points(chosen, rows):+.2f} points vs never-exit); saved to {save_to}")  # fmt: skip
        report.update(max_loss_points=max_loss, reference_f1=reference_row(rows)["ents_f"], saved_to=str(save_to),
                      chosen=chosen)  # fmt: skip
    report["calibrated_threshold"] = ner.exit_threshold
    for row in rows:
        row["calibrated"] = row["threshold"] == ner.exit_threshold
    _write(output, report)
    msg.good(f"Wrote {output} ({len(rows)} thresholds)")


@app.command("calibrate-confidence")
def calibrate_confidence(
    model_dir: Path = MODEL,
    dev_path: Path = DEV,
    n_threads: int = THREADS,
    limit: int = LIMIT,
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Docs per model batch"),
    output: Path = _report("metrics/calibrate_confidence.json"),
    save_to: Optional[Path] = _save_to("the fitted temperature (may be MODEL)"),
) -> None:
    """Fit the temperature of the entity scores (least log-loss of entity correctness on dev)."""
    head = _head(n_threads)
    nlp, ner = _load(model_dir, need_exits=False)
    try:
        found = calibrate_temperature(nlp, ner, read_gold(nlp, dev_path, limit), batch_size)
    except CalibrationError as err:
        msg.fail(f"{dev_path}: {err}", exits=1)
    if found["at_range_edge"]:
        msg.warn(f"The fitted temperature {found['temperature']:g} is at an edge of the range searched")
    if save_to is not None:
        nlp.to_disk(save_to)  # every weight is in memory: saving over MODEL itself is safe
    report = {**head, "model": str(model_dir), "data": str(dev_path), **found,
              "saved_to": None if save_to is None else str(save_to)}  # fmt: skip
    _write(output, report)
    msg.good(f"Temperature {found['temperature']:.3f}: dev ECE {found['before']['ece']:.4f} -> "
             f"{found['after']['ece']:.4f}" + (f"; saved to {save_to}" if save_to else ""))  # fmt: skip


def main() -> None:
    """The console script."""
    app(prog_name="spacy-posattn-ner")


if __name__ == "__main__":
    main()
