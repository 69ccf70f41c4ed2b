"""Read and validate the Kaggle GMB NER corpus (``ner_dataset.csv``).

The corpus (see ``shared/assets/gmb/README.md``) is one CSV with the columns
``Sentence #,Word,POS,Tag``, where ``Sentence #`` (``Sentence: N``) is set only
on a sentence's first row and ``Tag`` is IOB2 over the eight GMB entity types.
Every figure the project reports is computed on this file, so the reader is
deliberately strict: anything unexpected is a :class:`GmbFormatError` naming
the file and the CSV line, never a silently dropped, merged or repaired token
(the one documented repair is the cp1252 punctuation described in
:func:`read_gmb`). One physical line is one row: a quoted field may hold a
comma or a quote (the real file writes the words ``,`` and ``"`` that way), but
never a line break, so a stray ``"`` cannot make the CSV module join lines.

This module imports only the standard library at import time; spaCy is
imported lazily by :func:`sentences_to_docs`, so reading and validating the
corpus stays cheap. It is the project's (``scripts/convert_gmb.py`` runs it), not
the package's: the component never reads the GMB CSV.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    TextIO,
    Tuple,
    Union,
)

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps spaCy out of import time
    from spacy.tokens import Doc, Span, Token
    from spacy.vocab import Vocab

__all__ = [
    "GMB_LABELS",
    "CorpusCounts",
    "GmbCounts",
    "GmbFormatError",
    "GmbReader",
    "GmbSentence",
    "canonical_split",
    "count_sentences",
    "doc_sentences",
    "read_gmb",
    "sentences_to_docs",
    "verify_docs",
]

#: The eight GMB entity types, sorted; the only labels a ``B-``/``I-`` tag may carry.
GMB_LABELS: Tuple[str, ...] = ("art", "eve", "geo", "gpe", "nat", "org", "per", "tim")

#: The exact header row of ``ner_dataset.csv``.
GMB_HEADER: Tuple[str, ...] = ("Sentence #", "Word", "POS", "Tag")

ENCODING = "latin-1"
UTF8_BOM = b"\xef\xbb\xbf"

_SENTENCE_MARKER = re.compile(r"Sentence: [0-9]+")

# The file is documented (and decoded) as latin-1, but its bytes 0x80-0x9F are
# Windows-1252 punctuation (0x85 is used as "…" with POS "," or ":", 0x96 as
# "–", 0x92 as "’", ...). Decoded as latin-1 they become C1 control characters;
# U+0085 (NEL) even counts as whitespace for ``str.strip``/``str.isspace`` and
# for spaCy's ``Token.is_space``, and subword tokenizers drop control
# characters, which would leave such a word with no subword at all. Mapping
# exactly these code points to their cp1252 characters keeps one token per row
# with a printable, non-whitespace text. The five bytes cp1252 leaves undefined
# (0x81, 0x8D, 0x8F, 0x90, 0x9D) are kept as they are.
_CP1252_C1: Dict[int, str] = {}
for _byte in range(0x80, 0xA0):
    try:
        _CP1252_C1[_byte] = bytes([_byte]).decode("cp1252")
    except UnicodeDecodeError:
        pass
del _byte


class GmbFormatError(ValueError):
    """The corpus file does not have the documented GMB format.

    A subclass of ``ValueError`` so callers can catch format problems
    specifically. The message always starts with the file (``path`` or
    ``archive.zip:member.csv``) and, for problems in the CSV content, the
    1-based CSV line (the header is line 1), e.g.
    ``ner_dataset.csv line 1234: tag 'I-geo' follows 'O' (invalid IOB2)``.
    Archive-level problems (wrong number of CSV members) have ``line=None``.
    """

    def __init__(self, source: str, line: Optional[int], problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = source if line is None else f"{source} line {line}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep the error picklable (e.g. across processes)
        return (type(self), (self.source, self.line, self.problem))


@dataclass(frozen=True)
class GmbSentence:
    """One sentence: its words and IOB2 tags, plus the CSV line of its first row.

    ``line`` lets any later problem (e.g. in :func:`sentences_to_docs`) point
    back at the exact place in the source file.
    """

    words: Tuple[str, ...]
    tags: Tuple[str, ...]
    line: int

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError(
                f"sentence at line {self.line}: {len(self.words)} words but "
                f"{len(self.tags)} tags"
            )


def canonical_split(n: int) -> Tuple[int, int, int]:
    """Return the (train, dev, test) sentence counts of the canonical split.

    Sentences stay in file order (adjacent sentences share a document, so a
    shuffle would leak documents across splits): train is the first
    ``floor(0.8 n)``, dev the next ``floor(0.1 n)``, test the rest. Integer
    arithmetic avoids float rounding at exact multiples. ``canonical_split(47959)
    == (38367, 4795, 4797)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"canonical_split needs a non-negative int, got {n!r}")
    n_train = (8 * n) // 10
    n_dev = n // 10
    return n_train, n_dev, n - n_train - n_dev


