"""Tests for spacy_posattn_ner.gmb and scripts/convert_gmb.py."""

import collections
import importlib.util
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import List, Sequence

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_posattn_ner.gmb import (
    GMB_LABELS,
    GmbFormatError,
    GmbSentence,
    canonical_split,
    read_gmb,
    sentences_to_docs,
)

HEADER = "Sentence #,Word,POS,Tag"
REPO_ROOT = Path(__file__).parents[1]
REAL_ZIP_CANDIDATES = [
    REPO_ROOT / "assets/ner_dataset.csv.zip",
    Path(__file__).parents[2] / "shared/assets/gmb/ner_dataset.csv.zip",
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


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    # A quoted newline makes row 3 span lines 3-4: errors name a row's first line.
    rows = ["Sentence: 1,a,DT,O", ',"multi\r\nline",NN,I-geo']
    with pytest.raises(GmbFormatError, match=r"q\.csv line 3: tag 'I-geo' follows 'O'"):
        list(read_gmb(write_csv(tmp_path / "q.csv", rows)))
    rows = ["Sentence: 1,a,DT,O", ',"multi\r\nline",NN,O', ",c,NN,I-geo"]
    with pytest.raises(GmbFormatError, match=r"q\.csv line 5: tag 'I-geo' follows 'O'"):
        list(read_gmb(write_csv(tmp_path / "q.csv", rows)))
    rows = ["Sentence: 1,a,DT,O", ',"multi\r\nline",NN,O', "Sentence: 2,c,NN,O"]
    assert [s.line for s in read_gmb(write_csv(tmp_path / "q.csv", rows))] == [2, 5]


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
        f"spec = importlib.util.spec_from_file_location('gmb', {str(REPO_ROOT / 'spacy_posattn_ner/gmb.py')!r})\n"
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


# --- CLI --------------------------------------------------------------------------


def load_cli():
    spec = importlib.util.spec_from_file_location("convert_gmb", REPO_ROOT / "scripts/convert_gmb.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.app


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


def read_split(out: Path, name: str) -> List[List[str]]:
    nlp = spacy.blank("en")
    return [[t.text for t in doc] for doc in DocBin().from_disk(out / f"{name}.spacy").get_docs(nlp.vocab)]


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
    assert f"Read 25 sentences, {n_tokens} tokens" in result.output
    assert f"Wrote 25 sentences, {n_tokens} tokens in total" in result.output


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
    assert "train: 7 sentences (limited from 40)" in result.output


def test_cli_rejects_bad_input(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", ["Sentence: 1,a,DT,I-geo"])
    result = CliRunner().invoke(load_cli(), [str(path), str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, GmbFormatError)
    assert "line 2" in str(result.exception)
    assert not (tmp_path / "out" / "train.spacy").exists()


# --- the real corpus ----------------------------------------------------------


def test_real_corpus_counts() -> None:
    sents = list(read_gmb(find_real_zip()))
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
