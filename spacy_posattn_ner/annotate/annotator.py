"""Records in, output rows out: the part every engine (in-process, worker processes,
Ray actors) runs, so that all of them write the same rows.

A row is ``{"id", "entities": [{"start_char", "end_char", "label", "text"(, "score")}]}``,
plus ``"exit_layer"`` where the pipeline sets ``doc._.exit_layer``, or
``{"id", "entities": [], "error"}`` for a record that could not be annotated.
"""
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from .records import Record

Row = Dict[str, Any]
DEFAULT_SCORES_KEY = "posattn_ner"


@dataclass
class Annotated:
    """One record's outcome; ``row`` is None for a record of an already finished shard."""

    file_index: int
    position: int
    row: Optional[Row]
    n_words: int = 0
    doc: Optional[Union[Doc, bytes]] = None  # kept for .spacy output only

    @property
    def key(self) -> Tuple[int, int]:
        return self.file_index, self.position


def error_row(record_id: Any, error: str) -> Row:
    return {"id": record_id, "entities": [], "error": error}


def row_to_json(row: Row) -> str:
    """The transport form between processes: exact for every JSON value, floats included."""
    return json.dumps(row, ensure_ascii=True)


class Annotator:
    """Runs a loaded pipeline over batches of records and builds their output rows."""

    def __init__(
        self,
        nlp: Language,
        *,
        max_chars: int = 0,
        batch_size: int = 128,
        scores_key: str = DEFAULT_SCORES_KEY,
        keep_docs: bool = False,
    ) -> None:
        self.nlp = nlp
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.scores_key = scores_key
        self.keep_docs = keep_docs

    @property
    def char_limit(self) -> Tuple[int, str]:
        """The longest text annotated, and what sets it."""
        if self.max_chars and self.max_chars < self.nlp.max_length:
            return self.max_chars, "--max-chars"
        return self.nlp.max_length, "nlp.max_length"

    def __call__(self, records: Sequence[Record]) -> List[Annotated]:
        limit, limit_name = self.char_limit
        errors: Dict[int, str] = {}
        todo: List[int] = []
        for i, rec in enumerate(records):
            if rec.error is not None:
                errors[i] = rec.error
            elif len(rec.text) > limit:
                errors[i] = f"{rec.where}: text has {len(rec.text):,} characters, more than {limit_name} ({limit:,})"
            else:
                todo.append(i)
        docs = self._run([records[i] for i in todo])
        done = dict(zip(todo, docs))
        out = []
        for i, rec in enumerate(records):
            doc = done.get(i)
            if isinstance(doc, BaseException):
                errors[i] = f"{rec.where}: the pipeline failed on this document ({type(doc).__name__}: {doc})"
            if i in errors:
                out.append(Annotated(rec.file_index, rec.position, error_row(rec.id, errors[i]), 0, self._error_doc(rec, errors[i])))
            else:
                out.append(Annotated(rec.file_index, rec.position, self._row(rec, doc), len(doc), self._kept(rec, doc)))
        return out

    def _input(self, rec: Record) -> Union[str, Doc]:
        if rec.words is not None:
            return Doc(self.nlp.vocab, words=rec.words, spaces=rec.spaces)
        return rec.text

    def _run(self, records: Sequence[Record]) -> List[Union[Doc, BaseException]]:
        """The batch through nlp.pipe; if it fails, each doc alone, so only the documents
        that really fail get an error row (nlp.pipe's own error handler drops a batch)."""
        if not records:
            return []
        try:
            return list(self.nlp.pipe((self._input(r) for r in records), batch_size=self.batch_size))
        except Exception:
            out: List[Union[Doc, BaseException]] = []
            for rec in records:
                try:
                    out.append(self.nlp(self._input(rec)))
                except Exception as err:  # noqa: BLE001 - reported in the row, the job goes on
                    out.append(err)
            return out

    def _scores(self, doc: Doc) -> Dict[Tuple[int, int, str], float]:
        group = doc.spans.get(self.scores_key) if self.scores_key in doc.spans else None
        if group is None:
            return {}
        scores = group.attrs.get("scores")
        if scores is None or len(scores) != len(group):
            return {}
        return {(s.start_char, s.end_char, s.label_): float(v) for s, v in zip(group, scores)}

    def _row(self, rec: Record, doc: Doc) -> Row:
        scores = self._scores(doc)
        entities = []
        for ent in doc.ents:
            item = {"start_char": ent.start_char, "end_char": ent.end_char, "label": ent.label_, "text": ent.text}
            score = scores.get((ent.start_char, ent.end_char, ent.label_))
            if score is not None:
                item["score"] = score
            entities.append(item)
        row: Row = {"id": rec.id, "entities": entities}
        exit_layer = doc._.get("exit_layer") if Doc.has_extension("exit_layer") else None
        if exit_layer is not None:
            row["exit_layer"] = int(exit_layer)
        return row

    def _kept(self, rec: Record, doc: Doc) -> Optional[Doc]:
        if not self.keep_docs:
            return None
        doc.user_data["id"] = rec.id
        return doc

    def _error_doc(self, rec: Record, error: str) -> Optional[Doc]:
        if not self.keep_docs:
            return None
        doc = Doc(self.nlp.vocab, words=[])
        doc.user_data["id"] = rec.id
        doc.user_data["error"] = error
        return doc
