"""spacy-posattn-ner.JsonlLogger.v1, driven the way spaCy's training loop drives it."""
import io
import json
import time
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.util import registry

from spacy_posattn_ner.training.log import JsonlLogPathError

REPO_ROOT = Path(__file__).resolve().parents[1]
LOGGER = "spacy-posattn-ner.JsonlLogger.v1"
KEYS = {
    "seconds", "timestamp", "started", "epoch", "step", "score",
    "other_scores", "losses", "words", "peak_rss_mib",
}  # fmt: skip


def read_lines(path):
    with Path(path).open(encoding="utf8") as file_:
        return [json.loads(line) for line in file_]


def resolve_logger(**cfg):
    """As spacy.training.loop.train gets it: registry.resolve of [training.logger]."""
    return registry.resolve({"logger": {"@loggers": LOGGER, **cfg}})["logger"]


def make_nlp():
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")  # a trainable pipe, so the console table has a loss column
    return nlp


def info(step, epoch, score, words, losses=1.5):
    """An info dict like the ones train_while_improving yields at an evaluation."""
    return {
        "epoch": epoch,
        "step": step,
        "score": score,
        "other_scores": {
            "ents_f": score,
            "ents_p": numpy.float32(score + 0.01),  # numpy scalars must serialize
            "ents_r": score - 0.01,
            "ents_per_type": {"geo": {"p": 0.5, "r": 0.25, "f": 1 / 3}},
            "speed": 12345.6,
        },
        "losses": {"ner": losses},
        "checkpoints": [(score, step)],
        "seconds": 0,
        "words": words,
    }


def run_logger(path, steps):
    stdout, stderr = io.StringIO(), io.StringIO()
    setup = resolve_logger(path=str(path))
    log_step, finalize = setup(make_nlp(), stdout, stderr)
    for item in steps:
        if item is not None:
            time.sleep(0.01)
        log_step(item)
    finalize()
    return stdout.getvalue()


def test_registered():
    assert registry.loggers.get(LOGGER).__name__ == "make_jsonl_logger"
    from .test_pipeline import setup_entry_points

    assert setup_entry_points()["spacy_loggers"][LOGGER] == "spacy_posattn_ner.training.log:make_jsonl_logger"
    from spacy_posattn_ner import training_log  # the old path (installed metadata, spacy train --code) still works

    assert training_log.make_jsonl_logger is registry.loggers.get(LOGGER)


def test_writes_one_line_per_evaluation(tmp_path):
    path = tmp_path / "logs" / "train.jsonl"  # the directory does not exist yet
    steps = [info(0, 0, 0.1, 900), None, None, info(200, 0, 0.5, 20_000), None, info(400, 1, 0.7, 41_000)]
    console = run_logger(path, steps)
    lines = read_lines(path)
    assert len(lines) == 3  # the None steps (no evaluation) write nothing
    for line in lines:
        assert set(line) == KEYS
        assert line["other_scores"]["ents_per_type"]["geo"]["r"] == 0.25
        assert isinstance(line["other_scores"]["ents_p"], float)
        assert line["losses"] == {"ner": 1.5}
        assert line["peak_rss_mib"] is None or line["peak_rss_mib"] > 1
    assert [line["step"] for line in lines] == [0, 200, 400]
    assert [line["epoch"] for line in lines] == [0, 0, 1]
    assert [line["words"] for line in lines] == [900, 20_000, 41_000]
    assert [line["score"] for line in lines] == [0.1, 0.5, 0.7]
    seconds = [line["seconds"] for line in lines]
    assert 0 < seconds[0] < seconds[1] < seconds[2] < 60
    assert len({line["started"] for line in lines}) == 1
    assert all(line["started"] <= line["timestamp"] for line in lines)
    # spaCy's console table is still printed
    assert "ENTS_F" in console and "LOSS NER" in console
    assert "70.00" in console


def test_appends_runs(tmp_path):
    path = tmp_path / "train.jsonl"
    run_logger(path, [info(0, 0, 0.1, 10)])
    run_logger(path, [info(0, 0, 0.2, 10), info(5, 0, 0.3, 60)])
    lines = read_lines(path)
    assert [line["score"] for line in lines] == [0.1, 0.2, 0.3]
    assert lines[0]["started"] < lines[1]["started"] == lines[2]["started"]