def _tag_problem(tag: str, prev: Optional[str]) -> Optional[str]:
    """Why ``tag`` is invalid after ``prev`` (None at sentence start), or None if valid."""
    if tag == "O":
        return None
    prefix, sep, label = tag.partition("-")
    if sep != "-" or prefix not in ("B", "I") or label not in GMB_LABELS:
        return (
            f"tag {tag!r} is not 'O', 'B-x' or 'I-x' with x one of "
            f"{', '.join(GMB_LABELS)}"
        )
    if prefix == "I":
        if prev is None:
            return f"tag {tag!r} starts a sentence (invalid IOB2)"
        if prev == "O" or prev[2:] != label:
            return f"tag {tag!r} follows {prev!r} (invalid IOB2)"
    return None


def _fix_word(word: str) -> str:
    """Map latin-1 C1 control characters to the cp1252 punctuation they encode."""
    if any("\x80" <= ch <= "\x9f" for ch in word):
        return word.translate(_CP1252_C1)
    return word


def _sniff_encoding(data: bytes) -> str:
    """The file's encoding: latin-1 as documented, unless the bytes are a UTF-8 copy.

    A UTF-8 copy of the corpus (what re-saving it in most editors gives) read as
    latin-1 turns every non-ASCII word into mojibake (``SÃ©bastien``) and still
    passes every format check, so it is told apart here: the real file has bytes
    that are not valid UTF-8 (0x85 alone), a UTF-8 copy decodes whole. Decoded
    as UTF-8 it gives the original's words (U+0080-U+009F then map as in
    :func:`_fix_word`). A file of ASCII only reads the same either way.
    """
    if data.startswith(UTF8_BOM):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return ENCODING
    return "utf-8" if any(byte >= 0x80 for byte in data) else ENCODING


def _read_bytes(path: Path) -> Tuple[bytes, str]:
    """The CSV bytes of ``path`` (a ``.zip`` with one ``.csv`` member, or a CSV) and
    the name to use in error messages; a damaged archive is a :class:`GmbFormatError`
    naming it, not a raw ``BadZipFile`` traceback."""
    if path.suffix.lower() != ".zip":
        return path.read_bytes(), str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith(".csv")
                and not info.filename.startswith("__MACOSX/")
            ]
            if len(members) != 1:
                names = ", ".join(info.filename for info in members) or "none"
                raise GmbFormatError(
                    str(path),
                    None,
                    f"expected exactly one .csv file in the zip archive, "
                    f"found {len(members)} ({names})",
                )
            return archive.read(members[0]), f"{path}:{members[0].filename}"
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
        size = path.stat().st_size
        raise GmbFormatError(
            str(path), None, f"not a readable zip archive ({size:,} bytes; truncated, or not a zip?): {err}"
        ) from None


