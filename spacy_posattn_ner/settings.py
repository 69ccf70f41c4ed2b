"""The runtime settings of a ``posattn_ner`` component, and their one owner.

A runtime setting changes what a trained pipeline answers without retraining it:

=================== ========= ============================================================
setting             default   meaning
=================== ========= ============================================================
exit_threshold      1.0       a segment leaves at the first exit whose confidence reaches
                              this (1.0 or more: never early; 0.0: always the first exit)
exit_policy         least_sure_token.v1   how an exit's confidence is computed
                              (a registered function, ``model/exit_policies.py``)
precision           "auto"    the backbone at inference: fp32, bf16, int8 or auto
train_precision     "fp32"    the backbone for training features: fp32, bf16 or auto
scores              true      entity probabilities in ``doc.spans[spans_key]``
candidate_threshold null      also every span whose probability reaches this
temperature         1.0       scores from log-probs divided by this (calibration)
=================== ========= ============================================================

The defaults are written here once (``SettingValues``); the factory, the component and the
model read them from here. ``Settings`` owns the live values: assignment validates (type and
range, the message names the setting, and the file when loading), keeps ``nlp.config`` in
step (so ``nlp.to_disk`` writes what is in force into config.cfg), and ``override()`` sets
some for a ``with`` block only. The component saves them in its cfg and hands them to the
model at predict time; nothing else keeps a copy.

Training-only options (``TrainingOptions``: the feature cache's bounds and the exit
self-distillation weight) are kept apart: they change how a model is trained, never what a
trained one answers.
"""
import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from numbers import Real
from typing import Any, Callable, Dict, Iterator, Optional

from spacy.util import registry

from .backbone import PRECISIONS, TRAIN_PRECISIONS
from .feature_cache import DEFAULT_MAX_DISK_MB
from .model.exit_policies import LEAST_SURE_TOKEN, ExitPolicy, least_sure_token, policy_name

SAVED = ("exit_threshold", "precision", "train_precision", "scores", "candidate_threshold", "temperature")
"""The settings saved in the component's cfg (``exit_policy`` lives in config.cfg only: it is a function)."""


@dataclass(frozen=True)
class SettingValues:
    """One consistent set of runtime settings (immutable: an assignment swaps the whole
    set, so a concurrent ``predict`` sees the old or the new, never half of each)."""

    exit_threshold: float = 1.0
    precision: str = "auto"
    train_precision: str = "fp32"
    scores: bool = True
    candidate_threshold: Optional[float] = None
    temperature: float = 1.0
    exit_policy: ExitPolicy = field(default_factory=least_sure_token)


NAMES = tuple(f.name for f in fields(SettingValues))
DEFAULTS = SettingValues()
DEFAULT_EXIT_POLICY = {"@misc": LEAST_SURE_TOKEN}


@dataclass(frozen=True)
class TrainingOptions:
    """Training only: how training features are cached, how early exits learn and, where
    the training examples carry a teacher's distributions (``spacy-posattn-ner distill``),
    how a student learns from them (``training/losses.distill_loss``)."""

    cache_max_ram_mb: float = 2048
    cache_dir: Optional[str] = None
    cache_max_disk_mb: float = DEFAULT_MAX_DISK_MB
    exit_distill: float = 0.0
    distill_temperature: float = 2.0
    distill_gold_weight: float = 0.5
    objective: str = "token"  # or "sequence": the CRF loss over the decoding lattice (losses.py)


OBJECTIVES = ("token", "sequence")
TRAINING_DEFAULTS = TrainingOptions()


