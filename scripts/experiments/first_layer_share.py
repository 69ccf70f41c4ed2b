"""How much of the calibrated pipeline's time is the backbone's transformer layers,
and so how fast it could be at most if everything else cost nothing.

One process: spaCy's CNN and posattn_ner at its exit threshold (or ``--threshold``),
each one measure() on the same test docs (best of ``--repeats`` passes); posattn_ner's pass again with
every encoder layer's forward timed (``time.perf_counter`` around each call, which
blocks nothing on the CPU). The bound, ours/CNN divided by the layers' share, is
what removing every other cost (heads, pooling, decoding, spaCy) would give.

    python -m scripts.experiments.first_layer_share training/posattn_ner/model-calibrated \\
        corpus/test.spacy --cnn training/cnn_ner/model-best --output metrics/first_layer_share.json
"""
import json
import os
import platform
import time
from pathlib import Path
from typing import List

import spacy
import torch
import typer

import spacy_posattn_ner  # noqa: F401
from scripts.bench.data import fresh_docs, read_gold
from scripts.bench.measure import measure
from spacy_posattn_ner.models import get_backbone

app = typer.Typer(add_completion=False)


@app.command()
def main(model: Path, data: Path, cnn: Path = typer.Option(...), output: Path = typer.Option(...),
         repeats: int = 2, batch_size: int = 256,
         threshold: float = typer.Option(None, help="exit threshold to run at (default: the pipeline's own)")) -> None:
    torch.set_num_threads(2)
    ours, peer = spacy.load(model), spacy.load(cnn)
    if threshold is not None:
        ours.get_pipe("posattn_ner").exit_threshold = threshold
    refs = read_gold(ours, data)
    cnn_row = measure(peer, refs, batch_size=batch_size, repeats=repeats)
    ours_row = measure(ours, refs, batch_size=batch_size, repeats=repeats)
    ner = ours.get_pipe("posattn_ner")
    encoder, _, _ = get_backbone(ner.model).inference_model(ner.precision)  # the copy that runs (bf16, int8) or the model
    layers = encoder.encoder.layer
    spent: List[float] = []
    originals = [layer.forward for layer in layers]

    def timed(forward):
        def call(*args, **kwargs):
            began = time.perf_counter()
            out = forward(*args, **kwargs)
            spent.append(time.perf_counter() - began)
            return out
        return call

    for layer, forward in zip(layers, originals):
        layer.forward = timed(forward)
    docs = fresh_docs(refs)
    began = time.perf_counter()
    list(ours.pipe(docs, batch_size=batch_size))
    total = time.perf_counter() - began
    for layer, forward in zip(layers, originals):
        layer.forward = forward
    share = sum(spent) / total
    ratio = ours_row["words_per_second"] / cnn_row["words_per_second"]
    report = {
        "command": f"python -m scripts.experiments.first_layer_share {model} {data} --cnn {cnn} --output {output} "
        f"--repeats {repeats} --batch-size {batch_size}" + ("" if threshold is None else f" --threshold {threshold}"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "exit_threshold": ours.get_pipe("posattn_ner").exit_threshold,
        "ours": {k: ours_row[k] for k in ("ents_f", "words_per_second", "mean_exit_layer")},
        "cnn": {k: cnn_row[k] for k in ("ents_f", "words_per_second")},
        "ours_over_cnn": ratio,
        "timed_pass_seconds": total, "layer_seconds": sum(spent), "layer_calls": len(spent), "layer_share": share,
        "bound_over_cnn": ratio / share,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    app()