@contextmanager
def _open_text(path: Path, counts: "GmbCounts") -> Iterator[Tuple[TextIO, str]]:
    """Open ``path`` as text in its encoding (:func:`_sniff_encoding`, recorded in
    ``counts.encoding``); yields the stream and the name to use in error messages."""
    data, source = _read_bytes(path)
    counts.encoding = _sniff_encoding(data)
    # newline="" lets the csv module see the raw line endings; only \r, \n and
    # \r\n end a line (not U+0085, unlike str.splitlines).
    with io.TextIOWrapper(io.BytesIO(data), encoding=counts.encoding, newline="") as text:
        yield text, source


@dataclass
class GmbCounts:
    """What one pass over a GMB file saw, filled in while a :class:`GmbReader` reads.

    The converter reports these figures of the file itself, not only of what
    it kept, so a file whose lines and tokens disagree cannot pass for a clean
    conversion. Once the whole file is read (``complete``), the reader has
    checked ``lines == rows + 1`` (the header) and ``rows == tokens``.
    """

    lines: int = 0  #: physical lines, the header included
    rows: int = 0  #: CSV data rows, the header not included
    sentences: int = 0
    tokens: int = 0
    complete: bool = False
    encoding: str = ENCODING  #: what the file was decoded as (see _sniff_encoding)


