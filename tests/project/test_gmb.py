"""Tests for scripts/gmb.py and scripts/convert_gmb.py."""

import collections
import csv
import importlib
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List, Sequence

import pytest
import spacy
import typer
from spacy.tokens import Doc, DocBin
from typer.testing import CliRunner

from scripts.gmb import (
    GMB_LABELS,
    CorpusCounts,
    GmbCounts,
    GmbFormatError,
    GmbSentence,
    canonical_split,
    count_sentences,
    doc_sentences,
    read_gmb,
    sentences_to_docs,
    verify_docs,
)

HEADER = "Sentence #,Word,POS,Tag"
REPO_ROOT = Path(__file__).parents[2]
REAL_ZIP_CANDIDATES = [
    REPO_ROOT / "assets/ner_dataset.csv.zip",
    Path(__file__).parents[3] / "shared/assets/gmb/ner_dataset.csv.zip",
]

# CSV line 1 is the header. Line numbers of each row are given on the right.
SMALL_ROWS = [
    "Sentence: 1,Thousands,NNS,O",  # 2
    ",marched,VBN,O",  # 3
    ",through,IN,O",  # 4
    ",New,NNP,B-geo",  # 5
    ",York,NNP,I-geo",  # 6
    ",Café,NNP,B-org",  # 7  (latin-1 'é')
    ',"""",``,O',  # 8  (a quoted '"' word)
    "Sentence: 2,Iran,NNP,B-gpe",  # 9
    ",said,VBD,O",  # 10
    ",Monday,NNP,B-tim",  # 11
    "Sentence: 3,Mr.,NNP,B-per",  # 12
    ",Bush,NNP,I-per",  # 13
    ",spoke,VBD,O",  # 14
]


def write_csv(path: Path, rows: Sequence[str], header: str = HEADER) -> Path:
    """Write a GMB-style CSV (CRLF, latin-1 like the real file)."""
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("latin-1"))
    return path


def small_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "ner_dataset.csv", SMALL_ROWS)


def find_real_zip() -> Path:
    for candidate in REAL_ZIP_CANDIDATES:
        if candidate.is_file():
            return candidate
    pytest.skip(
        "real GMB corpus not found (looked for "
        + ", ".join(str(c) for c in REAL_ZIP_CANDIDATES)
        + ")"
    )


# --- reading ----------------------------------------------------------------


def test_read_plain_csv_words_tags_lines(tmp_path: Path) -> None:
    sents = list(read_gmb(small_csv(tmp_path)))
    assert sents == [
        GmbSentence(
            words=("Thousands", "marched", "through", "New", "York", "Café", '"'),
            tags=("O", "O", "O", "B-geo", "I-geo", "B-org", "O"),
            line=2,
        ),
        GmbSentence(words=("Iran", "said", "Monday"), tags=("B-gpe", "O", "B-tim"), line=9),
        GmbSentence(words=("Mr.", "Bush", "spoke"), tags=("B-per", "I-per", "O"), line=12),
    ]
    # 'é' was one latin-1 byte; decoding as UTF-8 would have failed or mangled it
    assert b"Caf\xe9," in (tmp_path / "ner_dataset.csv").read_bytes()


def test_read_zip_equals_plain(tmp_path: Path) -> None:
    csv_path = small_csv(tmp_path)
    zip_path = tmp_path / "ner_dataset.csv.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv_path, "ner_dataset.csv")
        zf.writestr("README.txt", "other members are ignored")
    assert list(read_gmb(zip_path)) == list(read_gmb(str(csv_path)))


def test_zip_error_names_archive_and_member_with_line(tmp_path: Path) -> None:
    zip_path = tmp_path / "data.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("inner.csv", "\r\n".join([HEADER, "Sentence: 1,x,NN,B-foo"]).encode("latin-1"))
    with pytest.raises(GmbFormatError, match=r"data\.zip:inner\.csv line 2: tag 'B-foo'"):
        list(read_gmb(zip_path))


@pytest.mark.parametrize("names", [["a.csv", "b.csv"], ["notes.txt"]])
def test_zip_needs_exactly_one_csv(tmp_path: Path, names: List[str]) -> None:
    zip_path = tmp_path / "bad.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in names:
            zf.writestr(name, HEADER + "\r\n")
    n_csv = sum(name.endswith(".csv") for name in names)
    with pytest.raises(GmbFormatError, match=rf"bad\.zip: expected exactly one \.csv .*found {n_csv}") as exc:
        list(read_gmb(zip_path))
    assert exc.value.line is None


