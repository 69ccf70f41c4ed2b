"""The ``spacy-posattn-ner`` command line (typer, as spaCy's own CLI):
``spacy-posattn-ner annotate MODEL INPUT OUTPUT`` or ``python -m spacy_posattn_ner annotate ...``."""
import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .errors import AnnotateError
from .messages import Messages

msg = Messages()
app = typer.Typer(
    name="spacy-posattn-ner", no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="spacy-posattn-ner commands."
)

INPUT_HELP = (
    "A .jsonl file (--text-key, --id-key), a .txt file (one document per line), a .parquet file, a .spacy "
    "DocBin, or a directory, glob or URL (s3://, gs://, file://) of those."
)
OUTPUT_HELP = (
    "A .jsonl, .parquet or .spacy file (shards are kept in OUTPUT.parts/ until it is complete), or a directory "
    "of shards (--format). One row per input document, in input order."
)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Format(str, Enum):
    jsonl = "jsonl"
    parquet = "parquet"
    spacy = "spacy"


@app.callback()
def _commands() -> None:
    """spacy-posattn-ner commands."""


@app.command("annotate")
def annotate_cli(
    # fmt: off
    model: str = typer.Argument(..., metavar="MODEL", help="A pipeline directory or an installed pipeline package (any pipeline that sets doc.ents)."),
    input_spec: str = typer.Argument(..., metavar="INPUT", help=INPUT_HELP),
    output: Path = typer.Argument(..., metavar="OUTPUT", help=OUTPUT_HELP),
    text_key: str = typer.Option("text", "--text-key", "-tk", help="JSONL key / Parquet column holding the text."),
    id_key: str = typer.Option("id", "--id-key", "-ik", help="JSONL key / Parquet column holding the id (absent: the line or row number)."),
    output_format: Optional[Format] = typer.Option(None, "--format", "-f", help="Format of a directory OUTPUT's shards (default jsonl; a file OUTPUT's extension decides)."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Documents per shard: the unit that is written whole and skipped on a re-run."),
    batch_size: int = typer.Option(128, "--batch-size", "-b", help="Documents per nlp.pipe batch."),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Local engine: worker processes."),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="Local engine: GPU id, or -1 for CPU."),
    limit: int = typer.Option(0, "--limit", help="Annotate the first N input documents only (0 = all)."),
    max_chars: int = typer.Option(0, "--max-chars", help="Longer texts get an error row (0 = nlp.max_length only)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad row, naming the file and line, instead of writing an error row."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again: discard an earlier run's shards and manifest."),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local, or ray (pip install spacy-posattn-ner[ray])."),
    workers: int = typer.Option(1, "--workers", help="Ray engine: actors, each loading the pipeline once."),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", help="Ray engine: CPUs per actor (also its torch threads)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="Ray engine: GPUs per actor."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray engine: an existing cluster (e.g. ray://head:10001 or auto); default: start a local Ray."),
    torch_threads: int = typer.Option(0, "--torch-threads", help="Torch threads per process (0: torch's default in one process, 1 per worker process, --cpus-per-worker on Ray)."),
    code: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file with custom components to import."),
    scores_key: str = typer.Option("posattn_ner", "--scores-key", help="doc.spans key of a SpanGroup whose attrs['scores'] holds entity scores."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the summary as JSON here."),
    # fmt: on
) -> None:
    """Annotate a corpus of any size with a NER pipeline, resumably: shards are written whole,
    a re-run skips the finished ones, and bad rows get an error row instead of stopping the job."""
    from .runner import AnnotateOptions, annotate_corpus

    options = AnnotateOptions(
        text_key=text_key,
        id_key=id_key,
        output_format=output_format.value if output_format else None,
        shard_size=shard_size,
        batch_size=batch_size,
        n_process=n_process,
        gpu_id=gpu_id,
        limit=limit,
        max_chars=max_chars,
        strict=strict,
        overwrite=overwrite,
        engine=engine.value,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        ray_address=ray_address,
        torch_threads=torch_threads,
        code=str(code) if code else None,
        scores_key=scores_key,
    )
    try:
        summary = annotate_corpus(model, input_spec, output, options, printer=msg)
    except AnnotateError as err:
        title, _, details = str(err).partition("\n")
        msg.fail(title, details or "", exits=1)
    if summary.skipped_documents:
        msg.info(f"Skipped {summary.skipped_documents:,} documents in {summary.skipped_shards:,} shards an earlier run finished")
    msg.good(f"Annotated {summary.line()}", f"Output: {summary.output}")
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf8")


from ..student.cli import register as _register_distill  # noqa: E402

_register_distill(app)


def main() -> None:
    """The console script."""
    app(prog_name="spacy-posattn-ner")
