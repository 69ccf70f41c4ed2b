"""Docs → encoder inputs ("windows") that fit the model, with every token covered.

A span getter (spacy-transformers' strided spans) cuts a doc into overlapping runs
of spaCy tokens. A run whose wordpieces exceed the model's limit is halved until it
fits, and a single token longer than the model is run in chunks that pool together:
nothing is ever truncated. Wordpieces come from a per-word table (each distinct word
tokenized once, windows assembled with numpy gathers) or, for tokenizers whose
pieces depend on a word's position, from the tokenizer window by window.
"""
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.attrs import ORTH
from spacy.tokens import Doc, Span

from ..batching import run_starts
from ..wordpieces import WordPieceTable, is_word_local

SpanGetter = Callable[[Iterable[Doc]], List[List[Span]]]
Range = Tuple[int, int, int]  # (doc index, first token, end token)


@dataclass
class Window:
    """One backbone input: the wordpiece ids of a run of a doc's tokens."""

    doc_index: int
    input_ids: numpy.ndarray  # int64, [CLS] ... [SEP]
    token_index: numpy.ndarray  # per wordpiece: token index within the doc, -1 for specials
    start: int = 0  # the doc's first token the window covers (windows sort by it)


def token_texts(doc: Doc) -> List[str]:
    """The tokens' texts, from the string store (no Token objects: cheaper)."""
    strings = doc.vocab.strings
    return [strings[key] for key in doc.to_array(ORTH).tolist()]


@dataclass
class Windower:
    """Cuts docs into windows of at most ``max_length`` wordpieces (specials included)."""

    span_getter: SpanGetter
    encoder: object  # a tokenizers.Tokenizer with truncation and padding off
    max_length: int
    cls_id: int
    sep_id: int

    def __post_init__(self) -> None:
        self.table: Optional[WordPieceTable] = WordPieceTable(self.encoder) if is_word_local(self.encoder) else None

    @property
    def limit(self) -> int:
        return self.max_length - 2  # room for [CLS] and [SEP]

    def __call__(self, docs: Sequence[Doc]) -> List[Window]:
        spans_per_doc = self.span_getter(docs)
        if len(spans_per_doc) != len(docs):
            raise ValueError(f"span getter returned spans for {len(spans_per_doc)} docs, expected {len(docs)}")
        ranges = [(i, s.start, s.end) for i, spans in enumerate(spans_per_doc) for s in spans if s.end > s.start]
        out: List[Window] = []
        if ranges and self.table is not None:
            self._from_table(docs, ranges, out)
        elif ranges:
            self._by_tokenizer(docs, ranges, out)
        out.sort(key=lambda w: (w.doc_index, w.start))  # stable: a long token's chunks stay in order
        return out

    def _window(self, doc_index: int, ids: Sequence[int], word_ids: Sequence[int], start: int) -> Window:
        index = numpy.empty(len(word_ids) + 2, dtype="int64")
        index[0] = index[-1] = -1
        index[1:-1] = word_ids
        index[1:-1] += start
        return Window(doc_index, numpy.asarray([self.cls_id, *ids, self.sep_id], dtype="int64"), index, start)

    def _split_or_chunk(self, r: Range, ids: Sequence[int], retry: List[Range], out: List[Window]) -> None:
        """A range with more wordpieces than fit: halve it (never cut), or, when it is
        one token, emit that token's pieces ``ids`` as chunks that pool together."""
        i, start, end = r
        if end - start > 1:
            mid = (start + end) // 2
            retry.extend([(i, start, mid), (i, mid, end)])
            return
        for c in range(0, len(ids), self.limit):
            piece = ids[c : c + self.limit]
            out.append(self._window(i, piece, numpy.zeros(len(piece), dtype="int64"), start))

    def _by_tokenizer(self, docs: Sequence[Doc], ranges: List[Range], out: List[Window]) -> None:
        """One tokenizer call for all ranges of a round (one call per doc cost more
        than the first backbone layer on short sentences)."""
        words_of = [token_texts(doc) for doc in docs]
        while ranges:
            encodings = self.encoder.encode_batch(
                [words_of[i][s:e] for i, s, e in ranges], is_pretokenized=True, add_special_tokens=False
            )
            retry: List[Range] = []
            for enc, r in zip(encodings, ranges):
                if len(enc.ids) <= self.limit:
                    out.append(self._window(r[0], enc.ids, enc.word_ids, r[1]))
                else:
                    self._split_or_chunk(r, enc.ids, retry, out)
            ranges = retry

    def _from_table(self, docs: Sequence[Doc], ranges: List[Range], out: List[Window]) -> None:
        """Pieces looked up per distinct word in one snapshot of the table (safe while
        other threads grow it); the ranges that fit are assembled all at once."""
        orths = [doc.to_array(ORTH) for doc in docs]
        doc_start = numpy.concatenate([[0], numpy.cumsum([len(o) for o in orths])]).astype("int64")
        starts, lens, flat = self.table.lookup(numpy.concatenate(orths), docs[0].vocab.strings)
        before = numpy.concatenate([[0], numpy.cumsum(lens)])  # pieces before each token
        while ranges:
            r = numpy.asarray(ranges, dtype="int64").reshape(-1, 3)
            g0, g1 = doc_start[r[:, 0]] + r[:, 1], doc_start[r[:, 0]] + r[:, 2]
            n_pieces = before[g1] - before[g0]
            fits = n_pieces <= self.limit
            if fits.any():
                self._assemble(r[fits], g0[fits], g1[fits], n_pieces[fits], doc_start, starts, lens, flat, out)
            retry: List[Range] = []
            for i, start, end in r[~fits].tolist():
                g = doc_start[i] + start  # the range's first token: a view of its pieces
                self._split_or_chunk((i, start, end), flat[starts[g] : starts[g] + lens[g]], retry, out)
            ranges = retry

    def _assemble(self, r, g0, g1, n_pieces, doc_start, starts, lens, flat, out: List[Window]) -> None:
        """Windows for token ranges that fit, built with numpy gathers, one per range."""
        n_tok = g1 - g0
        tok = numpy.repeat(g0 - run_starts(n_tok), n_tok) + numpy.arange(int(n_tok.sum()))
        n_piece = lens[tok]
        piece = numpy.repeat(starts[tok] - run_starts(n_piece), n_piece) + numpy.arange(int(n_piece.sum()))
        local = tok - numpy.repeat(doc_start[r[:, 0]], n_tok)  # token index within its doc
        size = n_pieces + 2
        first = run_starts(size)
        last = first + size - 1
        ids = numpy.empty(int(size.sum()), dtype="int64")
        index = numpy.full(len(ids), -1, dtype="int64")
        body = numpy.ones(len(ids), dtype=bool)
        body[first] = body[last] = False
        ids[first], ids[last] = self.cls_id, self.sep_id
        ids[body], index[body] = flat[piece], numpy.repeat(local, n_piece)
        bounds = first[1:].tolist()
        for (i, start, _), win_ids, win_index in zip(r.tolist(), numpy.split(ids, bounds), numpy.split(index, bounds)):
            out.append(Window(i, win_ids, win_index, start))
