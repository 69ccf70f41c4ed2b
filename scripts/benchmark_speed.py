#!/usr/bin/env python
"""CPU inference speed and test F1, side by side: posattn_ner in each precision (with
its calibrated early-exit threshold and with exit off), spaCy's CNN ``ner`` and a
spacy-transformers pipeline, in ONE process on the same test docs.

For every row the test split is run once through ``Language.evaluate`` (entity F1,
``ents_f``) on Examples whose predicted docs are fresh Docs of the reference words,
then timed ``--repeats`` times: ``nlp.pipe`` over fresh Docs of the reference words
(tokenization is not timed, for any system), the same ``--batch-size`` for every
system, after one warm-up batch; the best pass counts. PyTorch runs with
``--n-threads`` threads (``torch.set_num_threads``). Ratios: each row's words/s over
the CNN's, the fastest posattn_ner row over the transformer, and the F1 change of
each reduced precision against fp32 with the same exit setting. Optionally (on by
default) ``python -m spacy benchmark speed`` is also run once on the posattn_ner
pipeline as saved (its config's precision and exit threshold), as a subprocess with
the same thread count, and its printed mean words/s and 95% CI are reported.

Writes a JSON report and the section between ``<!-- benchmark-speed:start -->`` and
``<!-- benchmark-speed:end -->`` in BENCHMARKS.md. An optional system (``--cnn``,
``--trf``) whose directory does not exist is left out (the section says so); one that
exists but is not a spaCy ``ner`` pipeline is an error.

Usage:
    python scripts/benchmark_speed.py corpus/test.spacy --ours training/posattn_ner_exit/model-calibrated \\
        [--cnn training-bench/cnn/model-best] [--trf training-bench/trf/model-best] \\
        [--precisions fp32,bf16,int8,auto] [--n-threads 2] [--batch-size 256] [--repeats 2] [--limit 0] \\
        [--output-json metrics/benchmark_speed.json] [--benchmarks-md BENCHMARKS.md]
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import srsly
import typer
from wasabi import msg

if str(Path(__file__).resolve().parent) not in sys.path:  # scripts/ helpers, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import replace_section, report_footer  # noqa: E402
from calibrate_exit import (  # noqa: E402
    COMPONENT,
    NEVER_EXIT,
    command_line,
    fmt_layer,
    fmt_threshold,
    machine_info,
    read_examples,
    utc_now,
)

app = typer.Typer(add_completion=False)

MARK_START = "<!-- benchmark-speed:start -->"
MARK_END = "<!-- benchmark-speed:end -->"
PRECISIONS = ("fp32", "bf16", "int8", "auto")  # the order rows are run and shown in
SYSTEM_LABELS = {
    "ours": "posattn_ner",
    "cnn": "spaCy CNN `ner`",
    "trf": "spacy-transformers `ner`",
    "spacy_benchmark": "posattn_ner, `spacy benchmark speed`",
}
SPACY_MEAN_RE = re.compile(r"Mean:\s*([-+0-9.]+)\s*words/s\s*\(95% CI:\s*([-+0-9.]+)\s*\+?([-+0-9.]+)\)")


class BenchmarkError(ValueError):
    """A model directory that cannot be benchmarked as asked (the message names it)."""


# -- helpers ----------------------------------------------------------------------
def parse_precisions(spec: str) -> List[str]:
    """'fp32,int8' -> ['fp32', 'int8'] (distinct, in the order given)."""
    out: List[str] = []
    for item in spec.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item not in PRECISIONS:
            raise typer.BadParameter(f"{item!r} is not one of {', '.join(PRECISIONS)}", param_hint="--precisions")
        if item not in out:
            out.append(item)
    if not out:
        raise typer.BadParameter("give at least one precision", param_hint="--precisions")
    return out


def optional_dir(value: Optional[str]) -> Optional[Path]:
    """None or '' -> None (the option was not given); else a Path."""
    if value is None or not str(value).strip():
        return None
    return Path(value)


def load_pipeline(path: Path, role: str, need: str):
    """spacy.load ``path``; a BenchmarkError naming it if it does not load or lacks
    the component ``need``."""
    import spacy

    import spacy_posattn_ner  # noqa: F401  (registers the factory and doc._.exit_layer)

    if not path.is_dir():
        raise BenchmarkError(f"{path}: not a directory ({role})")
    try:
        nlp = spacy.load(path)
    except Exception as err:  # noqa: BLE001  (any load failure is reported with the path)
        raise BenchmarkError(f"{path}: could not be loaded as a spaCy pipeline ({role}): {err}") from None
    if need not in nlp.pipe_names:
        raise BenchmarkError(
            f"{path}: not a {role} pipeline: no '{need}' component (pipeline: {', '.join(nlp.pipe_names) or 'empty'})"
        )
    return nlp


def resolved_precision(pipe, precision: str) -> str:
    """What ``precision`` ('auto' included) means for this pipe's backbone device."""
    import torch

    from spacy_posattn_ner.backbone import resolve_precision
    from spacy_posattn_ner.models import get_backbone

    try:
        device = get_backbone(pipe.model).device
    except Exception:  # noqa: BLE001  (not built: the CPU default)
        device = torch.device("cpu")
    return resolve_precision(precision, device)


