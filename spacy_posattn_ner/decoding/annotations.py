"""Predictions onto docs: ``doc.ents``, the exit layers and the scored ``doc.spans`` group."""
from typing import Dict, List, Optional, Sequence

import numpy
from spacy.tokens import Doc, Span, SpanGroup

from .predictions import Predictions


def annotate(docs: Sequence[Doc], predictions: Predictions, labels: Sequence[str], spans_key: str) -> None:
    """Set each doc's entities (entities already on a doc win, score 1.0, and predictions
    that overlap them go), ``doc._.exit_layer(s)`` and, with scores, ``doc.spans[spans_key]``."""
    if not docs:
        return
    label_ids = [docs[0].vocab.strings.add(label) for label in labels]
    doc_of, starts, ends, label_of = predictions.entities
    bounds = numpy.searchsorted(doc_of, numpy.arange(len(docs) + 1)).tolist()
    starts, ends, label_of = starts.tolist(), ends.tolist(), label_of.tolist()
    scored = predictions.entity_scores is not None
    entity_scores = predictions.entity_scores.tolist() if scored else []
    for i, (doc, layer) in enumerate(zip(docs, predictions.exit_layer.tolist())):
        lo, hi = bounds[i], bounds[i + 1]
        spans = [Span(doc, s, e, label=label_ids[k]) for s, e, k in zip(starts[lo:hi], ends[lo:hi], label_of[lo:hi])]
        scores = {(s.start, s.end, s.label): p for s, p in zip(spans, entity_scores[lo:hi])}
        if doc.ents:
            taken = numpy.zeros(len(doc), dtype=bool)
            for ent in doc.ents:
                taken[ent.start : ent.end] = True
                scores[(ent.start, ent.end, ent.label)] = 1.0
            spans = list(doc.ents) + [s for s in spans if not taken[s.start : s.end].any()]
        doc.set_ents(spans, default="outside")
        doc._.exit_layer = layer if layer >= 0 else None
        doc._.exit_layers = predictions.segment_exit_layers[i] if len(doc) else None
        if scored:
            ents = {(e.start, e.end, e.label): scores[(e.start, e.end, e.label)] for e in doc.ents}
            _set_scored_spans(doc, i, ents, predictions.candidates, label_ids, spans_key)


def _set_scored_spans(
    doc: Doc, i: int, by_span: Dict[tuple, float], candidates: Optional[tuple], label_ids: List[int], key: str
) -> None:
    """``doc.spans[key]``: the entities (``by_span``: (start, end, label) → score) and any
    candidate spans, sorted by (start, end, label), with ``attrs["scores"]`` aligned (as
    spancat stores them)."""
    if candidates is not None:
        doc_c, start_c, end_c, label_c, score_c = candidates
        for k in numpy.flatnonzero(doc_c == i).tolist():
            by_span.setdefault((int(start_c[k]), int(end_c[k]), label_ids[int(label_c[k])]), float(score_c[k]))
    keys = sorted(by_span, key=lambda k: (k[0], k[1], doc.vocab.strings[k[2]]))
    group = SpanGroup(doc, name=key, spans=[Span(doc, s, e, label=l) for s, e, l in keys])
    group.attrs["scores"] = numpy.asarray([by_span[k] for k in keys], dtype="float32")
    doc.spans[key] = group
