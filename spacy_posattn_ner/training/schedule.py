"""A training schedule that follows the training corpus instead of GMB's step counts.

A schedule written in steps fits one corpus: on GMB's 38,367 sentences 2,400 steps are
about five passes, on 2,000 sentences of another corpus the same config stopped after
six epochs, before its first dev evaluation and while the learning rate was still
warming up, so ``model-best`` was the untrained step-0 pipeline (test F1 0.046).

Here the config's ``[schedule]`` section says what training should do in terms of
the data, and registered functions turn it into spaCy's step counts when
``spacy train`` resolves ``[training]`` (the corpus is read once to count its words)::

    [schedule]
    epochs = 5            # passes over the training corpus...
    min_steps = 1200      # ...but at least this many updates (small corpora need more passes)...
    max_passes = 30       # ...and at most this many passes (0: no cap), since small corpora overfit
    max_steps = 0         # > 0: exactly this many updates, whatever the corpus
    evaluations = 6       # dev evaluations after step 0, evenly spaced, the last at the final step
    warmup = 0.1          # share of the steps with a rising learning rate
    words_per_step = 2000 # the batcher's words per update (its size's end value)

    [training.max_steps]
    @misc = "spacy-posattn-ner.schedule.v1"
    part = "max_steps"    # and a twin block for eval_frequency
    corpus = ${paths.train}
    limit = ${corpora.train.limit}
    schedule = ${schedule}

``max_passes`` came from measurement: with the ``min_steps`` floor alone, 1,000 and 2,000
GMB sentences were trained for 109 and 52 passes while their dev F1 peaked after 9-72
passes and then fell by 1-4.5 points (BENCHMARKS.md, "The shipped schedule on smaller
corpora"); the cap ends such runs earlier, so the learning rate reaches 0 near the peak
and the same number of evaluations lands more densely around it. On corpora large enough
for ``epochs`` to exceed ``min_steps`` it does nothing. It is optional (0 when absent), so
a ``[schedule]`` written before it plans exactly as it did.

The total is a multiple of the evaluation interval, so spaCy's loop evaluates at the
very last step (it breaks right after it): the final model is always scored, and the
learning rate reaches 0 exactly there. ``max_epochs`` must then be 0 (the step count
ends training; an epoch limit could end it between evaluations).
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

from spacy.tokens import DocBin
from spacy.util import registry
from thinc.api import warmup_linear

from wasabi import msg


@dataclass(frozen=True)
class Plan:
    """Step counts for one corpus: what ``[training]`` and the learning rate need."""

    corpus_words: int  # tokens in the training corpus (0 if unknown)
    steps_per_epoch: int
    total_steps: int  # spaCy's max_steps: a multiple of eval_frequency
    eval_frequency: int
    warmup_steps: int


def corpus_files(path: Union[str, Path]) -> Iterator[Path]:
    """The .spacy files spaCy's corpus reader reads for ``path`` (a file or a directory)."""
    path = Path(path)
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*.spacy") if p.is_file())
    elif path.exists():
        yield path
    else:
        raise ValueError(f"[schedule]: the training corpus {str(path)!r} does not exist (paths.train)")


def count_words(path: Union[str, Path], limit: int = 0) -> int:
    """Tokens in a DocBin corpus (a .spacy file or a directory of them), without a
    vocab; of its first ``limit`` docs only, as spaCy's corpus reader (0: all)."""
    total, docs = 0, 0
    for file in corpus_files(path):
        try:
            doc_bin = DocBin().from_disk(file)
        except Exception as err:  # a truncated or foreign file: name it
            raise ValueError(f"[schedule]: cannot read the training corpus {str(file)!r}: {err}") from err
        for tokens in doc_bin.tokens:
            if limit and docs >= limit:
                return total
            total, docs = total + int(tokens.shape[0]), docs + 1
    return total


@lru_cache(maxsize=8)
def _cached_words(path: str, limit: int, stamp: tuple) -> int:
    """``count_words`` once per corpus state (spaCy resolves ``[training]`` twice)."""
    return count_words(path, limit)


def _words(corpus: Optional[Union[str, Path]], limit: int) -> int:
    if corpus is None or str(corpus) in ("", "None", "null"):
        return 0
    files = list(corpus_files(corpus))
    stamp = tuple((f.stat().st_mtime, f.stat().st_size) for f in files)
    return _cached_words(str(corpus), int(limit), stamp)


