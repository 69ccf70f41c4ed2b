"""Side by side in one process: bf16 inference with the backbone's bf16 weight copy
(the default on CPU) vs bf16 autocast over the fp32 weights (what training features
use); each setting is one measure() (best of 2 passes after a warm-up batch), and the
two alternate twice.

    python -m scripts.experiments.bf16_copy_vs_autocast MODEL corpus/test.spacy
"""
import sys
from pathlib import Path

import spacy
import torch

from scripts.bench.data import read_gold
from scripts.bench.measure import measure
from spacy_posattn_ner.models import get_backbone


def main(model: str, data: str) -> None:
    torch.set_num_threads(2)
    nlp = spacy.load(model)
    ner = nlp.get_pipe("posattn_ner")
    ner.precision = "bf16"
    backbone = get_backbone(ner.model)
    copy_path = backbone.inference_model
    paths = {
        "autocast": lambda precision, training=False: copy_path(precision, training=True),
        "bf16 copy": copy_path,
    }
    refs = read_gold(nlp, Path(data))
    for _ in range(2):
        for name, path in paths.items():
            backbone.inference_model = path
            row = measure(nlp, refs, batch_size=256, repeats=2)
            print(f"{name}: {row['words_per_second']:,.0f} words/s, F1 {row['ents_f']:.4f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
