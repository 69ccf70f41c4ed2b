"""Segments: the units a doc is cut into for early exit and, with sentence windows,
for the backbone. A segment is a sentence where the doc's sentence starts are set
(by a sentencizer, a parser or the corpus), else the whole doc. One definition,
used by the engine, the windows and the feature cache's keys, so that they agree."""
from typing import List, Sequence

import numpy
from spacy.attrs import SENT_START
from spacy.tokens import Doc


def segment_starts(doc: Doc) -> numpy.ndarray:
    """Bool per token: does a segment start here (the first token always does)."""
    if not len(doc):
        return numpy.zeros(0, dtype=bool)
    starts = doc.to_array(SENT_START) == 1 if doc.has_annotation("SENT_START") else numpy.zeros(len(doc), dtype=bool)
    starts[0] = True
    return starts


def segment_bounds(doc: Doc) -> List[int]:
    """The segments' first tokens, then ``len(doc)``: ``[0, len(doc)]`` for a doc
    without sentence starts, ``[]`` for an empty doc."""
    if not len(doc):
        return []
    return numpy.flatnonzero(segment_starts(doc)).tolist() + [len(doc)]


def head_rows(docs: Sequence[Doc], per_sentence: bool) -> numpy.ndarray:
    """The runs of tokens the heads read, as int64 rows (doc, first token, end token):
    each non-empty doc whole, or (``per_sentence``) each of its segments, in doc and
    then token order, so that row i is segment i. Training and inference both read
    these."""
    rows = []
    for k, doc in enumerate(docs):
        bounds = segment_bounds(doc) if per_sentence else ([0, len(doc)] if len(doc) else [])
        rows.extend((k, a, b) for a, b in zip(bounds[:-1], bounds[1:]))
    return numpy.asarray(rows, dtype="int64").reshape(-1, 3)


def strided_ranges(start: int, end: int, window: int, stride: int) -> List[range]:
    """Token ranges of at most ``window`` over ``[start, end)``, each ``stride`` after
    the last, the last one reaching ``end``: spacy-transformers' strided spans
    (``get_strided_spans``) over a part of a doc."""
    out, first, n = [], start, end - start
    for _ in range(n // stride):
        out.append(range(first, min(first + window, end)))
        if first + window >= end:
            return out
        first += stride
    if first < end:
        out.append(range(first, end))
    return out


def sentence_strided_spans(docs: Sequence[Doc], window: int, stride: int) -> list:
    """A span getter: strided spans within each segment, none across a sentence
    start. A doc without sentence starts gets exactly spacy-transformers' strided
    spans; in a doc with them, a sentence that leaves early takes its windows with
    it (a window shared with a sentence that goes on could not stop)."""
    out = []
    for doc in docs:
        bounds = segment_bounds(doc)
        out.append([doc[r.start : r.stop] for s, e in zip(bounds[:-1], bounds[1:]) for r in strided_ranges(s, e, window, stride)])
    return out