OPTIONAL = {"max_passes": 0}  # settings added after v1 was published: absent = the old behaviour

SETTINGS = {  # [schedule] key: (check, what it must be)
    "epochs": (lambda v: v > 0, "a number > 0"),
    "min_steps": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "max_passes": (lambda v: v >= 0, "a number >= 0 (0: no cap)"),
    "max_steps": (lambda v: v >= 0 and v == int(v), "a whole number >= 0 (0: from the corpus)"),
    "evaluations": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
    "warmup": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "words_per_step": (lambda v: v > 0, "a number > 0"),
}


def check_settings(schedule: Dict[str, Any]) -> Dict[str, float]:
    """The ``[schedule]`` section, checked: every key known, present (or optional) and in range."""
    schedule = {**OPTIONAL, **schedule}
    unknown = sorted(set(schedule) - set(SETTINGS))
    missing = sorted(set(SETTINGS) - set(schedule))
    if unknown or missing:
        raise ValueError(f"[schedule]: unknown settings {unknown}, missing {missing} (expected {sorted(SETTINGS)})")
    for key, (ok, what) in SETTINGS.items():
        value = schedule[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(f"[schedule] {key} = {value!r}: must be {what}")
    return dict(schedule)


def plan(corpus_words: int, schedule: Dict[str, Any]) -> Plan:
    """Turn the ``[schedule]`` settings into step counts (see the module doc).
    ``corpus_words`` 0 (no corpus given, e.g. ``spacy debug config`` without paths)
    plans ``min_steps``."""
    s = check_settings(schedule)
    steps_per_epoch = max(1, -(-int(corpus_words) // int(s["words_per_step"]))) if corpus_words else 0
    wanted = max(int(s["min_steps"]), int(round(s["epochs"] * steps_per_epoch)))
    if s["max_passes"] and steps_per_epoch:
        wanted = min(wanted, max(1, int(round(s["max_passes"] * steps_per_epoch))))
    wanted = int(s["max_steps"]) or wanted
    every = max(1, -(-wanted // int(s["evaluations"])))  # ceil: at most `evaluations` evaluations
    total = every * int(s["evaluations"])
    return Plan(int(corpus_words), steps_per_epoch, total, every, int(round(s["warmup"] * total)))


def corpus_plan(corpus: Optional[str], limit: int, schedule: Dict[str, Any]) -> Plan:
    """The plan for a training corpus path (None: no corpus to count) read up to
    ``limit`` docs (``[corpora.train] limit``; 0: all)."""
    p = plan(_words(corpus, limit), schedule)
    _announce(p)
    return p


@lru_cache(maxsize=8)
def _announce(p: Plan) -> None:
    """Say once per plan what the schedule became (spaCy prints only the numbers it is given)."""
    passes = f"{p.total_steps / p.steps_per_epoch:.1f} passes over" if p.steps_per_epoch else "no corpus counted,"
    msg.info(
        f"[schedule]: {p.total_steps:,} steps ({passes} {p.corpus_words:,} training words), "
        f"dev every {p.eval_frequency:,} steps, learning-rate warm-up {p.warmup_steps:,} steps"
    )


@registry.misc("spacy-posattn-ner.schedule.v1")
def schedule_part(part: str, corpus: Optional[str], schedule: Dict[str, Any], limit: int = 0) -> int:
    """``[training] max_steps`` or ``eval_frequency`` (``part``) from the corpus and ``[schedule]``."""
    if part not in ("max_steps", "eval_frequency"):
        raise ValueError(f"spacy-posattn-ner.schedule.v1: part {part!r} is not 'max_steps' or 'eval_frequency'")
    p = corpus_plan(corpus, limit, schedule)
    return p.total_steps if part == "max_steps" else p.eval_frequency


@registry.schedules("spacy-posattn-ner.warmup_linear_corpus.v1")
def warmup_linear_corpus(
    initial_rate: float, corpus: Optional[str], schedule: Dict[str, Any], limit: int = 0
) -> Iterator[float]:
    """thinc's warmup_linear with its steps from the corpus: rising for ``warmup`` of
    the steps, then falling linearly to 0 at the final step (the last evaluation)."""
    p = corpus_plan(corpus, limit, schedule)
    return warmup_linear(initial_rate, warmup_steps=p.warmup_steps, total_steps=p.total_steps)