class GmbReader(Iterator[GmbSentence]):
    """The sentences of one GMB file in file order, plus :attr:`counts` of what was read.

    Returned by :func:`read_gmb`; an iterator, so it is read once. ``counts``
    grows while iterating and is final when ``counts.complete`` is True.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts = GmbCounts()
        self._sentences = _iter_sentences(path, self.counts)

    def __iter__(self) -> "GmbReader":
        return self

    def __next__(self) -> GmbSentence:
        return next(self._sentences)


def read_gmb(path: Union[str, Path]) -> GmbReader:
    """Read the sentences of a GMB ``ner_dataset.csv`` (plain or in a ``.zip``), in file order.

    Strict on purpose, so a damaged or different file cannot silently change
    the benchmark: raises :class:`GmbFormatError` (file and 1-based CSV line in
    the message) for a header other than ``Sentence #,Word,POS,Tag``, a row
    with other than 4 columns, a first data row without ``Sentence: N``, a
    malformed ``Sentence #`` value, a tag that is not ``O``/``B-x``/``I-x`` with
    ``x`` in :data:`GMB_LABELS`, an ``I-x`` not preceded by ``B-x``/``I-x`` in
    the same sentence, a ``Sentence: N`` id seen before (naming both lines), and
    a word that is empty, whitespace only, or has leading/trailing whitespace.
    A ``.zip`` must hold exactly one ``.csv``; a truncated or non-zip ``.zip`` is
    a :class:`GmbFormatError` naming the file.

    One physical line is one row. Quoted fields are read as CSV (the real
    file writes the word ``,`` as ``","``, the word ``"`` quoted and doubled,
    and ``1,000`` as ``"1,000"``), but a quoted field still open at the end of
    its line is an error: it is either a stray ``"`` (the csv module would run
    the field on to the next ``"``, merging the rows in between into one word)
    or a line break inside quotes. Also refused: a NUL byte, a line whose line
    break differs from the header's (a bare ``\\r`` or ``\\n`` inside a field),
    and malformed quoting such as ``"ab"c``. A ``"`` inside an unquoted field
    (``ab"c``) merges nothing and is kept as part of the word.

    Every row becomes exactly one word with its tag; nothing is dropped. The
    file is decoded as latin-1 (lossless for any byte) unless its bytes are a
    UTF-8 copy of it, which is decoded as UTF-8 to the same words
    (``counts.encoding`` says which; see :func:`_sniff_encoding`). The code points
    U+0080-U+009F in a word are mapped to the cp1252 characters those bytes
    stand for (the file is really Windows-1252 there). In the real corpus this
    turns the 4 rows whose latin-1 word is U+0085 alone (whitespace to Python
    and spaCy; CSV lines 1788, 219477, 219488, 434109) into ``"…"``, and the
    27 other words with such bytes into ``"–"``, ``"’s"``, ``"“"`` etc. Words
    with inner whitespace (one row: ``"5\\xa0storm"``, line 1040693) are kept
    as they are, as one word. The POS column is read but not returned.

    The file is opened lazily: format errors surface while iterating, but a
    missing file raises ``FileNotFoundError`` immediately. The returned
    :class:`GmbReader` counts the file's lines and rows as it goes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GMB corpus not found: {path}")
    return GmbReader(path)


def _line_end(text: str) -> str:
    """The line break ending ``text`` (``\\r\\n``, ``\\n`` or ``\\r``); '' for a last line without one."""
    if text.endswith("\r\n"):
        return "\r\n"
    return text[-1:] if text[-1:] in ("\r", "\n") else ""


def _show(text: str, limit: int = 80) -> str:
    """``repr`` of a line for an error message, cut short: a damaged line can be huge."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _iter_sentences(path: Path, counts: GmbCounts) -> Iterator[GmbSentence]:
    with _open_text(path, counts) as (stream, source):

        def fail(line: Optional[int], problem: str) -> GmbFormatError:
            return GmbFormatError(source, line, problem)

        parsed = 0  # rows the csv reader has returned, the header included

        def physical_lines() -> Iterator[str]:
            """Feed the csv reader one checked line at a time, and no row a second line.

            The csv reader asks for another line before it returns a row only
            when a quoted field is still open at the end of the line; that is
            refused here, naming the line where the field opened. The stream
            (``newline=""``) ends lines at ``\\r``, ``\\n`` and ``\\r\\n`` only.
            """
            eol: Optional[str] = None  # the header's line break; later lines must match it
            for text in stream:
                counts.lines += 1
                line = counts.lines
                if "\x00" in text:
                    raise fail(line, f"NUL byte at column {text.index(chr(0)) + 1}: {_show(text)}")
                end = _line_end(text)
                if eol is None:
                    eol = end
                elif end and end != eol:
                    raise fail(
                        line,
                        f"line ends with {end!r} but the header with {eol!r} "
                        f"(a line break inside a field?): {_show(text)}",
                    )
                yield text
                if parsed != line:
                    raise fail(
                        line,
                        "a quoted field is still open at the end of the line (a stray '\"', "
                        "or a line break inside quotes); refusing to join the row with the "
                        f"next line: {_show(text)}",
                    )

        reader = csv.reader(physical_lines(), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise fail(1, f"file is empty, expected the header {','.join(GMB_HEADER)}")
            parsed = 1
            if tuple(header) != GMB_HEADER:
                raise fail(1, f"header is {header!r}, expected {list(GMB_HEADER)!r}")

            words: List[str] = []
            tags: List[str] = []
            start = 0  # line of the current sentence's first row; 0 = none yet
            seen: Dict[str, int] = {}  # sentence id -> the line that gave it first
            prev_tag: Optional[str] = None
            for row in reader:
                parsed += 1
                counts.rows += 1
                line = counts.lines  # physical_lines() gives every row exactly one line
                if len(row) != len(GMB_HEADER):
                    raise fail(line, f"expected {len(GMB_HEADER)} columns, got {len(row)}: {row!r}")
                marker, raw_word, _pos, tag = row
                if marker:
                    if not _SENTENCE_MARKER.fullmatch(marker):
                        raise fail(line, f"'Sentence #' is {marker!r}, expected 'Sentence: N'")
                    if marker in seen:
                        raise fail(line, f"{marker!r} repeats the sentence id of line {seen[marker]}")
                    seen[marker] = line
                    if words:
                        counts.sentences += 1
                        yield GmbSentence(tuple(words), tuple(tags), start)
                    words, tags, start, prev_tag = [], [], line, None
                elif not start:
                    raise fail(line, "first data row has no 'Sentence #' value")
                word = _fix_word(raw_word)
                stripped = word.strip()
                if not stripped:
                    raise fail(line, f"empty or whitespace-only word {raw_word!r}")
                if stripped != word:
                    raise fail(line, f"word {raw_word!r} has leading or trailing whitespace")
                problem = _tag_problem(tag, prev_tag)
                if problem is not None:
                    raise fail(line, problem)
                words.append(word)
                tags.append(tag)
                counts.tokens += 1
                prev_tag = tag
            if words:
                counts.sentences += 1
                yield GmbSentence(tuple(words), tuple(tags), start)
        except csv.Error as err:
            raise fail(counts.lines, f"malformed CSV: {err}") from err
        # A tripwire: physical_lines() and the loop above make these hold by construction.
        if (counts.lines, counts.tokens) != (counts.rows + 1, counts.rows):
            raise fail(
                None,
                f"read {counts.lines:,} lines but {counts.rows:,} rows and "
                f"{counts.tokens:,} tokens (expected lines = rows + 1 = tokens + 1)",
            )
        counts.complete = True


class CorpusCounts(NamedTuple):
    """Sentences, tokens and entities of a split, as read (from the CSV) or as written (in Docs)."""

    sentences: int
    tokens: int
    entities: int


def count_sentences(sentences: Sequence[GmbSentence]) -> CorpusCounts:
    """What the sentences hold; an entity is a ``B-`` tag (IOB2, so ``I-`` only continues one)."""
    return CorpusCounts(
        len(sentences),
        sum(len(sent.words) for sent in sentences),
        sum(tag.startswith("B-") for sent in sentences for tag in sent.tags),
    )


def _doc_tags(tokens: Iterable["Token"]) -> List[str]:
    return ["O" if t.ent_iob_ == "O" else f"{t.ent_iob_}-{t.ent_type_}" for t in tokens]


def _check_tags(sent: GmbSentence) -> None:
    """Raise ``ValueError`` naming the sentence's line and word if its tags are not valid IOB2."""
    prev: Optional[str] = None
    for i, tag in enumerate(sent.tags):
        problem = _tag_problem(tag, prev)
        if problem is not None:
            raise ValueError(f"sentence at line {sent.line}, word {i} ({sent.words[i]!r}): {problem}")
        prev = tag


def sentences_to_docs(
    vocab: "Vocab", sentences: Iterable[GmbSentence], n_sents: int = 1
) -> Iterator["Doc"]:
    """Yield spaCy ``Doc`` objects of ``n_sents`` consecutive sentences, one token per word, entities from the tags.

    Tokens are separated by one space (no space after a Doc's last one), and
    every token gets an explicit entity annotation (``O`` included), so the
    Docs can be used as complete NER gold data. With ``n_sents`` = 1 (the
    default) a Doc is one sentence with no sentence annotation. With more
    (like ``spacy convert -n``), a Doc holds up to ``n_sents`` sentences, the
    last Doc whatever remains, with sentence starts set, so ``doc.sents`` gives
    back each sentence exactly; longer Docs give the model context across
    sentences. Group the sentences of one split at a time: a Doc never mixes
    splits because it only ever sees the sentences passed in.

    Raises ``ValueError`` at once for ``n_sents`` < 1, and (naming the
    sentence's CSV line) if a sentence has no words or invalid IOB2 tags, or
    if spaCy would not give back exactly its words, tags and sentence
    boundaries: the benchmark's counts must survive the conversion.
    """
    if isinstance(n_sents, bool) or not isinstance(n_sents, int) or n_sents < 1:
        raise ValueError(f"n_sents (sentences per doc) must be an integer >= 1, got {n_sents!r}")
    return _iter_docs(vocab, sentences, n_sents)


def _iter_docs(vocab: "Vocab", sentences: Iterable[GmbSentence], n_sents: int) -> Iterator["Doc"]:
    sentences = iter(sentences)
    while True:
        group = list(islice(sentences, n_sents))
        if not group:
            return
        yield _group_to_doc(vocab, group, mark_sents=n_sents > 1)


def _group_to_doc(vocab: "Vocab", group: List[GmbSentence], mark_sents: bool) -> "Doc":
    """One Doc of the sentences in ``group``, checked token by token against them."""
    from spacy.tokens import Doc  # lazy: keep the module light to import

    for sent in group:
        if not sent.words:
            raise ValueError(f"sentence at line {sent.line}: no words")
        _check_tags(sent)
    if len(group) == 1:
        where, what = f"sentence at line {group[0].line}", "sentence"
    else:
        where, what = f"doc of the sentences at lines {group[0].line}-{group[-1].line}", "doc"
    words = [word for sent in group for word in sent.words]
    tags = [tag for sent in group for tag in sent.tags]
    n = len(words)
    spaces = [True] * (n - 1) + [False]
    starts = [i == 0 for sent in group for i in range(len(sent.words))] if mark_sents else None
    try:
        doc = Doc(vocab, words=words, spaces=spaces, ents=tags, sent_starts=starts)
    except (ValueError, KeyError) as err:
        raise ValueError(f"{where}: spaCy rejected the {what}: {err}") from err
    if len(doc) != n or any(tok.text != word for tok, word in zip(doc, words)):
        raise ValueError(
            f"{where}: spaCy made {len(doc)} tokens {[t.text for t in doc]!r} "
            f"from {n} words {words!r}"
        )
    if _doc_tags(doc) != tags:
        raise ValueError(f"{where}: entity tags changed in the Doc: {_doc_tags(doc)!r} != {tags!r}")
    if mark_sents:
        bounds, at = [], 0
        for sent in group:
            bounds.append((at, at + len(sent.words)))
            at += len(sent.words)
        got = [(span.start, span.end) for span in doc.sents]
        if got != bounds:
            raise ValueError(f"{where}: sentence boundaries changed in the Doc: {got!r} != {bounds!r}")
    return doc


def doc_sentences(doc: "Doc") -> List["Span"]:
    """The sentences of a converted Doc: ``doc.sents`` where sentence starts are set, else the whole Doc.

    Docs written with ``n_sents`` = 1 carry no sentence annotation (each is one
    sentence, as the converter always wrote them), and ``doc.sents`` would
    raise on them.
    """
    return list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]


