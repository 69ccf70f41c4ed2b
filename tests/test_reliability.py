"""Issue 18, reliability: corrupted weights are refused, archives are extracted
safely, importing the package leaves the host process alone, ``update`` honours
``drop``, entities never begin or end on whitespace, and hostile text is handled.

Thread safety (item 1) is tested in test_engine.py; ``nlp.pipe(n_process=2)`` in
test_pipeline.py (``test_pipe_multiprocess_equals_call``); the feature cache's disk
bound and keys in test_feature_cache.py.
"""
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable, List, Tuple

import numpy
import pytest
import spacy
import srsly
import torch
from spacy.tokens import Doc

from spacy_posattn_ner.backbone import BackboneLoadError
from spacy_posattn_ner.backbone.encoder import from_archive, to_archive
from spacy_posattn_ner.model.engine import TagScores
from spacy_posattn_ner.model.nodes import get_backbone, get_head

from .conftest import ROOT, ents_of, make_nlp, toy_examples

FLIP = 64  # bytes flipped in the middle of the weights, as in the issue


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    flipped = bytes(b ^ 0xFF for b in data[middle : middle + FLIP])
    return data[:middle] + flipped + data[middle + FLIP :]


@pytest.fixture
def saved(tiny_exit_pipeline, tmp_path) -> Path:
    """A private copy of the trained tiny pipeline on disk, free to damage."""
    return Path(shutil.copytree(tiny_exit_pipeline, tmp_path / "pipeline"))


@pytest.fixture(scope="module")
def loaded(tiny_exit_pipeline):
    return spacy.load(tiny_exit_pipeline)


# -- (3) corrupted weights ----------------------------------------------------------
def test_flipped_bytes_on_disk_are_refused_naming_the_file(saved):
    model = saved / "posattn_ner" / "model"
    model.write_bytes(_flip_middle(model.read_bytes()))
    with pytest.raises(ValueError) as err:
        spacy.load(saved)
    assert str(model) in str(err.value)
    assert "altered" in str(err.value)


@pytest.mark.parametrize(
    "damage, kind",
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:-1], "truncated"),
        (lambda data: b"", "truncated"),
        (lambda data: data + b"\0", "longer than saved"),
    ],
)
def test_truncated_or_extended_file_is_refused_naming_the_file(saved, damage: Callable[[bytes], bytes], kind: str):
    model = saved / "posattn_ner" / "model"
    original = model.read_bytes()
    damaged = damage(original)
    model.write_bytes(damaged)
    with pytest.raises(ValueError) as err:
        spacy.load(saved)
    assert str(model) in str(err.value)
    assert f"{kind} ({len(damaged):,} bytes, saved {len(original):,})" in str(err.value)


def _with_model_bytes(nlp_bytes: bytes, change: Callable[[dict], None]) -> bytes:
    """nlp.to_bytes() output with the posattn_ner component's message changed."""
    outer = srsly.msgpack_loads(nlp_bytes)
    component = srsly.msgpack_loads(outer["posattn_ner"])
    change(component)
    outer["posattn_ner"] = srsly.msgpack_dumps(component)
    return srsly.msgpack_dumps(outer)


