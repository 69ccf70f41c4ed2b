"""Side by side in one process: training steps of the default model with torch's
dropout masks (``bernoulli_``) vs FastDropout's (numpy SFC64), on the same cached
features, the same batches and the same starting weights; the two alternate, twice.
Writes JSON (seconds per step in each round, and the ratio of the bests).

    python -m scripts.experiments.dropout_step corpus/train.spacy --docs 2400 --steps 30 \\
        --output metrics/dropout_step.json
"""
import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Dict, List

import torch
import typer
from spacy import util
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam

import spacy_posattn_ner  # noqa: F401
from spacy_posattn_ner.layers.dropout import FastDropout
from spacy_posattn_ner.models import get_head

app = typer.Typer(add_completion=False)
CONFIG = Path(__file__).parents[2] / "configs" / "posattn_ner.cfg"


def batches_of(examples: List[Example], words: int) -> List[List[Example]]:
    out, batch, n = [], [], 0
    for eg in examples:
        batch.append(eg)
        n += len(eg.reference)
        if n >= words:
            out.append(batch)
            batch, n = [], 0
    return out


@app.command()
def main(
    train: Path, docs: int = 2400, steps: int = 30, words: int = 1500, rounds: int = 2,
    output: Path = typer.Option(..., help="where the JSON report goes"),
) -> None:
    torch.set_num_threads(2)
    nlp = util.load_model_from_config(util.load_config(CONFIG), auto_fill=True)
    refs = list(DocBin().from_disk(train).get_docs(nlp.vocab))[:docs]
    examples = [Example(nlp.get_pipe("sentencizer")(nlp.make_doc(d.text)), d) for d in refs]
    util.fix_random_seed(0)
    nlp.initialize(lambda: examples[:300])
    ner = nlp.get_pipe("posattn_ner")
    batches = batches_of(examples, words)[:steps]
    for batch in batches:  # computes and caches every doc's features: the timed steps only read them
        ner.update(batch, drop=0.1, sgd=None)
    start = copy.deepcopy(get_head(ner.model).state_dict())
    fast_forward = FastDropout.forward
    masks = {"torch bernoulli_": torch.nn.Dropout.forward, "FastDropout": fast_forward}
    seconds: Dict[str, List[float]] = {name: [] for name in masks}
    losses: Dict[str, List[float]] = {name: [] for name in masks}
    for _ in range(rounds):
        for name, forward in masks.items():
            FastDropout.forward = forward
            get_head(ner.model).load_state_dict(start)
            optimizer = Adam(0.001)
            util.fix_random_seed(0)
            began, loss = time.perf_counter(), 0.0
            for batch in batches:
                loss += ner.update(batch, drop=0.1, sgd=optimizer)["posattn_ner"]
            seconds[name].append((time.perf_counter() - began) / len(batches))
            losses[name].append(loss / len(batches))
    FastDropout.forward = fast_forward
    report = {
        "command": f"python -m scripts.experiments.dropout_step {train} --docs {docs} --steps {steps} "
        f"--words {words} --rounds {rounds} --output {output}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "steps": len(batches), "words_per_batch": words,
        "seconds_per_step": seconds, "mean_loss": losses,
        "ratio_of_bests": min(seconds["torch bernoulli_"]) / min(seconds["FastDropout"]),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    app()
