"""Frozen-backbone features computed once per distinct doc and reused every epoch.

The backbone never changes during training, so a doc's hidden states are a pure
function of (backbone weights, window settings, doc text and tokenization). The cache
is keyed by a digest of exactly those, so a stale entry can never be returned.
Entries live in RAM up to ``max_ram_mb``; past that they are appended to a file in
``directory`` and read back through a memory map (the OS page cache does the rest),
so the full GMB training split fits on a machine whose RAM it would not. The spill
file is bounded too (``max_disk_mb``, the factory's ``cache_max_disk_mb``): an entry
that would take it past the bound raises ``FeatureCacheFullError`` (see there why
an error and not eviction). RAM entries
are packed into large preallocated slabs rather than one array each: hundreds of
thousands of ~100 KB arrays fragment the heap until it holds gigabytes more than
the features themselves.
"""
import hashlib
import mmap
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.attrs import IDX, LENGTH, SPACY
from spacy.tokens import Doc

from .backbone import token_texts
from .segments import segment_starts


SLAB_ITEMS = 32 * 2**20  # float16 values per RAM slab (64 MiB)
DEFAULT_MAX_DISK_MB = 20480  # 20 GiB: the full GMB split with all-MiniLM spills about 3 GiB


class FeatureCacheFullError(RuntimeError):
    """The spill file would grow past ``cache_max_disk_mb``.

    An error rather than eviction, because:
    - it comes early: the cache fills during the first epoch (every distinct doc is
      computed once then), so a too small bound costs minutes, not a training run;
    - eviction would turn every later epoch back into backbone passes over the
      evicted docs: a run many times slower with nothing to say why;
    - the spill file is append-only and arrays handed out are views of its memory
      map, so reusing its space could change features under a reader.
    """


def doc_key(doc: Doc, fingerprint: str) -> str:
    """Digest of the backbone fingerprint, the text, the token boundaries and the
    sentence starts where they are set (sentence windows depend on them).

    The text enters as its tokens' strings plus their offsets, lengths and trailing
    spaces, which together spell it exactly (``doc.text`` would build a Token object
    per token, a visible cost when every training step looks up every doc).
    """
    h = hashlib.sha1(fingerprint.encode("utf8"))
    h.update("".join(token_texts(doc)).encode("utf8"))
    h.update(numpy.ascontiguousarray(doc.to_array([IDX, LENGTH, SPACY]), dtype="int64").tobytes())
    if doc.has_annotation("SENT_START"):
        h.update(b"sents")
        h.update(segment_starts(doc).tobytes())
    return h.hexdigest()


