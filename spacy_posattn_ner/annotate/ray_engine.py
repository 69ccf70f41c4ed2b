"""The Ray engine: Ray Data reads the input files (one read task per file, with the
same readers as the local engine), ``map_batches`` runs an actor class that loads the
pipeline once per actor, and the driver receives the rows in input order and writes
the shards with the same code as the local engine, so both engines write the same output.

A dataset row is one whole pipeline batch (``batch_groups``), not one record: a batch
split in two would change a batch-dependent pipeline's output. Ray merges a read task's
output into a few large blocks and hands an actor a block whole, so one actor could get
most of a file while the other idles; the dataset is cut again into one row per block,
and the pool hands out work batch by batch (``batches_dataset``). Records and rows travel
as JSON (exact for ids of any JSON type and for float scores). Records of finished
shards come back as markers (a row of None), so the driver counts them for ``--limit``
and reports them as skipped.
"""
import json
import logging
import math
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from .annotator import Annotated, Annotator, row_to_json
from .errors import AnnotateError
from .inputs import InputFile
from .local_engine import set_torch_threads
from .model import load_pipeline
from .records import ReadOptions, Record, batch_groups, read_records

GROUPS_PER_BLOCK = 8


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as err:
        raise AnnotateError("--engine ray needs Ray Data: pip install spacy-posattn-ner[ray]") from err


def group_to_json(group: Sequence[Record]) -> str:
    return json.dumps([[r.file_index, r.position, r.where, r.id, r.text, r.words, r.spaces, r.error] for r in group])


def group_from_json(data: str) -> List[Record]:
    return [Record(*fields) for fields in json.loads(data)]


def _read_file(file: InputFile, options: ReadOptions, shard_size: int, batch_size: int) -> Iterator[Any]:
    """Blocks of a few rows, each row one pipeline batch of this file's records."""
    import pyarrow as pa

    rows: List[str] = []
    for group in batch_groups(read_records(file, options), shard_size, batch_size):
        rows.append(group_to_json(group))
        if len(rows) >= GROUPS_PER_BLOCK:
            yield pa.table({"group": pa.array(rows, type=pa.large_string())})
            rows = []
    if rows:
        yield pa.table({"group": pa.array(rows, type=pa.large_string())})


def _datasource(files: Sequence[InputFile], options: ReadOptions, shard_size: int, batch_size: int):
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    schema = pa.schema([("group", pa.large_string())])

    class RecordsDatasource(Datasource):
        """One read task per input file, in input order."""

        def estimate_inmemory_data_size(self) -> Optional[int]:
            return sum(f.size for f in files)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: Optional[int] = None, **_: Any) -> List[ReadTask]:
            tasks = []
            for file in files:
                meta = BlockMetadata(num_rows=None, size_bytes=file.size, input_files=[file.location], exec_stats=None)
                read = (lambda f: lambda: _read_file(f, options, shard_size, batch_size))(file)
                tasks.append(ReadTask(read, meta, schema=schema, per_task_row_limit=per_task_row_limit))
            return tasks

    return RecordsDatasource()


def batches_dataset(files: Sequence[InputFile], options: ReadOptions, shard_size: int, batch_size: int):
    """The input as a Ray dataset of one pipeline batch per row and one row per block."""
    import ray

    ds = ray.data.read_datasource(_datasource(files, options, shard_size, batch_size))
    return ds.repartition(target_num_rows_per_block=1)  # streaming: no shuffle, order kept


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

        file_index, position, rows, words = [], [], [], []
        for data in batch.column("group").to_pylist():
            group = group_from_json(data)
            skip = (group[0].file_index, group[0].position // self.shard_size) in self.done  # whole shards only
            results = [Annotated(r.file_index, r.position, None) for r in group] if skip else self.annotator(group)
            for item in results:
                file_index.append(item.file_index)
                position.append(item.position)
                rows.append(None if item.row is None else row_to_json(item.row))
                words.append(item.n_words)
        return pa.table(
            {
                "file_index": pa.array(file_index, type=pa.int64()),
                "position": pa.array(position, type=pa.int64()),
                "row": pa.array(rows, type=pa.large_string()),
                "n_words": pa.array(words, type=pa.int64()),
            }
        )


def _init_ray(address: Optional[str], workers: int, cpus_per_worker: float) -> None:
    import ray

    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:  # "local": a new Ray even where `ray start` left a cluster running
            cpus = max(os.cpu_count() or 1, math.ceil(workers * cpus_per_worker) + 1)  # reads need a CPU too
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as err:  # noqa: BLE001 - Ray raises several kinds
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise AnnotateError(f"--engine ray: cannot start or reach {where} ({type(err).__name__}: {err})") from err


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
    workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    address: Optional[str],
    torch_threads: int,
) -> Iterator[Annotated]:
    """One Annotated per input record, in input order (row None: a finished shard's record)."""
    import ray
    from ray.data import DataContext

    started = not ray.is_initialized()
    if started:
        _init_ray(address, workers, cpus_per_worker)
    try:
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = batches_dataset(files, read_options, shard_size, batch_size).map_batches(
            RayAnnotator,
            fn_constructor_kwargs={
                "model": model,
                "code": code,
                "annotator_options": annotator_options,
                "done": sorted(done),
                "shard_size": shard_size,
                "torch_threads": torch_threads or max(1, int(cpus_per_worker)),
                "use_gpu": gpus_per_worker > 0,
            },
            batch_size=1,  # one row: one whole pipeline batch per call, however Ray cuts blocks
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
