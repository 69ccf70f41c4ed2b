"""The measured sections of BENCHMARKS.md, each a pure function of its JSON report(s):
training cost (benchmark-train-*), early exit (benchmark-exit) and inference speed
(benchmark-speed). Ratios and differences are computed here from the measured rows,
never stored twice."""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from .exits import ALWAYS_FIRST, NEVER_EXIT, f1_loss_points, reference_row
from .markdown import (
    NA,
    fmt_duration,
    fmt_f1,
    fmt_int,
    fmt_layer,
    fmt_points,
    fmt_shares,
    fmt_threshold,
    fmt_x,
    ratio,
    table,
)

TRAIN_SYSTEMS = ("ours", "cnn", "trf")
TRAIN_LABELS = {
    "ours": "ours: posattn_ner (frozen MiniLM, cached features)",
    "cnn": "spaCy CNN `ner` (efficiency defaults)",
    "trf": "MiniLM fine-tuned (spacy-transformers + `ner`)",
}
SPEED_LABELS = {
    "ours": "posattn_ner",
    "cnn": "spaCy CNN `ner`",
    "trf": "spacy-transformers `ner`",
    "spacy_benchmark": "posattn_ner, `spacy benchmark speed`",
}


# -- shared pieces --------------------------------------------------------------
def machine_line(machine: Mapping[str, Any], threads: int, extra: str = "") -> str:
    """One line naming the machine, torch threads, load and library versions."""
    load = machine.get("load_average") or machine.get("load_average_at_start")  # the latter: reports before 2026-11-24
    return (
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs ({machine['cpus_usable']} usable), "
        f"torch threads {threads}{extra}"
        + (f", load average at start {load[0]:.2f}" if load else "")
        + f". spaCy {machine['spacy']}, torch {machine['torch']}"
        + (f", spacy-transformers {machine['spacy_transformers']}" if machine.get("spacy_transformers") else "")
        + "."
    )


def footer(report: Mapping[str, Any], threads: int, extra: str = "") -> List[str]:
    """The closing lines of a measured section: the exact command, the machine, the date."""
    return ["", f"Command: `{report['command']}`", "", machine_line(report["machine"], threads, extra), "",
            f"Date: {report['date']}"]  # fmt: skip


# -- training cost ----------------------------------------------------------------
def train_results(metrics: Mapping[str, Any], prefix: str = "benchmark_train_") -> List[Dict[str, Any]]:
    """The per-system training reports present, in the order ours, cnn, trf."""
    return [metrics[prefix + s] for s in TRAIN_SYSTEMS if prefix + s in metrics]


def train_ratios(results: Sequence[Mapping[str, Any]]) -> Dict[str, Optional[float]]:
    by = {r["system"]: r for r in results if not r.get("error")}

    def get(system: str, key: str) -> Optional[float]:
        return by.get(system, {}).get(key)

    ours_ep, trf_ep = get("ours", "epochs_to_best"), get("trf", "epochs_to_best")
    return {
        "time_to_best_ours_over_trf": ratio(get("ours", "wall_seconds_to_best"), get("trf", "wall_seconds_to_best")),
        "time_to_best_ours_over_cnn": ratio(get("ours", "wall_seconds_to_best"), get("cnn", "wall_seconds_to_best")),
        "total_time_ours_over_trf": ratio(get("ours", "total_wall_seconds"), get("trf", "total_wall_seconds")),
        "total_time_ours_over_cnn": ratio(get("ours", "total_wall_seconds"), get("cnn", "total_wall_seconds")),
        "epochs_trf_over_ours": ratio(trf_ep, ours_ep),
        "epoch_reduction_vs_trf": (1.0 - ours_ep / trf_ep) if ours_ep is not None and trf_ep else None,
    }


def train_scope(settings: Mapping[str, Any]) -> str:
    subset = []
    if settings["limit"]:
        subset.append(f"the first {settings['train_sentences']:,} training sentences")
    if settings["eval_limit"]:
        subset.append(f"the first {settings['eval_limit']:,} dev and test sentences")
    if not subset:
        return "the full canonical GMB split"
    return "a documented SUBSET of the canonical GMB split (" + "; ".join(subset) + ")"