def words_and_spaces(examples) -> List[Tuple[List[str], List[bool]]]:
    return [([t.text for t in eg.reference], [bool(t.whitespace_) for t in eg.reference]) for eg in examples]


def fresh_docs(nlp, texts: Sequence[Tuple[List[str], List[bool]]]):
    from spacy.tokens import Doc

    return [Doc(nlp.vocab, words=words, spaces=spaces) for words, spaces in texts]


def measure(
    nlp, examples, texts, batch_size: int, repeats: int, exit_layers: bool = False, layer_keys: Sequence[int] = ()
) -> Dict[str, Any]:
    """One warm-up batch, test F1 via ``Language.evaluate``, then ``repeats`` timed
    ``nlp.pipe`` passes over fresh docs (best words/s kept). With ``exit_layers``, the
    mean ``doc._.exit_layer`` and the share of docs per layer (``layer_keys`` always listed)."""
    for _ in nlp.pipe(fresh_docs(nlp, texts[:batch_size]), batch_size=batch_size):
        pass
    scores = nlp.evaluate(examples, batch_size=batch_size)
    seconds: List[float] = []
    layers: List[Optional[int]] = []
    n_words = sum(len(words) for words, _ in texts)
    for _ in range(max(1, repeats)):
        docs = fresh_docs(nlp, texts)
        start = time.perf_counter()
        out = list(nlp.pipe(docs, batch_size=batch_size))
        seconds.append(time.perf_counter() - start)
        if exit_layers:
            layers = [doc._.exit_layer for doc in out]
        del out, docs
    best = min(seconds)
    f1 = scores.get("ents_f")
    row: Dict[str, Any] = {
        "ents_f": float(f1) if f1 is not None else 0.0,
        "ents_p": float(scores.get("ents_p") or 0.0),
        "ents_r": float(scores.get("ents_r") or 0.0),
        "words_per_second": n_words / best if best > 0 else 0.0,
        "pass_seconds": seconds,
        "n_docs": len(texts),
        "n_words": n_words,
    }
    if exit_layers:
        ran = [layer for layer in layers if layer is not None]
        row["mean_exit_layer"] = sum(ran) / len(ran) if ran else None
        counts: Dict[str, int] = {str(k): 0 for k in layer_keys}
        for layer in ran:
            counts[str(layer)] = counts.get(str(layer), 0) + 1
        row["exit_layer_share"] = {k: (counts[k] / len(ran) if ran else 0.0) for k in sorted(counts, key=int)}
    else:
        row["mean_exit_layer"] = None
    return row


def ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    return num / den if num is not None and den else None