def test_missing_file_raises_immediately(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_gmb(tmp_path / "nope.csv.zip")  # no iteration needed


def test_cp1252_bytes_become_punctuation_not_whitespace(tmp_path: Path) -> None:
    # The real file has 4 rows whose latin-1 word is U+0085 (cp1252 '…'),
    # which Python and spaCy treat as whitespace; they must be kept as '…'.
    path = tmp_path / "x.csv"
    path.write_bytes(
        b"Sentence #,Word,POS,Tag\r\n"
        b"Sentence: 1,Wait,VB,O\r\n"
        b",\x85,:,O\r\n"
        b",Korea\x92s,NNP,B-geo\r\n"
        b",\x96,;,O\r\n"
        b",5\xa0storm,NN,O\r\n"
    )
    (sent,) = read_gmb(path)
    assert sent.words == ("Wait", "\u2026", "Korea\u2019s", "\u2013", "5\xa0storm")
    assert sent.tags == ("O", "O", "B-geo", "O", "O")


def test_empty_input_yields_nothing_but_needs_header(tmp_path: Path) -> None:
    assert list(read_gmb(write_csv(tmp_path / "h.csv", []))) == []
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(GmbFormatError, match=r"e\.csv line 1: file is empty"):
        list(read_gmb(empty))


@pytest.mark.parametrize(
    "header,rows,pattern",
    [
        ("Sentence,Word,POS,Tag", ["Sentence: 1,a,DT,O"], r"line 1: header is"),
        ("Sentence #,Word,POS", ["Sentence: 1,a,DT"], r"line 1: header is"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN"], r"line 3: expected 4 columns, got 3"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,O,extra"], r"line 3: expected 4 columns, got 5"),
        (HEADER, ["Sentence: 1,a,DT,O", "", ",b,NN,O"], r"line 3: expected 4 columns, got 0"),
        (HEADER, [",a,DT,O", "Sentence: 1,b,NN,O"], r"line 2: first data row has no 'Sentence #'"),
        (HEADER, ["Sentence 1,a,DT,O"], r"line 2: 'Sentence #' is 'Sentence 1'"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,B-foo"], r"line 3: tag 'B-foo' is not 'O', 'B-x' or 'I-x'"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,geo"], r"line 3: tag 'geo' is not"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,E-geo"], r"line 3: tag 'E-geo' is not"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,"], r"line 3: tag '' is not"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,I-geo"], r"line 3: tag 'I-geo' follows 'O' \(invalid IOB2\)"),
        (HEADER, ["Sentence: 1,a,DT,B-per", ",b,NN,I-geo"], r"line 3: tag 'I-geo' follows 'B-per'"),
        (HEADER, ["Sentence: 1,a,DT,B-geo", "Sentence: 2,b,NN,I-geo"], r"line 3: tag 'I-geo' starts a sentence"),
        (HEADER, ["Sentence: 1,a,DT,O", ",,NN,O"], r"line 3: empty or whitespace-only word ''"),
        (HEADER, ["Sentence: 1,a,DT,O", ",b,NN,O", ",  ,NN,O"], r"line 4: empty or whitespace-only word '  '"),
        (HEADER, ["Sentence: 1,a,DT,O", ", b,NN,O"], r"line 3: word ' b' has leading or trailing whitespace"),
    ],
)
def test_format_errors_name_file_and_line(tmp_path: Path, header: str, rows: List[str], pattern: str) -> None:
    path = write_csv(tmp_path / "ner_dataset.csv", rows, header=header)
    with pytest.raises(GmbFormatError, match=r"ner_dataset\.csv " + pattern) as exc:
        list(read_gmb(path))
    assert isinstance(exc.value, ValueError)
    assert f"line {exc.value.line}:" in str(exc.value)


# Quote words written raw instead of CSV-quoted (the real file writes '"' as
# '""""'): the csv module opens a quoted field at line 4's '"' and closes it at
# line 6's, so lines 4-6 became ONE well-formed row (4 columns, tag 'O') and the
# file converted with exit 0, 2 tokens short (issue 18).
STRAY_QUOTE_ROWS = [
    "Sentence: 1,He,PRP,O",  # 2
    ",said,VBD,O",  # 3
    ',",``,O',  # 4  an opening quote, unquoted
    ",hello,UH,O",  # 5
    ",\",'',O",  # 6  a closing quote, unquoted
    "Sentence: 2,Iran,NNP,B-gpe",  # 7
    ",spoke,VBD,O",  # 8
]


def test_stray_quote_used_to_merge_rows_silently(tmp_path: Path) -> None:
    # The premise of the tests below: plain csv parsing turns 3 lines into one valid-looking row.
    path = write_csv(tmp_path / "stray.csv", STRAY_QUOTE_ROWS)
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 + len(STRAY_QUOTE_ROWS) - 2
    assert rows[3] == ["", ",``,O\r\n,hello,UH,O\r\n,", "''", "O"]


def test_stray_quote_is_an_error_naming_the_line(tmp_path: Path) -> None:
    reader = read_gmb(write_csv(tmp_path / "stray.csv", STRAY_QUOTE_ROWS))
    with pytest.raises(GmbFormatError) as exc:
        list(reader)
    message = str(exc.value)
    assert message.startswith(f"{tmp_path / 'stray.csv'} line 4: a quoted field is still open at the end of the line")
    assert "stray '\"'" in message and repr(',",``,O\r\n') in message
    assert exc.value.line == 4
    assert not reader.counts.complete


