"""The ``posattn_ner`` factory: its default config (the model the project ships, the
runtime settings' defaults from ``settings.py``, the training-only options) and the
function spaCy calls with it. The component itself is ``component.PosAttnNER``."""
from typing import Callable, List, Optional

from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Config, Model

from .architectures import DEFAULT_MODEL_CONFIG
from .component import PosAttnNER
from .model.nodes import TaggerOutput
from .settings import DEFAULT_EXIT_POLICY, DEFAULTS, NAMES, TRAINING_DEFAULTS, Settings
from .text_safety import install as install_text_safety

DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]  # the shipped model (configs/posattn_ner.cfg)

@Language.factory(
    "posattn_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        # runtime settings (settings.py): change what a trained pipeline answers
        **{key: getattr(DEFAULTS, key) for key in NAMES if key != "exit_policy"},
        "exit_policy": DEFAULT_EXIT_POLICY,
        "spans_key": "posattn_ner",
        # training only (settings.TrainingOptions): how a model is trained
        "cache_max_ram_mb": TRAINING_DEFAULTS.cache_max_ram_mb,
        "cache_dir": TRAINING_DEFAULTS.cache_dir,
        "cache_max_disk_mb": TRAINING_DEFAULTS.cache_max_disk_mb,
        "exit_distill": TRAINING_DEFAULTS.exit_distill,
        "distill_temperature": TRAINING_DEFAULTS.distill_temperature,
        "distill_gold_weight": TRAINING_DEFAULTS.distill_gold_weight,
        "objective": TRAINING_DEFAULTS.objective,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_posattn_ner(
    nlp: Language, name: str, model: Model[List[Doc], TaggerOutput],
    exit_threshold: float, precision: str, train_precision: str, scores: bool,
    candidate_threshold: Optional[float], temperature: float, exit_policy: Callable, spans_key: str,
    cache_max_ram_mb: float, cache_dir: Optional[str], cache_max_disk_mb: float, exit_distill: float,
    distill_temperature: float, distill_gold_weight: float, scorer: Optional[Callable], objective: str,
) -> "PosAttnNER":
    """Create a posattn_ner component. The runtime settings are documented in
    ``spacy_posattn_ner.settings``; ``spans_key`` is the ``doc.spans`` key of the scored
    entities. Training only: ``cache_max_ram_mb`` (RAM for cached training features, beyond
    it they spill to a memory-mapped file in ``cache_dir``, a temporary directory if None),
    ``cache_max_disk_mb`` (the spill file's bound, 0 = never spill; past it training stops
    with FeatureCacheFullError naming the setting) and ``exit_distill`` (the weight of the
    last exit's distribution in the earlier exits' targets, ``training/losses.py``);
    ``distill_temperature`` and ``distill_gold_weight`` (how a student learns from a
    teacher's distributions where its training examples carry them: ``distill_loss``);
    ``objective``: ``"token"`` (cross-entropy per token) or ``"sequence"`` (the gold path's
    likelihood over the constrained lattice decoding searches: ``sequence_loss``).
    Adding the component also wraps ``nlp.tokenizer`` (once) so that texts with lone
    surrogates are tokenized instead of raising (``text_safety.py``)."""
    settings = Settings.from_config(
        exit_threshold=exit_threshold, precision=precision, train_precision=train_precision, scores=scores,
        candidate_threshold=candidate_threshold, temperature=temperature, exit_policy=exit_policy,
    )
    training = {"cache_max_ram_mb": cache_max_ram_mb, "cache_dir": cache_dir, "cache_max_disk_mb": cache_max_disk_mb,
                "exit_distill": exit_distill, "distill_temperature": distill_temperature,
                "distill_gold_weight": distill_gold_weight, "objective": objective}  # fmt: skip
    component = PosAttnNER(nlp.vocab, model, name, settings=settings, training=training, spans_key=spans_key,
                           scorer=scorer)  # fmt: skip
    settings.attach(nlp, component)
    install_text_safety(nlp)  # lone surrogates → U+FFFD before spaCy's tokenizer (text_safety.py)
    return component
