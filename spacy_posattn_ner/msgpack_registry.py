"""srsly's msgpack registries without a scan of the installed packages on every call.

Every ``srsly.msgpack_dumps``/``msgpack_loads`` builds a packer that asks the
``msgpack_encoders`` (or ``_decoders``) registry for all its functions, and
``catalogue.Registry.get_all`` reads every installed distribution's entry points each
time. ``Doc.to_bytes`` makes five such calls for a doc of this pipeline (its user data,
the ``doc.spans`` group of entity scores, the whole), so on this project's environment
it took 2.5 ms per doc, 22 times what it takes with the entry points read once; that
cost is what made ``nlp.pipe(n_process=2)`` slower than one process (each worker
serializes every doc, the parent deserializes them all: issue #27).

``install`` gives those two registries a ``get_all`` with catalogue's own answer, the
functions registered in code looked up on every call as before, and the entry points of
installed packages read once per process (a package installed while the process runs
is not seen: restart it, as for any import). ``SPACY_POSATTN_NER_MSGPACK_SCAN=1`` in the
environment leaves srsly as it is.
"""
import os
from typing import Any, Callable, Dict, Optional

OPT_OUT = "SPACY_POSATTN_NER_MSGPACK_SCAN"


def _get_all_reading_entry_points_once(registry) -> Callable[[], Dict[str, Any]]:
    import catalogue

    namespace = tuple(registry.namespace)
    size = len(namespace)
    entry_points: Optional[Dict[str, Any]] = None

    def get_all() -> Dict[str, Any]:
        nonlocal entry_points
        if entry_points is None:
            entry_points = dict(registry.get_entry_points()) if registry.entry_points else {}
        result = dict(entry_points)
        for keys, value in catalogue.REGISTRY.copy().items():  # what catalogue.Registry.get_all does
            if len(keys) == size + 1 and keys[:size] == namespace:
                result[keys[-1]] = value
        return result

    get_all.reads_entry_points_once = True  # type: ignore[attr-defined]
    return get_all


def install() -> bool:
    """Give srsly's two msgpack registries the faster ``get_all`` (idempotent). Returns
    whether it is installed (not with the opt-out set)."""
    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return False
    import srsly.msgpack as srsly_msgpack

    for registry in (srsly_msgpack.msgpack_encoders, srsly_msgpack.msgpack_decoders):
        if not getattr(registry.get_all, "reads_entry_points_once", False):
            registry.get_all = _get_all_reading_entry_points_once(registry)
    return True
