"""A tiny teacher distils a student: no transformer in it, valid scored entities,
round trips, batch invariance, bad rows reported by line, resumable targets."""
import json
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_posattn_ner.student import targets as targets_module
from spacy_posattn_ner.student.cli import DEFAULT_CONFIG
from spacy_posattn_ner.student.distill import distill
from spacy_posattn_ner.student.targets import TargetsError, write_targets

from ..conftest import TOY, ents_of, pipe_config, toy_examples, train

TINY = {  # config overrides: a tiny student, trained long enough on the toy texts
    "components.posattn_ner.model.vectors_width": 8,
    "components.posattn_ner.model.width": 32,
    "components.posattn_ner.model.depth": 2,
    "components.posattn_ner.model.lexical_rows": [500, 100, 200, 50],
    "components.posattn_ner.model.lexical_width": 16,
    "components.posattn_ner.model.dropout": 0.0,
    "training.dropout": 0.0,
    "training.batcher.size": 40,
    "schedule.words_per_step": 40,
    "schedule.min_steps": 150,
    "schedule.max_passes": 0,  # the toy texts need more than the shipped cap of 30 passes
    "schedule.evaluations": 3,
    "training.optimizer.learn_rate.initial_rate": 0.01,
}
TEXTS = [text for text, _ in TOY] + ["London and New York met Iran in March .", "British troops left ."]


@pytest.fixture(scope="module")
def teacher(tiny_backbone, tmp_path_factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("posattn_ner", config={**pipe_config(tiny_backbone), "precision": "fp32"})
    torch.set_num_threads(1)
    train(nlp, toy_examples(nlp), n_iter=30)
    path = tmp_path_factory.mktemp("teacher") / "teacher"
    nlp.to_disk(path)
    return path


def write_jsonl(path: Path, bad: bool) -> Path:
    lines = [json.dumps({"text": t}) for t in TEXTS]
    if bad:
        lines.insert(1, "{not json")
        lines.insert(3, json.dumps({"text": 42}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    base = tmp_path_factory.mktemp("student")
    texts = write_jsonl(base / "texts.jsonl", bad=True)
    gold = base / "gold.spacy"
    nlp_t = spacy.load(teacher)
    DocBin(docs=[eg.reference for eg in toy_examples(nlp_t)]).to_disk(gold)
    messages = []
    summary = distill(str(teacher), str(texts), base / "out", DEFAULT_CONFIG, gold=gold, dev=gold, overrides=TINY,
                      shard_size=3, min_count=1, say=messages.append)  # fmt: skip
    return base / "out", summary, messages, teacher


def test_bad_rows_reported_by_line_and_distillation_goes_on(student):
    _, summary, messages, _ = student
    assert summary["docs"] == len(TEXTS)
    assert any("texts.jsonl line 2: invalid JSON" in e for e in summary["bad_rows"])
    assert any("texts.jsonl line 4: 'text' is a number, not a string" in e for e in summary["bad_rows"])
    assert any("line 2" in m for m in messages)


def test_student_has_no_transformer_and_is_small(student):
    out, _, _, teacher = student
    nlp = spacy.load(out)
    model = nlp.get_pipe("posattn_ner").model
    assert not any("backbone" in type(v).__name__.lower() and type(v).__name__ == "FrozenBackbone"
                   for node in model.walk() for v in node.attrs.values())
    assert all(not isinstance(m, torch.nn.MultiheadAttention) for node in model.walk() for s in node.shims for m in s._model.modules())
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    teacher_size = sum(p.stat().st_size for p in Path(teacher).rglob("*") if p.is_file())
    assert size < teacher_size / 10, (size, teacher_size)
    assert b"bert" not in (out / "posattn_ner" / "model").read_bytes().lower()


def test_student_entities_scores_round_trip_and_batches(student, tmp_path):
    out, _, _, _ = student
    nlp = spacy.load(out)
    assert nlp.pipe_names == ["sentencizer", "posattn_ner"]
    docs = [nlp(t) for t in TEXTS]
    assert any(doc.ents for doc in docs)
    for doc in docs:
        scores = doc.spans["posattn_ner"].attrs["scores"]
        assert len(scores) == len(doc.ents) and ((scores >= 0) & (scores <= 1)).all()
        assert doc._.exit_layers == [0] * len(list(doc.sents))
    nlp.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    for doc, doc2 in zip(docs, again.pipe(TEXTS)):
        assert ents_of(doc) == ents_of(doc2)
        numpy.testing.assert_allclose(doc.spans["posattn_ner"].attrs["scores"], doc2.spans["posattn_ner"].attrs["scores"], atol=1e-6)
    for batch_size in (1, 2, 5):
        for doc, doc2 in zip(docs, nlp.pipe(TEXTS, batch_size=batch_size)):
            assert ents_of(doc) == ents_of(doc2)


def test_student_learns_the_toy_entities(student):
    out, summary, _, _ = student
    assert summary["dev_ents_f"] > 0.5, summary


def test_interrupted_targets_resume(teacher, tmp_path, monkeypatch):
    nlp_t = spacy.load(teacher)
    texts = write_jsonl(tmp_path / "texts.jsonl", bad=False)
    whole = write_targets(nlp_t, str(texts), tmp_path / "whole", shard_size=2, say=lambda m: None)
    real = targets_module._write_shard

    def fail_on_second(*args, **kwargs):
        if args[4] == 1:  # shard number
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(targets_module, "_write_shard", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_targets(nlp_t, str(texts), tmp_path / "cut", shard_size=2, say=lambda m: None)
    monkeypatch.setattr(targets_module, "_write_shard", real)
    said = []
    resumed = write_targets(nlp_t, str(texts), tmp_path / "cut", shard_size=2, say=said.append)
    assert any("resuming after 1 complete shards" in m for m in said)
    assert [s["docs"] for s in resumed["shards"]] == [s["docs"] for s in whole["shards"]]
    for s in whole["shards"]:
        a, b = numpy.load(tmp_path / "whole" / f"{s['name']}.npz"), numpy.load(tmp_path / "cut" / f"{s['name']}.npz")
        numpy.testing.assert_array_equal(a["log_probs"], b["log_probs"])
    with pytest.raises(TargetsError, match="shard_size"):
        write_targets(nlp_t, str(texts), tmp_path / "cut", shard_size=3, say=lambda m: None)
