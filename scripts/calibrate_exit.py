#!/usr/bin/env python
"""Calibrate the early-exit threshold of a posattn_ner pipeline on dev data.

The pipeline must use ``spacy-posattn-ner.PosAttnTagger.v2`` or ``.v3`` (exit heads). For
threshold 1.0 (never exit: the reference F1) and every threshold of a grid, the dev
set is run once through ``Language.evaluate`` on the real layer-by-layer path
(the one inference path every pipeline uses), which gives entity F1 and
words/s (wall time of tokenizing and ``nlp.pipe`` over the dev docs, after one
warm-up batch); the exit layer of every doc is recorded on the way. The fastest
threshold whose F1 is at most ``--max-loss`` F1 points (0.5 = 0.005 absolute) below
the reference is written into MODEL_DIR/config.cfg (the pipeline is saved with it), so
``spacy.load(MODEL_DIR)`` uses it.

Usage:
    python scripts/calibrate_exit.py training/model-best corpus/dev.spacy --max-loss 0.5 \\
        [--thresholds 0.5,0.9,0.99] [--limit N] [--output metrics/calibrate_exit.json]
"""
import datetime
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import srsly
import typer
from wasabi import msg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from _report import machine_info  # noqa: E402

app = typer.Typer(add_completion=False)

COMPONENT = "posattn_ner"
DEFAULT_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)
NEVER_EXIT = 1.0
EPSILON = 1e-9  # float slack when comparing F1 losses with --max-loss


class NoExitLayersError(ValueError):
    """The pipeline has no early-exit heads to calibrate or benchmark."""


# -- shared with benchmark_exit.py ------------------------------------------------
def fmt_threshold(value: float) -> str:
    return f"{value:g}"


def parse_thresholds(spec: Optional[str], option: str = "--thresholds", include: Sequence[float] = ()) -> List[float]:
    """'0.5,0.9' -> sorted distinct floats >= 0 (plus ``include``); None/'' -> the default grid."""
    values = set(include)
    if spec is None or not spec.strip():
        values.update(DEFAULT_THRESHOLDS)
    else:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                value = float(item)
            except ValueError:
                raise typer.BadParameter(f"{item!r} is not a number", param_hint=option) from None
            if not value >= 0.0 or value != value:
                raise typer.BadParameter(f"{item!r}: thresholds must be >= 0", param_hint=option)
            values.add(value)
    return sorted(values)


def load_exit_pipeline(model_dir: Path, n_threads: int = 0):
    """spacy.load the pipeline; return (nlp, posattn_ner pipe, exit layers).

    Raises NoExitLayersError naming ``model_dir`` if it has no posattn_ner with exits.
    """
    import spacy
    import torch

    import spacy_posattn_ner  # noqa: F401  (registers the factory and architectures)

    if n_threads > 0:
        torch.set_num_threads(n_threads)
    nlp = spacy.load(model_dir)
    if COMPONENT not in nlp.pipe_names:
        raise NoExitLayersError(
            f"{model_dir}: no '{COMPONENT}' component (pipeline: {', '.join(nlp.pipe_names) or 'empty'}); "
            "early exit needs a posattn_ner trained with spacy-posattn-ner.PosAttnTagger.v2 or .v3"
        )
    pipe = nlp.get_pipe(COMPONENT)
    exit_layers = pipe.exit_layers
    if not exit_layers:
        arch = nlp.config["components"][COMPONENT]["model"].get("@architectures", "?")
        raise NoExitLayersError(
            f"{model_dir}: the '{COMPONENT}' component has no exit layers (architecture {arch}); "
            "early exit needs a model trained with spacy-posattn-ner.PosAttnTagger.v2 or .v3"
        )
    return nlp, pipe, list(exit_layers)


def read_examples(nlp, path: Path, limit: int = 0):
    """Examples from a .spacy file: the gold doc as reference, a fresh doc of the
    same words as the prediction (the first ``limit`` docs; 0 = all)."""
    from spacy.tokens import Doc, DocBin
    from spacy.training import Example

    examples = []
    for ref in DocBin().from_disk(path).get_docs(nlp.vocab):
        if limit and len(examples) >= limit:
            break
        pred = Doc(nlp.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref])
        examples.append(Example(pred, ref))
    if not examples:
        raise ValueError(f"{path}: no documents")
    return examples


class ExitScorer:
    """spaCy's Scorer, also keeping the exit layer of every scored doc (Language.evaluate
    scores copies of the examples and does not return them)."""

    def __init__(self, nlp):
        from spacy.scorer import Scorer

        self.scorer = Scorer(nlp)
        self.exit_layers: List[Optional[int]] = []

    def score(self, examples, *, per_component: bool = False) -> Dict[str, Any]:
        examples = list(examples)
        self.exit_layers = [eg.predicted._.exit_layer for eg in examples]
        return self.scorer.score(examples, per_component=per_component)


