"""Texts that are not valid Unicode: a lone surrogate (``"Paris \\ud800 France"``, e.g.
from a JSON ``\\ud800`` escape or a lossy decode) cannot be encoded as UTF-8, so spaCy's
tokenizer raises ``UnicodeEncodeError`` when it hashes the token, and in ``nlp.pipe``
one such text fails the whole call. ``SurrogateSafeTokenizer`` wraps a pipeline's
tokenizer and replaces each lone surrogate with U+FFFD (the replacement character)
before tokenizing: one character for one, so every other character keeps its offset,
and ``doc.text`` differs from the input exactly there. The ``posattn_ner`` factory
installs it (``install``) on the pipeline it is added to, so a user gets it without
doing anything, also after ``spacy.load`` (the factory runs again); it saves and loads
as the tokenizer it wraps, so the saved pipeline is unchanged. ``nlp.tokenizer =
SurrogateSafeTokenizer(nlp.tokenizer)`` applies it to any other pipeline.
"""
import re
from typing import Any, Iterable, Iterator

from spacy.tokens import Doc

_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD (same length).
    A str holds no valid surrogate pairs, so each one found is lone."""
    try:
        text.encode("utf8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


class SurrogateSafeTokenizer:
    """A pipeline tokenizer that never raises on lone surrogates (see the module doc)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> Doc:
        return self.tokenizer(replace_lone_surrogates(text))

    def pipe(self, texts: Iterable[str], batch_size: int = 1000) -> Iterator[Doc]:
        for text in texts:
            yield self(text)

    def __getattr__(self, name: str) -> Any:  # rules, vocab, to_disk, from_disk, to_bytes...
        if name == "tokenizer":
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


def install(nlp: Any) -> None:
    """Wrap ``nlp.tokenizer`` in a SurrogateSafeTokenizer unless it is one already."""
    if not isinstance(nlp.tokenizer, SurrogateSafeTokenizer):
        nlp.tokenizer = SurrogateSafeTokenizer(nlp.tokenizer)