def train_row(res: Mapping[str, Any]) -> List[str]:
    label, sentences = TRAIN_LABELS[res["system"]], f"{res['settings']['train_sentences']:,}"
    if res.get("error") and res.get("best_dev_f1") is None:
        return [label, sentences, f"failed: {res['error']}", "", "", "", "", ""]
    epochs = res.get("epochs_to_best")
    rss = res.get("peak_rss_mib")
    return [
        label,
        sentences,
        NA if epochs is None else f"{epochs:.2f} (step {res['best_step']:,})",
        fmt_duration(res.get("wall_seconds_to_best")),
        fmt_duration(res.get("total_wall_seconds")),
        fmt_f1(res.get("best_dev_f1")),
        fmt_f1(res.get("test_f1")),
        fmt_int(rss),
    ]


def train_section(results: Sequence[Mapping[str, Any]]) -> str:
    """The side-by-side training-cost table of the per-system reports, with ratios."""
    scopes = {(r["settings"]["limit"], r["settings"]["eval_limit"]) for r in results}
    if len(scopes) != 1:
        raise ValueError(f"the training reports use different subsets {sorted(scopes)}: not comparable")
    settings = results[0]["settings"]
    one_run = len({(r["date"], r["command"]) for r in results}) == 1
    how = ("one after the other, on the same machine" if one_run
           else "one project command each (the runs are listed below)")  # fmt: skip
    out = [
        "## Training cost: posattn_ner vs the spaCy CNN and fine-tuned MiniLM",
        "",
        f"Measured {when(r['date'] for r in results)} on {train_scope(settings)}; every system "
        f"trained in its own `spacy train` process, {how}.",
        "",
        table(["system", "train sentences", "epochs to best", "wall time to best", "total wall time", "best dev F1",
               "test F1", "peak RAM MiB"], [train_row(r) for r in results], "lrrrrrrr"),  # fmt: skip
        "",
    ]
    scaled = [(r["system"], r["schedule_scaled"]) for r in results if r.get("schedule_scaled")]
    if scaled:
        parts = [f"{system} warm-up {s['from']['warmup_steps']:,} → {s['to']['warmup_steps']:,}, "
                 f"total {s['from']['total_steps']:,} → {s['to']['total_steps']:,} steps" for system, s in scaled]  # fmt: skip
        out.append(f"Learning-rate schedules scaled to the subset (× {settings['schedule_fraction']:.4f}, its share "
                   f"of the training split): {'; '.join(parts)}. Constant rates are unchanged.\n")  # fmt: skip
    out += train_ratio_lines(train_ratios(results))
    out += [
        "",
        "Epochs to best = training words seen at the best dev evaluation / words in the training sentences used "
        "(spaCy's step in brackets). Wall time to best runs from the start of the `spacy train` process (start-up "
        "and `initialize` included) to the end of the first dev evaluation that reached the best score; total wall "
        "time is the whole `spacy train` process (test evaluation excluded). Peak RAM is that process's peak RSS. "
        "F1 is spaCy's entity-level micro F1 (`ents_f`); test F1 is `spacy evaluate` on `model-best`.",
    ]
    if one_run:
        return "\n".join(out + footer(results[0], results[0]["machine"]["torch_threads"], train_gpu(results[0])))
    out += ["", "Runs:", ""]
    for res in results:
        machine = machine_line(res["machine"], res["machine"]["torch_threads"], train_gpu(res))
        out.append(f"- {res['system']}, {res['date']}: `{res['command']}`. {machine}")
    return "\n".join(out)


def when(dates: Iterable[str]) -> str:
    """One date, or the first and last of several."""
    distinct = sorted(set(dates))
    return distinct[0] if len(distinct) == 1 else f"between {distinct[0]} and {distinct[-1]}"


