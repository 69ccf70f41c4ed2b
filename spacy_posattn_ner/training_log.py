"""Old home of the JSON-lines training logger (now ``spacy_posattn_ner.training.log``).

Kept because its path is published: installed packages' ``spacy_loggers`` entry point
metadata and ``spacy train --code <this file>`` (scripts/benchmark_train.py) name it.
An absolute import, so that it also works when spaCy loads it as a standalone file.
"""
from spacy_posattn_ner.training.log import (  # noqa: F401
    JsonlLogPathError,
    check_log_path,
    make_jsonl_logger,
    peak_rss_mib,
)