@pytest.mark.parametrize(
    "damage, kind",
    [(_flip_middle, "altered"), (lambda data: data[: len(data) // 2], "truncated")],
)
def test_damaged_model_bytes_are_refused_by_from_bytes(tiny_exit_pipeline, damage, kind):
    nlp = spacy.load(tiny_exit_pipeline)

    def corrupt(component: dict) -> None:
        component["model"] = damage(component["model"])

    data = _with_model_bytes(nlp.to_bytes(), corrupt)
    with pytest.raises(ValueError) as err:
        spacy.load(tiny_exit_pipeline).from_bytes(data)
    assert "posattn_ner 'posattn_ner' model bytes: the weights" in str(err.value)
    assert kind in str(err.value)


def _drop_checksum_on_disk(path: Path) -> None:
    cfg_path = path / "posattn_ner" / "cfg"
    cfg = srsly.read_json(cfg_path)
    del cfg["model_checksum"]
    srsly.write_json(cfg_path, cfg)


TEXTS = [
    "Thousands of demonstrators marched through London .",
    "Mahmoud Ahmadinejad met British troops in New York on Tuesday .",
    "The United Nations met in Basra in March .",
]


def test_pipeline_saved_without_a_checksum_still_loads(saved, loaded):
    """Pipelines saved before checksums existed load as before (nothing to check)."""
    _drop_checksum_on_disk(saved)
    old = spacy.load(saved)
    assert [ents_of(d) for d in old.pipe(TEXTS)] == [ents_of(d) for d in loaded.pipe(TEXTS)]
    assert any(ents_of(d) for d in old.pipe(TEXTS))

    def drop(component: dict) -> None:
        cfg = srsly.json_loads(component["cfg"])
        del cfg["model_checksum"]
        component["cfg"] = srsly.json_dumps(cfg)

    again = spacy.load(saved).from_bytes(_with_model_bytes(loaded.to_bytes(), drop))
    assert [ents_of(d) for d in again.pipe(TEXTS)] == [ents_of(d) for d in loaded.pipe(TEXTS)]


def test_a_checksum_left_from_an_earlier_load_does_not_judge_other_weights(saved, tmp_path):
    """A component that was loaded (or saved) holds that file's checksum in cfg; loading
    another pipeline without a checksum into it must not compare against the stale one."""
    other = spacy.load(saved)
    with torch.no_grad():
        next(get_head(other.get_pipe("posattn_ner").model).parameters()).add_(0.5)
    other.to_disk(tmp_path / "other")
    _drop_checksum_on_disk(tmp_path / "other")
    nlp = spacy.load(saved)  # its cfg now holds the checksum of saved's weights
    nlp.from_disk(tmp_path / "other")
    assert [ents_of(d) for d in nlp.pipe(TEXTS)] == [ents_of(d) for d in other.pipe(TEXTS)]
    nlp.from_bytes(spacy.load(saved).to_bytes())  # and back, through bytes
    assert [ents_of(d) for d in nlp.pipe(TEXTS)] == [ents_of(d) for d in spacy.load(saved).pipe(TEXTS)]


# -- (4) tar extraction ---------------------------------------------------------------
def _archive(*members: Tuple[str, bytes, bytes]) -> bytes:
    """A tar archive of (name, type, payload) members; the payload of a link is its target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload.decode()
                tar.addfile(info)
            elif kind == tarfile.DIRTYPE:
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


HARMLESS = ("config.json", tarfile.REGTYPE, b"{}")


@pytest.mark.parametrize(
    "member",
    [
        ("../evil", tarfile.REGTYPE, b"owned"),
        ("../../evil", tarfile.REGTYPE, b"owned"),
        ("ABSOLUTE", tarfile.REGTYPE, b"owned"),  # an absolute path inside tmp_path
        ("sub/evil", tarfile.REGTYPE, b"owned"),
        ("./evil", tarfile.REGTYPE, b"owned"),
        ("evil-link", tarfile.SYMTYPE, b"/etc/passwd"),
        ("evil-link", tarfile.SYMTYPE, b"../outside"),
        ("evil-hardlink", tarfile.LNKTYPE, b"/etc/passwd"),
        ("evil-dir", tarfile.DIRTYPE, b""),
        ("evil-fifo", tarfile.FIFOTYPE, b""),
        ("..", tarfile.REGTYPE, b"owned"),
    ],
    ids=["parent", "grandparent", "absolute", "nested", "dot-slash", "symlink-abs", "symlink-rel", "hardlink", "dir", "fifo", "dotdot"],
)
def test_archive_with_unsafe_member_is_refused_before_anything_is_written(member, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    (scratch / "x").mkdir(parents=True)
    monkeypatch.setattr("tempfile.tempdir", str(scratch / "x"))  # extraction happens in here
    if member[0] == "ABSOLUTE":
        member = ((tmp_path / "evil-absolute").as_posix(),) + member[1:]
    data = _archive(HARMLESS, member, HARMLESS)
    with pytest.raises(BackboneLoadError) as err:
        from_archive(data, "my-backbone")
    message = str(err.value)
    assert repr(member[0]) in message and "'my-backbone'" in message and "refusing" in message
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["tmp", "tmp/x"]  # nothing escaped, and the temp dir is cleaned up


def test_archive_round_trip(tiny_backbone):
    backbone = get_backbone(make_nlp(tiny_backbone).get_pipe("posattn_ner").model).load()
    data = to_archive(backbone.model, backbone.tokenizer)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert all(m.isfile() and "/" not in m.name for m in tar.getmembers())
    assert "config.json" in names and "tokenizer.json" in names
    model, tokenizer = from_archive(data, "tiny")
    original = backbone.model.state_dict()
    restored = model.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key].cpu(), restored[key]), key
    assert tokenizer.backend_tokenizer.to_str() == backbone.tokenizer.backend_tokenizer.to_str()
    assert tokenizer("Ahmadinejad left London")["input_ids"] == backbone.tokenizer("Ahmadinejad left London")["input_ids"]


# -- (4) importing leaves the host process alone --------------------------------------
def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


IMPORT_ALL = (
    "import importlib, pkgutil, spacy_posattn_ner\n"
    "modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(spacy_posattn_ner.__path__, 'spacy_posattn_ner.')]\n"
)


def test_imports_where_os_has_no_register_at_fork(tiny_exit_pipeline):
    """Windows has no ``os.register_at_fork``. Deleting it before ``import os`` users
    load would break the standard library (``random``) and torch on Linux, which take
    their own paths on Windows; so the dependencies are imported first, then it is
    deleted, then every module of the package is imported and a saved pipeline runs."""
    code = (
        "import numpy, torch, thinc.api, spacy, spacy_transformers, transformers, tokenizers, srsly\n"
        "import os\n"
        "del os.register_at_fork\n"
        + IMPORT_ALL
        + f"nlp = spacy.load({str(tiny_exit_pipeline)!r})\n"
        "doc = nlp('Thousands of demonstrators marched through London .')\n"
        "print(len(modules), doc._.exit_layer)\n"
    )
    n_modules, exit_layer = _python(code).split()
    assert int(n_modules) >= 20 and exit_layer == "2"


def test_import_registers_one_fork_handler_and_leaves_the_parent_alone():
    """Importing the package registers exactly one ``os.register_at_fork`` handler
    (``spacy_posattn_ner.threads``; issue 27 replaced the check that ran in the
    backbone, too late: a forked worker hung at its first parallel op before it).
    The importing process keeps its thread count; a forked child, plain ``os.fork()``
    or a multiprocessing worker, starts with one thread (a child of a parent whose
    OpenMP pool is live cannot use more: tests/test_threads.py)."""
    code = (
        "import os, sys, json, multiprocessing\n"
        "callers = []\n"
        "real = os.register_at_fork\n"
        "def spy(**kw):\n"
        "    callers.append(sys._getframe(1).f_globals.get('__name__'))\n"
        "    return real(**kw)\n"
        "os.register_at_fork = spy\n"
        "import torch\n"
        "torch.set_num_threads(2)\n"
        + IMPORT_ALL
        + "after_import = torch.get_num_threads()\n"
        "def child():\n"
        "    r, w = os.pipe()\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.write(w, str(torch.get_num_threads()).encode())\n"
        "        os._exit(0)\n"
        "    os.close(w)\n"
        "    os.waitpid(pid, 0)\n"
        "    return int(os.read(r, 16))\n"
        "def worker(queue):\n"
        "    queue.put(torch.get_num_threads())\n"
        "ctx = multiprocessing.get_context('fork')\n"
        "queue = ctx.Queue()\n"
        "proc = ctx.Process(target=worker, args=(queue,))\n"
        "proc.start(); in_worker = queue.get(timeout=60); proc.join()\n"
        "print(json.dumps([callers, after_import, child(), in_worker, torch.get_num_threads()]))\n"
    )
    callers, after_import, plain, in_worker, parent_after = json.loads(_python(code))
    assert "torch.multiprocessing._atfork" in callers  # the spy was in place
    assert [c for c in callers if c and c.startswith("spacy_posattn_ner")] == ["spacy_posattn_ner.threads"]
    assert after_import == 2
    assert plain == 1 and in_worker == 1
    assert parent_after == 2


# -- (5) update honours drop ----------------------------------------------------------
@pytest.fixture(scope="module")
def trainable(tiny_backbone):
    nlp = make_nlp(tiny_backbone)  # the head's configured dropout is 0.0
    examples = toy_examples(nlp)
    spacy.util.fix_random_seed(0)
    nlp.initialize(lambda: examples)
    return nlp, examples


def _dropouts(nlp) -> List[torch.nn.Dropout]:
    return [m for m in get_head(nlp.get_pipe("posattn_ner").model).modules() if isinstance(m, torch.nn.Dropout)]


@pytest.mark.parametrize("drop", [0.0, 0.5])
def test_update_sets_every_dropout_rate_for_the_step(trainable, drop):
    nlp, examples = trainable
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((mod.p, mod.training))) for m in _dropouts(nlp)]
    try:
        nlp.update(examples, drop=drop, sgd=None)  # spaCy's own path: Language.update passes drop on
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) >= len(examples)  # the dropouts really ran in the step
    assert set(seen) == {(drop, True)}
    assert {m.p for m in _dropouts(nlp)} == {drop}  # attention's (read as .p, not called) too


def _one_step(nlp, examples, drop: float, seed: int) -> Tuple[float, numpy.ndarray]:
    """Loss and gradients of one update from the head's current state (no optimizer step)."""
    ner = nlp.get_pipe("posattn_ner")
    head = get_head(ner.model)
    for param in head.parameters():
        param.grad = None
    torch.manual_seed(seed)
    losses = ner.update(examples, drop=drop, sgd=None)
    grads = numpy.concatenate([p.grad.detach().cpu().numpy().ravel() for p in head.parameters() if p.grad is not None])
    for param in head.parameters():
        param.grad = None
    return losses["posattn_ner"], grads


def test_update_with_dropout_changes_the_step_and_without_is_deterministic(trainable):
    nlp, examples = trainable
    loss_0a, grad_0a = _one_step(nlp, examples, 0.0, seed=1)
    loss_0b, grad_0b = _one_step(nlp, examples, 0.0, seed=2)
    loss_5a, grad_5a = _one_step(nlp, examples, 0.5, seed=1)
    loss_5b, grad_5b = _one_step(nlp, examples, 0.5, seed=1)
    loss_5c, grad_5c = _one_step(nlp, examples, 0.5, seed=2)
    assert loss_0a == loss_0b and numpy.array_equal(grad_0a, grad_0b)  # no randomness without dropout
    assert loss_5a != loss_0a and not numpy.allclose(grad_5a, grad_0a)  # dropout acts
    assert loss_5a == loss_5b and numpy.array_equal(grad_5a, grad_5b)  # same seed, same step
    assert loss_5c != loss_5a and not numpy.allclose(grad_5c, grad_5a)  # it is random
    # inference after a dropout step is deterministic (the head is put in eval mode)
    assert ents_of(nlp(TEXTS[1])) == ents_of(nlp(TEXTS[1]))
    assert get_head(nlp.get_pipe("posattn_ner").model).training is False


# -- (5) no entity begins or ends on whitespace ---------------------------------------
def _check_no_whitespace_edges(docs) -> None:
    for doc in docs:
        for ent in doc.ents:
            assert not doc[ent.start].is_space and not doc[ent.end - 1].is_space, (doc.text, ent.start, ent.end)
            assert ent.text.strip(), (doc.text, ent.start, ent.end)


WHITESPACE_TEXTS = [
    "New  York",
    "\n\nLondon\n",
    "  London  ",
    "Thousands marched through  London  .",
    "The United   Nations met in New \n York .",
    "\tIran 's President Mahmoud  Ahmadinejad spoke on Tuesday\n",
    "British \n\n troops left Basra in  March .",
    "Mahmoud \t Ahmadinejad",
    "London\n\n\nBasra",
    "London\xa0\xa0\xa0\xa0\u2028\u2028",
    "Tuesday \n \x1d\xa0\x0c\t\x1e\u3000\u2028\x0b\u200a\u2029 \u2029\n",
    "\u2029\u2029\u2029\u2029Iran Tuesday\tMahmoud\x1d  Basra",
]


def test_entities_never_begin_or_end_on_whitespace(loaded):
    docs = list(loaded.pipe(WHITESPACE_TEXTS))
    assert sum(len(d.ents) for d in docs) >= 5  # entities were found, so the check bites
    _check_no_whitespace_edges(docs)
    _check_no_whitespace_edges([loaded(t) for t in WHITESPACE_TEXTS])


def test_decoding_keeps_whitespace_inside_entities_but_never_at_their_edges(loaded, monkeypatch):
    """Scores that want a whitespace token to begin, end or be an entity: decoding
    refuses B/L/U there, and still lets an entity run through whitespace."""
    ner = loaded.get_pipe("posattn_ner")
    words = ["\n\n", "London", "\n", "New", " ", "York", "\t", "Paris", "  "]
    spaces = [False] * len(words)
    index = {tag: i for i, tag in enumerate(ner.tags)}
    wanted = {  # per token: tag → log-prob (others -10)
        "London": {"U-geo": 0.0},
        "New": {"B-geo": 0.0},
        "York": {"L-geo": 0.0},
        "Paris": {"B-geo": 0.0, "U-geo": -0.5},
    }
    on_space = {"U-geo": 0.0, "B-geo": -1.0, "L-geo": -1.0, "I-geo": -3.0, "O": -5.0}
    scores = numpy.full((1, len(words), len(ner.tags)), -10.0, dtype="float32")
    for t, word in enumerate(words):
        for tag, value in (on_space if word.isspace() else wanted[word]).items():
            scores[0, t, index[tag]] = value
    log_probs = torch.log_softmax(torch.from_numpy(scores), dim=-1)

    def decode():
        doc = Doc(loaded.vocab, words=words, spaces=spaces)
        tag_scores = TagScores(log_probs, torch.tensor([len(words)]), torch.tensor([2]))
        ner.set_annotations([doc], ner.decode(tag_scores, [doc]))
        return doc

    doc = decode()
    assert [(e.text, e.label_) for e in doc.ents] == [("London", "geo"), ("New York", "geo"), ("Paris", "geo")]
    _check_no_whitespace_edges([doc])
    # the scores alone would put entities on whitespace: the boundary mask is what prevents it
    from spacy_posattn_ner.decoding import predictions

    monkeypatch.setattr(predictions, "boundary_mask", lambda docs, longest, tags: torch.zeros(len(docs), longest, len(tags)))
    monkeypatch.setattr(predictions, "boundary_mask_array", lambda docs, longest, tags: numpy.zeros((len(docs), longest, len(tags)), "float32"))
    unmasked = decode()
    assert any(unmasked[e.start].is_space or unmasked[e.end - 1].is_space for e in unmasked.ents)


# -- (5) fuzz ---------------------------------------------------------------------------
FUZZ_N = int(os.environ.get("POSATTN_FUZZ", "2000"))
SINGLE_EVERY = 4  # texts compared against a single nlp(text) call: every 4th (500 by default)

ALPHANUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:'\"!?()-"
SPACES = " \t\n\r\x0b\x0c\xa0\u2028\u2029\u3000\u1680\u2000\u200a\x1c\x1d\x1e\x1f\x85"
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f\x80\x9f"
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u00ad"
COMBINING = "\u0301\u0308\u0327\u0336\u20dd\u0489\u0e31\u05b7\u0651"
RTL = "שלום עולם مرحبا بالعالم القاهرة בגדאד"
EMOJI = "😀🙂🚀👍🏽👨‍👩‍👧‍👦🇬🇧🏳️‍🌈🤷‍♀️"
CJK = "北京是中国的首都東京한국어ไทย"
POOLS = [ALPHANUM, SPACES, CONTROL, INVISIBLE, COMBINING, RTL, EMOJI, CJK]
WORDS = ["London", "New", "York", "Iran", "Mahmoud", "Ahmadinejad", "Tuesday", "United", "Nations", "Basra", "March", "British", "troops", "the", "."]


def _random_char(rng: random.Random) -> str:
    code = rng.randint(0x20, 0x2FFFF)
    return "?" if 0xD800 <= code <= 0xDFFF else chr(code)  # lone surrogates are not text (spaCy cannot hash them)


def hostile_text(rng: random.Random) -> str:
    """Mostly short mixes of entity words, whitespace runs, control and invisible
    characters, RTL, emoji and combining marks; some empty, whitespace-only, one
    very long token, or a long text over several backbone windows."""
    kind = rng.random()
    if kind < 0.03:
        return ""
    if kind < 0.08:
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 20)))
    if kind < 0.10:
        return rng.choice(["a", "x", "\xe9", "🙂", "Ahmadinejad", "\u200b", "\u0301"]) * rng.randint(100, 1000)
    if kind < 0.11:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 200)))
    parts = []
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        if r < 0.4:
            parts.append(rng.choice(WORDS))
        elif r < 0.55:
            parts.append(rng.choice(SPACES) * rng.randint(1, 4))
        else:
            pool = rng.choice(POOLS)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
        if rng.random() < 0.6:
            parts.append(rng.choice([" ", "  ", "\n", "\t", " \n ", ""]))
    if rng.random() < 0.2:
        parts.append("".join(_random_char(rng) for _ in range(rng.randint(1, 30))))
    return "".join(parts)


