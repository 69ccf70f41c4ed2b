"""The shipped config trains a corpus of one's own (#28): 2,000 sentences with other
labels than GMB's, through `spacy train` with nothing in [schedule] or [training]
changed (only the backbone and head sizes, to the tiny test ones), gives a trained
model-best. Before the schedule followed the corpus, this ran ~100 steps and kept the
untrained step-0 pipeline as model-best (test F1 0.046)."""
import json
import random

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import load_config

from ..conftest import ROOT, SMALL_HEAD

PEOPLE = ["Anna Berg", "Tom Hale", "Lea Moss", "Carl Penn", "Ida Roy", "Max Kurz", "Eva Lund", "Olaf Dahl"]
PLACES = ["Oslo", "Lima", "Quito", "Perth", "Turin", "Dakar", "Hanoi", "Riga"]
FIRMS = ["Acme Corp", "Globex", "Initech", "Umbrella Inc", "Hooli", "Vandelay"]
EVENTS = ["Expo", "Olympics", "Biennale", "Marathon"]
TEMPLATES = [
    "{PER} flew to {LOC} on Monday .",
    "{ORG} opened an office in {LOC} .",
    "{PER} joined {ORG} last year .",
    "The {MISC} in {LOC} drew large crowds .",
    "Officials in {LOC} said {PER} would attend the {MISC} .",
    "Shares of {ORG} fell sharply .",
]


def _corpus(path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    nlp = spacy.blank("en")
    pools = {"PER": PEOPLE, "LOC": PLACES, "ORG": FIRMS, "MISC": EVENTS}
    db = DocBin()
    for _ in range(n):
        template = rng.choice(TEMPLATES)
        text, spans = "", []
        for piece in template.replace("{", "|{").replace("}", "}|").split("|"):
            if piece.startswith("{"):
                label = piece[1:-1]
                surface = rng.choice(pools[label])
                spans.append((len(text), len(text) + len(surface), label))
                text += surface
            else:
                text += piece
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in spans]
        db.add(doc)
    db.to_disk(path)


def test_shipped_config_trains_2000_sentences_with_other_labels(tiny_backbone, tmp_path, capsys):
    from spacy.cli.train import train

    _corpus(tmp_path / "train.spacy", 2000, seed=1)
    _corpus(tmp_path / "dev.spacy", 200, seed=2)
    config = load_config(ROOT / "configs" / "posattn_ner.cfg", interpolate=False)
    shipped = (dict(config["schedule"]), dict(config["training"]))
    ner = config["components"]["posattn_ner"]
    ner["model"].update(SMALL_HEAD, exit_layers=[1, -1])  # the tiny backbone has 2 layers
    ner["model"]["backbone"]["name"] = tiny_backbone
    assert (dict(config["schedule"]), dict(config["training"])) == shipped
    path = tmp_path / "own.cfg"
    config.to_disk(path)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(path, tmp_path / "out", use_gpu=-1,
              overrides={"paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "dev.spacy")})
    finally:
        torch.set_num_threads(threads)
    assert "before any dev evaluation" not in capsys.readouterr().err
    meta = json.loads((tmp_path / "out" / "model-best" / "meta.json").read_text())
    assert meta["performance"]["ents_f"] > 0.9, meta["performance"]
    best = spacy.load(tmp_path / "out" / "model-best")
    doc = best("Anna Berg flew to Riga on Monday .")
    assert [(e.text, e.label_) for e in doc.ents] == [("Anna Berg", "PER"), ("Riga", "LOC")]
    assert set(best.get_pipe("posattn_ner").labels) == {"PER", "LOC", "ORG", "MISC"}
