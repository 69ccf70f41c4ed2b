"""Where rows go: shards written whole (temporary name, then rename), merged into a
single file when OUTPUT names one, and read back (``read_rows``).

A shard holds up to ``shard_size`` consecutive records of one input file and is named
after them (``part-FFFFF-CCCCCC.jsonl``: input file F, chunk C), so a re-run knows
which records a finished shard covers without reading it.
"""
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from .annotator import Annotated, Row
from .errors import AnnotateError

FORMATS = {".jsonl": "jsonl", ".parquet": "parquet", ".spacy": "spacy"}
EXTENSION = {fmt: ext for ext, fmt in FORMATS.items()}
SHARD = re.compile(r"^part-(\d+)-(\d+)\.(jsonl|parquet|spacy)$")
MANIFEST = "manifest.json"
ShardKey = Tuple[int, int]


@dataclass(frozen=True)
class OutputLayout:
    """OUTPUT as a single file (shards kept in ``OUTPUT.parts/`` until merged) or a
    directory of shards."""

    target: Path
    format: str
    single_file: bool

    @property
    def shard_dir(self) -> Path:
        return self.target.with_name(self.target.name + ".parts") if self.single_file else self.target

    @property
    def manifest_path(self) -> Path:
        return self.shard_dir / MANIFEST

    def shard_path(self, key: ShardKey) -> Path:
        return self.shard_dir / f"part-{key[0]:05d}-{key[1]:06d}{EXTENSION[self.format]}"

    def finished_shards(self) -> Set[ShardKey]:
        if not self.shard_dir.is_dir():
            return set()
        keys = set()
        for path in self.shard_dir.iterdir():
            match = SHARD.match(path.name)
            if match and match.group(3) == self.format:
                keys.add((int(match.group(1)), int(match.group(2))))
        return keys

    def owned_files(self) -> List[Path]:
        """Files this command wrote into the shard directory (what --overwrite removes)."""
        if not self.shard_dir.is_dir():
            return []
        return [p for p in self.shard_dir.iterdir() if p.name == MANIFEST or SHARD.match(p.name) or p.name.startswith(".tmp-")]


def output_layout(output: Path, fmt: Optional[str]) -> OutputLayout:
    suffix = output.suffix.lower()
    if suffix in FORMATS and not output.is_dir():
        if fmt is not None and fmt != FORMATS[suffix]:
            raise AnnotateError(f"OUTPUT {output} ends in {suffix} but --format is {fmt}")
        return OutputLayout(output, FORMATS[suffix], single_file=True)
    if output.exists() and not output.is_dir():
        raise AnnotateError(f"OUTPUT {output}: a file that is not .jsonl, .parquet or .spacy")
    return OutputLayout(output, fmt or "jsonl", single_file=False)


def atomic_write(path: Path, data: bytes) -> None:
    """Whole or absent: a kill leaves at most a .tmp- file that the next run overwrites."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every OS opens directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- encoding -------------------------------------------------------------------


def jsonl_bytes(rows: Sequence[Row]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def parquet_schema():
    import pyarrow as pa

    entity = pa.struct(
        [("start_char", pa.int64()), ("end_char", pa.int64()), ("label", pa.string()), ("text", pa.string()), ("score", pa.float64())]
    )
    return pa.schema([("id", pa.string()), ("entities", pa.list_(entity)), ("error", pa.string()), ("exit_layer", pa.int64())])


def parquet_id(value: Any) -> Optional[str]:
    """Parquet's id column is a string: one type whatever the input ids are."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def parquet_table(rows: Sequence[Row]):
    import pyarrow as pa

    columns = {
        "id": [parquet_id(r["id"]) for r in rows],
        "entities": [[{**{"score": None}, **e} for e in r["entities"]] for r in rows],
        "error": [r.get("error") for r in rows],
        "exit_layer": [r.get("exit_layer") for r in rows],
    }
    return pa.table(columns, schema=parquet_schema())


