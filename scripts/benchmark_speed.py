"""CPU inference side by side, in one process, on the same test docs: posattn_ner in each
precision with its calibrated exit threshold and with exit off, spaCy's CNN ``ner`` and a
spacy-transformers pipeline (each optional one left out, and said so, if its directory is
missing). Every row is one measure(). Optionally ``python -m spacy benchmark speed`` runs
once on posattn_ner as saved, in a child process, as spaCy's own cross-check.
Writes JSON only; render-benchmarks turns it into BENCHMARKS.md's section.

    python -m scripts.benchmark_speed corpus/test.spacy --ours training/posattn_ner/model-calibrated \\
        --cnn training/cnn_ner/model-best --trf training-bench/trf/model-best --student training/student \\
        [--latency 300] --output metrics/benchmark_speed.json
"""
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
import typer
from spacy.language import Language
from spacy.tokens import Doc
from wasabi import msg

from scripts.bench.child import run_child
from scripts.bench.cli import BatchSize, DocsFile, Limit, Output, Repeats, Threads, report_head
from scripts.bench.data import COMPONENT, load_pipeline, override, read_gold, sentence_docs, write_prefix
from spacy_posattn_ner.backbone import PRECISIONS
from spacy_posattn_ner.calibration import NEVER_EXIT, SPEED_DEFINITION, measure

app = typer.Typer(add_completion=False)

SPACY_MEAN_RE = re.compile(r"Mean:\s*([-+0-9.]+)\s*words/s\s*\(95% CI:\s*([-+0-9.]+)\s*\+?([-+0-9.]+)\)")


def parse_precisions(spec: str) -> List[str]:
    """'fp32,int8' -> ['fp32', 'int8'] (distinct, in the order given; each one the package knows)."""
    out: List[str] = []
    for item in filter(None, (part.strip().lower() for part in spec.split(","))):
        if item not in PRECISIONS:
            raise typer.BadParameter(f"{item!r} is not one of {', '.join(PRECISIONS)}", param_hint="--precisions")
        if item not in out:
            out.append(item)
    if not out:
        raise typer.BadParameter("give at least one precision", param_hint="--precisions")
    return out


def peers(cnn: Optional[Path], trf: Optional[Path], student: Optional[Path] = None
          ) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Language]]:  # fmt: skip
    """The optional systems: what the report says of each, and those that loaded."""
    systems: Dict[str, Dict[str, Any]] = {}
    loaded: Dict[str, Language] = {}
    for key, path in (("cnn", cnn), ("trf", trf), ("student", student)):
        if path is None:
            systems[key] = {"model": None, "left_out": "not given"}
        elif not path.exists():
            systems[key] = {"model": str(path), "left_out": f"`{path}` not found"}
            msg.warn(f"{path} not found: {key} left out")
        else:
            loaded[key] = load_pipeline(path, need=COMPONENT if key == "student" else "ner")
            systems[key] = {"model": str(path), "pipeline": list(loaded[key].pipe_names), "size_mb": size_mb(path)}
    return systems, loaded


def ours_rows(nlp: Language, refs: List[Doc], precisions: List[str], batch_size: int, repeats: int) -> List[Dict]:
    """One row per precision and exit setting (calibrated, off), each under the settings
    override, so the pipe's own settings come back even if a measurement fails."""
    pipe = nlp.get_pipe(COMPONENT)
    exits = [("calibrated", pipe.exit_threshold)] if pipe.exit_layers and pipe.exit_threshold < NEVER_EXIT else []
    exits.append(("off", NEVER_EXIT))
    rows = []
    for precision in precisions:
        for exit_name, threshold in exits:
            with override(pipe, precision=precision, exit_threshold=threshold):
                row = {"system": "ours", "precision": precision, "resolved_precision": pipe.resolved_precision,
                       "exit": exit_name, "exit_threshold": threshold}  # fmt: skip
                row.update(measure(nlp, refs, batch_size=batch_size, repeats=repeats, layer_keys=pipe.exit_layers or ()))
            msg.text(f"ours {precision}, exit {exit_name}: F1 {row['ents_f']:.4f}, {row['words_per_second']:,.0f} words/s")
            rows.append(row)
    return rows


