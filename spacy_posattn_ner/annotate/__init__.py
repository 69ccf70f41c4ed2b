"""Annotating a corpus with a NER pipeline: resumable shards, an error row for every bad
input row, a local engine (processes) and a Ray engine. The CLI is ``annotate.cli``."""
from .errors import AnnotateError
from .outputs import read_rows
from .progress import Summary
from .runner import AnnotateOptions, annotate_corpus

__all__ = ["AnnotateError", "AnnotateOptions", "Summary", "annotate_corpus", "read_rows"]
