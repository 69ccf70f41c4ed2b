"""Dev F1 of a saved exit model at threshold 0 by prediction path: live layer by layer
in bf16 and fp32 and from cached training features (all on the gold GMB tokens), and
on spaCy's re-tokenization of the text, as `spacy train` reads the dev set.

    python scripts/experiments/dev_f1_by_path.py MODEL corpus/dev.spacy
"""
import sys

import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus, Example

from spacy_posattn_ner.feature_cache import FeatureCache

nlp = spacy.load(sys.argv[1])
ner = nlp.get_pipe("posattn_ner")
ner.exit_threshold = 0.0
ref = list(DocBin().from_disk(sys.argv[2]).get_docs(nlp.vocab))


def gold_tokens():
    return [Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d) for d in ref]


for precision in ("bf16", "fp32"):
    ner.precision = precision
    print(f"live, {precision}, gold tokens: {nlp.evaluate(gold_tokens(), batch_size=256)['ents_f']:.4f}", flush=True)
ner.feature_cache, ner.cache_in_predict = FeatureCache(4096), True
print(f"cached training features, gold tokens: {nlp.evaluate(gold_tokens(), batch_size=256)['ents_f']:.4f}", flush=True)
ner.feature_cache, ner.cache_in_predict = None, False
ner.precision = "auto"
retok = list(Corpus(sys.argv[2])(nlp))
differ = sum([t.text for t in e.predicted] != [t.text for t in e.reference] for e in retok)
print(f"live, auto, spaCy's tokens ({differ:,} of {len(retok):,} docs tokenized differently): "
      f"{nlp.evaluate(retok, batch_size=256)['ents_f']:.4f}")
