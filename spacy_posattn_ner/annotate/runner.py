"""``annotate_corpus``: inputs → manifest check → engine → shards → (merge) → summary.

Shards are cut on the records' positions in their input files, the same in every run
and engine, so a re-run skips the shards that exist and redoes the one a kill cut short,
which makes an interrupted and resumed run write exactly what an uninterrupted one does.
"""
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from .annotator import DEFAULT_SCORES_KEY, Annotated, Annotator
from .errors import AnnotateError
from .inputs import InputFile, resolve_inputs
from .manifest import build_manifest, model_fingerprint, prepare_output, remove_tmp_files
from .messages import Messages
from .model import entity_warning, import_code, load_pipeline, model_location
from .outputs import OutputLayout, check_writable, merge_shards, output_layout, require_format, write_shard
from .progress import Progress, Summary
from .records import ReadOptions, iter_records

ENGINES = ("local", "ray")


@dataclass
class AnnotateOptions:
    text_key: str = "text"
    id_key: str = "id"
    output_format: Optional[str] = None  # for a directory OUTPUT: jsonl, parquet or spacy
    shard_size: int = 10_000
    batch_size: int = 128
    n_process: int = 1
    gpu_id: int = -1
    limit: int = 0
    max_chars: int = 0
    strict: bool = False
    overwrite: bool = False
    engine: str = "local"
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    ray_address: Optional[str] = None
    torch_threads: int = 0
    code: Optional[str] = None
    scores_key: str = DEFAULT_SCORES_KEY
    progress: bool = True

    def output_affecting(self, fmt: str) -> Dict[str, Any]:
        """The options the manifest records: those that change the rows or the shards."""
        return {
            "text_key": self.text_key,
            "id_key": self.id_key,
            "format": fmt,
            "shard_size": self.shard_size,
            "batch_size": self.batch_size,  # another pipeline's output can depend on its batches
            "limit": self.limit,
            "max_chars": self.max_chars,
            "scores_key": self.scores_key,
        }


def check_options(options: AnnotateOptions) -> None:
    if options.engine not in ENGINES:
        raise AnnotateError(f"--engine {options.engine}: choose local or ray")
    if options.output_format not in (None, "jsonl", "parquet", "spacy"):
        raise AnnotateError(f"--format {options.output_format}: choose jsonl, parquet or spacy")
    for name in ("shard_size", "batch_size", "n_process", "workers"):
        if getattr(options, name) < 1:
            raise AnnotateError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(options, name)}")
    for name in ("limit", "max_chars", "torch_threads"):
        if getattr(options, name) < 0:
            raise AnnotateError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(options, name)}")
    if options.gpu_id >= 0 and options.n_process > 1:
        raise AnnotateError("--gpu-id with --n-process > 1 is not supported: run one process per GPU, or --engine ray --gpus-per-worker 1")
    if options.engine == "ray" and options.gpu_id >= 0:
        raise AnnotateError("--gpu-id is for the local engine: give Ray actors GPUs with --gpus-per-worker")
    if options.engine == "ray" and (options.cpus_per_worker <= 0 or options.gpus_per_worker < 0):
        raise AnnotateError("--cpus-per-worker must be above 0 and --gpus-per-worker 0 or more")


def check_inputs(files: Sequence[InputFile], options: ReadOptions) -> None:
    """Problems that concern a whole file (a Parquet file without the text column) stop
    the run before any work, naming the file."""
    for file in files:
        if file.format != "parquet":
            continue
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise AnnotateError(f"{file.label}: reading Parquet needs pyarrow (pip install spacy-posattn-ner[parquet])") from err
        with file.open() as stream:
            try:
                names = pq.ParquetFile(stream).schema_arrow.names
            except Exception as err:
                raise AnnotateError(f"{file.label}: not a readable Parquet file ({err})") from err
        if options.text_key not in names:
            raise AnnotateError(f"{file.label}: no '{options.text_key}' column (it has {', '.join(names)}); choose one with --text-key")