def _number(key: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{where}posattn_ner: {key} must be a number, got {value!r}")
    return float(value)


def validate(key: str, value: Any, where: str = "") -> Any:
    """``value`` as the setting ``key`` stores it, or a ValueError naming the setting (and
    ``where``, e.g. the file it was read from, as a prefix)."""
    if key == "exit_threshold":
        value = _number(key, value, where)
        if not value >= 0.0:  # NaN fails too
            raise ValueError(f"{where}posattn_ner: exit_threshold must be a number >= 0, got {value!r}")
        return value
    if key == "precision":
        if value not in PRECISIONS:
            raise ValueError(f"{where}posattn_ner: precision {value!r} is not one of {', '.join(PRECISIONS)}")
        return value
    if key == "train_precision":
        if value not in TRAIN_PRECISIONS:
            raise ValueError(
                f"{where}posattn_ner: train_precision {value!r} is not one of {', '.join(TRAIN_PRECISIONS)}"
            )
        return value
    if key == "scores":
        if not isinstance(value, bool):
            raise ValueError(f"{where}posattn_ner: scores must be true or false, got {value!r}")
        return value
    if key == "candidate_threshold":
        if value is None:
            return None
        value = _number(key, value, where)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{where}posattn_ner: candidate_threshold must be in (0, 1] or None, got {value!r}")
        return value
    if key == "temperature":
        value = _number(key, value, where)
        if not (value > 0.0 and math.isfinite(value)):
            raise ValueError(f"{where}posattn_ner: temperature must be a finite number > 0, got {value!r}")
        return value
    if key == "exit_policy":
        return resolve_exit_policy(value, where)
    raise ValueError(f"{where}posattn_ner: unknown setting {key!r} (settings: {', '.join(NAMES)})")


def resolve_exit_policy(value: Any, where: str = "") -> ExitPolicy:
    """A policy from a callable, a registry name or a config block ``{"@misc": name, ...}``."""
    if isinstance(value, str):
        value = {"@misc": value}
    if isinstance(value, dict):
        name = value.get("@misc")
        try:
            getter = registry.misc.get(name)
        except Exception:
            raise ValueError(
                f"{where}posattn_ner: exit_policy {name!r} is not a registered function "
                f"(e.g. {LEAST_SURE_TOKEN!r})"
            ) from None
        return getter(**{k: v for k, v in value.items() if k != "@misc"})
    if not callable(value):
        raise ValueError(f"{where}posattn_ner: exit_policy must be a registered function, got {value!r}")
    return value


def validate_training(options: Dict[str, Any]) -> TrainingOptions:
    """The training-only options, checked."""
    distill = _number("exit_distill", options.get("exit_distill", 0.0), "")
    if not 0.0 <= distill <= 1.0:
        raise ValueError(f"posattn_ner: exit_distill must be a number in [0, 1], got {distill!r}")
    for key in ("cache_max_ram_mb", "cache_max_disk_mb"):
        if not _number(key, options[key], "") >= 0:
            raise ValueError(f"posattn_ner: {key} must be a number >= 0, got {options[key]!r}")
    temperature = _number("distill_temperature", options.get("distill_temperature", 2.0), "")
    if not 0.05 <= temperature <= 100:
        raise ValueError(f"posattn_ner: distill_temperature must be a number in [0.05, 100], got {temperature!r}")
    gold_weight = _number("distill_gold_weight", options.get("distill_gold_weight", 0.5), "")
    if not gold_weight >= 0:
        raise ValueError(f"posattn_ner: distill_gold_weight must be a number >= 0, got {gold_weight!r}")
    objective = options.get("objective", TRAINING_DEFAULTS.objective)
    if objective not in OBJECTIVES:
        raise ValueError(f"posattn_ner: objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    return TrainingOptions(**{**options, "exit_distill": distill, "distill_temperature": temperature,
                              "distill_gold_weight": gold_weight})  # fmt: skip


def config_value(key: str, value: Any) -> Any:
    """How a setting is written in nlp.config."""
    if key == "exit_policy":
        return {"@misc": policy_name(value)}
    return value