def warm_up(nlp, pipe, examples, batch_size: Optional[int]) -> None:
    """One batch through every layer, so the first timed threshold pays no start-up."""
    saved = pipe.exit_threshold
    pipe.exit_threshold = NEVER_EXIT
    size = batch_size or nlp.batch_size or 64
    try:
        for _ in nlp.pipe((eg.predicted.copy() for eg in examples[:size]), batch_size=size):
            pass
    finally:
        pipe.exit_threshold = saved


def evaluate_threshold(
    nlp, pipe, examples, exit_layers: Sequence[int], threshold: float, batch_size: Optional[int] = None, repeats: int = 1
) -> Dict[str, Any]:
    """Scores, speed and exit layers at one threshold (``repeats`` timed passes, best speed kept)."""
    pipe.exit_threshold = threshold
    speeds = []
    scores: Dict[str, Any] = {}
    layers: List[Optional[int]] = []
    for _ in range(max(1, repeats)):
        scorer = ExitScorer(nlp)
        scores = nlp.evaluate(examples, batch_size=batch_size, scorer=scorer)
        layers = scorer.exit_layers
        speeds.append(float(scores["speed"]))
    n_words = sum(len(eg.predicted) for eg in examples)
    ran = [layer for layer in layers if layer is not None]
    share = {str(k): (sum(1 for layer in ran if layer == k) / len(ran) if ran else 0.0) for k in exit_layers}
    words_per_second = max(speeds)
    f1 = scores.get("ents_f")
    return {
        "threshold": float(threshold),
        "ents_f": float(f1) if f1 is not None else 0.0,
        "ents_p": float(scores.get("ents_p") or 0.0),
        "ents_r": float(scores.get("ents_r") or 0.0),
        "words_per_second": words_per_second,
        "seconds": n_words / words_per_second if words_per_second > 0 else None,
        "n_docs": len(examples),
        "n_words": n_words,
        "mean_exit_layer": (sum(ran) / len(ran)) if ran else None,
        "exit_layer_share": share,
    }


def run_grid(
    nlp, pipe, examples, exit_layers: Sequence[int], thresholds: Sequence[float], batch_size=None, repeats: int = 1,
    label: str = "",
) -> List[Dict[str, Any]]:
    """evaluate_threshold for every threshold; adds each row's F1 difference vs never-exit."""
    warm_up(nlp, pipe, examples, batch_size)
    rows = []
    for threshold in thresholds:
        row = evaluate_threshold(nlp, pipe, examples, exit_layers, threshold, batch_size, repeats)
        msg.text(
            f"{label}threshold {fmt_threshold(threshold)}: F1 {row['ents_f']:.4f}, "
            f"{row['words_per_second']:,.0f} words/s, mean exit layer {fmt_layer(row['mean_exit_layer'])}"
        )
        rows.append(row)
    reference = reference_row(rows)
    for row in rows:
        row["f1_loss_points"] = (reference["ents_f"] - row["ents_f"]) * 100.0
        row["speedup_vs_never_exit"] = (
            row["words_per_second"] / reference["words_per_second"] if reference["words_per_second"] > 0 else None
        )
    return rows