@pytest.mark.parametrize(
    "bad_row",
    [
        ',",``,O',  # the word '"' unquoted
        ',"Hello,UH,O',  # a word starting with a quote
        ',"Hello"",UH,O',  # quoted, but the closing quote is doubled (escaped)
    ],
)
@pytest.mark.parametrize("where", ["middle", "last line", "last line, no final newline"])
def test_field_opening_a_quote_is_refused_anywhere(tmp_path: Path, bad_row: str, where: str) -> None:
    rows = ["Sentence: 1,a,DT,O", bad_row] + ([] if where != "middle" else [",b,NN,O", ',"1,000",CD,O'])
    path = write_csv(tmp_path / "q.csv", rows)
    if where.endswith("no final newline"):
        path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(GmbFormatError, match=r"q\.csv line 3: a quoted field is still open"):
        list(read_gmb(path))


@pytest.mark.parametrize(
    "row,pattern",
    [
        # a line break inside a quoted field: one row would span lines 3-4
        (',"multi\r\nline",NN,O', r"line 3: a quoted field is still open at the end of the line .*'"),
        (',"multi\nline",NN,O', r"line 3: line ends with '\\n' but the header with '\\r\\n'"),
        # a bare line break inside an unquoted field splits the row
        (",multi\nline,NN,O", r"line 3: line ends with '\\n' but the header with '\\r\\n' \(a line break inside a field\?\): ',multi\\n'"),
        (",multi\rline,NN,O", r"line 3: line ends with '\\r' but the header with '\\r\\n'"),
        (",ab\x00c,NN,O", r"line 3: NUL byte at column 4: ',ab\\x00c,NN,O\\r\\n'"),
        (",\x00,NN,O", r"line 3: NUL byte at column 2"),
        (',"ab"c,NN,O', r"line 3: malformed CSV: ',' expected after '\"'"),
    ],
)
def test_line_breaks_nul_and_bad_quoting_are_errors_naming_the_line(tmp_path: Path, row: str, pattern: str) -> None:
    path = write_csv(tmp_path / "bad.csv", ["Sentence: 1,a,DT,O", row, ",z,NN,O"])
    with pytest.raises(GmbFormatError, match=r"bad\.csv " + pattern) as exc:
        list(read_gmb(path))
    assert exc.value.line == 3


def test_nul_in_header_and_line_break_in_lf_file(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"Sentence #,Word,POS,Tag\x00\r\nSentence: 1,a,DT,O\r\n")
    with pytest.raises(GmbFormatError, match=r"h\.csv line 1: NUL byte at column 24"):
        list(read_gmb(path))
    path.write_bytes(b"Sentence #,Word,POS,Tag\nSentence: 1,a,DT,O\n,b\r\n,NN,O\n")
    with pytest.raises(GmbFormatError, match=r"h\.csv line 3: line ends with '\\r\\n' but the header with '\\n'"):
        list(read_gmb(path))


def test_legit_quoting_reads_one_row_per_line(tmp_path: Path) -> None:
    # What the real file quotes: the words ',', '"' and numbers with commas.
    rows = ['Sentence: 1,"""",``,O', ',",",",",O', ',"1,000",CD,O', ',"2,00,000",CD,O', ',ab"c,NN,O', ',",",",",I-tim']
    reader = read_gmb(write_csv(tmp_path / "ok.csv", rows[:-1]))
    (sent,) = reader
    assert sent.words == ('"', ",", "1,000", "2,00,000", 'ab"c')
    assert (reader.counts.lines, reader.counts.rows, reader.counts.tokens) == (6, 5, 5)


@pytest.mark.parametrize("eol,final", [("\r\n", True), ("\n", True), ("\r", True), ("\r\n", False)])
def test_clean_file_counts_equal_the_files(tmp_path: Path, eol: str, final: bool) -> None:
    text = eol.join([HEADER, *SMALL_ROWS]) + (eol if final else "")
    path = tmp_path / "clean.csv"
    path.write_bytes(text.encode("latin-1"))
    reader = read_gmb(path)
    assert not reader.counts.complete
    sents = list(reader)
    # counted from the bytes, independently of any CSV parsing
    n_lines = path.read_bytes().count(eol.encode()) + (0 if final else 1)
    assert n_lines == 1 + len(SMALL_ROWS) == 14
    assert reader.counts == GmbCounts(
        lines=n_lines, rows=n_lines - 1, sentences=3, tokens=n_lines - 1, complete=True
    )
    assert [len(s.words) for s in sents] == [7, 3, 3]


def test_error_is_raised_lazily_after_good_sentences(tmp_path: Path) -> None:
    rows = SMALL_ROWS + [",now,RB,I-org"]  # line 15
    sents = read_gmb(write_csv(tmp_path / "late.csv", rows))
    assert next(sents).line == 2
    assert next(sents).line == 9
    with pytest.raises(GmbFormatError, match=r"late\.csv line 15: tag 'I-org' follows 'O'"):
        next(sents)


def test_gmb_module_imports_nothing_heavy() -> None:
    # gmb.py itself (loaded on its own, without the package __init__) must stay light.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('gmb', {str(REPO_ROOT / 'scripts/gmb.py')!r})\n"
        "module = sys.modules['gmb'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('torch', 'spacy', 'thinc', 'numpy', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gmb_format_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(GmbFormatError("f.csv", 7, "bad thing")))
    assert (str(err), err.source, err.line, err.problem) == ("f.csv line 7: bad thing", "f.csv", 7, "bad thing")