def test_console_can_be_silenced(tmp_path):
    path = tmp_path / "train.jsonl"
    stdout = io.StringIO()
    log_step, finalize = resolve_logger(path=str(path), console_output=False)(make_nlp(), stdout, io.StringIO())
    log_step(info(0, 0, 0.4, 10))
    finalize()
    assert "ENTS_F" not in stdout.getvalue()
    assert len(read_lines(path)) == 1


@pytest.mark.parametrize(
    "bad,match",
    [
        ("", "non-empty file path"),
        ("   ", "non-empty file path"),
        ("DIR", "is a directory"),
        ("DIR/", "is a directory"),
        ("FILE/train.jsonl", "is a file, not a directory"),
        ("FILE/sub/train.jsonl", "is a file, not a directory"),
        ("bad\x00name.jsonl", "NUL byte"),
    ],
)
def test_malformed_path(tmp_path, bad, match):
    (tmp_path / "a_file").write_text("x")
    bad = bad.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "a_file"))
    with pytest.raises(JsonlLogPathError, match=match) as err:
        resolve_logger(path=bad)
    assert LOGGER in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unwritable_path_error_at_setup(tmp_path, monkeypatch):
    path = tmp_path / "train.jsonl"
    setup = resolve_logger(path=str(path))
    path.mkdir()  # becomes a directory between config resolution and set-up
    with pytest.raises(JsonlLogPathError, match="cannot open"):
        setup(make_nlp(), io.StringIO(), io.StringIO())


def test_benchmark_reads_logger_output(tmp_path):
    """scripts/benchmark_train.py finds the best evaluation in the logger's lines."""
    from scripts.benchmark_train import read_log, summarize

    path = tmp_path / "train.jsonl"
    before = time.time()
    run_logger(path, [info(0, 0, 0.1, 1000), info(200, 0, 0.6, 3000), info(400, 1, 0.6, 5000), info(600, 2, 0.5, 7000)])
    summary = summarize(read_log(path), started_unix=before - 2.0, train_words=2000)
    assert summary["evaluations"] == 4
    assert summary["best_step"] == 200  # the earliest evaluation reaching the best score
    assert summary["best_dev_f1"] == 0.6
    assert summary["epochs_to_best"] == pytest.approx(1.5)
    assert summary["wall_seconds_to_best"] > 2.0 > summary["loop_seconds_to_best"] > 0
    assert [p["step"] for p in summary["dev_curve"]] == [0, 200, 400, 600]
    assert read_log(tmp_path / "no-such.jsonl") == []


def test_benchmark_scales_step_schedules_to_the_subset(tmp_path):
    """On a subset, warm-up/total steps shrink with it for every system that has them."""
    from spacy.util import load_config

    from scripts.benchmark_train import CONFIGS, Run, write_config

    def write(system: str, fraction):
        run = Run(system, REPO_ROOT / CONFIGS[system], tmp_path, tmp_path, tmp_path, tmp_path, -1, {}, tmp_path, fraction)
        scaled = write_config(run, tmp_path / f"{system}.cfg", tmp_path / f"{system}.jsonl")
        written = load_config(tmp_path / f"{system}.cfg", interpolate=False)
        return scaled, written["training"]["optimizer"]["learn_rate"], load_config(run.config, interpolate=False)

    # ours needs no scaling: its [schedule] counts the training corpus up to corpora.train.limit,
    # which is how the benchmark takes a subset (tests/training/test_schedule.py: count_words's limit)
    scaled, rate, original = write("ours", 0.1)
    assert scaled is None and rate == original["training"]["optimizer"]["learn_rate"]
    assert rate["@schedules"] == "spacy-posattn-ner.warmup_linear_corpus.v1"
    assert rate["limit"] == "${corpora.train.limit}"
    scaled, rate, original = write("cnn", 0.1)  # the CNN's constant rate is left alone
    assert scaled is None and rate == original["training"]["optimizer"]["learn_rate"]
    scaled, _, _ = write("trf", 0.5)
    assert scaled["to"]["warmup_steps"] * 2 == pytest.approx(scaled["from"]["warmup_steps"], abs=1)
    assert write("ours", None)[0] is None  # the full split: nothing scaled