def reference_row(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    for row in rows:
        if row["threshold"] == NEVER_EXIT:
            return row
    raise ValueError("no row for threshold 1.0 (never exit)")


def choose_threshold(rows: Sequence[Dict[str, Any]], max_loss: float) -> Dict[str, Any]:
    """The fastest row whose F1 is at most ``max_loss`` points below never-exit
    (ties: the lower mean exit layer, then the higher threshold)."""
    reference = reference_row(rows)
    allowed = [r for r in rows if (reference["ents_f"] - r["ents_f"]) * 100.0 <= max_loss + EPSILON]
    return max(
        allowed,
        key=lambda r: (r["words_per_second"], -(r["mean_exit_layer"] or 0.0), r["threshold"]),
    )


def fmt_layer(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def fmt_shares(share: Dict[str, float]) -> str:
    return " ".join(f"L{k}:{v:.0%}" for k, v in share.items())


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line(script: str, args: Sequence[Any], options: Sequence[Tuple[str, Any]]) -> str:
    """The command that reproduces this run, every option spelled out."""
    parts = ["python", script] + [str(a) for a in args]
    for name, value in options:
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(name if value else "--no-" + name[2:])
        else:
            parts += [name, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


# -- CLI --------------------------------------------------------------------------
@app.command()
def main(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Saved pipeline (PosAttnTagger.v2 or .v3)"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev .spacy file"),
    max_loss: float = typer.Option(0.5, "--max-loss", min=0.0, help="Largest F1 loss vs never-exit, in F1 points"),
    thresholds: Optional[str] = typer.Option(
        None, "--thresholds", help="Comma-separated thresholds (1.0 is always added); default: a grid 0..1"
    ),
    limit: int = typer.Option(0, "--limit", min=0, help="Dev docs, the first in file order (0 = all)"),
    batch_size: int = typer.Option(0, "--batch-size", min=0, help="nlp.pipe batch size (0 = the pipeline's)"),
    n_threads: int = typer.Option(0, "--n-threads", min=0, help="torch threads (0 = torch's default)"),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timed passes per threshold (best speed kept)"),
    output: Path = typer.Option(Path("metrics/calibrate_exit.json"), "--output", help="JSON report"),
    save: bool = typer.Option(True, "--save/--no-save", help="Write the chosen threshold into the pipeline's config.cfg"),
    save_to: Optional[Path] = typer.Option(
        None, "--save-to", file_okay=False,
        help="Copy MODEL_DIR here and save the threshold in the copy (MODEL_DIR stays as trained)",
    ),
) -> None:
    """Pick the fastest exit threshold within --max-loss F1 points of never-exit; save it."""
    grid = parse_thresholds(thresholds, include=(NEVER_EXIT,))
    command = command_line(
        "scripts/calibrate_exit.py",
        [model_dir, dev_path],
        [
            ("--max-loss", max_loss),
            ("--thresholds", ",".join(fmt_threshold(t) for t in grid)),
            ("--limit", limit),
            ("--batch-size", batch_size),
            ("--n-threads", n_threads),
            ("--repeats", repeats),
            ("--output", output),
            ("--save", save),
            ("--save-to", save_to),
        ],
    )
    try:
        nlp, pipe, exit_layers = load_exit_pipeline(model_dir, n_threads)
    except NoExitLayersError as err:
        msg.fail(str(err), exits=1)
    previous = pipe.exit_threshold
    examples = read_examples(nlp, dev_path, limit)
    n_words = sum(len(eg.reference) for eg in examples)
    msg.info(
        f"{model_dir}: exit layers {exit_layers}; dev {len(examples):,} docs, {n_words:,} words; "
        f"{len(grid)} thresholds; torch threads {machine_info()['torch_threads']}"
    )
    rows = run_grid(nlp, pipe, examples, exit_layers, grid, batch_size or None, repeats)
    chosen = choose_threshold(rows, max_loss)
    reference = reference_row(rows)

    header = ["threshold", "F1", "loss (pts)", "words/s", "x never-exit", "mean exit", "docs per exit layer", ""]
    table = [
        [
            fmt_threshold(r["threshold"]),
            f"{r['ents_f']:.4f}",
            f"{r['f1_loss_points']:+.2f}",
            f"{r['words_per_second']:,.0f}",
            "n/a" if r["speedup_vs_never_exit"] is None else f"{r['speedup_vs_never_exit']:.2f}",
            fmt_layer(r["mean_exit_layer"]),
            fmt_shares(r["exit_layer_share"]),
            "<- chosen" if r is chosen else ("" if r["f1_loss_points"] <= max_loss + EPSILON else "too lossy"),
        ]
        for r in rows
    ]
    msg.table(table, header=header, divider=True, aligns=("r", "r", "r", "r", "r", "r", "l", "l"))

    target = model_dir
    if save and save_to is not None:
        import shutil

        if save_to.exists():
            shutil.rmtree(save_to)
        shutil.copytree(model_dir, save_to)
        target = save_to
    if save:  # the threshold is saved with the pipeline (and its config.cfg)
        pipe.exit_threshold = chosen["threshold"]
        nlp.to_disk(target)
    report = {
        "date": utc_now(),
        "command": command,
        "machine": machine_info(),
        "model": str(model_dir),
        "dev": str(dev_path),
        "n_docs": len(examples),
        "n_words": n_words,
        "exit_layers": exit_layers,
        "max_loss_points": max_loss,
        "reference_f1": reference["ents_f"],
        "previous_threshold": previous,
        "saved": save,
        "saved_to": str(target) if save else None,
        "chosen": chosen,
        "rows": rows,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(
        f"Chosen exit_threshold {fmt_threshold(chosen['threshold'])}: dev F1 {chosen['ents_f']:.4f} "
        f"({-chosen['f1_loss_points']:+.2f} points vs never-exit's {reference['ents_f']:.4f}), "
        f"{chosen['words_per_second']:,.0f} words/s "
        + (f"({chosen['speedup_vs_never_exit']:.2f}x never-exit)" if chosen["speedup_vs_never_exit"] else "")
        + (f"; written to {target / 'config.cfg'}" if save else "; not saved (--no-save)")
        + f"; report {output}"
    )


if __name__ == "__main__":
    app()