def train_gpu(report: Mapping[str, Any]) -> str:
    return f", GPU: {report['machine']['gpu']}"


def train_ratio_lines(ratios: Mapping[str, Optional[float]]) -> List[str]:
    def line(text: str, value: Optional[float], fmt: str) -> str:
        return f"- {text}: " + ("n/a (system not run or failed)" if value is None else fmt.format(value))

    times = "" if ratios["epochs_trf_over_ours"] is None else f" (trf / ours = {ratios['epochs_trf_over_ours']:.2f}x)"
    return [
        line("Time to best dev F1, ours / trf", ratios["time_to_best_ours_over_trf"], "{:.3f}"),
        line("Time to best dev F1, ours / cnn", ratios["time_to_best_ours_over_cnn"], "{:.3f}"),
        line("Total training time, ours / trf", ratios["total_time_ours_over_trf"], "{:.3f}"),
        line("Total training time, ours / cnn", ratios["total_time_ours_over_cnn"], "{:.3f}"),
        line("Epochs to best dev F1, reduction vs trf", ratios["epoch_reduction_vs_trf"], "{:.1%} fewer epochs" + times),
    ]


# -- early exit -------------------------------------------------------------------
EXIT_TIMING = {
    # reports written before measure(): Language.evaluate's own timer, tokenizer included
    "Language.evaluate": "One timed pass per threshold through `Language.evaluate` (tokenizing + `nlp.pipe`, batch "
                         "size {batch_size}), after one warm-up batch",  # fmt: skip
    "nlp.pipe": "Words/s as defined at the top of this file (the best of {repeats} timed `nlp.pipe` pass(es) per "
                "threshold over fresh Docs of the test split's words, batch size {batch_size}, after one warm-up "
                "batch)",  # fmt: skip
}


def threshold_label(threshold: float, calibrated: float) -> str:
    notes = []
    if threshold >= NEVER_EXIT:
        notes.append("never exit")
    if threshold == ALWAYS_FIRST:
        notes.append("always first exit")
    if threshold == calibrated:
        notes.append("calibrated")
    label = fmt_threshold(threshold) + (f" ({', '.join(notes)})" if notes else "")
    return f"**{label}**" if threshold == calibrated else label


def exit_row(row: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], calibrated: float) -> List[str]:
    speedup = ratio(row["words_per_second"], reference_row(rows)["words_per_second"])
    return [threshold_label(row["threshold"], calibrated), fmt_f1(row["ents_f"]),
            fmt_points(0.0 - f1_loss_points(row, rows)), fmt_int(row["words_per_second"]), fmt_x(speedup),
            fmt_layer(row["mean_exit_layer"]), fmt_shares(row["exit_layer_share"])]  # fmt: skip


def exit_section(report: Mapping[str, Any]) -> str:
    """The exit-threshold table (never exit first), the calibrated threshold in bold."""
    calibrated = report["calibrated_threshold"]
    rows = sorted(report["rows"], key=lambda r: -r["threshold"])
    not_calibrated = " (1 = never exit: not calibrated, or no faster threshold kept F1)" if calibrated >= NEVER_EXIT else ""
    out = [
        "## Early exit: speed against F1",
        "",
        f"`{report['model']}` on `{report['data']}` ({report['n_docs']:,} docs, {report['n_words']:,} words), "
        f"exit layers {report['exit_layers']}, on CPU (torch threads: {report['torch_threads']}). "
        f"Calibrated threshold (the model's config): **{fmt_threshold(calibrated)}**{not_calibrated}.",
        "",
        table(["exit threshold", "test F1", "ΔF1 vs never-exit (points)", "words/s", "× never-exit", "mean exit layer",
               "share per exit layer"], [exit_row(r, rows, calibrated) for r in rows], "lrrrrrl"),  # fmt: skip
        "",
        EXIT_TIMING[report["speed_definition"]].format(**report)
        + "; the backbone runs layer by layer and a sentence (a doc without sentence starts) leaves at its first "
        "exit whose confidence (its least sure token's top probability) reaches the threshold; mean exit layer and "
        "shares per exit layer count sentences. F1 is spaCy's entity-level micro F1 (`ents_f`). Exit layer "
        "k = after the backbone's k-th transformer layer.",
    ]
    return "\n".join(out + footer(report, report["torch_threads"]))


