"""msgpack_registry: srsly's encoder/decoder lookups give catalogue's answers, read the
installed packages' entry points once, and still see functions registered later."""
import numpy
import spacy
import srsly
import srsly.msgpack as srsly_msgpack
from spacy.tokens import Doc, Span, SpanGroup

import spacy_posattn_ner  # noqa: F401  (installs it)
from spacy_posattn_ner import msgpack_registry


def _catalogue_answer(registry):
    import catalogue

    return catalogue.Registry.get_all(registry)  # the unpatched method


def test_the_same_functions_as_catalogue_and_later_registrations_too():
    for registry in (srsly_msgpack.msgpack_encoders, srsly_msgpack.msgpack_decoders):
        assert getattr(registry.get_all, "reads_entry_points_once", False)
        assert registry.get_all() == _catalogue_answer(registry)
    encoders = srsly_msgpack.msgpack_encoders

    @encoders.register("posattn_test_encoder")
    def encode(obj, chain=None):
        return chain(obj) if chain else obj

    try:
        assert encoders.get_all()["posattn_test_encoder"] is encode
        assert encoders.get_all() == _catalogue_answer(encoders)
    finally:
        import catalogue

        catalogue.REGISTRY.pop(("srsly", "msgpack_encoders", "posattn_test_encoder"), None)
    assert "posattn_test_encoder" not in encoders.get_all()


def test_entry_points_are_read_once(monkeypatch):
    encoders = srsly_msgpack.msgpack_encoders
    calls = []
    original = encoders.get_entry_points
    monkeypatch.setattr(encoders, "get_entry_points", lambda: calls.append(1) or original())
    monkeypatch.setattr(encoders, "get_all", msgpack_registry._get_all_reading_entry_points_once(encoders))
    nlp = spacy.blank("en")
    doc = nlp("Paris is in France .")
    doc.spans["sc"] = SpanGroup(doc, spans=[Span(doc, 0, 1, "geo")], attrs={"scores": numpy.asarray([0.9], "float32")})
    for _ in range(5):
        data = doc.to_bytes()
    assert len(calls) == 1
    back = Doc(nlp.vocab).from_bytes(data)
    assert [(s.text, s.label_) for s in back.spans["sc"]] == [("Paris", "geo")]
    assert back.spans["sc"].attrs["scores"].tolist() == [numpy.float32(0.9)]
    assert srsly.msgpack_loads(srsly.msgpack_dumps({"a": numpy.arange(3)}))["a"].tolist() == [0, 1, 2]


def test_the_opt_out_leaves_srsly_alone(monkeypatch):
    monkeypatch.setenv(msgpack_registry.OPT_OUT, "1")
    assert msgpack_registry.install() is False
