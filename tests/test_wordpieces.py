"""The per-word wordpiece table gives exactly the windows the tokenizer gives."""
from types import SimpleNamespace

import numpy
import pytest
import spacy
from spacy.tokens import Doc

from spacy_posattn_ner.architectures import build_frozen_backbone
from spacy_posattn_ner.wordpieces import WordPieceTable, is_word_local

WORDS = [
    ["Thousands", "of", "demonstrators", "marched", "through", "London", "."],
    ["Naïve", "café", "owners", "in", "São", "Paulo", "paid", "$", "2,000", "."],
    ["U.S.", "don't", "(", "Ahmadinejad", ")", "\u200b", "x"],
    ["Ahmadinejad"] * 50,  # more wordpieces than the tiny model's 64: split into windows
    ["x." * 60],  # one token with more wordpieces (120) than the model takes: chunks
    [" ", "\n"],  # tokens with no wordpieces
]


@pytest.fixture(scope="module")
def backbone(tiny_backbone):
    model = build_frozen_backbone(name=tiny_backbone, window=24, stride=16)
    return model.attrs["backbone"]


def docs_of(vocab, words_list):
    return [Doc(vocab, words=w) for w in words_list]


def by_tokenizer(backbone, docs):
    ranges = [(i, s.start, s.end) for i, spans in enumerate(backbone.span_getter(docs)) for s in spans if s.end > s.start]
    out = []
    backbone.windower._by_tokenizer(docs, ranges, out)
    return sorted(out, key=lambda w: (w.doc_index, w.start))


def as_tuples(windows):
    return [(w.doc_index, w.start, w.input_ids.tolist(), w.token_index.tolist()) for w in windows]


def test_table_windows_equal_the_tokenizers(backbone):
    assert backbone.windower.table is not None  # BERT's WordPiece is word-local
    vocab = spacy.blank("en").vocab
    for batch in (WORDS, WORDS[::-1], WORDS[:1], WORDS[3:5]):
        docs = docs_of(vocab, batch)
        expected = by_tokenizer(backbone, docs)
        assert as_tuples(backbone.windows(docs)) == as_tuples(expected)
    assert len(backbone.windower.table) > 0


def test_windows_cover_long_tokens_and_split_long_docs(backbone):
    docs = docs_of(spacy.blank("en").vocab, WORDS)
    windows = backbone.windows(docs)
    assert all(len(w.input_ids) <= backbone.max_length for w in windows)
    chunks = [w for w in windows if w.doc_index == 4]
    assert len(chunks) > 1 and all(set(w.token_index[1:-1].tolist()) == {0} for w in chunks)
    assert not any(w.doc_index == 5 and (w.token_index >= 0).any() for w in windows)


def test_table_is_bounded_and_still_right(backbone):
    vocab = spacy.blank("en").vocab
    table = WordPieceTable(backbone.windower.encoder, max_words=5)
    docs = docs_of(vocab, WORDS[:3])
    orths = numpy.concatenate([d.to_array("ORTH") for d in docs])
    for _ in range(2):
        starts, lens, flat = table.lookup(orths, vocab.strings)
        pieces = [flat[s : s + n].tolist() for s, n in zip(starts, lens)]
        texts = [t.text for d in docs for t in d]
        expected = [enc.ids for enc in backbone.windower.encoder.encode_batch([[t] for t in texts], is_pretokenized=True,
                                                                   add_special_tokens=False)]  # fmt: skip
        assert pieces == expected
        assert len(table) <= max(5, len(set(texts)))  # started again rather than grow past the bound


def test_position_dependent_tokenizer_is_not_word_local():
    def encode(words, **_):
        ids = [hash(w) % 1000 + (10_000 if k == 0 else 0) for k, w in enumerate(words)]  # first word marked
        return SimpleNamespace(ids=ids, word_ids=list(range(len(words))))

    encoder = SimpleNamespace(encode=encode, encode_batch=lambda batch, **kw: [encode(w, **kw) for w in batch])
    assert not is_word_local(encoder)


def test_backbone_falls_back_to_the_tokenizer(backbone):
    docs = docs_of(spacy.blank("en").vocab, WORDS)
    table_windows = as_tuples(backbone.windows(docs))
    windower = backbone.windower
    table, windower.table = windower.table, None  # as for a tokenizer that fails the probe
    try:
        assert as_tuples(backbone.windows(docs)) == table_windows
    finally:
        windower.table = table


def test_concurrent_lookups_while_the_table_grows(backbone):
    """Threads that look words up while others add new ones always get the pieces
    of the words they asked for (a reader once saw keys of one state with offsets
    of another)."""
    from concurrent.futures import ThreadPoolExecutor

    vocab = spacy.blank("en").vocab
    table = WordPieceTable(backbone.windower.encoder, max_words=300)
    batches = [[f"w{k}x{j}" for j in range(40)] + ["London", "Ahmadinejad"] for k in range(64)]
    expected = {
        w: enc.ids
        for batch in batches
        for w, enc in zip(batch, backbone.windower.encoder.encode_batch([[w] for w in batch], is_pretokenized=True, add_special_tokens=False))
    }

    def run(batch):
        orths = numpy.asarray([vocab.strings.add(w) for w in batch], dtype="uint64")
        starts, lens, flat = table.lookup(orths, vocab.strings)
        return [flat[s : s + n].tolist() == expected[w] for w, s, n in zip(batch, starts, lens)]

    for w in expected:
        vocab.strings.add(w)
    with ThreadPoolExecutor(8) as pool:
        results = [ok for oks in pool.map(run, batches * 3) for ok in oks]
    assert all(results) and len(results) == 3 * 64 * 42
