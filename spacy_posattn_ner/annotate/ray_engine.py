"""The Ray engine: Ray Data reads the input files (one read task per file, with the
same readers as the local engine), ``map_batches`` runs an actor class that loads the
pipeline once per actor, and the driver receives the rows in input order and writes
the shards with the same code as the local engine, so both engines write the same output.

Rows travel as JSON strings (exact for ids of any JSON type and for float scores).
Records of already finished shards go through the actors unannotated (a row of None)
so that ``--limit`` counts them and the driver can report them as skipped.
"""
import json
import logging
import math
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from .annotator import Annotated, Annotator, row_to_json
from .inputs import InputFile
from .local_engine import set_torch_threads
from .model import load_pipeline
from .records import ReadOptions, Record, batch_groups, read_records

BLOCK_ROWS = 1024


def require_ray() -> None:
    from .errors import AnnotateError

    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as err:
        raise AnnotateError("--engine ray needs Ray Data: pip install spacy-posattn-ner[ray]") from err


def _record_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("file_index", pa.int64()),
            ("position", pa.int64()),
            ("where", pa.string()),
            ("id_json", pa.string()),
            ("text", pa.string()),
            ("words", pa.list_(pa.string())),
            ("spaces", pa.list_(pa.bool_())),
            ("error", pa.string()),
        ]
    )


def records_to_table(records: Sequence[Record]):
    import pyarrow as pa

    return pa.table(
        {
            "file_index": [r.file_index for r in records],
            "position": [r.position for r in records],
            "where": [r.where for r in records],
            "id_json": [json.dumps(r.id) for r in records],
            "text": [r.text for r in records],
            "words": [r.words for r in records],
            "spaces": [r.spaces for r in records],
            "error": [r.error for r in records],
        },
        schema=_record_schema(),
    )


def table_to_records(table) -> List[Record]:
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    return [
        Record(fi, pos, where, json.loads(id_json), text, words, spaces, error)
        for fi, pos, where, id_json, text, words, spaces, error in zip(
            cols["file_index"], cols["position"], cols["where"], cols["id_json"], cols["text"], cols["words"], cols["spaces"], cols["error"]
        )
    ]


def _read_file(file: InputFile, options: ReadOptions, shard_size: int, batch_size: int) -> Iterator[Any]:
    """Blocks of about BLOCK_ROWS records, cut between pipeline batches (batch_key) so that
    an actor always gets whole batches."""
    block: List[Record] = []
    for group in batch_groups(read_records(file, options), shard_size, batch_size):
        block.extend(group)
        if len(block) >= BLOCK_ROWS:
            yield records_to_table(block)
            block = []
    if block:
        yield records_to_table(block)


def _datasource(files: Sequence[InputFile], options: ReadOptions, shard_size: int, batch_size: int):
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class RecordsDatasource(Datasource):
        """One read task per input file, in input order."""

        def estimate_inmemory_data_size(self) -> Optional[int]:
            return sum(f.size for f in files)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None, **_: Any) -> List[ReadTask]:
            tasks = []
            for file in files:
                meta = BlockMetadata(num_rows=None, size_bytes=file.size, input_files=[file.location], exec_stats=None)
                read = (lambda f: lambda: _read_file(f, options, shard_size, batch_size))(file)
                tasks.append(ReadTask(read, meta, schema=_record_schema(), per_task_row_limit=per_task_row_limit))
            return tasks

    return RecordsDatasource()


class RayAnnotator:
    """The map_batches class: its constructor runs once per actor and loads the pipeline."""

    def __init__(
        self,
        model: str,
        code: Optional[str],
        annotator_options: Dict[str, Any],
        done: Iterable[Tuple[int, int]],
        shard_size: int,
        torch_threads: int,
        use_gpu: bool,
    ) -> None:
        import spacy

        set_torch_threads(torch_threads)
        if use_gpu:
            spacy.require_gpu(0)  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        self.annotator = Annotator(load_pipeline(model, code), **annotator_options)
        self.done: Set[Tuple[int, int]] = {tuple(k) for k in done}
        self.shard_size = shard_size

    def __call__(self, batch):
        import pyarrow as pa

        records = table_to_records(batch)
        todo = [r for r in records if (r.file_index, r.position // self.shard_size) not in self.done]
        results = {}
        for group in batch_groups(todo, self.shard_size, self.annotator.batch_size):  # the local engine's batches
            results.update((item.key, item) for item in self.annotator(group))
        rows, words = [], []
        for rec in records:
            item = results.get(rec.key)
            rows.append(None if item is None else row_to_json(item.row))
            words.append(0 if item is None else item.n_words)
        return pa.table(
            {
                "file_index": [r.file_index for r in records],
                "position": [r.position for r in records],
                "row": pa.array(rows, type=pa.string()),
                "n_words": pa.array(words, type=pa.int64()),
            }
        )


def annotate_ray(
    files: Sequence[InputFile],
    read_options: ReadOptions,
    *,
    batch_size: int,
    model: str,
    code: Optional[str],
    annotator_options: Dict[str, Any],
    done: Set[Tuple[int, int]],
    shard_size: int,
    limit: int,
    workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    address: Optional[str],
    torch_threads: int,
) -> Iterator[Annotated]:
    """Annotated records in input order (row None: a record of a finished shard)."""
    import ray
    from ray.data import DataContext

    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:  # reads need a CPU slot too: never let the actors take every one
            cpus = max(os.cpu_count() or 1, math.ceil(workers * cpus_per_worker) + 1)
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray.data.read_datasource(_datasource(files, read_options, shard_size, batch_size))
        if limit > 0:
            ds = ds.limit(limit)
        threads = torch_threads or max(1, int(cpus_per_worker))
        ds = ds.map_batches(
            RayAnnotator,
            fn_constructor_kwargs={
                "model": model,
                "code": code,
                "annotator_options": annotator_options,
                "done": sorted(done),
                "shard_size": shard_size,
                "torch_threads": threads,
                "use_gpu": gpus_per_worker > 0,
            },
            batch_size=None,  # a read block each: whole pipeline batches, as _read_file cut them
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker or None,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            cols = {name: batch.column(name).to_pylist() for name in ("file_index", "position", "row", "n_words")}
            for fi, pos, row, n_words in zip(cols["file_index"], cols["position"], cols["row"], cols["n_words"]):
                yield Annotated(fi, pos, None if row is None else json.loads(row), n_words)
    finally:
        if started:
            ray.shutdown()