def size_mb(path: Path) -> float:
    """A saved pipeline's size on disk (MB, 10^6 bytes)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def latency(systems: Dict[str, Language], texts: List[str]) -> Dict[str, Dict[str, float]]:
    """Milliseconds per ``nlp(text)`` call (one text, the web-service case), the systems
    taking turns text by text (the order rotating) so that load drifts hit them alike."""
    import statistics
    import time

    names = list(systems)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        for text in texts[:20]:
            systems[name](text)
    for i, text in enumerate(texts):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            systems[name](text)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: {"median_ms": statistics.median(t), "mean_ms": statistics.fmean(t),
                   "p90_ms": sorted(t)[int(0.9 * (len(t) - 1))], "n_texts": len(t)} for name, t in times.items()}  # fmt: skip


def spacy_benchmark(model: Path, test: Path, limit: int, batch_size: int, n_batches: int, warmup: int,
                    n_threads: int, log_dir: Path) -> Dict[str, Any]:  # fmt: skip
    """``python -m spacy benchmark speed`` on the pipeline as saved, in a child with
    ``n_threads`` OpenMP/MKL threads; its printed mean words/s and 95% CI."""
    data = test
    if limit:
        import spacy

        data = log_dir / "test-prefix.spacy"
        write_prefix(spacy.blank("en"), test, data, limit)
    args = ["benchmark", "speed", str(model), str(data), "--batch-size", str(batch_size),
            "--batches", str(n_batches), "--warmup", str(warmup)]  # fmt: skip
    threads = {"OMP_NUM_THREADS": str(n_threads), "MKL_NUM_THREADS": str(n_threads)}
    run = run_child([sys.executable, "-m", "spacy", *args], log_dir / "spacy-benchmark.log", env=threads)
    shown = ["python", "-m", "spacy", *args[:3], str(test), *args[4:]]
    result: Dict[str, Any] = {"command": " ".join(shown), "env": {k: n_threads for k in threads}, "limit": limit,
                              "batch_size": batch_size, "n_batches": n_batches, "warmup_epochs": warmup,
                              "returncode": run["returncode"], "wall_seconds": run["wall_seconds"], "error": None}  # fmt: skip
    match = SPACY_MEAN_RE.search((log_dir / "spacy-benchmark.log").read_text(encoding="utf8", errors="replace"))
    if run["returncode"] != 0 or match is None:
        result["error"] = f"exit code {run['returncode']}" if run["returncode"] else "no 'Mean: ... words/s' line"
        return result
    mean, low, high = (float(x) for x in match.groups())  # spaCy prints the CI as offsets from the mean
    result.update(mean_words_per_second=mean, ci95_low=mean + low, ci95_high=mean + high, printed=match.group(0))
    return result


def gold(nlp: Language, path: Path, limit: int, sentences: bool) -> List[Doc]:
    refs = read_gold(nlp, path, limit)
    return sentence_docs(refs) if sentences else refs


@app.command()
def main(
    ctx: typer.Context,
    test_path: DocsFile,
    ours: Path = typer.Option(..., "--ours", exists=True, file_okay=False, help="Saved posattn_ner pipeline"),
    cnn: Optional[Path] = typer.Option(None, "--cnn", help="Saved spaCy CNN ner pipeline (left out if missing)"),
    trf: Optional[Path] = typer.Option(None, "--trf", help="Saved spacy-transformers pipeline (left out if missing)"),
    student: Optional[Path] = typer.Option(None, "--student", help="Saved distilled student (left out if missing)"),
    latency_texts: int = typer.Option(0, "--latency", min=0, help="Also time nlp(text) on this many of the docs measured (one sentence each with --sentences or a one-sentence-per-doc corpus), systems taking turns (0: no)"),
    precisions: str = typer.Option("fp32,bf16,int8,auto", "--precisions", help="posattn_ner precisions to run"),
    n_threads: Threads = 2,
    batch_size: BatchSize = 256,
    repeats: Repeats = 2,
    limit: Limit = 0,
    with_spacy_benchmark: bool = typer.Option(True, "--spacy-benchmark/--no-spacy-benchmark",
                                              help="Also run `spacy benchmark speed` on --ours"),  # fmt: skip
    spacy_batches: int = typer.Option(50, "--spacy-batches", min=30, help="spacy benchmark speed --batches"),
    spacy_warmup: int = typer.Option(1, "--spacy-warmup", min=0, help="spacy benchmark speed --warmup (epochs)"),
    sentences: bool = typer.Option(False, "--sentences/--docs",
                                   help="One doc per sentence of the test docs instead of the docs as they are"),  # fmt: skip
    output: Output = Path("metrics/benchmark_speed.json"),
) -> None:
    """Test F1 and CPU words/s: posattn_ner per precision and exit setting, the CNN, the transformer."""
    precision_list = parse_precisions(precisions)
    head = report_head(ctx, "scripts.benchmark_speed", n_threads)
    try:  # load everything first: a bad path fails before any measuring
        nlp = load_pipeline(ours)
        systems, loaded = peers(cnn, trf, student)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    pipe = nlp.get_pipe(COMPONENT)
    refs = gold(nlp, test_path, limit, sentences)
    rows = ours_rows(nlp, refs, precision_list, batch_size, repeats)
    for key, other in loaded.items():
        row = {"system": key, "precision": "fp32", "resolved_precision": "fp32", "exit": None, "exit_threshold": None}
        row.update(measure(other, gold(other, test_path, limit, sentences), batch_size=batch_size, repeats=repeats))
        msg.text(f"{key}: F1 {row['ents_f']:.4f}, {row['words_per_second']:,.0f} words/s")
        rows.append(row)
    per_call = None
    if latency_texts:
        texts = [doc.text for doc in refs[:latency_texts]]  # the docs measured above (one sentence each with --sentences)
        per_call = latency({"ours": nlp, **loaded}, texts)
        for name, value in per_call.items():
            msg.text(f"{name}: nlp(text) {value['median_ms']:.2f} ms median, {value['mean_ms']:.2f} ms mean")
    bench: Dict[str, Any] = {"skipped": True}
    if with_spacy_benchmark:
        with tempfile.TemporaryDirectory(prefix="benchmark-speed-") as tmp:
            bench = spacy_benchmark(ours, test_path, limit, batch_size, spacy_batches, spacy_warmup, n_threads, Path(tmp))
    report = {
        **head,
        "speed_definition": SPEED_DEFINITION,
        "test": str(test_path),
        "unit": "sentence" if sentences else "doc",
        "limit": limit,
        "n_docs": len(refs),
        "n_words": rows[0]["n_words"],
        "batch_size": batch_size,
        "repeats": repeats,
        "ours": {
            "model": str(ours),
            "size_mb": size_mb(ours),
            "exit_layers": list(pipe.exit_layers) if pipe.exit_layers else None,
            "calibrated_threshold": pipe.exit_threshold,
            "saved_precision": pipe.precision,
            "saved_resolved": pipe.resolved_precision,
            "precisions": precision_list,
        },
        "systems": systems,
        "rows": rows,
        "latency": per_call,
        "spacy_benchmark": bench,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, report)
    msg.good(f"Wrote {output}; `spacy project run render-benchmarks` renders it")
    if bench.get("error"):
        msg.fail(f"spacy benchmark speed failed (the rest is written): {bench['error']}", exits=1)


if __name__ == "__main__":
    app()