def test_sentence_needs_one_tag_per_word() -> None:
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        GmbSentence(words=("a", "b"), tags=("O",), line=2)


# --- split --------------------------------------------------------------------


def test_canonical_split() -> None:
    assert canonical_split(47959) == (38367, 4795, 4797)
    assert canonical_split(10) == (8, 1, 1)
    assert canonical_split(0) == (0, 0, 0)
    assert canonical_split(9) == (7, 0, 2)
    for n in range(0, 2000):
        train, dev, test = canonical_split(n)
        assert train + dev + test == n
        assert train == (8 * n) // 10 and dev == n // 10
    with pytest.raises(ValueError):
        canonical_split(-1)


def test_labels() -> None:
    assert GMB_LABELS == ("art", "eve", "geo", "gpe", "nat", "org", "per", "tim")


# --- docs ---------------------------------------------------------------------


def test_sentences_to_docs_tokens_and_ents(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    sents = list(read_gmb(small_csv(tmp_path)))
    docs = list(sentences_to_docs(nlp.vocab, sents))
    assert [len(doc) for doc in docs] == [len(s.words) for s in sents]
    assert [t.text for t in docs[0]] == list(sents[0].words)
    assert docs[0].text == 'Thousands marched through New York Café "'
    assert [t.whitespace_ for t in docs[1]] == [" ", " ", ""]
    assert [(e.text, e.label_, e.start, e.end) for e in docs[0].ents] == [
        ("New York", "geo", 3, 5),
        ("Café", "org", 5, 6),
    ]
    assert [(e.text, e.label_) for e in docs[1].ents] == [("Iran", "gpe"), ("Monday", "tim")]
    assert [(e.text, e.label_) for e in docs[2].ents] == [("Mr. Bush", "per")]
    # 'O' is explicit gold annotation, not missing
    assert [t.ent_iob_ for t in docs[0]] == ["O", "O", "O", "B", "I", "B", "O"]
    # round trip through DocBin keeps tokens and entities
    restored = list(DocBin(docs=docs).get_docs(nlp.vocab))
    assert [[(e.text, e.label_) for e in d.ents] for d in restored] == [
        [(e.text, e.label_) for e in d.ents] for d in docs
    ]
    assert [t.ent_iob_ for t in restored[0]] == ["O", "O", "O", "B", "I", "B", "O"]


def test_sentences_to_docs_keeps_odd_words_as_single_tokens() -> None:
    nlp = spacy.blank("en")
    sent = GmbSentence(words=("5\xa0storm", "\u2026", "a b", "U.S."), tags=("O", "O", "B-geo", "I-geo"), line=9)
    (doc,) = sentences_to_docs(nlp.vocab, [sent])
    assert [t.text for t in doc] == list(sent.words)
    assert [(e.text, e.label_) for e in doc.ents] == [("a b U.S.", "geo")]


@pytest.mark.parametrize(
    "words,tags,pattern",
    [
        (("a", "b"), ("O", "I-geo"), r"sentence at line 42, word 1 \('b'\): tag 'I-geo' follows 'O'"),
        (("a",), ("B-xyz",), r"sentence at line 42, word 0 \('a'\): tag 'B-xyz' is not"),
        (("a", ""), ("O", "O"), r"sentence at line 42: spaCy rejected the sentence"),
        ((), (), r"sentence at line 42: no words"),
    ],
)
def test_sentences_to_docs_errors(words, tags, pattern) -> None:
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=pattern):
        list(sentences_to_docs(nlp.vocab, [GmbSentence(words=words, tags=tags, line=42)]))


def sentence_texts(doc) -> List[List[str]]:
    return [[t.text for t in span] for span in doc_sentences(doc)]


