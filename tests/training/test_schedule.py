"""The corpus-sized schedule: step counts follow the data, the last step is evaluated."""
import io
from itertools import islice

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import load_config, registry

from spacy_posattn_ner.training.check import training_problems
from spacy_posattn_ner.training.schedule import count_words, plan

from ..conftest import ROOT, toy_examples

GMB_LIKE = dict(epochs=5, min_steps=1200, max_steps=0, evaluations=6, warmup=0.1, words_per_step=2000)
SHIPPED = {**GMB_LIKE, "max_passes": 30}


@pytest.mark.parametrize(
    "schedule, words, total, every",
    [(GMB_LIKE, 0, 1200, 200), (GMB_LIKE, 22_000, 1200, 200), (GMB_LIKE, 220_000, 1200, 200),
     (GMB_LIKE, 839_237, 2100, 350), (GMB_LIKE, 5_000_000, 12_504, 2084),
     # max_passes: 1,000 and 2,000 GMB sentences (22,077 / 44,396 words: 12 / 23 steps a pass) train
     # 30 passes, not the 1,200-step floor's 109 / 52; 10,000 sentences and the whole split as before
     (SHIPPED, 22_077, 360, 60), (SHIPPED, 44_396, 690, 115), (SHIPPED, 218_303, 1200, 200),
     (SHIPPED, 839_237, 2100, 350), (SHIPPED, 0, 1200, 200)],
)
def test_plan_follows_the_corpus(schedule, words, total, every):
    p = plan(words, schedule)
    assert (p.total_steps, p.eval_frequency) == (total, every)
    assert p.total_steps % p.eval_frequency == 0  # spaCy evaluates the final step
    assert p.warmup_steps == round(0.1 * total)


def test_max_passes_caps_epochs_and_yields_to_max_steps():
    assert plan(839_237, {**SHIPPED, "epochs": 40}).total_steps == 30 * 420  # 420 steps a pass
    assert plan(22_077, {**SHIPPED, "max_steps": 600}).total_steps == 600  # max_steps: exactly, whatever the corpus
    assert plan(22_077, {**GMB_LIKE, "max_passes": 0}) == plan(22_077, GMB_LIKE)  # 0 and absent: no cap
    with pytest.raises(ValueError, match=r"\[schedule\] max_passes = -1: must be a number >= 0"):
        plan(1000, {**SHIPPED, "max_passes": -1})


def test_plan_fixed_steps_and_bad_settings():
    assert plan(839_237, {**GMB_LIKE, "max_steps": 100, "evaluations": 3}).total_steps == 102  # 3 x 34
    with pytest.raises(ValueError, match=r"\[schedule\] warmup = 1.5: must be a number in \[0, 1\)"):
        plan(1000, {**GMB_LIKE, "warmup": 1.5})
    with pytest.raises(ValueError, match=r"unknown settings \['epoch'\], missing \['epochs'\]"):
        plan(1000, {**{k: v for k, v in GMB_LIKE.items() if k != "epochs"}, "epoch": 5})


def _corpus(tmp_path, n_docs):
    nlp = spacy.blank("en")
    docs = [eg.reference for eg in toy_examples(nlp)] * n_docs
    path = tmp_path / "train.spacy"
    DocBin(docs=docs).to_disk(path)
    return path, sum(len(d) for d in docs), docs


def test_count_words_and_limit(tmp_path):
    path, words, docs = _corpus(tmp_path, 3)
    assert count_words(path) == words
    assert count_words(path, limit=2) == len(docs[0]) + len(docs[1])
    assert count_words(tmp_path) == words  # a directory of .spacy files
    with pytest.raises(ValueError, match="does not exist"):
        count_words(tmp_path / "missing.spacy")
    (tmp_path / "bad.spacy").write_bytes(b"not a docbin")
    with pytest.raises(ValueError, match="bad.spacy"):
        count_words(tmp_path / "bad.spacy")


def test_shipped_config_resolves_from_the_corpus(tmp_path):
    """configs/posattn_ner.cfg's [training] steps and learning rate come from the corpus."""
    path, words, _ = _corpus(tmp_path, 500)
    config = load_config(ROOT / "configs" / "posattn_ner.cfg", overrides={"paths.train": str(path)}, interpolate=True)
    training = registry.resolve(config["training"])
    expected = plan(words, dict(config["schedule"]))
    assert (training["max_steps"], training["eval_frequency"]) == (expected.total_steps, expected.eval_frequency)
    assert training["max_epochs"] == 0 and training["patience"] == 0
    rates = list(islice(registry.resolve({"rate": config["training"]["optimizer"]["learn_rate"]})["rate"],
                        expected.total_steps + 1))
    assert max(rates) == pytest.approx(0.002) == rates[expected.warmup_steps]  # the peak after warm-up
    assert rates[expected.total_steps] == 0.0 < rates[expected.total_steps - 1]  # 0 at the last (evaluated) step


def test_training_problems():
    assert training_problems([(0.01, 0), (0.5, 200), (0.6, 400)], last_step=400) == []
    untrained = training_problems([(0.05, 0)], last_step=99)
    assert len(untrained) == 1 and "before any dev evaluation after step 0" in untrained[0]
    flat = training_problems([(0.05, 0), (0.05, 50)], last_step=50)
    assert len(flat) == 1 and "no dev evaluation after step 0 beat step 0" in flat[0]
    late = training_problems([(0.05, 0), (0.5, 50)], last_step=60)
    assert len(late) == 1 and "10 updates after the last dev evaluation (step 50)" in late[0]


def test_check_logger_warns_when_model_best_is_untrained():
    """Wrapping spaCy's console logger: the warning reaches stderr at the end of training."""
    make = registry.loggers.get("spacy-posattn-ner.TrainingCheckLogger.v1")
    inner = registry.loggers.get("spacy.ConsoleLogger.v3")(progress_bar=None)
    out, err = io.StringIO(), io.StringIO()
    log_step, finalize = make(logger=inner)(spacy.blank("en"), out, err)
    info = {"epoch": 0, "step": 0, "score": 0.05, "other_scores": {}, "losses": {}, "checkpoints": [(0.05, 0)],
            "seconds": 0, "words": 10}
    log_step(info)
    for _ in range(5):
        log_step(None)
    finalize()
    assert "training ended at step 5 before any dev evaluation after step 0" in err.getvalue()
