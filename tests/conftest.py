"""Shared fixtures: a tiny random BERT (fast), GMB sentences, pipeline builders."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach a hub
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import spacy
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam

import spacy_posattn_ner  # noqa: F401  (registers the factory)
from spacy_posattn_ner.backbone import EMBEDDED_BACKBONE, resolve_backbone

ROOT = Path(__file__).resolve().parents[1]
GMB_ZIP_CANDIDATES = [
    ROOT / "assets" / "ner_dataset.csv.zip",
    ROOT.parent / "shared" / "assets" / "gmb" / "ner_dataset.csv.zip",
    ROOT.parents[1] / "shared" / "assets" / "gmb" / "ner_dataset.csv.zip",  # from a worktree in /work/wt/
]

SMALL_HEAD = {
    "width": 32,
    "depth": 1,
    "n_heads": 2,
    "max_distance": 8,
    "lexical_rows": [500, 100, 200, 50],
    "lexical_width": 16,
    "dropout": 0.0,
}


def gmb_zip() -> Optional[Path]:
    return next((p for p in GMB_ZIP_CANDIDATES if p.exists()), None)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT (width 32) with the embedded model's
    tokenizer, saved to a directory: loads in milliseconds, no network."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(EMBEDDED_BACKBONE))
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(path)
    return str(path)


def pipe_config(backbone: str, **head) -> Dict:
    """A small PosAttnTagger.v1 over FrozenBackbone.v1 (stated: the factory's default is the shipped v3)."""
    windows = {"@architectures": "spacy-posattn-ner.FrozenBackbone.v1", "name": backbone, "window": 24, "stride": 16}
    model = {"@architectures": "spacy-posattn-ner.PosAttnTagger.v1", **SMALL_HEAD, **head, "backbone": windows}
    return {"model": model}


def make_nlp(backbone: str, **head) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=pipe_config(backbone, **head))
    return nlp


TOY = [
    ("Thousands of demonstrators marched through London .", [("London", "geo")]),
    ("Iran 's President Mahmoud Ahmadinejad spoke on Tuesday .", [("Iran", "geo"), ("Mahmoud Ahmadinejad", "per"), ("Tuesday", "tim")]),
    ("The United Nations met in New York .", [("United Nations", "org"), ("New York", "geo")]),
    ("British troops left Basra in March .", [("British", "gpe"), ("Basra", "geo"), ("March", "tim")]),
]


def toy_examples(nlp: Language) -> List[Example]:
    examples = []
    for text, ents in TOY:
        doc = nlp.make_doc(text)
        spans = []
        for surface, label in ents:
            start = text.index(surface)
            spans.append((start, start + len(surface), label))
        examples.append(Example.from_dict(doc, {"entities": spans}))
    return examples


@pytest.fixture(scope="session")
def gmb_sentences():
    """The first 20 sentences of the real GMB corpus (skipped where it is absent)."""
    path = gmb_zip()
    if path is None:
        pytest.skip("GMB corpus not found in assets/ or ../shared/assets/gmb/")
    from itertools import islice

    from scripts.gmb import read_gmb

    return list(islice(read_gmb(path), 20))


def gmb_examples(nlp: Language, sentences) -> List[Example]:
    from scripts.gmb import sentences_to_docs

    examples = []
    for ref in sentences_to_docs(nlp.vocab, sentences):
        pred = spacy.tokens.Doc(nlp.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref])
        examples.append(Example(pred, ref))
    return examples


def ents_of(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def train(nlp: Language, examples: List[Example], n_iter: int, seed: int = 0, learn_rate: float = 0.005) -> Dict[str, float]:
    spacy.util.fix_random_seed(seed)
    nlp.initialize(lambda: examples)
    optimizer = Adam(learn_rate)
    losses: Dict[str, float] = {}
    for _ in range(n_iter):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    return losses


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory) -> Path:
    """The toy sentences three times over plus an empty doc, as a .spacy file."""
    from spacy.tokens import Doc, DocBin

    nlp = spacy.blank("en")
    docs = [eg.reference for eg in toy_examples(nlp)] * 3 + [Doc(nlp.vocab, words=[])]
    path = tmp_path_factory.mktemp("toy-corpus") / "toy.spacy"
    DocBin(docs=docs).to_disk(path)
    return path


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Tests that switch torch to one thread get the old count back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def exit_config(backbone: str, exit_layers=None, threshold: float = 1.0, sentence_windows: bool = False) -> Dict:
    """A small PosAttnTagger.v2 (exits after every layer of the tiny backbone by default);
    with ``sentence_windows``, on FrozenBackbone.v2's windows per sentence."""
    windows = {"window": 24, "stride": 16}
    if sentence_windows:
        windows = {"@architectures": "spacy-posattn-ner.FrozenBackbone.v2", **windows, "sentence_windows": True}
    else:
        windows = {"@architectures": "spacy-posattn-ner.FrozenBackbone.v1", **windows}
    model = {
        "@architectures": "spacy-posattn-ner.PosAttnTagger.v2",
        **SMALL_HEAD,
        "exit_layers": exit_layers,
        "backbone": {"name": backbone, **windows},
    }
    return {"model": model, "exit_threshold": threshold}


def trained_exit_nlp(
    backbone: str, n_iter: int = 40, precision: Optional[str] = "fp32", sentence_windows: bool = False
) -> Language:
    """A small early-exit pipeline trained on the toy examples (one torch thread: a
    tiny model is much faster so on a busy machine), at ``precision`` if given."""
    import torch

    nlp = spacy.blank("en")
    nlp.add_pipe("posattn_ner", config=exit_config(backbone, sentence_windows=sentence_windows))
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(nlp, toy_examples(nlp), n_iter=n_iter)
    finally:
        torch.set_num_threads(n_threads)
    if precision is not None:
        nlp.get_pipe("posattn_ner").precision = precision
    return nlp


@pytest.fixture(scope="session")
def tiny_exit_pipeline(tiny_backbone, tmp_path_factory) -> Path:
    """A tiny PosAttnTagger.v2 pipeline (exits after layers 1 and 2), trained on the
    toy examples and saved. Copy it before changing it."""
    path = tmp_path_factory.mktemp("exit-pipeline") / "model"
    trained_exit_nlp(tiny_backbone, precision=None).to_disk(path)
    return path