def test_grouped_docs_keep_sentences_tokens_and_ents(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    sents = list(read_gmb(small_csv(tmp_path)))  # 7, 3 and 3 words
    docs = list(sentences_to_docs(nlp.vocab, sents, n_sents=2))
    assert [len(doc) for doc in docs] == [10, 3]  # the last doc holds the one sentence left
    assert docs[0].text == 'Thousands marched through New York Café " Iran said Monday'
    assert [s.text for s in docs[0].sents] == ['Thousands marched through New York Café "', "Iran said Monday"]
    assert [s.text for s in docs[1].sents] == ["Mr. Bush spoke"]
    assert [(e.text, e.label_, e.start) for e in docs[0].ents] == [
        ("New York", "geo", 3),
        ("Café", "org", 5),
        ("Iran", "gpe", 7),
        ("Monday", "tim", 9),
    ]
    assert [(e.text, e.label_) for e in docs[1].ents] == [("Mr. Bush", "per")]
    # the sentence starts survive a DocBin round trip, the partial last doc's included
    restored = list(DocBin(docs=docs).get_docs(nlp.vocab))
    assert [sentence_texts(doc) for doc in restored] == [[list(s.words) for s in sents[:2]], [list(sents[2].words)]]
    assert all(doc.has_annotation("SENT_START") for doc in restored)
    assert verify_docs(restored, sents) == count_sentences(sents) == CorpusCounts(3, 13, 5)


def test_grouping_keeps_an_entity_next_to_a_sentence_boundary() -> None:
    # B-geo ending one sentence, B-geo starting the next: two entities, not one
    nlp = spacy.blank("en")
    sents = [
        GmbSentence(words=("to", "Paris"), tags=("O", "B-geo"), line=2),
        GmbSentence(words=("Rome", "too"), tags=("B-geo", "O"), line=4),
    ]
    (doc,) = sentences_to_docs(nlp.vocab, sents, n_sents=5)
    assert [(e.text, e.start) for e in doc.ents] == [("Paris", 1), ("Rome", 2)]
    assert [s.text for s in doc.sents] == ["to Paris", "Rome too"]


@pytest.mark.parametrize("n_sents", [1, 2, 3, 4, 7])
def test_every_grouping_gives_back_the_sentences(n_sents: int) -> None:
    nlp = spacy.blank("en")
    sents = [
        GmbSentence(words=tuple(f"w{i}_{j}" for j in range(i % 4 + 1)), tags=("B-per",) + ("I-per",) * (i % 4), line=10 * i)
        for i in range(11)
    ]
    docs = list(sentences_to_docs(nlp.vocab, sents, n_sents))
    assert len(docs) == -(-11 // n_sents)
    assert [len(doc_sentences(doc)) for doc in docs] == [n_sents] * (11 // n_sents) + ([11 % n_sents] if 11 % n_sents else [])
    assert [words for doc in docs for words in sentence_texts(doc)] == [list(s.words) for s in sents]
    assert sum(len(doc.ents) for doc in docs) == 11
    assert verify_docs(docs, sents) == count_sentences(sents)


def test_one_sentence_per_doc_is_unchanged(tmp_path: Path) -> None:
    # n_sents=1 is what the converter always wrote: one doc per sentence, no sentence annotation.
    nlp = spacy.blank("en")
    sents = list(read_gmb(small_csv(tmp_path)))
    default = list(sentences_to_docs(nlp.vocab, sents))
    one = list(sentences_to_docs(nlp.vocab, sents, n_sents=1))
    assert [doc.to_json() for doc in one] == [doc.to_json() for doc in default]
    assert [doc.text for doc in one] == [" ".join(s.words) for s in sents]
    assert not any(doc.has_annotation("SENT_START") for doc in one)
    assert all("sents" not in doc.to_json() for doc in one)


@pytest.mark.parametrize("bad", [0, -1, -5, True, 1.5, "2"])
def test_bad_n_sents_is_rejected_at_once(bad) -> None:
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=r"n_sents \(sentences per doc\) must be an integer >= 1, got " + repr(bad).replace(".", r"\.")):
        sentences_to_docs(nlp.vocab, [], bad)  # no iteration needed


def test_group_errors_name_the_sentence_lines() -> None:
    nlp = spacy.blank("en")
    good = GmbSentence(words=("a",), tags=("O",), line=2)
    bad = GmbSentence(words=("b", "c"), tags=("O", "I-geo"), line=3)
    with pytest.raises(ValueError, match=r"sentence at line 3, word 1 \('c'\): tag 'I-geo' follows 'O'"):
        list(sentences_to_docs(nlp.vocab, [good, bad], n_sents=2))
    empty_word = GmbSentence(words=("b", ""), tags=("O", "O"), line=3)
    with pytest.raises(ValueError, match=r"doc of the sentences at lines 2-3: spaCy rejected the doc"):
        list(sentences_to_docs(nlp.vocab, [good, empty_word], n_sents=2))


def test_verify_docs_finds_lost_changed_and_extra_sentences(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    sents = list(read_gmb(small_csv(tmp_path)))
    docs = list(sentences_to_docs(nlp.vocab, sents, n_sents=2))
    with pytest.raises(ValueError, match=r"hold 2 of the 3 sentences expected; the first missing one is the sentence at line 12"):
        verify_docs(docs[:1], sents)
    with pytest.raises(ValueError, match=r"more than the 2 sentences expected; the first extra one is 'Mr\. Bush spoke'"):
        verify_docs(docs, sents[:2])
    changed = sents[:1] + [GmbSentence(words=("Iran", "said", "Monday"), tags=("B-gpe", "O", "O"), line=9)] + sents[2:]
    with pytest.raises(ValueError, match=r"sentence at line 9 differs in the docs: \[\('Iran', 'B-gpe'\), \('said', 'O'\), \('Monday', 'B-tim'\)\]"):
        verify_docs(docs, changed)


# --- CLI --------------------------------------------------------------------------


def load_cli_module():
    return importlib.import_module("scripts.convert_gmb")


def load_cli():
    return load_cli_module().app


def synthetic_corpus(tmp_path: Path, n_sents: int) -> Path:
    """A zipped corpus whose sentence i has i % 3 + 1 words (first word tagged)."""
    rows = []
    for i in range(1, n_sents + 1):
        rows.append(f"Sentence: {i},W{i},NNP,B-geo")
        rows.extend(f",w{i}_{j},NN,O" for j in range(i % 3))
    csv_path = write_csv(tmp_path / "ner_dataset.csv", rows)
    zip_path = tmp_path / "ner_dataset.csv.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(csv_path, "ner_dataset.csv")
    return zip_path


def flat(output: str) -> str:
    """CLI output with line wrapping undone: rich's box edges dropped, whitespace runs collapsed."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", output).split())


def read_split(out: Path, name: str) -> List[List[str]]:
    nlp = spacy.blank("en")
    return [[t.text for t in doc] for doc in DocBin().from_disk(out / f"{name}.spacy").get_docs(nlp.vocab)]


def read_split_sentences(out: Path, name: str) -> List[List[List[str]]]:
    """Per doc, the token texts of each of its sentences."""
    nlp = spacy.blank("en")
    return [sentence_texts(doc) for doc in DocBin().from_disk(out / f"{name}.spacy").get_docs(nlp.vocab)]


def synthetic_words(i: int) -> List[str]:
    """The words of sentence i in :func:`synthetic_corpus`."""
    return [f"W{i}"] + [f"w{i}_{j}" for j in range(i % 3)]


def test_cli_full_conversion(tmp_path: Path) -> None:
    zip_path = synthetic_corpus(tmp_path, 25)  # split 20 / 2 / 3
    out = tmp_path / "corpus"
    result = CliRunner().invoke(load_cli(), [str(zip_path), str(out)])
    assert result.exit_code == 0, result.output
    train, dev, test = (read_split(out, name) for name in ("train", "dev", "test"))
    assert [len(train), len(dev), len(test)] == [20, 2, 3]
    assert [doc[0] for doc in train + dev + test] == [f"W{i}" for i in range(1, 26)]
    n_tokens = sum(i % 3 + 1 for i in range(1, 26))
    assert sum(len(d) for d in train + dev + test) == n_tokens
    output = flat(result.output)
    assert f"Read 25 sentences, {n_tokens} tokens, 25 entities from {1 + n_tokens} lines (header + {n_tokens} rows)" in output
    assert f"Wrote 25 sentences, {n_tokens} tokens in total, 25 entities in 25 docs" in output
    n_train_tokens = sum(i % 3 + 1 for i in range(1, 21))
    assert (
        f"train: sentences in/out 20/20, tokens in/out {n_train_tokens}/{n_train_tokens}, "
        "entities in/out 20/20; 20 docs of up to 1 sentences"
    ) in output


def test_cli_limits_apply_after_split(tmp_path: Path) -> None:
    zip_path = synthetic_corpus(tmp_path, 50)  # split 40 / 5 / 5
    out = tmp_path / "corpus"
    args = [str(zip_path), str(out), "--limit", "7", "--eval-limit", "2", "--lang", "en"]
    result = CliRunner().invoke(load_cli(), args)
    assert result.exit_code == 0, result.output
    # the first sentences of each canonical split, not of the limited corpus
    assert [d[0] for d in read_split(out, "train")] == [f"W{i}" for i in range(1, 8)]
    assert [d[0] for d in read_split(out, "dev")] == ["W41", "W42"]
    assert [d[0] for d in read_split(out, "test")] == ["W46", "W47"]
    assert "train: sentences in/out 7/7, tokens in/out 14/14, entities in/out 7/7 (limited from 40 sentences)" in flat(result.output)


def test_cli_n_sents_groups_within_each_split(tmp_path: Path) -> None:
    zip_path = synthetic_corpus(tmp_path, 25)  # split 20 / 2 / 3
    out = tmp_path / "corpus"
    result = CliRunner().invoke(load_cli(), [str(zip_path), str(out), "--n-sents", "3"])
    assert result.exit_code == 0, result.output
    splits = {name: read_split_sentences(out, name) for name in ("train", "dev", "test")}
    # split first, then group: no doc mixes splits, each split's last doc holds the rest
    assert {name: [len(doc) for doc in docs] for name, docs in splits.items()} == {
        "train": [3, 3, 3, 3, 3, 3, 2],
        "dev": [2],
        "test": [3],
    }
    all_sents = [sent for name in ("train", "dev", "test") for doc in splits[name] for sent in doc]
    assert all_sents == [synthetic_words(i) for i in range(1, 26)]
    n_tokens = sum(i % 3 + 1 for i in range(1, 26))
    assert "dev: sentences in/out 2/2, tokens in/out 3/3, entities in/out 2/2; 1 docs of up to 3 sentences" in flat(result.output)
    assert f"Wrote 25 sentences, {n_tokens} tokens in total, 25 entities in 9 docs" in flat(result.output)


def test_cli_limits_count_sentences_not_docs(tmp_path: Path) -> None:
    zip_path = synthetic_corpus(tmp_path, 50)  # split 40 / 5 / 5
    out = tmp_path / "corpus"
    args = [str(zip_path), str(out), "--limit", "7", "--eval-limit", "2", "-n", "3"]
    result = CliRunner().invoke(load_cli(), args)
    assert result.exit_code == 0, result.output
    assert [[d[0] for d in doc] for doc in read_split_sentences(out, "train")] == [
        ["W1", "W2", "W3"],
        ["W4", "W5", "W6"],
        ["W7"],
    ]
    assert [[d[0] for d in doc] for doc in read_split_sentences(out, "dev")] == [["W41", "W42"]]
    assert [[d[0] for d in doc] for doc in read_split_sentences(out, "test")] == [["W46", "W47"]]
    assert "train: sentences in/out 7/7" in flat(result.output) and "3 docs of up to 3 sentences" in flat(result.output)
    params = {param.name: param for param in typer.main.get_command(load_cli()).params}
    assert "SENTENCES (not docs)" in params["limit"].help
    assert "SENTENCES (not docs)" in params["eval_limit"].help


def test_cli_n_sents_1_is_the_default_output(tmp_path: Path) -> None:
    zip_path = synthetic_corpus(tmp_path, 25)
    nlp = spacy.blank("en")
    outputs = []
    for extra in ([], ["--n-sents", "1"]):
        out = tmp_path / f"corpus{len(extra)}"
        result = CliRunner().invoke(load_cli(), [str(zip_path), str(out), *extra])
        assert result.exit_code == 0, result.output
        outputs.append(
            [[doc.to_json() for doc in DocBin().from_disk(out / f"{name}.spacy").get_docs(nlp.vocab)] for name in ("train", "dev", "test")]
        )
    assert outputs[0] == outputs[1]
    # what the converter wrote before --n-sents existed: one Doc per sentence, built like this
    before = []
    for first, last in ((1, 20), (21, 22), (23, 25)):
        docs = []
        for i in range(first, last + 1):
            words = synthetic_words(i)
            tags = ["B-geo"] + ["O"] * (len(words) - 1)
            spaces = [True] * (len(words) - 1) + [False]
            docs.append(Doc(nlp.vocab, words=words, spaces=spaces, ents=tags))
        before.append([doc.to_json() for doc in DocBin(docs=docs).get_docs(nlp.vocab)])
    assert outputs[0] == before


@pytest.mark.parametrize("bad", ["0", "-2"])
def test_cli_rejects_bad_n_sents(tmp_path: Path, bad: str) -> None:
    zip_path = synthetic_corpus(tmp_path, 5)
    result = CliRunner().invoke(load_cli(), [str(zip_path), str(tmp_path / "out"), "--n-sents", bad])
    assert result.exit_code == 2
    output = flat(result.output)
    assert "Invalid value for '--n-sents'" in output
    assert re.search(r"greater than or equal to 1|is not in the range x>=1", output), output
    assert not (tmp_path / "out").exists()


def test_cli_fails_when_the_written_file_loses_a_sentence(tmp_path: Path, monkeypatch) -> None:
    # The in = out check is real: drop a split's last doc on the way to the DocBin.
    module = load_cli_module()
    real = module.sentences_to_docs

    def lossy(vocab, sentences, n_sents=1):
        return list(real(vocab, sentences, n_sents))[:-1]

    monkeypatch.setattr(module, "sentences_to_docs", lossy)
    zip_path = synthetic_corpus(tmp_path, 25)
    result = CliRunner().invoke(module.app, [str(zip_path), str(tmp_path / "out"), "-n", "2"])
    assert result.exit_code == 1
    output = flat(result.output)
    assert "train: " in output and "does not hold what was read" in output
    assert "the docs hold 18 of the 20 sentences expected; the first missing one is the sentence at line" in output


def test_cli_rejects_stray_quote(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "stray.csv", STRAY_QUOTE_ROWS)
    result = CliRunner().invoke(load_cli(), [str(path), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, GmbFormatError)
    assert "stray.csv line 4: a quoted field is still open" in str(result.exception)
    assert not (tmp_path / "out" / "train.spacy").exists()


def test_cli_rejects_bad_input(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", ["Sentence: 1,a,DT,I-geo"])
    result = CliRunner().invoke(load_cli(), [str(path), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, GmbFormatError)
    assert "line 2" in str(result.exception)
    assert not (tmp_path / "out" / "train.spacy").exists()


# --- the real corpus ----------------------------------------------------------


def test_real_corpus_counts() -> None:
    path = find_real_zip()
    reader = read_gmb(path)
    sents = list(reader)
    with zipfile.ZipFile(path) as zf:
        data = zf.read("ner_dataset.csv")
    assert data.count(b"\r\n") == data.count(b"\n") == data.count(b"\r") == 1048576 and data.endswith(b"\r\n")
    assert reader.counts == GmbCounts(lines=1048576, rows=1048575, sentences=47959, tokens=1048575, complete=True)
    assert len(sents) == 47959
    assert sum(len(s.words) for s in sents) == 1048575
    assert sents[0].line == 2 and sents[0].words[:2] == ("Thousands", "of")
    counts = collections.Counter(tag for s in sents for tag in s.tags)
    expected_bi = {
        "geo": (37644, 7414),
        "tim": (20333, 6528),
        "org": (20143, 16784),
        "per": (16990, 17251),
        "gpe": (15870, 198),
        "art": (402, 297),
        "eve": (308, 253),
        "nat": (201, 51),
    }
    expected = {"O": 887908}
    for label, (n_b, n_i) in expected_bi.items():
        expected[f"B-{label}"] = n_b
        expected[f"I-{label}"] = n_i
    assert dict(counts) == expected
    # one CSV row per line in the real file, so a word's line is sentence line + index
    words_by_line = {s.line + i: w for s in sents for i, w in enumerate(s.words)}
    assert [words_by_line[line] for line in (1788, 219477, 219488, 434109)] == ["\u2026"] * 4
    assert canonical_split(len(sents)) == (38367, 4795, 4797)


# --- damaged, re-encoded and repeated input (#27) --------------------------------


def zip_of(tmp_path: Path, csv_path: Path) -> Path:
    zip_path = tmp_path / "ner_dataset.csv.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv_path, "ner_dataset.csv")
    return zip_path


@pytest.mark.parametrize("damage", ["truncated", "not_a_zip", "empty"])
def test_damaged_zip_is_an_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    good = zip_of(tmp_path, write_csv(tmp_path / "ner_dataset.csv", SMALL_ROWS * 1))
    data = good.read_bytes()
    bad = tmp_path / "bad.csv.zip"
    bad.write_bytes({"truncated": data[: len(data) // 2], "not_a_zip": b"Sentence #,Word,POS,Tag\r\n", "empty": b""}[damage])
    with pytest.raises(GmbFormatError, match=rf"^{re.escape(str(bad))}: not a readable zip archive \(\d+ bytes; truncated, or not a zip\?\)") as exc:
        list(read_gmb(bad))
    assert exc.value.line is None


def test_cli_reports_a_truncated_zip_without_a_traceback(tmp_path: Path) -> None:
    data = synthetic_corpus(tmp_path, 25).read_bytes()
    bad = tmp_path / "cut.csv.zip"
    bad.write_bytes(data[:-30])  # the central directory's end is gone
    result = CliRunner().invoke(load_cli(), [str(bad), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, GmbFormatError)
    assert str(result.exception).startswith(f"{bad}: not a readable zip archive")
    assert not (tmp_path / "out" / "train.spacy").exists()


def test_utf8_copy_reads_as_the_same_words(tmp_path: Path) -> None:
    """A UTF-8 copy read as latin-1 would turn 'Sébastien' into 'SÃ©bastien'; it is
    detected and decoded to the latin-1 original's words (U+0085 still becomes '…')."""
    rows = SMALL_ROWS + ["Sentence: 4,Sébastien,NNP,B-per", ",\x85,:,O", ",Zürich,NNP,B-geo"]
    original = write_csv(tmp_path / "latin1.csv", rows)
    copy = tmp_path / "utf8.csv"
    copy.write_bytes(original.read_bytes().decode("latin-1").encode("utf-8"))
    with_bom = tmp_path / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + copy.read_bytes())
    want = list(read_gmb(original))
    assert want[-1].words == ("Sébastien", "\u2026", "Zürich")
    for path, encoding in ((copy, "utf-8"), (with_bom, "utf-8-sig"), (zip_of(tmp_path, copy), "utf-8")):
        reader = read_gmb(path)
        assert list(reader) == want
        assert reader.counts.encoding == encoding
    reader = read_gmb(original)
    list(reader)
    assert reader.counts.encoding == "latin-1"


def test_cli_says_when_it_decodes_a_utf8_copy(tmp_path: Path) -> None:
    rows = [f"Sentence: {i},Sébastien{i},NNP,B-per" for i in range(1, 11)]
    copy = tmp_path / "utf8.csv"
    copy.write_bytes(write_csv(tmp_path / "latin1.csv", rows).read_bytes().decode("latin-1").encode("utf-8"))
    result = CliRunner().invoke(load_cli(), [str(copy), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "is not latin-1 like the published corpus" in flat(result.output)
    assert read_split(tmp_path / "out", "train")[0] == ["Sébastien1"]


def test_repeated_sentence_id_is_an_error_naming_both_lines(tmp_path: Path) -> None:
    rows = SMALL_ROWS + ["Sentence: 2,Again,NNP,O"]  # line 15 repeats line 9's id
    path = write_csv(tmp_path / "dup.csv", rows)
    with pytest.raises(GmbFormatError, match=r"dup\.csv line 15: 'Sentence: 2' repeats the sentence id of line 9"):
        list(read_gmb(path))


def test_real_corpus_utf8_copy_reads_as_the_original(tmp_path: Path) -> None:
    """The real corpus's 53 non-ASCII words (22 latin-1 letters such as 'Sébastien',
    31 cp1252 punctuation such as '…') come back the same from a UTF-8 copy as from
    the latin-1 original (read as latin-1, the copy gave 53 mojibake words)."""
    path = find_real_zip()
    with zipfile.ZipFile(path) as zf:
        data = zf.read("ner_dataset.csv")
    copy = tmp_path / "ner_dataset.csv"
    copy.write_bytes(data.decode("latin-1").encode("utf-8"))
    original = list(read_gmb(path))
    assert list(read_gmb(copy)) == original
    assert sum(any(ord(c) > 0x7F for c in w) for s in original for w in s.words) == 53