def verify_docs(docs: Iterable["Doc"], sentences: Sequence[GmbSentence]) -> CorpusCounts:
    """Check that ``docs`` hold exactly ``sentences`` in order (words, tags, boundaries); count what they hold.

    The converter runs this on the Docs read back from the file it wrote, so
    nothing lost, merged or moved between the CSV and the DocBin goes
    unnoticed. Raises ``ValueError`` naming the first sentence (by CSV line)
    that differs, is missing or is extra.
    """
    n_sents = n_tokens = n_ents = 0
    for doc in docs:
        n_tokens += len(doc)
        n_ents += len(doc.ents)
        for span in doc_sentences(doc):
            if n_sents == len(sentences):
                raise ValueError(
                    f"the docs hold more than the {len(sentences):,} sentences expected; "
                    f"the first extra one is {span.text!r}"
                )
            sent = sentences[n_sents]
            words = tuple(token.text for token in span)
            tags = tuple(_doc_tags(span))
            if (words, tags) != (sent.words, sent.tags):
                raise ValueError(
                    f"sentence at line {sent.line} differs in the docs: {list(zip(words, tags))!r} "
                    f"!= {list(zip(sent.words, sent.tags))!r}"
                )
            n_sents += 1
    if n_sents < len(sentences):
        raise ValueError(
            f"the docs hold {n_sents:,} of the {len(sentences):,} sentences expected; "
            f"the first missing one is the sentence at line {sentences[n_sents].line}"
        )
    return CorpusCounts(n_sents, n_tokens, n_ents)
