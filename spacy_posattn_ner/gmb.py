"""Read and validate the Kaggle GMB NER corpus (``ner_dataset.csv``).

The corpus (see ``shared/assets/gmb/README.md``) is one CSV with the columns
``Sentence #,Word,POS,Tag``, where ``Sentence #`` (``Sentence: N``) is set only
on a sentence's first row and ``Tag`` is IOB2 over the eight GMB entity types.
Every figure the project reports is computed on this file, so the reader is
deliberately strict: anything unexpected is a :class:`GmbFormatError` naming
the file and the CSV line, never a silently dropped or repaired token (the one
documented repair is the cp1252 punctuation described in :func:`read_gmb`).

This module imports only the standard library at import time; spaCy is
imported lazily by :func:`sentences_to_docs`, so reading and validating the
corpus stays cheap.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    TextIO,
    Tuple,
    Union,
)

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps spaCy out of import time
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

__all__ = [
    "GMB_LABELS",
    "GmbFormatError",
    "GmbSentence",
    "canonical_split",
    "read_gmb",
    "sentences_to_docs",
]

#: The eight GMB entity types, sorted; the only labels a ``B-``/``I-`` tag may carry.
GMB_LABELS: Tuple[str, ...] = ("art", "eve", "geo", "gpe", "nat", "org", "per", "tim")

#: The exact header row of ``ner_dataset.csv``.
GMB_HEADER: Tuple[str, ...] = ("Sentence #", "Word", "POS", "Tag")

ENCODING = "latin-1"

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


@contextmanager
def _open_text(path: Path) -> Iterator[Tuple[TextIO, str]]:
    """Open ``path`` (a ``.zip`` with one ``.csv`` member, or a CSV) as latin-1 text.

    Yields the stream and the name to use in error messages.
    """
    if path.suffix.lower() == ".zip":
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
            with archive.open(members[0]) as raw:
                # newline="" lets the csv module see the raw line endings; only
                # \r, \n and \r\n end a line (not U+0085, unlike str.splitlines).
                text = io.TextIOWrapper(raw, encoding=ENCODING, newline="")
                yield text, f"{path}:{members[0].filename}"
    else:
        with open(path, encoding=ENCODING, newline="") as text:
            yield text, str(path)


def read_gmb(path: Union[str, Path]) -> Iterator[GmbSentence]:
    """Yield the sentences of a GMB ``ner_dataset.csv`` (plain or in a ``.zip``), in file order.

    Strict on purpose, so a damaged or different file cannot silently change
    the benchmark: raises :class:`GmbFormatError` (file and 1-based CSV line in
    the message) for a header other than ``Sentence #,Word,POS,Tag``, a row
    with other than 4 columns, a first data row without ``Sentence: N``, a
    malformed ``Sentence #`` value, a tag that is not ``O``/``B-x``/``I-x`` with
    ``x`` in :data:`GMB_LABELS`, an ``I-x`` not preceded by ``B-x``/``I-x`` in
    the same sentence, and a word that is empty, whitespace only, or has
    leading/trailing whitespace. A ``.zip`` must hold exactly one ``.csv``.

    Every row becomes exactly one word with its tag; nothing is dropped. The
    file is decoded as latin-1 (lossless for any byte), but the code points
    U+0080-U+009F in a word are mapped to the cp1252 characters those bytes
    stand for (the file is really Windows-1252 there). In the real corpus this
    turns the 4 rows whose latin-1 word is U+0085 alone (whitespace to Python
    and spaCy; CSV lines 1788, 219477, 219488, 434109) into ``"…"``, and the
    27 other words with such bytes into ``"–"``, ``"’s"``, ``"“"`` etc. Words
    with inner whitespace (one row: ``"5\\xa0storm"``, line 1040693) are kept
    as they are, as one word. The POS column is read but not returned.

    The file is opened lazily: format errors surface while iterating, but a
    missing file raises ``FileNotFoundError`` immediately.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GMB corpus not found: {path}")
    return _iter_sentences(path)


def _iter_sentences(path: Path) -> Iterator[GmbSentence]:
    with _open_text(path) as (stream, source):
        reader = csv.reader(stream)
        # A row's first line is one after the previous row's last line
        # (``reader.line_num`` counts physical lines, quoted newlines included).
        prev_end = 0

        def fail(line: int, problem: str) -> GmbFormatError:
            return GmbFormatError(source, line, problem)

        try:
            header = next(reader, None)
            if header is None:
                raise fail(1, f"file is empty, expected the header {','.join(GMB_HEADER)}")
            if tuple(header) != GMB_HEADER:
                raise fail(1, f"header is {header!r}, expected {list(GMB_HEADER)!r}")
            prev_end = reader.line_num

            words: List[str] = []
            tags: List[str] = []
            start = 0  # line of the current sentence's first row; 0 = none yet
            prev_tag: Optional[str] = None
            for row in reader:
                line = prev_end + 1
                prev_end = reader.line_num
                if len(row) != len(GMB_HEADER):
                    raise fail(line, f"expected {len(GMB_HEADER)} columns, got {len(row)}: {row!r}")
                marker, raw_word, _pos, tag = row
                if marker:
                    if not _SENTENCE_MARKER.fullmatch(marker):
                        raise fail(line, f"'Sentence #' is {marker!r}, expected 'Sentence: N'")
                    if words:
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
                prev_tag = tag
            if words:
                yield GmbSentence(tuple(words), tuple(tags), start)
        except csv.Error as err:
            raise fail(prev_end + 1, f"unreadable CSV: {err}") from err


def _doc_tags(doc: "Doc") -> List[str]:
    return ["O" if t.ent_iob_ == "O" else f"{t.ent_iob_}-{t.ent_type_}" for t in doc]


def sentences_to_docs(vocab: "Vocab", sentences: Iterable[GmbSentence]) -> Iterator["Doc"]:
    """Yield one spaCy ``Doc`` per sentence, one token per word, entities from the tags.

    Tokens are separated by one space (no space after the last one), and every
    token gets an explicit entity annotation (``O`` included), so the Docs
    can be used as complete NER gold data. Raises ``ValueError`` (naming the
    sentence's CSV line) if a sentence has invalid IOB2 tags, or if spaCy
    would not give exactly ``len(sentence.words)`` tokens with the same texts
    and tags: the benchmark's token counts must survive the conversion.
    """
    from spacy.tokens import Doc  # lazy: keep the module light to import

    for sent in sentences:
        n = len(sent.words)
        where = f"sentence at line {sent.line}"
        if n == 0:
            raise ValueError(f"{where}: no words")
        prev: Optional[str] = None
        for i, tag in enumerate(sent.tags):
            problem = _tag_problem(tag, prev)
            if problem is not None:
                raise ValueError(f"{where}, word {i} ({sent.words[i]!r}): {problem}")
            prev = tag
        spaces = [True] * (n - 1) + [False]
        try:
            doc = Doc(vocab, words=list(sent.words), spaces=spaces, ents=list(sent.tags))
        except (ValueError, KeyError) as err:
            raise ValueError(f"{where}: spaCy rejected the sentence: {err}") from err
        if len(doc) != n or any(tok.text != word for tok, word in zip(doc, sent.words)):
            raise ValueError(
                f"{where}: spaCy made {len(doc)} tokens {[t.text for t in doc]!r} "
                f"from {n} words {list(sent.words)!r}"
            )
        if _doc_tags(doc) != list(sent.tags):
            raise ValueError(
                f"{where}: entity tags changed in the Doc: {_doc_tags(doc)!r} "
                f"!= {list(sent.tags)!r}"
            )
        yield doc
