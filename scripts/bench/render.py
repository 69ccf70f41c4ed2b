"""metrics/*.json -> BENCHMARKS.md, the README's headline and the plots.

Everything here is a pure function of the loaded JSON: no measuring, no clock, no
machine lookup, so the same metrics/ always renders the same text.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import jinja2

from .confidence_section import PR_PNG, RELIABILITY_PNG, confidence_section, plot_pr, plot_reliability
from .exits import f1_loss_points, reference_row
from .before_after import before_after_section
from .markdown import fmt_duration, fmt_f1, fmt_int, fmt_minutes, fmt_points, fmt_threshold, fmt_x, ratio, table
from .targets_section import targets_section
from .sections import (
    curve,
    exit_section,
    fastest_ours,
    layers_run,
    per_type_table,
    plot_exit,
    precision_label,
    row_of,
    speed_of,
    speed_section,
    train_results,
    train_section,
)

__all__ = ["load_metrics", "plot_exit", "plot_all", "render_benchmarks", "render_headline", "replace_marked",
           "exit_section", "speed_section", "train_section", "train_results", "confidence_section"]  # fmt: skip

TEMPLATES = Path(__file__).parent / "templates"


# -- loading ------------------------------------------------------------------
def load_metrics(metrics_dir: Path) -> Dict[str, Any]:
    """Every JSON under ``metrics_dir``, keyed by its path without suffix
    ("benchmark_speed", "transcribed/workflow_all")."""
    return {
        path.relative_to(metrics_dir).with_suffix("").as_posix(): json.loads(path.read_text(encoding="utf8"))
        for path in sorted(metrics_dir.rglob("*.json"))
    }


# -- documents ------------------------------------------------------------------------
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(int=fmt_int, f1=fmt_f1, x=fmt_x, duration=fmt_duration, minutes=fmt_minutes,
                       points=fmt_points, threshold=fmt_threshold)  # fmt: skip
    env.globals.update(ratio=ratio, f1_loss_points=f1_loss_points, reference_row=reference_row,
                       fastest_ours=fastest_ours, speed_of=speed_of, row_of=row_of,
                       layers_run=layers_run, curve=curve)  # fmt: skip
    return env


def context(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    """The template's names: each JSON by its key (``transcribed/x`` as ``transcribed.x``),
    and the sections rendered above."""
    ctx: Dict[str, Any] = {"transcribed": {}}
    for key, value in metrics.items():
        folder, _, name = key.rpartition("/")
        (ctx.setdefault(folder, {}) if folder else ctx)[name] = value
    ctx["sections"] = {
        "train": train_section(train_results(metrics)),
        "exit": exit_section(metrics["benchmark_exit"]),
        "speed": speed_section(metrics["benchmark_speed"]),
        "per_type": per_type_table(metrics["posattn_ner"]),
        "confidence": confidence(metrics),
    }
    for folder in ("exit_sentences", "sentence_windows"):
        if f"{folder}/benchmark_exit" in metrics:
            ctx["sections"][folder] = model_sections(metrics, folder)
    ctx["sections"]["targets"] = targets_section(ctx.get("sentence_windows"))
    if "engine_before_after" in metrics:
        ctx["sections"]["engine_before_after"] = before_after_section(metrics["engine_before_after"])
    if "benchmark_annotate" in metrics:
        from .annotate_section import annotate_section

        ctx["sections"]["benchmark_annotate"] = annotate_section(metrics["benchmark_annotate"])
    return ctx


def confidence(metrics: Mapping[str, Any]) -> Optional[str]:
    """The entity-scores section, once benchmark-confidence has written its report (None before)."""
    if "benchmark_confidence" not in metrics:
        return None
    return confidence_section(metrics.get("calibrate_confidence"), metrics["benchmark_confidence"])


def plot_all(metrics: Mapping[str, Any], metrics_dir: Path) -> List[Path]:
    """Every plot the reports present allow, drawn under ``metrics_dir``; the paths drawn."""
    drawn = [metrics_dir / "benchmark_exit.png"]
    plot_exit(metrics["benchmark_exit"], drawn[0])
    if "benchmark_confidence" in metrics:
        drawn += [metrics_dir / RELIABILITY_PNG, metrics_dir / PR_PNG]
        plot_reliability(metrics["benchmark_confidence"], drawn[1])
        plot_pr(metrics["benchmark_confidence"], drawn[2])
    return drawn


def model_sections(metrics: Mapping[str, Any], folder: str) -> Dict[str, str]:
    """The reports of one model kept in a sub-folder of metrics/ (so that the earlier
    model's reports stay as they were), as sub-sections: each exit curve, speed on
    its docs and on single sentences, where present."""
    def sub(text: str) -> str:
        return text.replace("\n## ", "\n### ").replace("## ", "### ", 1)

    out: Dict[str, str] = {}
    for key, value in metrics.items():
        parent, _, name = key.rpartition("/")
        if parent != folder:
            continue
        if name.startswith("benchmark_exit"):
            out[name.replace("benchmark_", "", 1)] = sub(exit_section(value))
        elif name.startswith("benchmark_speed"):
            out[name.replace("benchmark_", "", 1)] = sub(speed_section(value))
    return out


def render_benchmarks(metrics: Mapping[str, Any]) -> str:
    """BENCHMARKS.md, whole."""
    return environment().get_template("BENCHMARKS.md.jinja").render(context(metrics))


def render_headline(metrics: Mapping[str, Any]) -> str:
    """The README's headline figures, each saying what it ran (threshold, layers run, the
    peers' training data, the machine), so no figure reads as more than it is."""
    workflow, evaluate = metrics["transcribed/workflow_all"], metrics["posattn_ner"]
    lines = headline_default(metrics) if "sentence_windows/workflow_all" in metrics else []
    before = " on 2026-11-23, on a CPU with AVX512-BF16," if lines else ""
    lines += [
        f"- {'Before it,' if lines else ''}{before} `spacy project run all` "
        f"({'the then default, PosAttnTagger.v1' if lines else 'the default `configs/posattn_ner.cfg`'}, no early exit) "
        f"ran in {fmt_minutes(workflow['wall_seconds'])} from a fresh clone, training included, and scored test entity F1 "
        f"{fmt_f1(evaluate['ents_f'])}.",
        headline_ours(metrics["benchmark_speed"], lead="The same day, in one" if lines else "In one"),
    ]
    peers = headline_peers(metrics["benchmark_speed"], metrics.get("benchmark_train_trf"))
    if peers:
        lines.append(f"- In the same run, {'; '.join(peers)}. Words/s here: Docs of the test split's words built "
                     "beforehand, through `nlp.pipe` (no tokenizer, for every system).")  # fmt: skip
    return "\n".join(lines) + "\n"


def headline_default(metrics: Mapping[str, Any]) -> List[str]:
    """The default (early-exit) model's workflow, accuracy and speed beside the CNN."""
    from .targets_section import speed_row

    wf, ev = metrics["sentence_windows/workflow_all"], metrics["sentence_windows/evaluate"]
    cal = metrics["sentence_windows/calibrate_exit"]
    full = reference_row(metrics["sentence_windows/benchmark_exit"]["rows"])
    lines = [
        f"- The default pipeline (`configs/posattn_ner.cfg`: early exit after layers "
        f"{', '.join(map(str, cal['exit_layers'][:-1]))} and {cal['exit_layers'][-1]}, sentence windows): "
        f"`spacy project run all` ran in {fmt_minutes(wf['wall_seconds'])} from a fresh clone on a CPU without bf16 "
        f"({wf['date']}), training and calibration included; the packaged `model-calibrated` (exit threshold "
        f"{fmt_threshold(cal['chosen']['threshold'])}) scored test entity F1 {fmt_f1(ev['ents_f'])} (`spacy evaluate`); "
        f"at full depth {fmt_f1(full['ents_f'])}.",
    ]
    speeds = []
    for key, label in (("benchmark_speed", "one-sentence docs"), ("benchmark_speed_docs8", "8-sentence docs")):
        report = metrics.get(f"sentence_windows/{key}")
        if report and row_of(report, "cnn"):
            ours, cnn = speed_row(report), row_of(report, "cnn")
            speeds.append(f"{label}: {fmt_int(ours['words_per_second'])} words/s at F1 {fmt_f1(ours['ents_f'])} vs the "
                          f"CNN's {fmt_int(cnn['words_per_second'])} ({ours['words_per_second'] / cnn['words_per_second']:.2f}×)")  # fmt: skip
    if speeds:
        lines.append(f"- On that machine, calibrated, precision auto (= fp32 there), in benchmark-speed runs: {'; '.join(speeds)}.")
    return lines


def headline_ours(speed: Mapping[str, Any], lead: str = "In one") -> str:
    """The fastest posattn_ner row: its threshold and the layers its docs ran, beside exit off."""
    best = fastest_ours(speed)
    off = next(r for r in speed["rows"] if r["system"] == "ours" and r["precision"] == best["precision"]
               and r["exit"] == "off")  # fmt: skip
    exit_layers = speed["ours"]["exit_layers"] or [off["mean_exit_layer"]]
    n_layers = exit_layers[-1]
    if best["exit"] == "off":
        setting = f"with exit off (all {n_layers} backbone layers run)"
    elif best["mean_exit_layer"] == exit_layers[0]:
        setting = (f"at its calibrated exit threshold {fmt_threshold(best['exit_threshold'])} (every sentence left after "
                   f"layer {exit_layers[0]}, so {exit_layers[0]} of the backbone's {n_layers} layers ran)")  # fmt: skip
    else:
        setting = (f"at its calibrated exit threshold {fmt_threshold(best['exit_threshold'])} (the sentences ran "
                   f"{best['mean_exit_layer']:.2f} of the backbone's {n_layers} layers on average)")  # fmt: skip
    text = (f"- {lead} `spacy project run benchmark-speed` run, the early-exit pipeline (`{best['model']}`, "
            f"precision {precision_label(best['precision'], best['resolved_precision'])}) {setting} tagged the test "
            f"split at {fmt_int(best['words_per_second'])} words/s with F1 {fmt_f1(best['ents_f'])}")  # fmt: skip
    if best is not off:
        text += (f"; with exit off (all {n_layers} layers) at {fmt_int(off['words_per_second'])} words/s with F1 "
                 f"{fmt_f1(off['ents_f'])}")  # fmt: skip
    return text + "."


def headline_peers(speed: Mapping[str, Any], trf_train: Optional[Mapping[str, Any]]) -> List[str]:
    """The peers measured beside ours, with what each was trained on."""
    out = []
    cnn, trf = row_of(speed, "cnn"), row_of(speed, "trf")
    if cnn:
        out.append(f"spaCy's CNN `ner` (`{speed['systems']['cnn']['model']}`, `train-cnn`: the full training split) "
                   f"tagged {fmt_int(cnn['words_per_second'])} words/s with F1 {fmt_f1(cnn['ents_f'])}")  # fmt: skip
    if trf:
        if trf_train and trf_train.get("model") == speed["systems"]["trf"]["model"]:
            data = f"trained only on the first {trf_train['settings']['train_sentences']:,} training sentences"
        else:
            data = "on training data this report does not record"
        out.append(f"spacy-transformers fine-tuning the same backbone (all its layers run), {data} (so its F1, "
                   f"{fmt_f1(trf['ents_f'])}, is no comparison), {fmt_int(trf['words_per_second'])} words/s")  # fmt: skip
    return out


def replace_marked(text: str, name: str, body: str) -> str:
    """``text`` with what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced."""
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"expected one {start.strip()} before one {end}")
    head, rest = text.split(start)
    return head + start + body + end + rest.split(end, 1)[1]
