"""spacy-posattn-ner: NER from a frozen transformer and a positional-attention tagger.

Importing the package registers the ``posattn_ner`` factory and the
``spacy-posattn-ner.*`` architectures and exit policies (entry points do the same for spaCy).
"""
from . import msgpack_registry
from . import architectures  # noqa: F401  (registers architectures)
from . import student  # noqa: F401  (registers spacy-posattn-ner.Student.v1 and its head builder)
from .backbone import EMBEDDED_BACKBONE, BackboneLoadError, FrozenBackbone
from .component import PosAttnNER
from .factory import make_posattn_ner
from .settings import Settings
from .training import check, schedule, teacher  # noqa: F401  (registers the schedule functions, the check logger and the teacher-targets reader)
from .training.log import make_jsonl_logger  # noqa: F401  (registers spacy-posattn-ner.JsonlLogger.v1)

msgpack_registry.install()  # Doc.to_bytes 22x faster: n_process and DocBin (see the module)

__version__ = "0.1.0"
__all__ = ["PosAttnNER", "Settings", "make_posattn_ner", "FrozenBackbone", "BackboneLoadError", "EMBEDDED_BACKBONE"]
