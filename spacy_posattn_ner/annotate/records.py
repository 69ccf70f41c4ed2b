"""Input files read as records: one per input line, Parquet row or DocBin doc.

Every line or row becomes exactly one record. One that cannot be annotated (undecodable,
invalid JSON, no text, a text that is not a string) becomes a record with ``error`` set,
naming the file and the line or row, so it gets an output row and nothing is dropped.
Both engines use these readers, so they see the same records.
"""
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import AnnotateError
from .inputs import InputFile

READ_CHUNK = 1 << 20
PARQUET_BATCH = 1024


@dataclass
class ReadOptions:
    text_key: str = "text"
    id_key: str = "id"
    several_files: bool = False  # fallback ids then carry the file name: "a.jsonl:3"


@dataclass
class Record:
    file_index: int
    position: int  # 0-based among its file's records; shards are cut on it
    where: str  # "corpus.jsonl line 3": what error messages name
    id: Any
    text: Optional[str] = None
    words: Optional[List[str]] = None  # DocBin input keeps its tokenization
    spaces: Optional[List[bool]] = None
    error: Optional[str] = None

    @property
    def key(self):
        return self.file_index, self.position


def batch_key(record: Record, shard_size: int, batch_size: int) -> Tuple[int, int, int]:
    """The nlp.pipe batch a record belongs to, fixed by its place in its file: batches never
    span files or shards, so every engine, and a resumed run, feeds the pipeline the same
    batches (this package's pipelines answer the same in any batch, other pipelines may not)."""
    shard, offset = divmod(record.position, shard_size)
    return record.file_index, shard, offset // batch_size


def batch_groups(records: Iterable[Record], shard_size: int, batch_size: int) -> Iterator[List[Record]]:
    """Consecutive records grouped by batch_key."""
    group: List[Record] = []
    key = None
    for record in records:
        k = batch_key(record, shard_size, batch_size)
        if k != key and group:
            yield group
            group = []
        key = k
        group.append(record)
    if group:
        yield group


def read_records(file: InputFile, options: ReadOptions) -> Iterator[Record]:
    """The records of one input file, in file order."""
    reader = {"jsonl": _jsonl_records, "text": _text_records, "parquet": _parquet_records, "docbin": _docbin_records}
    yield from reader[file.format](file, options)


def iter_records(files: Sequence[InputFile], options: ReadOptions) -> Iterator[Record]:
    for file in files:
        yield from read_records(file, options)


def _fallback_id(file: InputFile, number: int, options: ReadOptions) -> Any:
    return f"{file.name}:{number}" if options.several_files else number


def _lines(file: InputFile) -> Iterator[bytes]:
    """Raw lines split on b"\\n" only (a JSON string may hold U+2028), without the
    line end; a last line with no newline still counts, an empty file has none."""
    with file.open() as stream:
        rest = b""
        while True:
            chunk = stream.read(READ_CHUNK)
            if not chunk:
                break
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            for part in parts:
                yield part[:-1] if part.endswith(b"\r") else part
        if rest:
            yield rest[:-1] if rest.endswith(b"\r") else rest


def _decode(raw: bytes, first: bool) -> str:
    if first and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8")