def compute_ratios(rows: List[Dict[str, Any]], spacy_bench: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Adds ``x_cnn`` and ``f1_change_vs_fp32_points`` to every row; returns the summary ratios."""
    cnn = next((r for r in rows if r["system"] == "cnn"), None)
    trf = next((r for r in rows if r["system"] == "trf"), None)
    cnn_wps = cnn["words_per_second"] if cnn else None
    ours = [r for r in rows if r["system"] == "ours"]
    f1_changes = []
    for row in rows:
        row["x_cnn"] = ratio(row["words_per_second"], cnn_wps)
        row["f1_change_vs_fp32_points"] = None
        if row["system"] == "ours" and row["precision"] != "fp32":
            ref = next((r for r in ours if r["precision"] == "fp32" and r["exit"] == row["exit"]), None)
            if ref is not None:
                row["f1_change_vs_fp32_points"] = (row["ents_f"] - ref["ents_f"]) * 100.0
                f1_changes.append(
                    {"precision": row["precision"], "resolved_precision": row["resolved_precision"],
                     "exit": row["exit"], "points": row["f1_change_vs_fp32_points"]}
                )  # fmt: skip
    best = max(ours, key=lambda r: r["words_per_second"]) if ours else None
    best_wps = best["words_per_second"] if best else None
    best_keys = ("precision", "resolved_precision", "exit", "exit_threshold", "ents_f", "words_per_second")
    out: Dict[str, Any] = {
        "ours_best": {k: best[k] for k in best_keys} if best else None,
        "ours_best_over_trf": ratio(best_wps, trf["words_per_second"] if trf else None),
        "ours_best_over_cnn": ratio(best_wps, cnn_wps),
        "cnn_over_trf": ratio(cnn_wps, trf["words_per_second"] if trf else None),
        "f1_change_vs_fp32_points": f1_changes,
        "spacy_benchmark_over_cnn": None,
    }
    if spacy_bench and spacy_bench.get("mean_words_per_second") is not None:
        out["spacy_benchmark_over_cnn"] = ratio(spacy_bench["mean_words_per_second"], cnn_wps)
    return out


# -- spacy benchmark speed ----------------------------------------------------------
def run_spacy_benchmark(
    model_dir: Path, test_path: Path, batch_size: int, n_batches: int, warmup: int, n_threads: int, limit: int
) -> Dict[str, Any]:
    """``python -m spacy benchmark speed`` on the pipeline as saved, in a subprocess with
    ``n_threads`` OpenMP/MKL threads (torch's default thread count follows them)."""
    with tempfile.TemporaryDirectory(prefix="benchmark-speed-") as tmp:
        data = test_path
        if limit:
            import spacy
            from spacy.tokens import DocBin

            vocab = spacy.blank("en").vocab
            docs = []
            for doc in DocBin().from_disk(test_path).get_docs(vocab):
                if len(docs) >= limit:
                    break
                docs.append(doc)
            data = Path(tmp) / "test-limited.spacy"
            DocBin(docs=docs, store_user_data=False).to_disk(data)
        cmd = [
            sys.executable, "-m", "spacy", "benchmark", "speed", str(model_dir), str(data),
            "--batch-size", str(batch_size), "--batches", str(n_batches), "--warmup", str(warmup),
        ]  # fmt: skip
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(n_threads)
        shown = ["python"] + cmd[1:5] + [str(model_dir), str(test_path)] + cmd[7:]
        msg.text(f"Running {' '.join(shown)} (OMP_NUM_THREADS={n_threads})")
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    result: Dict[str, Any] = {
        "command": " ".join(shown),
        "env": {"OMP_NUM_THREADS": n_threads, "MKL_NUM_THREADS": n_threads},
        "limit": limit,
        "batch_size": batch_size,
        "n_batches": n_batches,
        "warmup_epochs": warmup,
        "returncode": proc.returncode,
        "wall_seconds": wall,
        "mean_words_per_second": None,
        "ci95_low": None,
        "ci95_high": None,
        "error": None,
    }
    match = SPACY_MEAN_RE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        tail = output.strip().splitlines()[-5:]
        result["error"] = (
            f"exit code {proc.returncode}" if proc.returncode != 0 else "no 'Mean: ... words/s' line in its output"
        ) + (": " + " / ".join(tail) if tail else "")
        result["output_tail"] = output[-3000:]
        return result
    mean, low, high = (float(x) for x in match.groups())
    result.update(
        mean_words_per_second=mean,
        ci95_low=mean + low,  # spaCy prints the CI as offsets from the mean
        ci95_high=mean + high,
        printed=match.group(0),
    )
    outliers = re.search(r"Outliers:.*", proc.stdout)
    if outliers:
        result["outliers"] = outliers.group(0).strip()
    return result


# -- report ---------------------------------------------------------------------------
def fmt_wps(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def fmt_x(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def precision_label(row: Dict[str, Any]) -> str:
    if row.get("precision") == "auto":
        return f"auto ({row['resolved_precision']})"
    return row.get("precision") or "—"


def exit_label(row: Dict[str, Any], has_exits: bool) -> str:
    if row["system"] != "ours":
        return "—"
    threshold = fmt_threshold(row["exit_threshold"])
    if not has_exits:
        return f"{threshold} (no exit layers)"
    return f"{threshold} ({'calibrated' if row['exit'] == 'calibrated' else 'exit off'})"


def render_section(report: Dict[str, Any]) -> str:
    machine = report["machine"]
    ours = report["ours"]
    rows = report["rows"]
    ratios = report["ratios"]
    has_exits = ours["exit_layers"] is not None
    if has_exits:
        exits_txt = (
            f"exit layers {ours['exit_layers']}, calibrated threshold (its config) "
            f"**{fmt_threshold(ours['calibrated_threshold'])}**"
        )
        if ours["calibrated_threshold"] >= NEVER_EXIT:
            exits_txt += " = never exit, so the calibrated rows are the exit-off rows"
    else:
        exits_txt = "no exit layers (PosAttnTagger.v1): exit-off rows only"
    systems = [f"posattn_ner `{ours['model']}` ({exits_txt})"]
    for key in ("cnn", "trf"):
        info = report["systems"][key]
        if info.get("model") and not info.get("left_out"):
            systems.append(f"{SYSTEM_LABELS[key]} `{info['model']}` (pipeline {', '.join(info['pipeline'])})")
    left_out = [
        f"{SYSTEM_LABELS[key]} ({report['systems'][key]['left_out']})"
        for key in ("cnn", "trf")
        if report["systems"][key].get("left_out")
    ]
    out = [
        MARK_START,
        "## Inference speed on CPU: precision, early exit, spaCy's CNN",
        "",
        f"Test split `{report['test']}` ({report['n_docs']:,} docs, {report['n_words']:,} words"
        + (f"; the first {report['limit']:,} docs" if report["limit"] else "")
        + f"), batch size {report['batch_size']} for every system, torch threads {report['torch_threads']}, "
        f"one process. Systems: " + "; ".join(systems) + ".",
    ]
    if left_out:
        out += ["", "Left out (not measured): " + "; ".join(left_out) + "."]
    out += [
        "",
        "| system | precision | exit threshold | mean exit layer | test F1 | words/s | × CNN |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    best = ratios.get("ours_best")
    for row in rows:
        label = SYSTEM_LABELS[row["system"]]
        wps = fmt_wps(row["words_per_second"])
        if (
            best
            and row["system"] == "ours"
            and row["precision"] == best["precision"]
            and row["exit"] == best["exit"]
        ):
            wps = f"**{wps}**"
        out.append(
            f"| {label} | {precision_label(row)} | {exit_label(row, has_exits)} | {fmt_layer(row['mean_exit_layer'])} "
            f"| {row['ents_f']:.4f} | {wps} | {fmt_x(row['x_cnn'])} |"
        )
    bench = report.get("spacy_benchmark")
    if bench and not bench.get("skipped"):
        label = SYSTEM_LABELS["spacy_benchmark"]
        saved = precision_label({"precision": ours["saved_precision"], "resolved_precision": ours["saved_resolved"]})
        saved += " (as saved)"
        threshold = f"{fmt_threshold(ours['calibrated_threshold'])} (as saved)"
        if bench.get("error"):
            out.append(f"| {label} | {saved} | {threshold} | n/a | n/a | failed: {bench['error']} | n/a |")
        else:
            mean = bench["mean_words_per_second"]
            ci = f"{fmt_wps(mean)} (95% CI {fmt_wps(bench['ci95_low'])}–{fmt_wps(bench['ci95_high'])})"
            x_cnn = fmt_x(ratios["spacy_benchmark_over_cnn"])
            out.append(f"| {label} | {saved} | {threshold} | n/a | n/a | {ci} | {x_cnn} |")
    out.append("")

    def line(text: str, value: Optional[float], fmt: str = "{:.2f}×") -> None:
        out.append(f"- {text}: " + ("n/a (system not measured)" if value is None else fmt.format(value)))

    if best:
        best_txt = (
            f"{precision_label(best)}, {'calibrated exit' if best['exit'] == 'calibrated' else 'exit off'}: "
            f"{fmt_wps(best['words_per_second'])} words/s, F1 {best['ents_f']:.4f}"
        )
        out.append(f"- Fastest posattn_ner row: {best_txt}")
    line("Fastest posattn_ner / spacy-transformers, words/s", ratios["ours_best_over_trf"])
    line("Fastest posattn_ner / spaCy CNN, words/s", ratios["ours_best_over_cnn"])
    line("spaCy CNN / spacy-transformers, words/s", ratios["cnn_over_trf"])
    changes = ratios["f1_change_vs_fp32_points"]
    if changes:
        parts = [
            f"{c['precision'] if c['precision'] != 'auto' else 'auto (' + c['resolved_precision'] + ')'} "
            f"{'calibrated' if c['exit'] == 'calibrated' else 'exit off'} {c['points']:+.2f}"
            for c in changes
        ]
        out.append("- Test F1 change vs fp32 with the same exit setting, in points: " + ", ".join(parts))
    else:
        out.append("- Test F1 change vs fp32: n/a (fp32 or no reduced precision measured)")
    out += [
        "",
        "Words/s: the best of "
        f"{report['repeats']} timed `nlp.pipe` passes over fresh Docs built from the test split's words "
        "(tokenization not timed, for any system), after one warm-up batch with the row's settings. Test F1: "
        "spaCy's entity-level micro F1 (`ents_f`) from one `Language.evaluate` pass over the same docs. "
        "Precision applies to posattn_ner's backbone (`bf16` autocast, `int8` dynamic quantization, `auto` = "
        "bf16 where the CPU has it natively, else int8); the CNN runs thinc's float32 CPU ops (not torch's "
        "threads) and the transformer fp32. Mean exit layer k = after the backbone's k-th layer (the last one "
        "when exit is off). × CNN = words/s over the CNN's words/s.",
    ]
    if bench and not bench.get("skipped"):
        out += [
            "",
            "`spacy benchmark speed` (spaCy's own harness: retokenizes the text"
            + (f" of the first {bench['limit']:,} docs" if bench.get("limit") else "")
            + f", {bench['warmup_epochs']} warm-up epoch(s), then {bench['n_batches']} batches of "
            f"{bench['batch_size']} docs drawn at random; the pipeline as saved) in a subprocess with "
            f"OMP_NUM_THREADS={bench['env']['OMP_NUM_THREADS']}: `{bench['command']}`; mean words/s per batch "
            "with its bootstrap 95% CI.",
        ]
    out += report_footer(report, machine, report["torch_threads"]) + [MARK_END]
    return "\n".join(out)


def update_benchmarks_md(path: Path, section: str) -> None:
    replace_section(path, section, MARK_START, MARK_END)


# -- CLI --------------------------------------------------------------------------
@app.command()
def main(
    test_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Test .spacy file"),
    ours: Path = typer.Option(..., "--ours", help="Saved posattn_ner pipeline"),
    cnn: Optional[str] = typer.Option(None, "--cnn", help="Saved spaCy CNN ner pipeline (left out if missing)"),
    trf: Optional[str] = typer.Option(
        None, "--trf", help="Saved spacy-transformers ner pipeline (left out if missing)"
    ),
    precisions: str = typer.Option(",".join(PRECISIONS), "--precisions", help="posattn_ner precisions to run"),
    n_threads: int = typer.Option(2, "--n-threads", min=1, help="torch threads (torch.set_num_threads)"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="nlp.pipe batch size, every system"),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Timed passes per row (best speed kept)"),
    limit: int = typer.Option(0, "--limit", min=0, help="Test docs, the first in file order (0 = all)"),
    spacy_benchmark: bool = typer.Option(
        True, "--spacy-benchmark/--no-spacy-benchmark", help="Also run `python -m spacy benchmark speed` on --ours"
    ),
    spacy_batches: int = typer.Option(50, "--spacy-batches", min=30, help="spacy benchmark speed --batches"),
    spacy_warmup: int = typer.Option(1, "--spacy-warmup", min=0, help="spacy benchmark speed --warmup (epochs)"),
    output_json: Path = typer.Option(Path("metrics/benchmark_speed.json"), "--output-json"),
    benchmarks_md: Optional[Path] = typer.Option(
        None, "--benchmarks-md", help="Write this section into that markdown file (project.yml: BENCHMARKS.md; default: none)"
    ),
) -> None:
    """Test F1 and CPU words/s: posattn_ner per precision and exit setting, the CNN, the transformer."""
    import torch

    precision_list = parse_precisions(precisions)
    cnn_dir, trf_dir = optional_dir(cnn), optional_dir(trf)
    command = command_line(
        "scripts/benchmark_speed.py",
        [test_path],
        [
            ("--ours", ours),
            ("--cnn", cnn_dir),
            ("--trf", trf_dir),
            ("--precisions", ",".join(precision_list)),
            ("--n-threads", n_threads),
            ("--batch-size", batch_size),
            ("--repeats", repeats),
            ("--limit", limit),
            ("--spacy-benchmark", spacy_benchmark),
            ("--spacy-batches", spacy_batches if spacy_benchmark else None),
            ("--spacy-warmup", spacy_warmup if spacy_benchmark else None),
            ("--output-json", output_json),
            ("--benchmarks-md", benchmarks_md),
        ],
    )
    torch.set_num_threads(n_threads)
    machine = machine_info()

    # load everything first: a bad path fails before any measuring
    systems: Dict[str, Dict[str, Any]] = {"cnn": {"model": None}, "trf": {"model": None}}
    loaded: Dict[str, Any] = {}
    try:
        nlp = load_pipeline(ours, "posattn_ner", COMPONENT)
        for key, path, need in (("cnn", cnn_dir, "ner"), ("trf", trf_dir, "ner")):
            if path is None:
                systems[key]["left_out"] = "not given"
            elif not path.exists():
                systems[key] = {"model": str(path), "left_out": f"`{path}` not found"}
                msg.warn(f"{path} not found: {SYSTEM_LABELS[key]} left out")
            else:
                loaded[key] = load_pipeline(path, f"spaCy '{need}' ({key})", need)
                systems[key] = {"model": str(path), "pipeline": list(loaded[key].pipe_names)}
        examples = read_examples(nlp, test_path, limit)
    except (BenchmarkError, ValueError) as err:
        msg.fail(str(err), exits=1)
    pipe = nlp.get_pipe(COMPONENT)
    exit_layers = list(pipe.exit_layers) if pipe.exit_layers else None
    calibrated = float(pipe.exit_threshold)  # from the model's config.cfg
    saved_precision = pipe.precision
    texts = words_and_spaces(examples)
    n_words = sum(len(words) for words, _ in texts)
    msg.info(
        f"{ours}: exit layers {exit_layers}, calibrated threshold {fmt_threshold(calibrated)}, saved precision "
        f"{saved_precision}; test {len(examples):,} docs, {n_words:,} words; torch threads {torch.get_num_threads()}"
    )

    exit_settings: List[Tuple[str, float]] = [("off", NEVER_EXIT)]
    if exit_layers is not None and calibrated < NEVER_EXIT:
        exit_settings.insert(0, ("calibrated", calibrated))
    rows: List[Dict[str, Any]] = []
    for precision in precision_list:
        pipe.precision = precision
        for exit_name, threshold in exit_settings:
            pipe.exit_threshold = threshold
            row = {
                "system": "ours",
                "model": str(ours),
                "precision": precision,
                "resolved_precision": resolved_precision(pipe, precision),
                "exit": exit_name,
                "exit_threshold": threshold,
            }
            row.update(
                measure(nlp, examples, texts, batch_size, repeats, exit_layers=True, layer_keys=exit_layers or ())
            )
            msg.text(
                f"posattn_ner {precision_label(row)}, exit {exit_name} ({fmt_threshold(threshold)}): "
                f"F1 {row['ents_f']:.4f}, {row['words_per_second']:,.0f} words/s, "
                f"mean exit layer {fmt_layer(row['mean_exit_layer'])}"
            )
            rows.append(row)
    pipe.precision = saved_precision
    pipe.exit_threshold = calibrated
    for key, other in loaded.items():
        other_examples = read_examples(other, test_path, limit)
        row = {"system": key, "model": systems[key]["model"], "precision": "fp32", "resolved_precision": "fp32",
               "exit": None, "exit_threshold": None}  # fmt: skip
        row.update(measure(other, other_examples, texts, batch_size, repeats))
        msg.text(f"{SYSTEM_LABELS[key]}: F1 {row['ents_f']:.4f}, {row['words_per_second']:,.0f} words/s")
        rows.append(row)

    bench: Dict[str, Any] = {"skipped": True}
    if spacy_benchmark:
        bench = run_spacy_benchmark(ours, test_path, batch_size, spacy_batches, spacy_warmup, n_threads, limit)
        if bench["error"]:
            msg.warn(f"spacy benchmark speed failed: {bench['error']}")
        else:
            msg.text(f"spacy benchmark speed: {bench['printed']}")
    ratios = compute_ratios(rows, None if bench.get("skipped") else bench)
    report: Dict[str, Any] = {
        "date": utc_now(),
        "command": command,
        "machine": machine,
        "torch_threads": torch.get_num_threads(),
        "test": str(test_path),
        "limit": limit,
        "n_docs": len(examples),
        "n_words": n_words,
        "batch_size": batch_size,
        "repeats": repeats,
        "ours": {
            "model": str(ours),
            "exit_layers": exit_layers,
            "calibrated_threshold": calibrated,
            "saved_precision": saved_precision,
            "saved_resolved": resolved_precision(pipe, saved_precision),
            "precisions": precision_list,
        },
        "systems": systems,
        "rows": rows,
        "ratios": ratios,
        "spacy_benchmark": bench,
    }
    output_json.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_json, report)
    section = render_section(report)
    if benchmarks_md is not None:
        update_benchmarks_md(benchmarks_md, section)
    msg.divider("benchmark-speed")
    print(section)
    msg.good(f"Wrote {output_json}" + (f" and the benchmark-speed section of {benchmarks_md}" if benchmarks_md else ""))
    if spacy_benchmark and bench.get("error"):
        msg.fail(f"spacy benchmark speed failed (the rest is written): {bench['error']}", exits=1)


if __name__ == "__main__":
    app()