def plot_exit(report: Mapping[str, Any], path: Path) -> None:
    """Words/s against test F1, one point per threshold, the calibrated one starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["rows"], key=lambda r: r["threshold"])
    xs, ys = [r["ents_f"] for r in rows], [r["words_per_second"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(xs, ys, "-", color="0.75", zorder=1)
    ax.scatter(xs, ys, color="tab:blue", zorder=2)
    for r in rows:
        if r["calibrated"]:
            ax.scatter([r["ents_f"]], [r["words_per_second"]], marker="*", s=220, color="tab:red", zorder=3,
                       label=f"calibrated ({fmt_threshold(r['threshold'])})")  # fmt: skip
        ax.annotate(fmt_threshold(r["threshold"]), (r["ents_f"], r["words_per_second"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)  # fmt: skip
    ax.set_xlabel("test F1 (ents_f)")
    ax.set_ylabel(f"words/s (CPU, {report['torch_threads']} torch threads)")
    ax.set_title("posattn_ner early exit: speed against F1, by exit threshold", fontsize=10)
    ax.grid(True, alpha=0.3)
    if any(r["calibrated"] for r in rows):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


# -- inference speed ----------------------------------------------------------------
def precision_label(precision: Optional[str], resolved: Optional[str]) -> str:
    if precision == "auto":
        return f"auto ({resolved})"
    return precision or "—"


def exit_label(row: Mapping[str, Any], has_exits: bool) -> str:
    if row["system"] != "ours":
        return "—"
    threshold = fmt_threshold(row["exit_threshold"])
    if not has_exits:
        return f"{threshold} (no exit layers)"
    return f"{threshold} ({'calibrated' if row['exit'] == 'calibrated' else 'exit off'})"


def fastest_ours(report: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    ours = [r for r in report["rows"] if r["system"] == "ours"]
    return max(ours, key=lambda r: r["words_per_second"]) if ours else None


def row_of(report: Mapping[str, Any], system: str) -> Optional[Mapping[str, Any]]:
    """The row of a peer system ("cnn", "trf"), None if it was left out."""
    return next((r for r in report["rows"] if r["system"] == system), None)


def speed_of(report: Mapping[str, Any], system: str) -> Optional[float]:
    row = row_of(report, system)
    return row["words_per_second"] if row else None


def layers_run(row: Mapping[str, Any], exit_layers: Sequence[int]) -> str:
    """How many backbone layers a row's docs ran, from their exit layers."""
    if row["mean_exit_layer"] == exit_layers[0]:
        return f"every sentence leaves after layer {exit_layers[0]}"
    return f"the sentences ran {row['mean_exit_layer']:.2f} of {exit_layers[-1]} layers on average"