def _decode_problem(raw: bytes, err: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _text_problem(text: Any, key: str) -> Optional[str]:
    if not isinstance(text, str):
        return f"'{key}' is {_json_type(text)}, not a string"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"'{key}' holds an unpaired surrogate (\\u{ord(text[err.start]):04x} at character {err.start + 1})"
    return None


def _clean_id(value: Any) -> Any:
    """An id as given when JSON and UTF-8 can carry it; otherwise a readable string
    (a Parquet timestamp, or a string with an unpaired surrogate, escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value if isinstance(value, (list, dict)) else str(value)
    except (TypeError, ValueError, UnicodeEncodeError):
        return str(value)


def _decoded_lines(file: InputFile, options: ReadOptions) -> Iterator[Tuple[Record, Optional[str]]]:
    """Each physical line as a record (its place and fallback id) and its text, or
    None with the record's error set where the bytes do not decode."""
    for i, raw in enumerate(_lines(file)):
        number = i + 1
        where = f"{file.label} line {number}"
        rec = Record(file.index, i, where, _fallback_id(file, number, options))
        try:
            yield rec, _decode(raw, i == 0)
        except UnicodeDecodeError as err:
            rec.error = f"{where}: {_decode_problem(raw, err)}"
            yield rec, None


def _jsonl_records(file: InputFile, options: ReadOptions) -> Iterator[Record]:
    for rec, line in _decoded_lines(file, options):
        where = rec.where
        if line is None:
            yield rec
            continue
        if not line.strip():
            rec.error = f"{where}: blank line, expected a JSON object"
            yield rec
            continue
        try:
            obj = json.loads(line)
        except ValueError as err:
            rec.error = f"{where}: invalid JSON ({getattr(err, 'msg', err)} at column {getattr(err, 'colno', '?')})"
            yield rec
            continue
        if not isinstance(obj, dict):
            rec.error = f"{where}: {_json_type(obj)}, not a JSON object"
            yield rec
            continue
        if obj.get(options.id_key) is not None:  # no id, or a null one: the line number
            rec.id = _clean_id(obj[options.id_key])
        if options.text_key not in obj:
            rec.error = f"{where}: no '{options.text_key}' key"
        else:
            problem = _text_problem(obj[options.text_key], options.text_key)
            if problem:
                rec.error = f"{where}: {problem}"
            else:
                rec.text = obj[options.text_key]
        yield rec


def _text_records(file: InputFile, options: ReadOptions) -> Iterator[Record]:
    for rec, line in _decoded_lines(file, options):
        rec.text = line
        yield rec


def _parquet_records(file: InputFile, options: ReadOptions) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:  # pragma: no cover - the parquet extra is not installed
        raise AnnotateError(f"{file.label}: reading Parquet needs pyarrow (pip install spacy-posattn-ner[parquet])") from err
    with file.open() as stream:
        try:
            parquet = pq.ParquetFile(stream)
        except Exception as err:
            raise AnnotateError(f"{file.label}: not a readable Parquet file ({err})") from err
        names = parquet.schema_arrow.names
        if options.text_key not in names:
            raise AnnotateError(
                f"{file.label}: no '{options.text_key}' column (it has {', '.join(names)}); choose one with --text-key"
            )
        columns = [options.text_key] + ([options.id_key] if options.id_key in names and options.id_key != options.text_key else [])
        i = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=columns):
            texts = batch.column(options.text_key).to_pylist()
            ids = batch.column(options.id_key).to_pylist() if options.id_key in columns[1:] else [None] * len(texts)
            for text, id_value in zip(texts, ids):
                number = i + 1
                where = f"{file.label} row {number}"
                fallback = _fallback_id(file, number, options)
                rec = Record(file.index, i, where, fallback if id_value is None else _clean_id(id_value))
                problem = _text_problem(text, options.text_key)
                if problem:
                    rec.error = f"{where}: {problem}"
                else:
                    rec.text = text
                yield rec
                i += 1


def _docbin_records(file: InputFile, options: ReadOptions) -> Iterator[Record]:
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    with file.open() as stream:
        data = stream.read()
    try:
        docbin = DocBin(store_user_data=True).from_bytes(data)
    except Exception as err:
        raise AnnotateError(f"{file.label}: not a readable .spacy (DocBin) file ({err})") from err
    for i, doc in enumerate(docbin.get_docs(Vocab())):
        number = i + 1
        fallback = _fallback_id(file, number, options)
        id_value = doc.user_data.get(options.id_key) if doc.user_data else None
        yield Record(
            file.index,
            i,
            f"{file.label} doc {number}",
            fallback if id_value is None else _clean_id(id_value),
            text=doc.text,
            words=[t.text for t in doc],
            spaces=[bool(t.whitespace_) for t in doc],
        )
