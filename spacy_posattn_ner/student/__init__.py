"""A distilled student: the teacher pipeline's knowledge in a compact model with no
transformer at inference (``spacy-posattn-ner.Student.v1``, ``spacy-posattn-ner distill``)."""
from .architectures import build_student  # noqa: F401  (registers the architecture)
from .model import student_head_builder  # noqa: F401  (registers its head builder)
from .vectors import StaticVectors

__all__ = ["build_student", "StaticVectors"]
