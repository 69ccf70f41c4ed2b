"""Old home of the thinc model helpers (now ``spacy_posattn_ner.model``); kept for the
project's scripts/experiments that import ``get_backbone`` and ``get_head`` from here."""
from .model.build import drop_head, ensure_head, get_head, has_head  # noqa: F401
from .model.nodes import PaddedScores, get_backbone, pad_features  # noqa: F401
