"""The local engine: batches of records through an Annotator in this process, or in
``n_process`` worker processes with a bounded number of batches in flight, results in
input order. Workers send back rows (and docs only for .spacy output), not Docs.
"""
import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Deque, Iterable, Iterator, List, Optional, Set, Tuple

from .annotator import Annotated, Annotator
from .records import Record, batch_groups

_WORKER: Optional[Annotator] = None


def set_torch_threads(n: int) -> None:
    """n torch threads in this process (0: leave as is); a no-op without torch."""
    if n <= 0:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - pipelines without torch
        return
    torch.set_num_threads(n)


def die_with_parent(parent_pid: int) -> None:
    """End this worker when the process that started it dies, even by ``kill -9``
    (no cleanup runs in the parent then): on Linux the kernel sends SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # PR_SET_PDEATHSIG = 1
                if os.getppid() != parent_pid:  # the parent died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: poll instead
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _init_worker(annotator: Annotator, torch_threads: int, parent_pid: int = 0) -> None:
    global _WORKER
    if parent_pid:
        die_with_parent(parent_pid)
    _WORKER = annotator
    set_torch_threads(torch_threads or 1)


def _annotate_in_worker(batch: List[Record]) -> List[Annotated]:
    out = _WORKER(batch)
    for item in out:  # a Doc pickles with its whole vocab's strings: send bytes
        if item.doc is not None:
            item.doc = item.doc.to_bytes(exclude=["tensor"])
    return out


def _skipped(batch: List[Record]) -> List[Annotated]:
    return [Annotated(r.file_index, r.position, None) for r in batch]


def annotate_local(
    annotator: Annotator,
    records: Iterable[Record],
    *,
    shard_size: int,
    done: Set[Tuple[int, int]],
    n_process: int = 1,
    torch_threads: int = 0,
) -> Iterator[Annotated]:
    """One Annotated per input record, in input order (row None: a finished shard's record)."""
    batches = batch_groups(records, shard_size, annotator.batch_size)

    def is_done(batch: List[Record]) -> bool:  # batches never span shards
        return (batch[0].file_index, batch[0].position // shard_size) in done

    if n_process <= 1:
        set_torch_threads(torch_threads)
        for batch in batches:
            yield from _skipped(batch) if is_done(batch) else annotator(batch)
        return
    # fork shares the loaded pipeline copy-on-write; spawn (other OSes) pickles it once per worker
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(n_process, mp_context=context, initializer=_init_worker, initargs=(annotator, torch_threads, os.getpid()))
    try:
        pending: Deque[Future] = deque()
        for batch in batches:
            if is_done(batch):
                future: Future = Future()
                future.set_result(_skipped(batch))
            else:
                future = pool.submit(_annotate_in_worker, batch)
            pending.append(future)
            if len(pending) >= 2 * n_process:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:  # stopped early (--limit reached, --strict, an error, Ctrl-C): drop the queued batches
        pool.shutdown(wait=True, cancel_futures=True)
