"""The wordpiece-table windows against per-window tokenizing: identical windows,
and the time each path takes over a split in batches of 256 docs.

    python -m scripts.experiments.windowing_paths MODEL corpus/test.spacy
"""
import sys
import time
from pathlib import Path

import numpy
import spacy

from scripts.bench.data import fresh_docs, read_gold
from spacy_posattn_ner.models import get_backbone


def main(model: str, data: str) -> None:
    nlp = spacy.load(model)
    backbone = get_backbone(nlp.get_pipe("posattn_ner").model)
    docs = fresh_docs(read_gold(nlp, Path(data)))
    batches = [docs[i : i + 256] for i in range(0, len(docs), 256)]

    def by_tokenizer(batch):
        spans = backbone.span_getter(batch)
        ranges = [(i, s.start, s.end) for i, doc_spans in enumerate(spans) for s in doc_spans if s.end > s.start]
        out = []
        backbone.windower._by_tokenizer(batch, ranges, out)
        return sorted(out, key=lambda w: (w.doc_index, w.start))

    n = 0
    for batch in batches:
        for a, b in zip(by_tokenizer(batch), backbone.windows(batch), strict=True):
            assert a.doc_index == b.doc_index and a.start == b.start
            assert numpy.array_equal(a.input_ids, b.input_ids) and numpy.array_equal(a.token_index, b.token_index)
            n += 1
    print(f"{n:,} windows identical over {len(docs):,} docs")
    for name, fn in (("tokenizer per window", by_tokenizer), ("wordpiece table", backbone.windows)):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        print(f"{name}: {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