@pytest.fixture(scope="module")
def fuzz_texts() -> List[str]:
    rng = random.Random(18)
    texts = [hostile_text(rng) for _ in range(FUZZ_N)]
    assert "" in texts and any(t and t.isspace() for t in texts) and any(len(t) >= 500 for t in texts)
    return texts


def _answer(doc) -> tuple:
    return ents_of(doc), doc._.exit_layer


def _check_doc(doc, labels) -> None:
    for ent in doc.ents:
        assert 0 <= ent.start < ent.end <= len(doc) and ent.label_ in labels, (doc.text, ent.start, ent.end, ent.label_)
    assert all(t.ent_iob_ in ("O", "B", "I") for t in doc)  # every token got a decision
    assert (doc._.exit_layer is None) == (len(doc) == 0)


@pytest.mark.parametrize("threshold", [0.9, 1.0])
def test_fuzz_pipe_equals_single_calls_and_entities_are_sane(loaded, fuzz_texts, threshold):
    """Hostile text never raises, gives valid entities with no whitespace edge, and
    ``nlp.pipe`` gives exactly what one ``nlp(text)`` per text gives. In fp32: int8
    dynamic quantization (what "auto" means on CPUs without native bf16) scales the
    activations per batch, so its answers can depend on the batch a doc is in."""
    ner = loaded.get_pipe("posattn_ner")
    ner.precision, ner.exit_threshold = "fp32", threshold
    torch.set_num_threads(1)  # a tiny model: one thread is much faster on a busy machine
    docs = list(loaded.pipe(fuzz_texts, batch_size=128))
    assert [d.text for d in docs] == fuzz_texts
    for doc in docs:
        _check_doc(doc, ner.labels)
    _check_no_whitespace_edges(docs)
    assert sum(len(d.ents) for d in docs) > len(docs)  # there were entities to check
    if threshold < 1.0:
        assert {d._.exit_layer for d in docs} == {None, 1, 2}  # both exits answered some docs
    single = [_answer(loaded(t)) for t in fuzz_texts[::SINGLE_EVERY]]
    assert [_answer(d) for d in docs[::SINGLE_EVERY]] == single


