"""spacy-posattn-ner: NER from a frozen transformer and a positional-attention tagger.

Importing the package registers the ``posattn_ner`` factory and the
``spacy-posattn-ner.*`` architectures (entry points do the same for spaCy).
"""
from . import architectures  # noqa: F401  (registers architectures)
from . import student  # noqa: F401  (registers spacy-posattn-ner.Student.v1)
from .backbone import EMBEDDED_BACKBONE, BackboneLoadError, FrozenBackbone
from .pipeline import PosAttnNER, make_posattn_ner
from .training_log import make_jsonl_logger  # noqa: F401  (registers spacy-posattn-ner.JsonlLogger.v1)

__version__ = "0.1.0"
__all__ = ["PosAttnNER", "make_posattn_ner", "FrozenBackbone", "BackboneLoadError", "EMBEDDED_BACKBONE"]
