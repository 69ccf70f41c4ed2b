"""The exit-threshold grid shared by calibrate-exit (dev) and benchmark-exit (test)."""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import typer
from spacy.language import Language
from spacy.tokens import Doc
from wasabi import msg

from .data import read_gold
from .markdown import fmt_layer, fmt_threshold
from .measure import SPEED_DEFINITION, measure

COMPONENT = "posattn_ner"
NEVER_EXIT = 1.0
ALWAYS_FIRST = 0.0
DEFAULT_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)
EPSILON = 1e-9  # float slack when comparing F1 losses with a maximum


class NoExitLayersError(ValueError):
    """The pipeline has no early-exit heads to calibrate or benchmark."""


def parse_thresholds(spec: Optional[str], include: Sequence[float] = ()) -> List[float]:
    """'0.5,0.9' -> sorted distinct floats >= 0, plus ``include``; None or '' -> the default grid."""
    values = set(include)
    if spec is None or not spec.strip():
        values.update(DEFAULT_THRESHOLDS)
        return sorted(values)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise typer.BadParameter(f"{item!r} is not a number", param_hint="--thresholds") from None
        if not value >= 0.0:
            raise typer.BadParameter(f"{item!r}: thresholds must be >= 0", param_hint="--thresholds")
        values.add(value)
    return sorted(values)


def load_exit_pipeline(model_dir: Path) -> Tuple[Language, Any]:
    """spacy.load a pipeline whose posattn_ner has exit heads; (nlp, that pipe).

    Raises NoExitLayersError naming ``model_dir`` otherwise.
    """
    import spacy

    import spacy_posattn_ner  # noqa: F401  (registers the factory and doc._.exit_layer)

    nlp = spacy.load(model_dir)
    hint = "early exit needs a posattn_ner trained with spacy-posattn-ner.PosAttnTagger.v2 or .v3"
    if COMPONENT not in nlp.pipe_names:
        raise NoExitLayersError(f"{model_dir}: no '{COMPONENT}' component (pipeline: {nlp.pipe_names}); {hint}")
    pipe = nlp.get_pipe(COMPONENT)
    if not pipe.exit_layers:
        arch = nlp.config["components"][COMPONENT]["model"].get("@architectures", "?")
        raise NoExitLayersError(f"{model_dir}: the '{COMPONENT}' component has no exit layers ({arch}); {hint}")
    return nlp, pipe


def run_grid(
    nlp: Language, pipe: Any, refs: Sequence[Doc], thresholds: Sequence[float], batch_size: int, repeats: int
) -> List[Dict[str, Any]]:
    """measure() at every threshold; the pipe's own threshold is restored afterwards."""
    saved = pipe.exit_threshold
    rows = []
    try:
        for threshold in thresholds:
            pipe.exit_threshold = threshold
            row = {"threshold": float(threshold)}
            row.update(measure(nlp, refs, batch_size=batch_size, repeats=repeats, layer_keys=pipe.exit_layers))
            msg.text(
                f"threshold {fmt_threshold(threshold)}: F1 {row['ents_f']:.4f}, "
                f"{row['words_per_second']:,.0f} words/s, mean exit layer {fmt_layer(row['mean_exit_layer'])}"
            )
            rows.append(row)
    finally:
        pipe.exit_threshold = saved
    return rows


def grid_command(model_dir: Path, data: Tuple[str, Path], spec: Optional[str], *, extremes_and_own: bool,
                 limit: int, batch_size: int, repeats: int) -> Tuple[Language, Any, Dict[str, Any]]:  # fmt: skip
    """What calibrate-exit and benchmark-exit share: load the pipeline (exit 1 with the
    reason if it has no exits), run the grid (never-exit always; with
    ``extremes_and_own`` also 0 and the pipeline's own threshold) on the docs of
    ``data`` = (report key, path); returns nlp, the pipe and the report's body."""
    try:
        nlp, pipe = load_exit_pipeline(model_dir)
    except NoExitLayersError as err:
        msg.fail(str(err), exits=1)
    include = (NEVER_EXIT, ALWAYS_FIRST, pipe.exit_threshold) if extremes_and_own else (NEVER_EXIT,)
    refs = read_gold(nlp, data[1], limit)
    rows = run_grid(nlp, pipe, refs, parse_thresholds(spec, include), batch_size, repeats)
    body = {"speed_definition": SPEED_DEFINITION, "model": str(model_dir), data[0]: str(data[1]), "n_docs": len(refs),
            "n_words": rows[0]["n_words"], "batch_size": batch_size, "repeats": repeats,
            "exit_layers": list(pipe.exit_layers), "rows": rows}  # fmt: skip
    return nlp, pipe, body


def reference_row(rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The never-exit row every F1 loss is measured against."""
    for row in rows:
        if row["threshold"] == NEVER_EXIT:
            return row
    raise ValueError("no row for threshold 1.0 (never exit)")


def f1_loss_points(row: Dict[str, Any], rows: Sequence[Dict[str, Any]]) -> float:
    """F1 points ``row`` loses against never-exit (negative: it gains)."""
    return (reference_row(rows)["ents_f"] - row["ents_f"]) * 100.0


def choose_threshold(rows: Sequence[Dict[str, Any]], max_loss: float) -> Dict[str, Any]:
    """The fastest row at most ``max_loss`` F1 points below never-exit (ties: fewer
    layers run, then the higher threshold)."""
    allowed = [r for r in rows if f1_loss_points(r, rows) <= max_loss + EPSILON]
    return max(allowed, key=lambda r: (r["words_per_second"], -(r["mean_exit_layer"] or 0.0), r["threshold"]))
