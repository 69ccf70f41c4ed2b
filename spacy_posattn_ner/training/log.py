"""A spaCy training logger that records the cost of training as JSON lines.

``spacy-posattn-ner.JsonlLogger.v1`` keeps spaCy's console table (it wraps
``spacy.ConsoleLogger.v3``) and appends one JSON object per dev evaluation to
``path``::

    [training.logger]
    @loggers = "spacy-posattn-ner.JsonlLogger.v1"
    path = "training/train_log.jsonl"

Each line holds:

- ``seconds``: wall-clock seconds since the logger was set up (spaCy sets it up
  right before the first training step, after ``nlp.initialize``);
- ``timestamp`` and ``started``: Unix times of this evaluation and of the set-up,
  so lines from different runs appended to one file stay apart and a caller can
  measure from its own clock (for instance from process start);
- ``epoch``, ``step``, ``score`` (the weighted dev score), ``other_scores`` (every
  score of the evaluation, unscaled: F1 0.83 is 0.83), ``losses`` and ``words``
  (training words seen so far);
- ``peak_rss_mib``: the process's peak resident set size so far
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), in MiB, or null where the
  ``resource`` module is not available.
"""
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, Tuple, Union

from spacy.training.loggers import console_logger_v3
from spacy.util import registry

try:  # POSIX only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

LogStep = Callable[[Optional[Dict[str, Any]]], None]
Finalize = Callable[[], None]


class JsonlLogPathError(ValueError):
    """The logger's ``path`` cannot be used for a JSONL log file."""


def peak_rss_mib() -> Optional[float]:
    """Peak resident set size of this process so far, in MiB (None if unknown)."""
    if resource is None:
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux and the BSDs report KiB, macOS reports bytes.
    divisor = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return round(maxrss / divisor, 1)


def _jsonable(value: Any) -> Any:
    """Plain JSON types for a score/loss structure (numpy scalars, NaN, tuples...)."""
    if isinstance(value, dict):
        return {str(key): _jsonable(val) for key, val in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(val) for val in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalar
    if value is None or isinstance(value, (bool, str, int)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return None if math.isnan(number) or math.isinf(number) else number


def check_log_path(path: Union[str, Path, None]) -> Path:
    """Validate ``path`` for a JSONL log and return it as a Path.

    The parent directory may be missing (it is created on set-up); the path must
    not be empty, must not name a directory, and no ancestor may be a file.
    """
    if path is None or not isinstance(path, (str, Path)) or not str(path).strip():
        raise JsonlLogPathError(
            f"spacy-posattn-ner.JsonlLogger.v1: 'path' must be a non-empty file path, got {path!r}"
        )
    if "\x00" in str(path):
        raise JsonlLogPathError(f"spacy-posattn-ner.JsonlLogger.v1: 'path' contains a NUL byte: {path!r}")
    log_path = Path(path).expanduser()
    if str(path).endswith(("/", os.sep)) or log_path.is_dir():
        raise JsonlLogPathError(
            f"spacy-posattn-ner.JsonlLogger.v1: 'path' {str(path)!r} is a directory; "
            "give a file path such as 'training/train_log.jsonl'"
        )
    for ancestor in log_path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise JsonlLogPathError(
                    f"spacy-posattn-ner.JsonlLogger.v1: cannot write {str(path)!r}: "
                    f"{str(ancestor)!r} is a file, not a directory"
                )
            break
    return log_path


@registry.loggers("spacy-posattn-ner.JsonlLogger.v1")
def make_jsonl_logger(
    path: str,
    progress_bar: Optional[str] = None,
    console_output: bool = True,
) -> Callable[["Language", IO, IO], Tuple[LogStep, Finalize]]:  # type: ignore[name-defined] # noqa: F821
    """Console table plus one JSON line per evaluation appended to ``path``.

    path (str): the JSONL file; appended to, its directory created if missing.
    progress_bar (Optional[str]): as in ``spacy.ConsoleLogger.v3``: None, "train" or "eval".
    console_output (bool): whether to print spaCy's console table.
    """
    log_path = check_log_path(path)
    console = console_logger_v3(progress_bar=progress_bar, console_output=console_output)

    def setup_logger(nlp, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> Tuple[LogStep, Finalize]:
        started_wall = time.time()
        started = time.perf_counter()
        console_log, console_finalize = console(nlp, stdout, stderr)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            stream = open(log_path, "a", encoding="utf8")
        except OSError as err:
            console_finalize()
            raise JsonlLogPathError(
                f"spacy-posattn-ner.JsonlLogger.v1: cannot open {str(log_path)!r} for appending: {err}"
            ) from err

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            console_log(info)
            if info is None or info.get("score") is None:
                return  # a training step without an evaluation
            record = {
                "seconds": round(time.perf_counter() - started, 6),
                "timestamp": round(time.time(), 6),
                "started": round(started_wall, 6),
                "epoch": int(info["epoch"]),
                "step": int(info["step"]),
                "score": _jsonable(info["score"]),
                "other_scores": _jsonable(info.get("other_scores") or {}),
                "losses": _jsonable(info.get("losses") or {}),
                "words": int(info.get("words") or 0),
                "peak_rss_mib": peak_rss_mib(),
            }
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            stream.flush()

        def finalize() -> None:
            try:
                if not stream.closed:
                    stream.close()
            finally:
                console_finalize()

        return log_step, finalize

    return setup_logger
