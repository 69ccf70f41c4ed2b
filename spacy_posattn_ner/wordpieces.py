"""Wordpiece ids per distinct token text, computed once and then looked up in bulk.

Hugging Face tokenizers handle each word of a pretokenized input on its own, so a
token's wordpieces do not depend on its neighbours. Tokenizing every window again
cost about a tenth of inference time at the first exit; this table tokenizes each
distinct word once and turns windowing into numpy gathers over token ids. A
tokenizer whose output does depend on the position of a word (some SentencePiece
set-ups prefix only the first word) fails the probe in ``is_word_local`` and is
then tokenized window by window, as before.
"""
from typing import List, Sequence, Tuple

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


class WordPieceTable:
    """Token text hash (spaCy ORTH) → its wordpiece ids, filled on first sight.

    Bounded: past ``max_words`` distinct words it starts again, so a long stream of
    new words cannot grow it without limit.
    """

    def __init__(self, encoder, max_words: int = 1_000_000):
        self.encoder = encoder
        self.max_words = max_words
        self.clear()

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys = numpy.zeros((0,), dtype="uint64")  # sorted ORTH hashes
        self._rows = numpy.zeros((0,), dtype="int64")  # each key's row
        self._start = numpy.zeros((0,), dtype="int64")  # per row: offset into _flat
        self._len = numpy.zeros((0,), dtype="int64")  # per row: number of pieces
        self._flat = numpy.zeros((0,), dtype="int64")

    def lookup(self, orths: numpy.ndarray, strings) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Per token: where its pieces start in ``flat`` and how many there are."""
        uniq, inverse = numpy.unique(numpy.asarray(orths, dtype="uint64"), return_inverse=True)
        found = self._find(uniq)
        if not found.all():
            if len(self) + int((~found).sum()) > self.max_words:
                self.clear()
                found = numpy.zeros(len(uniq), dtype=bool)
            self._add(uniq[~found], strings)
        rows = self._rows[numpy.searchsorted(self._keys, uniq)]
        return self._start[rows][inverse], self._len[rows][inverse]

    @property
    def flat(self) -> numpy.ndarray:
        return self._flat

    def _find(self, keys: numpy.ndarray) -> numpy.ndarray:
        if not len(self._keys):
            return numpy.zeros(len(keys), dtype=bool)
        pos = numpy.minimum(numpy.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[pos] == keys

    def _add(self, keys: numpy.ndarray, strings) -> None:
        texts: List[str] = [strings[int(key)] for key in keys.tolist()]
        encodings = self.encoder.encode_batch([[t] for t in texts], is_pretokenized=True, add_special_tokens=False)
        pieces: List[Sequence[int]] = [enc.ids for enc in encodings]
        lengths = numpy.asarray([len(p) for p in pieces], dtype="int64")
        start = len(self._flat) + run_starts(lengths)
        new_flat = numpy.fromiter((i for p in pieces for i in p), dtype="int64", count=int(lengths.sum()))
        n_rows = len(self._start)
        self._flat = numpy.concatenate([self._flat, new_flat])
        self._start = numpy.concatenate([self._start, start])
        self._len = numpy.concatenate([self._len, lengths])
        keys_all = numpy.concatenate([self._keys, keys])
        rows_all = numpy.concatenate([self._rows, numpy.arange(n_rows, n_rows + len(keys), dtype="int64")])
        order = numpy.argsort(keys_all, kind="stable")
        self._keys, self._rows = keys_all[order], rows_all[order]
