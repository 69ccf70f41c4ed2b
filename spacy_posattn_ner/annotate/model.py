"""Loading the pipeline the same way in the driver, in worker processes and in Ray actors."""
import os
from pathlib import Path
from typing import Optional

from spacy.language import Language

from .errors import AnnotateError


def import_code(code: Optional[str]) -> None:
    """Import a Python file with custom components (spaCy's --code)."""
    if not code:
        return
    from spacy.util import import_file

    if not Path(code).exists():
        raise AnnotateError(f"--code {code}: no such file")
    import_file("annotate_code", code)


def model_location(model: str) -> str:
    """An absolute path for a pipeline directory (Ray workers may run elsewhere), a
    package name as it is."""
    return os.path.abspath(model) if Path(model).is_dir() else model


def load_pipeline(model: str, code: Optional[str] = None) -> Language:
    import spacy

    import spacy_posattn_ner  # noqa: F401  (registers posattn_ner without the entry points)

    import_code(code)
    try:
        return spacy.load(model)
    except OSError as err:
        raise AnnotateError(f"MODEL {model}: cannot load it as a spaCy pipeline ({err})") from err


def entity_warning(nlp: Language, model: str) -> Optional[str]:
    """A warning when no component declares that it sets doc.ents: every row would be empty.
    (A warning, not an error: a custom component may set them without declaring it.)"""
    if any("doc.ents" in nlp.get_pipe_meta(name).assigns for name in nlp.pipe_names):
        return None
    return (
        f"MODEL {model}: no component declares that it sets doc.ents (pipeline: {', '.join(nlp.pipe_names) or 'empty'}); "
        "use a pipeline with ner, posattn_ner or an entity ruler"
    )