def f1_changes(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """Each reduced-precision row's F1 change against fp32 with the same exit setting."""
    fp32 = {r["exit"]: r for r in rows if r["system"] == "ours" and r["precision"] == "fp32"}
    out = []
    for row in rows:
        ref = fp32.get(row["exit"])
        if row["system"] == "ours" and row["precision"] != "fp32" and ref is not None:
            setting = "calibrated" if row["exit"] == "calibrated" else "exit off"
            label = precision_label(row["precision"], row["resolved_precision"])
            out.append(f"{label} {setting} {(row['ents_f'] - ref['ents_f']) * 100.0:+.2f}")
    return out


def speed_systems(report: Mapping[str, Any]) -> List[str]:
    ours = report["ours"]
    if ours["exit_layers"] is None:
        exits = "no exit layers (PosAttnTagger.v1): exit-off rows only"
    else:
        exits = (f"exit layers {ours['exit_layers']}, calibrated threshold (its config) "
                 f"**{fmt_threshold(ours['calibrated_threshold'])}**")  # fmt: skip
        if ours["calibrated_threshold"] >= NEVER_EXIT:
            exits += " = never exit, so the calibrated rows are the exit-off rows"
    out = [f"posattn_ner `{ours['model']}` ({exits})"]
    for key in ("cnn", "trf"):
        info = report["systems"][key]
        if not info.get("left_out"):
            out.append(f"{SPEED_LABELS[key]} `{info['model']}` (pipeline {', '.join(info['pipeline'])})")
    return out


def speed_row(row: Mapping[str, Any], best: Mapping[str, Any], cnn: Optional[float], has_exits: bool) -> List[str]:
    wps = fmt_int(row["words_per_second"])
    if row is best:
        wps = f"**{wps}**"
    return [SPEED_LABELS[row["system"]], precision_label(row["precision"], row["resolved_precision"]),
            exit_label(row, has_exits), fmt_layer(row["mean_exit_layer"]), fmt_f1(row["ents_f"]), wps,
            fmt_x(ratio(row["words_per_second"], cnn))]  # fmt: skip


def spacy_benchmark_row(report: Mapping[str, Any], cnn: Optional[float]) -> List[str]:
    bench, ours = report["spacy_benchmark"], report["ours"]
    saved = precision_label(ours["saved_precision"], ours["saved_resolved"]) + " (as saved)"
    start = [SPEED_LABELS["spacy_benchmark"], saved, f"{fmt_threshold(ours['calibrated_threshold'])} (as saved)", NA, NA]
    if bench.get("error"):
        return start + [f"failed: {bench['error']}", NA]
    mean = bench["mean_words_per_second"]
    ci = f"{fmt_int(mean)} (95% CI {fmt_int(bench['ci95_low'])}–{fmt_int(bench['ci95_high'])})"
    return start + [ci, fmt_x(ratio(mean, cnn))]


def speed_section(report: Mapping[str, Any]) -> str:
    """posattn_ner per precision and exit setting beside the CNN and the transformer, with ratios."""
    rows, bench = report["rows"], report["spacy_benchmark"]
    has_exits = report["ours"]["exit_layers"] is not None
    cnn, trf, best = speed_of(report, "cnn"), speed_of(report, "trf"), fastest_ours(report)
    left_out = [f"{SPEED_LABELS[k]} ({report['systems'][k]['left_out']})" for k in ("cnn", "trf")
                if report["systems"][k].get("left_out")]  # fmt: skip
    limit = f"; the first {report['limit']:,} docs" if report["limit"] else ""
    out = [
        "## Inference speed on CPU: precision, early exit, spaCy's CNN",
        "",
        f"Test split `{report['test']}` ({report['n_docs']:,} docs, {report['n_words']:,} words{limit}), batch size "
        f"{report['batch_size']} for every system, torch threads {report['torch_threads']}, one process. Systems: "
        + "; ".join(speed_systems(report)) + ".",
    ]
    if left_out:
        out += ["", "Left out (not measured): " + "; ".join(left_out) + "."]
    body = [speed_row(r, best, cnn, has_exits) for r in rows]
    if not bench.get("skipped"):
        body.append(spacy_benchmark_row(report, cnn))
    out += ["", table(["system", "precision", "exit threshold", "mean exit layer", "test F1", "words/s", "× CNN"],
                      body, "lllrrrr"), ""]  # fmt: skip
    out += speed_ratio_lines(best, cnn, trf, f1_changes(rows))
    out += ["", speed_definition_text(report)]
    if not bench.get("skipped"):
        out += ["", spacy_benchmark_text(bench)]
    return "\n".join(out + footer(report, report["torch_threads"]))


def speed_ratio_lines(best: Optional[Mapping[str, Any]], cnn: Optional[float], trf: Optional[float],
                      changes: List[str]) -> List[str]:  # fmt: skip
    def line(text: str, value: Optional[float]) -> str:
        return f"- {text}: " + ("n/a (system not measured)" if value is None else f"{value:.2f}×")

    best_wps = best["words_per_second"] if best else None
    out = []
    if best:
        setting = "calibrated exit" if best["exit"] == "calibrated" else "exit off"
        out.append(f"- Fastest posattn_ner row: {precision_label(best['precision'], best['resolved_precision'])}, "
                   f"{setting}: {fmt_int(best_wps)} words/s, F1 {best['ents_f']:.4f}")  # fmt: skip
    out += [
        line("Fastest posattn_ner / spacy-transformers, words/s", ratio(best_wps, trf)),
        line("Fastest posattn_ner / spaCy CNN, words/s", ratio(best_wps, cnn)),
        line("spaCy CNN / spacy-transformers, words/s", ratio(cnn, trf)),
    ]
    if changes:
        out.append("- Test F1 change vs fp32 with the same exit setting, in points: " + ", ".join(changes))
    else:
        out.append("- Test F1 change vs fp32: n/a (fp32 or no reduced precision measured)")
    return out


SPEED_TIMING = {
    "nlp.pipe": "Words/s as defined at the top of this file, the best of {repeats} timed passes per row. Test F1: "
                "spaCy's entity-level micro F1 (`ents_f`) on the first timed pass's docs.",  # fmt: skip
    # reports before measure(): the same timing, F1 from a separate Language.evaluate pass
    "nlp.pipe; F1 by Language.evaluate": "Words/s: the best of {repeats} timed `nlp.pipe` passes over fresh Docs "
        "built from the test split's words (tokenization not timed, for any system), after one warm-up batch with "
        "the row's settings. Test F1: spaCy's entity-level micro F1 (`ents_f`) from one `Language.evaluate` pass "
        "over the same docs.",  # fmt: skip
}


def speed_definition_text(report: Mapping[str, Any]) -> str:
    return SPEED_TIMING[report["speed_definition"]].format(**report) + (
        " Precision applies to posattn_ner's backbone (`bf16` autocast, `int8` dynamic quantization, `auto` as "
        "resolved on the machine, shown in brackets); the CNN runs thinc's float32 CPU ops (not torch's threads) and "
        "the transformer fp32. Mean exit layer k = after the backbone's k-th layer (the last one when exit is off). "
        "× CNN = words/s over the CNN's words/s."
    )


def spacy_benchmark_text(bench: Mapping[str, Any]) -> str:
    prefix = f" of the first {bench['limit']:,} docs" if bench.get("limit") else ""
    return (
        f"`spacy benchmark speed` (spaCy's own harness: retokenizes the text{prefix}, {bench['warmup_epochs']} "
        f"warm-up epoch(s), then {bench['n_batches']} batches of {bench['batch_size']} docs drawn at random; the "
        f"pipeline as saved) in a subprocess with OMP_NUM_THREADS={bench['env']['OMP_NUM_THREADS']}: "
        f"`{bench['command']}`; mean words/s per batch with its bootstrap 95% CI."
    )


def curve(points: Sequence[Mapping[str, Any]], first_step: bool = True) -> str:
    """Dev F1 by evaluation: "0.8084 (step 400, 75 s), 0.8361 (800, 123 s)"."""
    return ", ".join(f"{p['score']:.4f} ({'step ' if first_step and i == 0 else ''}{p['step']:,}, {p['loop_seconds']} s)"
                     for i, p in enumerate(points))  # fmt: skip


# -- smaller tables -------------------------------------------------------------------
def per_type_table(scores: Mapping[str, Any]) -> str:
    """`spacy evaluate`'s per-type P/R/F, best F first."""
    types = sorted(scores["ents_per_type"].items(), key=lambda kv: -kv[1]["f"])
    return table(["type", "P", "R", "F"], [[t, fmt_f1(s["p"]), fmt_f1(s["r"]), fmt_f1(s["f"])] for t, s in types],
                 "lrrr")  # fmt: skip
