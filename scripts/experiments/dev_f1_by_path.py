"""Dev F1 of a saved exit model at threshold 0 by input: docs of the gold GMB tokens in
bf16 and fp32 (measure()), and spaCy's re-tokenization of the text, as `spacy train`
reads the dev set (gold_preproc = false).

    python -m scripts.experiments.dev_f1_by_path MODEL corpus/dev.spacy
"""
import sys
from pathlib import Path

import spacy
from spacy.training import Corpus

from scripts.bench.data import read_gold
from scripts.bench.measure import measure


def main(model: str, data: str) -> None:
    nlp = spacy.load(model)
    ner = nlp.get_pipe("posattn_ner")
    ner.exit_threshold = 0.0
    refs = read_gold(nlp, Path(data))
    for precision in ("bf16", "fp32"):
        ner.precision = precision
        print(f"{precision}, gold tokens: {measure(nlp, refs, batch_size=256)['ents_f']:.4f}", flush=True)
    ner.precision = "auto"
    retok = list(Corpus(data)(nlp))
    differ = sum([t.text for t in e.predicted] != [t.text for t in e.reference] for e in retok)
    f1 = nlp.evaluate(retok, batch_size=256)["ents_f"]
    print(f"auto, spaCy's tokens ({differ:,} of {len(retok):,} docs tokenized differently): {f1:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
