"""The wordpiece-table windows against per-window tokenizing: identical windows,
and the time each path takes over a split in batches of 256 docs.

    python scripts/experiments/windowing_paths.py MODEL corpus/test.spacy
"""
import sys
import time

import numpy
import spacy
from spacy.tokens import Doc, DocBin

from spacy_posattn_ner.architectures import get_backbone

nlp = spacy.load(sys.argv[1])
backbone = get_backbone(nlp.get_pipe("posattn_ner").model)
docs = [Doc(nlp.vocab, words=[t.text for t in d]) for d in DocBin().from_disk(sys.argv[2]).get_docs(nlp.vocab)]
batches = [docs[i : i + 256] for i in range(0, len(docs), 256)]


def by_tokenizer(batch):
    ranges = [(i, s.start, s.end) for i, spans in enumerate(backbone.span_getter(batch)) for s in spans if s.end > s.start]
    out = []
    backbone._fit_by_tokenizer(batch, ranges, out)
    return sorted(out, key=lambda w: (w.doc_index, w.start))


n = 0
for batch in batches:
    for a, b in zip(by_tokenizer(batch), backbone.windows(batch), strict=True):
        assert a.doc_index == b.doc_index and a.start == b.start
        assert numpy.array_equal(a.input_ids, b.input_ids) and numpy.array_equal(a.token_index, b.token_index)
        n += 1
print(f"{n:,} windows identical over {len(docs):,} docs")
for name, fn in (("tokenizer per window", by_tokenizer), ("wordpiece table", backbone.windows)):
    t = time.perf_counter()
    for batch in batches:
        fn(batch)
    print(f"{name}: {time.perf_counter() - t:.3f} s")