class FeatureCache:
    """A bounded key → float16 array store with a memory-mapped spill file.

    ``max_ram_mb`` bounds the RAM slabs, ``max_disk_mb`` the spill file (0: never
    spill; there is no unbounded setting, so a disk can not fill up unnoticed).
    """

    def __init__(
        self, max_ram_mb: float = 2048, directory: Optional[str] = None, max_disk_mb: float = DEFAULT_MAX_DISK_MB
    ):
        if isinstance(max_disk_mb, bool) or not isinstance(max_disk_mb, (int, float)) or not max_disk_mb >= 0:
            raise ValueError(
                f"posattn_ner: cache_max_disk_mb must be a number of MiB >= 0 (0: never spill to disk), "
                f"got {max_disk_mb!r}. There is no unbounded setting: give a bound the disk of cache_dir can hold."
            )
        self.max_ram_bytes = int(max_ram_mb * 2**20)
        self.max_disk_mb = float(max_disk_mb)
        self.max_disk_bytes = int(max_disk_mb * 2**20)
        self._dir_arg = directory
        self._dir: Optional[Path] = None
        self._owns_dir = False
        self._ram: Dict[str, numpy.ndarray] = {}  # views into self._slabs
        self._ram_bytes = 0
        self._slabs: List[numpy.ndarray] = []
        self._slab_used = 0
        self._disk: Dict[str, Tuple[int, Tuple[int, ...]]] = {}
        self._file = None
        self._map: Optional[mmap.mmap] = None
        self._size = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._ram) + len(self._disk)

    def __contains__(self, key: str) -> bool:
        return key in self._ram or key in self._disk

    @property
    def disk_bytes(self) -> int:
        return self._size

    def get(self, key: str) -> Optional[numpy.ndarray]:
        if key in self._ram:
            return self._ram[key]
        if key in self._disk:
            offset, shape = self._disk[key]
            n = int(numpy.prod(shape)) * 2
            if self._map is None or len(self._map) < offset + n:
                self._remap()
            return numpy.frombuffer(self._map, dtype=numpy.float16, count=n // 2, offset=offset).reshape(shape)
        return None

    def put(self, key: str, value: numpy.ndarray) -> None:
        if key in self:
            return
        value = numpy.ascontiguousarray(value, dtype=numpy.float16)
        if self._ram_bytes + value.nbytes <= self.max_ram_bytes:
            self._ram[key] = self._slab_copy(value)
            self._ram_bytes += value.nbytes
            return
        if self._size + value.nbytes > self.max_disk_bytes:
            where = self._file.name if self._file is not None else (self._dir_arg or "a temporary directory")
            raise FeatureCacheFullError(
                f"posattn_ner feature cache: storing the features of one more doc ({value.nbytes:,} bytes, "
                f"shape {value.shape}) would take the spill file in {where} to {self._size + value.nbytes:,} bytes, "
                f"past cache_max_disk_mb = {self.max_disk_mb:g} MiB ({self.max_disk_bytes:,} bytes; "
                f"{len(self._disk):,} docs on disk, {len(self._ram):,} in RAM). Raise the posattn_ner "
                f"setting cache_max_disk_mb (or cache_max_ram_mb), or set cache_dir to a disk with more room."
            )
        f = self._open()
        f.seek(self._size)
        f.write(value.tobytes())
        self._disk[key] = (self._size, value.shape)
        self._size += value.nbytes

    def _slab_copy(self, value: numpy.ndarray) -> numpy.ndarray:
        n = value.size
        if not self._slabs or self._slab_used + n > self._slabs[-1].size:
            room = max(self.max_ram_bytes - self._ram_bytes, value.nbytes) // 2
            self._slabs.append(numpy.empty((max(n, min(SLAB_ITEMS, room)),), dtype=numpy.float16))
            self._slab_used = 0
        view = self._slabs[-1][self._slab_used : self._slab_used + n].reshape(value.shape)
        view[...] = value
        self._slab_used += n
        return view

    def get_or_compute(
        self,
        docs: Sequence[Doc],
        fingerprint: str,
        compute: Callable[[List[Doc]], List[numpy.ndarray]],
    ) -> List[numpy.ndarray]:
        """Features for every doc; ``compute`` runs once, on the distinct misses only."""
        keys = [doc_key(doc, fingerprint) for doc in docs]
        out: List[Optional[numpy.ndarray]] = [self.get(k) for k in keys]
        todo: Dict[str, List[int]] = {}
        for i, (k, v) in enumerate(zip(keys, out)):
            if v is None:
                todo.setdefault(k, []).append(i)
        self.hits += len(docs) - len(todo)
        self.misses += len(todo)
        if todo:
            computed = compute([docs[idx[0]] for idx in todo.values()])
            for (k, idx), feats in zip(todo.items(), computed):
                self.put(k, feats)
                stored = self.get(k)
                for i in idx:
                    out[i] = stored
        return out  # type: ignore[return-value]

    def _open(self):
        if self._file is None:
            if self._dir_arg:
                self._dir = Path(self._dir_arg)
                self._dir.mkdir(parents=True, exist_ok=True)
            else:
                self._dir = Path(tempfile.mkdtemp(prefix="posattn-cache-"))
                self._owns_dir = True
            path = self._dir / f"features-{os.getpid()}-{id(self)}.f16"
            self._file = open(path, "w+b")
        return self._file

    def _remap(self) -> None:
        self._file.flush()
        # The old map is not closed: arrays handed out may still view it, and it is
        # freed with the last of them.
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def clear(self) -> None:
        """Drop every entry and delete the spill file."""
        self._ram.clear()
        self._ram_bytes = 0
        self._slabs.clear()
        self._slab_used = 0
        self._disk.clear()
        self._map = None
        if self._file is not None:
            name = self._file.name
            self._file.close()
            self._file = None
            os.unlink(name)
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._size = 0

    def __del__(self):
        try:
            self.clear()
        except Exception:
            pass
