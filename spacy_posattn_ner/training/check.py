"""A training logger that says when ``model-best`` is not a trained model.

spaCy saves ``model-best`` at the best dev evaluation and evaluates only every
``eval_frequency`` steps; when a run ends (``max_epochs``, ``max_steps``) before an
evaluation beats the one at step 0, ``model-best`` is the untrained pipeline and
nothing says so. A user who packages it, as spaCy's docs teach, ships a model that
finds nothing (seen: test F1 0.046 on a 2,000-sentence corpus). This logger wraps
any other logger and, when training ends, warns:

- if no evaluation after step 0 scored higher than step 0 (``model-best`` is the
  step-0 pipeline), naming the steps and scores;
- if updates were made after the last evaluation (they are in ``model-last`` only).

    [training.logger]
    @loggers = "spacy-posattn-ner.TrainingCheckLogger.v1"

    [training.logger.logger]
    @loggers = "spacy.ConsoleLogger.v3"
    progress_bar = null
"""
import sys
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from spacy.util import registry

LogStep = Callable[[Optional[Dict[str, Any]]], None]
Finalize = Callable[[], None]
SetupLogger = Callable[[Any, IO, IO], Tuple[LogStep, Finalize]]


def training_problems(checkpoints: List[Tuple[float, int]], last_step: Optional[int]) -> List[str]:
    """What is wrong with the run's checkpoints ((score, step) per dev evaluation) and
    its last update step; [] when model-best is a trained model evaluated at the end."""
    problems = []
    if last_step is None:
        return ["training made no update: model-best and model-last are the initialized, untrained pipeline"]
    later = [(score, step) for score, step in checkpoints if step > 0]
    first = next((score for score, step in checkpoints if step == 0), None)
    if not later:
        problems.append(
            f"training ended at step {last_step} before any dev evaluation after step 0: model-best is the "
            "untrained step-0 pipeline. Evaluate more often or train longer ([schedule] evaluations, "
            "min_steps; or [training] eval_frequency, max_steps, max_epochs)"
        )
    elif first is not None and max(score for score, _ in later) <= first:
        best_score, best_step = max(later)
        problems.append(
            f"no dev evaluation after step 0 beat step 0 (dev score {first:.4f}; best later {best_score:.4f} at "
            f"step {best_step}): model-best is the untrained step-0 pipeline. Check that the dev corpus has "
            "entities of the trained labels, and the learning rate and schedule"
        )
    if later and last_step > max(step for _, step in checkpoints):
        problems.append(
            f"{last_step - max(step for _, step in checkpoints)} updates after the last dev evaluation "
            f"(step {max(step for _, step in checkpoints)}) are in model-last only, not scored; make max_steps "
            "a multiple of eval_frequency (the [schedule] section does) so the last step is evaluated"
        )
    return problems


@registry.loggers("spacy-posattn-ner.TrainingCheckLogger.v1")
def make_training_check_logger(logger: SetupLogger) -> SetupLogger:
    """``logger`` (any spaCy logger), plus the warnings of ``training_problems`` at the end."""

    def setup(nlp, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> Tuple[LogStep, Finalize]:
        inner_log, inner_finalize = logger(nlp, stdout, stderr)
        seen: Dict[str, Any] = {"checkpoints": [], "steps": 0}

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            inner_log(info)
            seen["steps"] += 1  # spaCy calls this once per update (info None when not evaluated)
            if info is not None:
                seen["checkpoints"] = [(float(score), int(step)) for score, step in info.get("checkpoints", [])]

        def finalize() -> None:
            inner_finalize()
            last = seen["steps"] - 1 if seen["steps"] else None
            for problem in training_problems(seen["checkpoints"], last):
                stderr.write(f"\u26a0 posattn_ner training: {problem}\n")
                stderr.flush()

        return log_step, finalize

    return setup