class ShardAssembler:
    """Collects the rows of one shard as they arrive (in input order) and writes it whole."""

    def __init__(self, layout: OutputLayout, shard_size: int, vocab, progress: Progress) -> None:
        self.layout, self.shard_size, self.vocab, self.progress = layout, shard_size, vocab, progress
        self.key: Optional[Tuple[int, int]] = None
        self.items: List[Annotated] = []

    def add(self, item: Annotated) -> None:
        key = (item.file_index, item.position // self.shard_size)
        if key != self.key:
            self.flush()
            self.key = key
        self.items.append(item)

    def flush(self) -> None:
        if self.items:
            path = write_shard(self.layout, self.key, self.items, self.vocab)
            self.progress.shard(path.name, len(self.items))
        self.items = []


def _outside_output(files: List[InputFile], layout: OutputLayout, printer: Messages) -> List[InputFile]:
    """An OUTPUT inside an INPUT directory must not be read back as input on a re-run."""
    own = [os.path.abspath(layout.shard_dir), os.path.abspath(layout.target)]

    def is_own(file: InputFile) -> bool:
        path = file.location[len("file://") :] if file.location.startswith("file://") else file.location
        return not (file.is_url and path == file.location) and any(path == p or path.startswith(p + os.sep) for p in own)

    kept = [f for f in files if not is_own(f)]
    if len(kept) < len(files):
        printer.info(f"Not reading {len(files) - len(kept)} files of OUTPUT {layout.target} as input")
        if not kept:
            raise AnnotateError(f"INPUT: no input files besides OUTPUT {layout.target}")
        kept = [replace(f, index=i) for i, f in enumerate(kept)]
    return kept


def _engine_stream(
    options: AnnotateOptions,
    files: Sequence[InputFile],
    read_options: ReadOptions,
    nlp,
    location: str,
    layout: OutputLayout,
    done: Set[Tuple[int, int]],
) -> Iterator[Annotated]:
    """The chosen engine's annotated records, in input order."""
    annotator_options = {"max_chars": options.max_chars, "batch_size": options.batch_size, "scores_key": options.scores_key}
    if options.engine == "ray":
        from .ray_engine import annotate_ray

        return annotate_ray(
            files,
            read_options,
            batch_size=options.batch_size,
            model=location,
            code=options.code,
            annotator_options=annotator_options,
            done=done,
            shard_size=options.shard_size,
            workers=options.workers,
            cpus_per_worker=options.cpus_per_worker,
            gpus_per_worker=options.gpus_per_worker,
            address=options.ray_address,
            torch_threads=options.torch_threads,
        )
    from .local_engine import annotate_local

    annotator = Annotator(nlp, keep_docs=layout.format == "spacy", **annotator_options)
    records = iter_records(files, read_options)
    return annotate_local(
        annotator, records, shard_size=options.shard_size, done=done, n_process=options.n_process, torch_threads=options.torch_threads
    )


def annotate_corpus(model: str, input_spec: str, output: Path, options: Optional[AnnotateOptions] = None, printer: Optional[Messages] = None) -> Summary:
    """Annotate every record of INPUT into OUTPUT; returns what this run did."""
    options = options or AnnotateOptions()
    printer = printer or Messages(quiet=not options.progress)
    check_options(options)
    layout = output_layout(Path(output), options.output_format)
    require_format(layout.format)
    check_writable(layout.target)  # before minutes of loading a model
    if options.engine == "ray":
        from .ray_engine import require_ray

        require_ray()
        if layout.format == "spacy":
            raise AnnotateError("--engine ray writes .jsonl or .parquet, not .spacy: use the local engine for DocBin output")
    import_code(options.code)
    files, ignored = resolve_inputs(input_spec)
    files = _outside_output(files, layout, printer)
    if ignored:
        printer.warn(f"Ignored {len(ignored)} files of other formats in {input_spec}", ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else ""))
    read_options = ReadOptions(options.text_key, options.id_key, several_files=len(files) > 1)
    check_inputs(files, read_options)
    if options.gpu_id >= 0 and options.engine == "local":
        import spacy

        spacy.require_gpu(options.gpu_id)
    location = model_location(model)
    nlp = load_pipeline(location, options.code)
    printer.good(f"Loaded pipeline {model} ({', '.join(nlp.pipe_names)})")
    warning = entity_warning(nlp, model)
    if warning:
        printer.warn(warning)
    manifest = build_manifest(files, options.output_affecting(layout.format), model_fingerprint(location, nlp))
    prepare_output(layout, manifest, options.overwrite)
    remove_tmp_files(layout)
    done = layout.finished_shards()
    summary = Summary(output=str(layout.target), skipped_shards=len(done), engine=options.engine)
    progress = Progress(summary, printer, show=options.progress)
    assembler = ShardAssembler(layout, options.shard_size, nlp.vocab, progress)
    stream = _engine_stream(options, files, read_options, nlp, location, layout, done)
    seen = 0
    try:
        for item in stream:
            if options.limit and seen == options.limit:
                break  # the engines annotate whole batches: rows past the limit are dropped here
            seen += 1
            if item.row is None:
                progress.skipped()
                continue
            if options.strict and "error" in item.row:
                raise AnnotateError(f"--strict: {item.row['error']}")
            assembler.add(item)
            progress.row(item)
        assembler.flush()
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops worker processes or Ray before the error is reported
        progress.close()
    if layout.single_file:
        merge_shards(layout)
    return summary
