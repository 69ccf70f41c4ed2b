"""Wordpiece ids per distinct token text, computed once and then looked up in bulk.

Hugging Face tokenizers handle each word of a pretokenized input on its own, so a
token's wordpieces do not depend on its neighbours. Tokenizing every window again
cost about a tenth of inference time at the first exit; this table tokenizes each
distinct word once and turns windowing into numpy gathers over token ids. A
tokenizer whose output does depend on the position of a word (some SentencePiece
set-ups prefix only the first word) fails the probe in ``is_word_local`` and is
then tokenized window by window, as before.
"""
import threading
from typing import List, NamedTuple, Sequence, Tuple

import numpy

from .batching import run_starts

# words whose pieces are compared alone and in one sequence: casing, accents,
# punctuation inside and around words, a repeated word at another position
PROBE = ["Hello", "world", ",", "naïve", "U.S.", "don't", "(", "Hello", "ZZyzx", "2,000", "."]


def is_word_local(encoder) -> bool:
    """Whether ``encoder`` gives each pretokenized word the same pieces wherever it is."""
    together = encoder.encode(PROBE, is_pretokenized=True, add_special_tokens=False)
    alone = encoder.encode_batch([[w] for w in PROBE], is_pretokenized=True, add_special_tokens=False)
    expected_ids = [i for enc in alone for i in enc.ids]
    expected_words = [w for w, enc in enumerate(alone) for _ in enc.ids]
    return together.ids == expected_ids and list(together.word_ids) == expected_words


class _Snapshot(NamedTuple):
    """The table's whole state; replaced as one object, never changed in place."""

    keys: numpy.ndarray  # sorted ORTH hashes
    rows: numpy.ndarray  # each key's row
    start: numpy.ndarray  # per row: offset into flat
    length: numpy.ndarray  # per row: number of pieces
    flat: numpy.ndarray  # every row's pieces, end to end


_EMPTY = _Snapshot(*(numpy.zeros((0,), dtype=d) for d in ("uint64", "int64", "int64", "int64", "int64")))


class WordPieceTable:
    """Token text hash (spaCy ORTH) → its wordpiece ids, filled on first sight.

    Safe under concurrent calls: a lookup reads one immutable snapshot of the table,
    and growth builds a new snapshot under a lock, so a reader never sees keys of
    one state with offsets of another. Bounded: past ``max_words`` distinct words it
    starts again, so a long stream of new words cannot grow it without limit.
    """

    def __init__(self, encoder, max_words: int = 1_000_000):
        self.encoder = encoder
        self.max_words = max_words
        self._state = _EMPTY
        self._grow = threading.Lock()

    def __len__(self) -> int:
        return len(self._state.keys)

    def __getstate__(self):  # locks do not pickle; a copy gets a lock of its own
        return {**self.__dict__, "_grow": None}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state, _grow=threading.Lock())

    def clear(self) -> None:
        self._state = _EMPTY

    def lookup(self, orths: numpy.ndarray, strings) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        """Per token: where its pieces start in the returned flat array, and how many."""
        uniq, inverse = numpy.unique(numpy.asarray(orths, dtype="uint64"), return_inverse=True)
        state = self._state
        if not _find(state, uniq).all():
            with self._grow:
                state = self._state  # another thread may have added them meanwhile
                found = _find(state, uniq)
                if not found.all():
                    if len(state.keys) + int((~found).sum()) > self.max_words:
                        state, found = _EMPTY, numpy.zeros(len(uniq), dtype=bool)
                    state = self._state = self._added(state, uniq[~found], strings)
        rows = state.rows[numpy.searchsorted(state.keys, uniq)]
        return state.start[rows][inverse], state.length[rows][inverse], state.flat

    def _added(self, state: _Snapshot, keys: numpy.ndarray, strings) -> _Snapshot:
        texts: List[str] = [strings[int(key)] for key in keys.tolist()]
        encodings = self.encoder.encode_batch([[t] for t in texts], is_pretokenized=True, add_special_tokens=False)
        pieces: List[Sequence[int]] = [enc.ids for enc in encodings]
        lengths = numpy.asarray([len(p) for p in pieces], dtype="int64")
        new_flat = numpy.fromiter((i for p in pieces for i in p), dtype="int64", count=int(lengths.sum()))
        n_rows = len(state.start)
        keys_all = numpy.concatenate([state.keys, keys])
        rows_all = numpy.concatenate([state.rows, numpy.arange(n_rows, n_rows + len(keys), dtype="int64")])
        order = numpy.argsort(keys_all, kind="stable")
        return _Snapshot(
            keys=keys_all[order],
            rows=rows_all[order],
            start=numpy.concatenate([state.start, len(state.flat) + run_starts(lengths)]),
            length=numpy.concatenate([state.length, lengths]),
            flat=numpy.concatenate([state.flat, new_flat]),
        )


def _find(state: _Snapshot, keys: numpy.ndarray) -> numpy.ndarray:
    """Which of ``keys`` the snapshot holds."""
    if not len(state.keys):
        return numpy.zeros(len(keys), dtype=bool)
    pos = numpy.minimum(numpy.searchsorted(state.keys, keys), len(state.keys) - 1)
    return state.keys[pos] == keys
