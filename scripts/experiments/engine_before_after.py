"""Two checkouts of the package on one saved pipeline, side by side: each round runs
one child process per checkout (alternating which goes first), and every child tags
the test split at each (precision, exit threshold) with ``measure()``'s words/s
(fresh Docs through ``nlp.pipe``, one warm-up batch, the best of the timed passes:
the definition of ``scripts.bench.measure``, inlined, since the older checkout may
not have the harness).
The report keeps words/s and F1 per child and how many docs got identical entities
and exit layers from both checkouts.

    git worktree add --detach ../before d5c3029
    python -m scripts.experiments.engine_before_after MODEL corpus/test.spacy \\
        --side "before (d5c3029)=../before" --side "after=." --output metrics/engine_before_after.json
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import typer

SETTINGS = [["fp32", 1.0], ["fp32", 0.0], ["int8", 1.0], ["int8", 0.0], ["fp32", 0.9]]
CHILD = """
import json, sys, time
import spacy, torch
from spacy.scorer import Scorer
from spacy.tokens import Doc, DocBin
from spacy.training import Example
import spacy_posattn_ner  # noqa: F401
model, test, settings, repeats = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(2)
nlp = spacy.load(model)
ner = nlp.get_pipe("posattn_ner")
refs = [d for d in DocBin().from_disk(test).get_docs(nlp.vocab) if len(d)]
def fresh():
    return [Doc(nlp.vocab, words=[t.text for t in r], spaces=[bool(t.whitespace_) for t in r]) for r in refs]
rows = []
for precision, threshold in settings:
    ner.precision, ner.exit_threshold = precision, threshold
    if hasattr(ner, "scores"):
        ner.scores = False  # older code has no entity scores: compare like with like
    list(nlp.pipe(fresh()[:256], batch_size=256))
    best, out = None, None
    for _ in range(repeats):
        docs = fresh()
        t = time.perf_counter()
        got = list(nlp.pipe(docs, batch_size=256))
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
        out = out or got
    f1 = Scorer(nlp).score([Example(d, r) for d, r in zip(out, refs)])["ents_f"]
    layers = [d._.exit_layer for d in out]
    rows.append({"precision": precision, "threshold": threshold, "words_per_second": sum(len(d) for d in out) / best,
                 "ents_f": f1, "mean_exit_layer": sum(layers) / len(layers),
                 "answers": [[[e.start, e.end, e.label_] for e in d.ents] + [d._.exit_layer] for d in out]})
print(json.dumps(rows))
"""

def main(
    model: Path = typer.Argument(..., exists=True),
    test: Path = typer.Argument(..., exists=True),
    side: List[str] = typer.Option(..., "--side", help="NAME=CHECKOUT (twice)"),
    rounds: int = typer.Option(2, "--rounds"),
    repeats: int = typer.Option(2, "--repeats"),
    output: Path = typer.Option(Path("metrics/engine_before_after.json"), "--output"),
) -> None:
    sides = dict(s.split("=", 1) for s in side)
    results: Dict[str, list] = {name: [] for name in sides}
    answers: Dict[str, list] = {}
    for rnd in range(rounds):
        order = list(sides.items()) if rnd % 2 == 0 else list(sides.items())[::-1]
        for name, checkout in order:
            env = {**os.environ, "PYTHONPATH": str(Path(checkout).resolve()), "HF_HUB_OFFLINE": "1"}
            load = os.getloadavg()
            run = subprocess.run(
                [sys.executable, "-c", CHILD, str(model), str(test), json.dumps(SETTINGS), str(repeats)],
                env=env, capture_output=True, text=True,
            )
            if run.returncode:
                sys.exit(run.stderr[-3000:])
            rows = json.loads(run.stdout.strip().splitlines()[-1])
            answers[name] = [row.pop("answers") for row in rows]
            results[name].append({"load_before": load, "rows": rows})
            typer.echo(f"{name} round {rnd}: " + ", ".join(f"{r['words_per_second']:,.0f}" for r in rows))
    first, second = (answers[name] for name in sides)
    same = [sum(a == b for a, b in zip(x, y)) for x, y in zip(first, second)]
    report = {"command": " ".join(sys.argv), "model": str(model), "data": str(test), "settings": SETTINGS,
              "sides": sides, "results": results, "identical_docs": same, "n_docs": len(first[0])}  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