def test_fuzz_at_the_default_precision(loaded, fuzz_texts):
    """The same hostile texts at precision "auto" (int8 or bf16 on CPU) never raise and
    give valid entities with no whitespace edge."""
    ner = loaded.get_pipe("posattn_ner")
    ner.precision, ner.exit_threshold = "auto", 1.0
    torch.set_num_threads(1)
    docs = list(loaded.pipe(fuzz_texts, batch_size=128))
    for doc in docs:
        _check_doc(doc, ner.labels)
    _check_no_whitespace_edges(docs)
    assert sum(len(d.ents) for d in docs) > len(docs)


def test_no_entity_begins_or_ends_on_an_invisible_or_symbol_token():
    """#27 item 4: a zero-width space or an emoji is never (the edge of) an entity, whatever
    the scores say; punctuation and words are left to the model."""
    from spacy_posattn_ner.decoding import boundary_mask, make_tags

    tags = make_tags(["geo"])
    nlp = spacy.blank("en")
    words = ["\u200b", "\U0001F600", "$", "London", ".", "U.S."]
    mask = boundary_mask([Doc(nlp.vocab, words=words)], len(words), tags)[0]
    edge = [tags.index(t) for t in ("B-geo", "L-geo", "U-geo")]
    assert (mask[:3][:, edge] < -1e3).all()  # zero-width space, emoji, symbol
    assert (mask[3:] == 0).all()  # a word, punctuation, an abbreviation
    assert (mask[:, tags.index("I-geo")] == 0).all()  # an entity may still run through them
