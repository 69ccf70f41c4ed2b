"""The one measurement every benchmark command makes: test F1 and words/s of a pipeline."""
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example

from .data import fresh_docs

# What "words/s" means in a report written by measure(): its "speed_definition" field.
# Reports written before it carry the older definitions render.EXIT_TIMING and
# render.SPEED_TIMING describe.
SPEED_DEFINITION = "nlp.pipe"


def measure(
    nlp: Language, refs: Sequence[Doc], *, batch_size: int, repeats: int = 1, layer_keys: Sequence[int] = ()
) -> Dict[str, Any]:
    """Test F1 and words/s of ``nlp`` on the gold docs ``refs``.

    Words/s, the one definition all benchmarks here use: the words (tokens) of fresh
    Docs built from the gold words, divided by the wall-clock seconds of one
    ``nlp.pipe`` pass over them at ``batch_size``. Building the Docs is not timed and
    no tokenizer runs, for any system; one untimed warm-up batch goes first; the best
    of ``repeats`` passes counts. F1 is spaCy's Scorer on the first timed pass's docs
    (what ``Language.evaluate`` would score, without a pass of its own).

    ``layer_keys``: the posattn_ner exit layers, listed in ``exit_layer_share`` even
    when no doc used them. The unit is the segment the engine exits by: a sentence of
    a multi-sentence doc (``doc._.exit_layers``), else the doc (``doc._.exit_layer``).
    """
    list(nlp.pipe(fresh_docs(refs[:batch_size]), batch_size=batch_size))
    seconds: List[float] = []
    first: List[Doc] = []
    for _ in range(max(1, repeats)):
        docs = fresh_docs(refs)
        start = time.perf_counter()
        out = list(nlp.pipe(docs, batch_size=batch_size))
        seconds.append(time.perf_counter() - start)
        first = first or out
    scores = Scorer(nlp).score([Example(doc, ref) for doc, ref in zip(first, refs)])
    n_words = sum(len(doc) for doc in first)
    row: Dict[str, Any] = {
        "ents_f": float(scores.get("ents_f") or 0.0),
        "ents_p": float(scores.get("ents_p") or 0.0),
        "ents_r": float(scores.get("ents_r") or 0.0),
        "words_per_second": n_words / min(seconds),
        "pass_seconds": seconds,
        "n_docs": len(first),
        "n_words": n_words,
    }
    row.update(exit_layer_stats([layer for doc in first for layer in _exit_layers(doc)], layer_keys))
    return row


def _exit_layers(doc: Doc) -> List[Optional[int]]:
    """The layer of each segment the engine exited by (None: posattn_ner did not run)."""
    if Doc.has_extension("exit_layers") and doc._.exit_layers is not None:
        return list(doc._.exit_layers)
    return [doc._.exit_layer if Doc.has_extension("exit_layer") else None]


def exit_layer_stats(layers: Sequence[Optional[int]], keys: Sequence[int] = ()) -> Dict[str, Any]:
    """Mean backbone layers run per segment, and the share of segments per exit layer
    (None entries: docs no posattn_ner predicted, e.g. another system's)."""
    ran = [layer for layer in layers if layer is not None]
    if not ran and not keys:
        return {"mean_exit_layer": None}
    counts = Counter(ran)
    share = {str(k): (counts[k] / len(ran) if ran else 0.0) for k in sorted(set(keys) | set(counts))}
    return {"mean_exit_layer": sum(ran) / len(ran) if ran else None, "exit_layer_share": share}
