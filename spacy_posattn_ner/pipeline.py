"""Backwards-compatible home of the ``posattn_ner`` factory.

The published ``spacy_factories`` entry point (``posattn_ner =
spacy_posattn_ner.pipeline:make_posattn_ner``) names this module, so it stays; the
component lives in ``component.py``, decoding in ``decoding/``, settings in ``settings.py``.
"""
from .component import PosAttnNER
from .factory import DEFAULT_MODEL, make_posattn_ner
from .decoding import Predictions

__all__ = ["DEFAULT_MODEL", "PosAttnNER", "Predictions", "make_posattn_ner"]
