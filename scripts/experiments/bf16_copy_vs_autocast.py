"""Side by side in one process: bf16 inference with the backbone's bf16 weight copy
(the default on CPU) vs bf16 autocast over the fp32 weights (what training features
use). Words/s: best of 2 nlp.pipe passes over docs from the split's words after a
warm-up batch; F1 on the same docs; the two settings alternate twice.

    python scripts/experiments/bf16_copy_vs_autocast.py MODEL corpus/test.spacy
"""
import sys
import time

import spacy
import torch
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from spacy_posattn_ner.architectures import get_backbone

torch.set_num_threads(2)
nlp = spacy.load(sys.argv[1])
ner = nlp.get_pipe("posattn_ner")
ner.precision = "bf16"
backbone = get_backbone(ner.model)
copy_path = backbone.inference_model
autocast_path = lambda precision, training=False: copy_path(precision, training=True)  # noqa: E731
ref = list(DocBin().from_disk(sys.argv[2]).get_docs(nlp.vocab))
words = [[t.text for t in d] for d in ref]
n_words = sum(map(len, words))


def docs():
    return [Doc(nlp.vocab, words=w) for w in words]


for _ in range(2):
    for name, path in (("autocast", autocast_path), ("bf16 copy", copy_path)):
        backbone.inference_model = path
        list(nlp.pipe(docs()[:256], batch_size=256))
        best = 0.0
        for _ in range(2):
            batch = docs()
            t = time.perf_counter()
            list(nlp.pipe(batch, batch_size=256))
            best = max(best, n_words / (time.perf_counter() - t))
        f1 = nlp.evaluate([Example(Doc(nlp.vocab, words=w), r) for w, r in zip(words, ref)], batch_size=256)["ents_f"]
        print(f"{name}: {best:,.0f} words/s, F1 {f1:.4f}", flush=True)
