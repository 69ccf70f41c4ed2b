"""INPUT (a file, a directory, a glob or a URL) resolved into an ordered list of input files.

The order is fixed (sorted paths) so that a re-run reads the same records in the same
order, which is what makes shards resumable. URLs (``s3://``, ``gs://``, ``hdfs://``,
``file://`` ...) go through ``pyarrow.fs``, so a cluster's workers can read the same input.
"""
import fnmatch
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, List, Optional, Tuple

from .errors import AnnotateError

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text", ".parquet": "parquet", ".spacy": "docbin"}
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InputFile:
    """One input file: where to open it, how to name it, and what the manifest checks."""

    index: int  # position in the input list: shards are named after it
    location: str  # local path or URL
    label: str  # how messages and error rows name it
    name: str  # the short name fallback ids use when there are several files
    format: str  # jsonl, text, parquet or docbin
    size: int
    mtime_ns: Optional[int]

    @property
    def is_url(self) -> bool:
        return bool(URL.match(self.location))

    def open(self) -> IO[bytes]:
        """A binary, seekable file (Parquet needs random access)."""
        if self.is_url:
            fs, path = _filesystem(self.location)
            return fs.open_input_file(path)
        return open(self.location, "rb")


def input_format(name: str) -> Optional[str]:
    return SUFFIXES.get(os.path.splitext(name)[1].lower())


def resolve_inputs(spec: str) -> Tuple[List[InputFile], List[str]]:
    """The input files INPUT names, in reading order, and the files a directory or
    glob held that are not of a known format (the caller warns about them)."""
    found, ignored = (_resolve_url if URL.match(spec) else _resolve_local)(spec)
    if not found:
        extra = f" ({len(ignored)} files of other formats ignored)" if ignored else ""
        raise AnnotateError(f"INPUT {spec}: no .jsonl, .txt, .parquet or .spacy files{extra}")
    files = [
        InputFile(index=i, location=loc, label=label, name=name, format=input_format(loc), size=size, mtime_ns=mtime)
        for i, (loc, label, name, size, mtime) in enumerate(found)
    ]
    return files, ignored


def _check_single(spec: str) -> None:
    if input_format(spec) is None:
        raise AnnotateError(
            f"INPUT {spec}: unknown format {os.path.splitext(spec)[1] or '(no extension)'!r} "
            "(expected .jsonl, .txt, .parquet or .spacy)"
        )


def _resolve_local(spec: str):
    path = Path(spec)
    if GLOB_CHARS.search(spec):
        base = _glob_base(spec)
        candidates = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
        named = [(p, os.path.relpath(p, base)) for p in candidates]
    elif path.is_dir():
        named = [(p, p.relative_to(path).as_posix()) for p in _walk(path)]
    elif path.is_file():
        _check_single(spec)
        named = [(path, path.name)]
    else:
        raise AnnotateError(f"INPUT {spec}: no such file or directory")
    found, ignored = [], []
    for p, name in named:
        if input_format(p.name) is None:
            ignored.append(str(p))
            continue
        stat = p.stat()  # absolute location: Ray workers need not share our working directory
        found.append((os.path.abspath(p), str(p), name, stat.st_size, stat.st_mtime_ns))
    return found, ignored


def _walk(root: Path) -> List[Path]:
    """Files under root, sorted by relative path; hidden files and folders are skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _glob_base(spec: str) -> str:
    parts = []
    for part in Path(spec).parts:
        if GLOB_CHARS.search(part):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "."


def _filesystem(url: str):
    try:
        from pyarrow import fs
    except ImportError as err:  # pragma: no cover - the parquet extra is not installed
        raise AnnotateError(f"{url}: reading URLs needs pyarrow (pip install spacy-posattn-ner[parquet])") from err
    try:
        return fs.FileSystem.from_uri(url)
    except Exception as err:
        raise AnnotateError(f"INPUT {url}: cannot open its file system ({err})") from err


def _glob_match(path: str, pattern: str) -> bool:
    """fnmatch's * also crosses "/": keep glob's meaning, where only ** does."""
    if "**" not in pattern and path.count("/") != pattern.count("/"):
        return False
    return fnmatch.fnmatch(path, pattern)


def _resolve_url(spec: str):
    from pyarrow import fs as pafs

    scheme = spec.split("://", 1)[0]
    fs, path = _filesystem(spec)

    def url_of(p: str) -> str:  # s3 paths are "bucket/key", file paths "/abs/path"
        return f"{scheme}://{p}"

    pattern = None
    if GLOB_CHARS.search(path):
        pattern, path = path, _glob_base(path)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File and pattern is None:
        _check_single(spec)
        return [(spec, spec, os.path.basename(path), info.size, info.mtime_ns)], []
    if info.type != pafs.FileType.Directory:
        raise AnnotateError(f"INPUT {spec}: no such file or directory")
    listing = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    found, ignored = [], []
    for item in sorted((i for i in listing if i.type == pafs.FileType.File), key=lambda i: i.path):
        rel = os.path.relpath(item.path, path)
        if pattern is not None and not _glob_match(item.path, pattern):
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        loc = url_of(item.path)
        if input_format(item.path) is None:
            ignored.append(loc)
            continue
        found.append((loc, loc, rel, item.size, item.mtime_ns))
    return found, ignored