def parquet_bytes(rows: Sequence[Row]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(parquet_table(rows), sink)
    return sink.getvalue().to_pybytes()


def docbin_bytes(docs: Sequence[Any], vocab) -> bytes:
    from spacy.tokens import Doc, DocBin

    docbin = DocBin(store_user_data=True)
    for doc in docs:
        docbin.add(doc if isinstance(doc, Doc) else Doc(vocab).from_bytes(doc))
    return docbin.to_bytes()


def require_format(fmt: str) -> None:
    """Fail before any work when the output format needs a missing package."""
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError as err:
            raise AnnotateError("Parquet output needs pyarrow: pip install spacy-posattn-ner[parquet]") from err


def write_shard(layout: OutputLayout, key: ShardKey, items: Sequence[Annotated], vocab=None) -> Path:
    rows = [item.row for item in items]
    if layout.format == "jsonl":
        data = jsonl_bytes(rows)
    elif layout.format == "parquet":
        data = parquet_bytes(rows)
    else:
        data = docbin_bytes([item.doc for item in items], vocab)
    path = layout.shard_path(key)
    atomic_write(path, data)
    return path


def merge_shards(layout: OutputLayout) -> None:
    """Concatenate the shards, in input order, into the single OUTPUT file, then drop
    the shard directory. Killed midway, a re-run finds every shard done and merges again."""
    shards = [layout.shard_path(k) for k in sorted(layout.finished_shards())]
    tmp = layout.target.with_name(f".tmp-{layout.target.name}")
    layout.target.parent.mkdir(parents=True, exist_ok=True)
    if layout.format == "jsonl":
        with open(tmp, "wb") as out:
            for shard in shards:
                with open(shard, "rb") as f:
                    shutil.copyfileobj(f, out)
            out.flush()
            os.fsync(out.fileno())
    elif layout.format == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(tmp, parquet_schema()) as writer:
            for shard in shards:
                writer.write_table(pq.read_table(shard, schema=parquet_schema()))
    else:
        from spacy.tokens import DocBin

        merged = DocBin(store_user_data=True)
        for shard in shards:
            merged.merge(DocBin(store_user_data=True).from_disk(shard))
        merged.to_disk(tmp)
    os.replace(tmp, layout.target)
    _fsync_dir(layout.target.parent)
    shutil.rmtree(layout.shard_dir)


# -- reading back -----------------------------------------------------------------


def read_rows(path: Path) -> Iterator[Row]:
    """The rows of an annotate output (a file or a directory of shards), in input order,
    in the JSONL form: Parquet's null fields are left out. For .spacy output the rows
    are rebuilt from the docs (no scores)."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(
            (p for p in path.iterdir() if SHARD.match(p.name)), key=lambda p: tuple(int(g) for g in SHARD.match(p.name).groups()[:2])
        )
        for shard in shards:
            yield from read_rows(shard)
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf8") as f:
            for line in f:
                yield json.loads(line)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for row in pq.read_table(path).to_pylist():
            yield _drop_nulls(row)
    elif suffix == ".spacy":
        import spacy
        from spacy.tokens import DocBin

        vocab = spacy.blank("xx").vocab
        for doc in DocBin().from_disk(path).get_docs(vocab):
            row: Dict[str, Any] = {"id": doc.user_data.get("id"), "entities": [_entity(e) for e in doc.ents]}
            if doc.user_data.get("error"):
                row["error"] = doc.user_data["error"]
            yield row
    else:
        raise AnnotateError(f"{path}: not an annotate output (.jsonl, .parquet, .spacy or a directory of shards)")


def _entity(ent) -> Dict[str, Any]:
    return {"start_char": ent.start_char, "end_char": ent.end_char, "label": ent.label_, "text": ent.text}


def _drop_nulls(row: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: v for k, v in row.items() if v is not None or k == "id"}
    out["entities"] = [{k: v for k, v in e.items() if v is not None} for e in row["entities"]]
    return out


def check_writable(target: Path) -> None:
    """Refuse an OUTPUT that cannot be written or created, in one line, before the
    model loads: its nearest existing ancestor must be a writable directory."""
    target = Path(target).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == target:  # it exists: it is replaced or added to, from its directory
        existing = target if target.is_dir() else target.parent
        if not target.is_dir() and not os.access(target, os.W_OK):
            raise AnnotateError(f"Output {target} cannot be written: the file is not writable")
    if not existing.is_dir():
        raise AnnotateError(f"Output {target} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AnnotateError(f"Output {target} cannot be created: the directory {existing} is not writable")