class Settings:
    """The live runtime settings of one component (see the module doc).

    ``settings.exit_threshold = 0.9`` validates and keeps ``nlp.config`` in step;
    ``with settings.override(exit_threshold=0.0):`` sets settings for the block only.
    ``config_values`` is what the pipeline's config says of each saved setting: on load, a
    saved value is restored unless the loading config says otherwise (the config wins).
    """

    def __init__(self, values: SettingValues = DEFAULTS):
        self._values = values
        self.config_values: Dict[str, Any] = {key: getattr(values, key) for key in SAVED}
        self._owner: Optional[Callable[[], Any]] = None  # () -> (nlp, component) or None

    @classmethod
    def from_config(cls, where: str = "", **given: Any) -> "Settings":
        return cls(SettingValues(**{key: validate(key, value, where) for key, value in given.items()}))

    @property
    def values(self) -> SettingValues:
        return self._values

    def attach(self, nlp: Any, component: Any) -> None:
        """Keep ``nlp.config`` in step with this component's settings (weakly: no cycle)."""
        nlp_ref, component_ref = weakref.ref(nlp), weakref.ref(component)
        self._owner = lambda: (nlp_ref(), component_ref())

    def set(self, key: str, value: Any, where: str = "") -> None:
        """Validate and set one setting; ``nlp.config`` follows where the component belongs to one."""
        value = validate(key, value, where)
        self._values = replace(self._values, **{key: value})
        nlp, component = self._owner() if self._owner is not None else (None, None)
        if nlp is None:
            return
        for pipe_name, pipe in nlp.components:
            if pipe is component:  # keep nlp.config (and so config.cfg) truthful
                nlp.get_pipe_config(pipe_name)[key] = config_value(key, value)
                if key in SAVED:
                    self.config_values[key] = value

    def update(self, where: str = "", **given: Any) -> None:
        """Set several settings, all checked before any is set."""
        checked = {key: validate(key, value, where) for key, value in given.items()}
        for key, value in checked.items():
            self.set(key, value)

    @contextmanager
    def override(self, **given: Any) -> Iterator["Settings"]:
        """Set ``given`` for the ``with`` block; the previous values come back after it,
        also when it raises."""
        before = {key: getattr(self._values, key) for key in given}
        self.update(**given)
        try:
            yield self
        finally:
            for key, value in before.items():
                self.set(key, value)

    def restore(self, saved: Dict[str, Any], saved_config: Dict[str, Any], where: str = "") -> None:
        """After loading: the ``saved`` values come back, except where the loading config
        says otherwise than the config they were saved with (``saved_config``): the config wins."""
        for key, value in saved.items():
            config_value = self.config_values[key]
            if saved_config.get(key, config_value) == config_value:
                self.set(key, value, where)

    def to_cfg(self) -> Dict[str, Any]:
        """The saved settings, for the component's cfg."""
        return {key: getattr(self._values, key) for key in SAVED}

    @staticmethod
    def check_cfg(saved: Any, where: str) -> Dict[str, Any]:
        """Saved settings read from a file, validated (naming the file) and normalized."""
        if not isinstance(saved, dict):
            raise ValueError(f"{where}posattn_ner: settings must be an object, got {saved!r}")
        unknown = sorted(set(saved) - set(SAVED))
        if unknown:
            raise ValueError(f"{where}posattn_ner: unknown saved settings {unknown} (known: {', '.join(SAVED)})")
        return {key: validate(key, value, where) for key, value in saved.items()}

    def __getstate__(self):  # the weak owner does not pickle; a copy is unattached
        return {**self.__dict__, "_owner": None}

    def __repr__(self) -> str:
        shown = {key: config_value(key, getattr(self._values, key)) for key in NAMES}
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _alias(key: str) -> property:
    return property(lambda self: getattr(self._values, key), lambda self, value: self.set(key, value),
                    doc=f"The ``{key}`` runtime setting (see the module doc).")  # fmt: skip


for _key in NAMES:
    setattr(Settings, _key, _alias(_key))
