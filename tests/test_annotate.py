"""`spacy-posattn-ner annotate`: same entities as nlp.pipe, every input format, an error row
for every bad row, resume after a kill, the Ray engine, the CLI entry points, the benchmark."""
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.util import import_file
from typer.testing import CliRunner

from spacy_posattn_ner.annotate import AnnotateError, AnnotateOptions, annotate_corpus, read_rows
from spacy_posattn_ner.annotate.annotator import Annotator
from spacy_posattn_ner.annotate.cli import app
from spacy_posattn_ner.annotate.records import Record

from .conftest import ROOT, TOY

runner = CliRunner()

# Custom components, imported with --code. scored_ner sets doc.ents to capitalised words
# and, like posattn_ner, a SpanGroup doc.spans["posattn_ner"] with attrs["scores"] aligned
# to it (words of 4 letters or less are left out, so their entities have no score);
# "BOOM" makes it fail and `delay` slows it down. batch_scorer scores the entities already
# set. Both scores depend on the size of the batch a doc came in, as dynamic int8
# quantization makes posattn_ner's output depend on it: only the same batches in every
# engine and every resumed run give the same output.
SCORED_CODE = '''
import re
import time

from spacy.language import Language
from spacy.tokens import SpanGroup
from spacy.util import minibatch


class BatchwiseComponent:
    def __call__(self, doc):
        return self.annotate([doc])[0]

    def pipe(self, docs, batch_size=128):
        for batch in minibatch(docs, batch_size):
            yield from self.annotate(batch)


class ScoredNER(BatchwiseComponent):
    def __init__(self, delay):
        self.delay = delay

    def annotate(self, batch):
        for doc in batch:
            if "BOOM" in doc.text:
                raise ValueError("BOOM in the text")
            time.sleep(self.delay)
            spans = [doc.char_span(m.start(), m.end(), label="CAP") for m in re.finditer(r"[A-Z][a-z]+", doc.text)]
            spans = [s for s in spans if s is not None]
            doc.ents = spans
            scored = [s for s in spans if len(s.text) > 4]
            scores = [len(s.text) / 10 + 1 / 3 + len(batch) / 1000 for s in scored]
            doc.spans["posattn_ner"] = SpanGroup(doc, spans=scored, attrs={"scores": scores})
        return batch


class BatchScorer(BatchwiseComponent):
    def annotate(self, batch):
        for doc in batch:
            ents = list(doc.ents)
            scores = [len(batch) / 1000 + i / 7 for i in range(len(ents))]
            doc.spans["posattn_ner"] = SpanGroup(doc, spans=ents, attrs={"scores": scores})
        return batch


if not Language.has_factory("scored_ner"):
    @Language.factory("scored_ner", assigns=["doc.ents"], default_config={"delay": 0.0})
    def make_scored_ner(nlp, name, delay):
        return ScoredNER(delay)

    @Language.factory("batch_scorer")
    def make_batch_scorer(nlp, name):
        return BatchScorer()
'''

TEXTS = [text for text, _ in TOY] + [
    "",
    "Nothing to see here .",
    " ".join(text for text, _ in TOY * 4),  # ~100 tokens: several backbone windows, annotated whole
    "Iran and British troops met the United Nations in London on Tuesday .",
]


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def expected_entities(doc, key: str = "posattn_ner"):
    """What nlp.pipe says of a doc's entities, with the score the pipeline gives each
    (``doc.spans[key]`` with ``attrs["scores"]``), where it gives one."""
    scores = {}
    if key in doc.spans and "scores" in doc.spans[key].attrs:
        group = doc.spans[key]
        scores = {(s.start, s.end, s.label_): float(p) for s, p in zip(group, group.attrs["scores"])}
    rows = []
    for e in doc.ents:
        row = {"start_char": e.start_char, "end_char": e.end_char, "label": e.label_, "text": e.text}
        if (e.start, e.end, e.label_) in scores:
            row["score"] = scores[(e.start, e.end, e.label_)]
        rows.append(row)
    return rows


def run(model, input_spec, output, **options):
    options.setdefault("progress", False)
    return annotate_corpus(str(model), str(input_spec), Path(output), AnnotateOptions(**options))


@pytest.fixture(scope="module")
def ruler_model(tmp_path_factory) -> Path:
    """A blank English pipeline with an entity ruler: fast and engine-agnostic."""
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "GPE", "pattern": "London"},
            {"label": "ORG", "pattern": [{"LOWER": "united"}, {"LOWER": "nations"}]},
            {"label": "PER", "pattern": [{"LOWER": "mahmoud"}, {"LOWER": "ahmadinejad"}]},
        ]
    )
    path = tmp_path_factory.mktemp("ruler") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(code file, model dir with delay 0, model dir with a 10 ms delay per doc)."""
    folder = tmp_path_factory.mktemp("scored")
    code = folder / "scored_ner.py"
    code.write_text(SCORED_CODE)
    import_file("scored_ner_code", code)
    models = []
    for delay in (0.0, 0.01):
        nlp = spacy.blank("en")
        nlp.add_pipe("scored_ner", config={"delay": delay})
        nlp.to_disk(folder / f"model-{delay}")
        models.append(folder / f"model-{delay}")
    return code, models[0], models[1]


# -- same entities as nlp.pipe ---------------------------------------------------------


@pytest.mark.parametrize("n_process", [1, 2])
def test_rows_equal_nlp_pipe_on_a_posattn_pipeline(tiny_exit_pipeline, tmp_path, n_process):
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(TEXTS)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run(tiny_exit_pipeline, src, tmp_path / "out.jsonl", n_process=n_process, shard_size=4)
    out = list(read_rows(tmp_path / "out.jsonl"))
    nlp = spacy.load(tiny_exit_pipeline)
    docs = list(nlp.pipe(TEXTS, batch_size=4))  # annotate's batches: shards of 4
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert [r["entities"] for r in out] == [expected_entities(d) for d in docs]
    assert [r.get("exit_layer") for r in out] == [d._.exit_layer for d in docs]
    assert {r.get("exit_layer") for r in out} - {None} == {2}  # no exit before the last layer at threshold 1.0
    assert sum(len(r["entities"]) for r in out) > 0
    long_row = out[len(TOY) + 2]
    assert len(nlp(TEXTS[len(TOY) + 2])) > 64 and long_row["entities"][-1]["end_char"] > len(TEXTS[len(TOY) + 2]) * 3 // 4
    assert (summary.documents, summary.errors, summary.shards_written) == (len(TEXTS), 0, 2)
    assert summary.words == sum(len(d) for d in docs) and summary.entities == sum(len(d.ents) for d in docs)
    assert not (tmp_path / "out.jsonl.parts").exists()  # merged, then the shards are gone


def test_entity_scores_come_from_the_span_group(scored, tmp_path):
    code, model, _ = scored
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "Alice met Bob in Paris and Amsterdam ."}])
    run(model, src, tmp_path / "out.jsonl", code=str(code))
    (row,) = read_rows(tmp_path / "out.jsonl")
    assert [(e["text"], e.get("score")) for e in row["entities"]] == [
        ("Alice", 5 / 10 + 1 / 3 + 1 / 1000),  # a batch of one
        ("Bob", None),  # in doc.ents, not in the scored group: no score key
        ("Paris", 5 / 10 + 1 / 3 + 1 / 1000),
        ("Amsterdam", 9 / 10 + 1 / 3 + 1 / 1000),
    ]
    assert "score" not in row["entities"][1] and "exit_layer" not in row
    run(model, src, tmp_path / "out.parquet", code=str(code))
    assert list(read_rows(tmp_path / "out.parquet")) == [{**row, "id": "1"}]  # Parquet ids are strings


# -- formats -----------------------------------------------------------------------------


def make_input(folder: Path, fmt: str, texts) -> Path:
    if fmt == "jsonl":
        return write_jsonl(folder / "in.jsonl", [{"id": i * 10, "text": t} for i, t in enumerate(texts)])
    if fmt == "txt":
        path = folder / "in.txt"
        path.write_text("".join(t + "\n" for t in texts), encoding="utf8")
        return path
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "in.parquet"
        pq.write_table(pa.table({"id": [i * 10 for i in range(len(texts))], "text": texts}), path, row_group_size=2)
        return path
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in texts]
    path = folder / "in.spacy"
    DocBin(docs=docs).to_disk(path)
    return path


@pytest.mark.parametrize(
    "in_fmt,out_name",
    [("jsonl", "out.parquet"), ("txt", "out.jsonl"), ("parquet", "out.jsonl"), ("spacy", "out.spacy"), ("jsonl", "shards")],
)
def test_formats_round_trip(ruler_model, tmp_path, in_fmt, out_name):
    pytest.importorskip("pyarrow")
    texts = [t for t in TEXTS if t]  # a .txt line per document: no empty one in the middle here
    src = make_input(tmp_path, in_fmt, texts)
    out = tmp_path / out_name
    run(ruler_model, src, out, shard_size=3, output_format="parquet" if out_name == "shards" else None)
    rows = list(read_rows(out))
    nlp = spacy.load(ruler_model)
    assert [r["entities"] for r in rows] == [expected_entities(d) for d in nlp.pipe(texts)]
    ids = {"jsonl": list(range(0, 10 * len(texts), 10)), "txt": list(range(1, len(texts) + 1))}
    ids["parquet"], ids["spacy"] = ids["jsonl"], ids["txt"]
    want = ids[in_fmt]
    if out.suffix == ".parquet" or out_name == "shards":
        want = [str(i) for i in want]
    assert [r["id"] for r in rows] == want
    if out_name == "shards":
        assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + [f"part-00000-{i:06d}.parquet" for i in range(3)]


def test_docbin_input_keeps_its_tokens_and_not_its_entities(ruler_model, tmp_path):
    vocab = spacy.blank("en").vocab
    doc = Doc(vocab, words=["New-York", "and", "London", "."], spaces=[True, True, False, False], ents=["B-GPE", "O", "O", "O"])
    DocBin(docs=[doc]).to_disk(tmp_path / "gold.spacy")
    run(ruler_model, tmp_path / "gold.spacy", tmp_path / "out.spacy")
    (out,) = DocBin().from_disk(tmp_path / "out.spacy").get_docs(vocab)
    assert [t.text for t in out] == ["New-York", "and", "London", "."]  # not re-tokenized
    assert [(e.text, e.label_) for e in out.ents] == [("London", "GPE")]  # the gold New-York is not carried over
    assert out.user_data["id"] == 1


def test_a_directory_of_mixed_files_in_sorted_order(ruler_model, tmp_path):
    folder = tmp_path / "corpus"
    (folder / "b").mkdir(parents=True)
    write_jsonl(folder / "a.jsonl", [{"text": "London ."}, {"text": "Paris ."}])
    (folder / "b" / "c.txt").write_text("United Nations\n")
    (folder / "notes.md").write_text("not an input")
    (folder / ".hidden.jsonl").write_text("{}\n")
    summary = run(ruler_model, folder, tmp_path / "out.jsonl")
    rows = list(read_rows(tmp_path / "out.jsonl"))
    assert [r["id"] for r in rows] == ["a.jsonl:1", "a.jsonl:2", "b/c.txt:1"]  # several files: ids name the file
    assert [[e["text"] for e in r["entities"]] for r in rows] == [["London"], [], ["United Nations"]]
    assert summary.documents == 3
    if _has_pyarrow():  # the same folder as a URL, read through pyarrow.fs
        run(ruler_model, f"file://{folder}/", tmp_path / "url.jsonl")
        assert list(read_rows(tmp_path / "url.jsonl")) == rows
        run(ruler_model, f"file://{folder}/*.jsonl", tmp_path / "url-glob.jsonl")
        assert list(read_rows(tmp_path / "url-glob.jsonl")) == [{**r, "id": i} for i, r in enumerate(rows[:2], 1)]  # one file: line numbers
    inside = folder / "annotated"  # OUTPUT inside INPUT: not read back as input on a re-run
    run(ruler_model, folder, inside, shard_size=1)
    again = run(ruler_model, folder, inside, shard_size=1)
    assert (again.documents, again.skipped_documents) == (0, 3) and list(read_rows(inside)) == rows


# -- bad rows ----------------------------------------------------------------------------


def bad_jsonl(path: Path) -> Path:
    lines = [
        b'{"id": "a", "text": "London ."}',
        b'{"id": "b", "body": "no text key"}',
        b'{"id": "c", "text": 42}',
        b'{"text": null}',
        b'{"id": "e", "text": "caf\xe9 in London"}',  # latin-1, not UTF-8
        b'{"id": "f", "text": "London" ',
        b"[1, 2]",
        b"",
        b'{"id": "i", "text": "' + b"London " * 20 + b'"}',
        b'{"id": "j", "text": "BOOM in London"}',
        b'{"id": "k", "text": "Paris and London ."}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_every_bad_row_gets_an_error_row_naming_file_and_line(scored, tmp_path):
    code, model, _ = scored
    src = bad_jsonl(tmp_path / "in.jsonl")
    summary = run(model, src, tmp_path / "out.jsonl", code=str(code), max_chars=100, batch_size=4)
    rows = list(read_rows(tmp_path / "out.jsonl"))
    assert len(rows) == 11 and summary.documents == 11 and summary.errors == 9
    assert [r["id"] for r in rows] == ["a", "b", "c", 4, 5, 6, 7, 8, "i", "j", "k"]  # id unreadable: the line number
    where = f"{src} line"
    errors = [r.get("error") for r in rows]
    assert errors == [
        None,
        f"{where} 2: no 'text' key",
        f"{where} 3: 'text' is a number, not a string",
        f"{where} 4: 'text' is null, not a string",
        f"{where} 5: not valid UTF-8 (byte 0xe9 at column 25)",
        f"{where} 6: invalid JSON (Expecting ',' delimiter at column 30)",
        f"{where} 7: an array, not a JSON object",
        f"{where} 8: blank line, expected a JSON object",
        f"{where} 9: text has 140 characters, more than --max-chars (100)",
        f"{where} 10: the pipeline failed on this document (ValueError: BOOM in the text)",
        None,
    ]
    assert [e["text"] for e in rows[0]["entities"]] == ["London"]
    assert [e["text"] for e in rows[10]["entities"]] == ["Paris", "London"]  # after a failed batch, still annotated
    assert all(r["entities"] == [] for r in rows[1:10])


def test_nlp_max_length_bounds_the_text_too(ruler_model):
    nlp = spacy.load(ruler_model)
    nlp.max_length = 10
    rows = Annotator(nlp, max_chars=50)([Record(0, 0, "x.txt line 1", 1, text="London is big")])
    assert rows[0].row["error"] == "x.txt line 1: text has 13 characters, more than nlp.max_length (10)"


def test_parquet_bad_rows_and_a_missing_column(ruler_model, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["London", None, "Paris"], "n": [1, 2, 3]}), tmp_path / "in.parquet")
    run(ruler_model, tmp_path / "in.parquet", tmp_path / "out.jsonl")
    rows = list(read_rows(tmp_path / "out.jsonl"))
    assert [r.get("error") for r in rows] == [None, f"{tmp_path / 'in.parquet'} row 2: 'text' is null, not a string", None]
    pq.write_table(pa.table({"n": [5, 6]}), tmp_path / "numbers.parquet")
    with pytest.raises(AnnotateError, match=r"numbers.parquet: no 'text' column \(it has n\); choose one with --text-key"):
        run(ruler_model, tmp_path / "numbers.parquet", tmp_path / "out2.jsonl")
    run(ruler_model, tmp_path / "numbers.parquet", tmp_path / "out3.jsonl", text_key="n")
    assert [r["error"] for r in read_rows(tmp_path / "out3.jsonl")] == [
        f"{tmp_path / 'numbers.parquet'} row {i}: 'n' is a number, not a string" for i in (1, 2)
    ]


def test_strict_stops_at_the_first_bad_row(scored, tmp_path):
    code, model, _ = scored
    src = bad_jsonl(tmp_path / "in.jsonl")
    result = runner.invoke(app, ["annotate", str(model), str(src), str(tmp_path / "out.jsonl"), "--strict", "--code", str(code)])
    assert result.exit_code == 1
    assert f"--strict: {src} line 2: no 'text' key" in result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_arguments_are_named(ruler_model, tmp_path):
    with pytest.raises(AnnotateError, match="INPUT .*missing.jsonl: no such file or directory"):
        run(ruler_model, tmp_path / "missing.jsonl", tmp_path / "o.jsonl")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(AnnotateError, match=r"unknown format '.csv'"):
        run(ruler_model, tmp_path / "data.csv", tmp_path / "o.jsonl")
    write_jsonl(tmp_path / "in.jsonl", [{"text": "x"}])
    blank = tmp_path / "blank"
    spacy.blank("en").to_disk(blank)
    result = runner.invoke(app, ["annotate", str(blank), str(tmp_path / "in.jsonl"), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0 and "no component declares that it sets doc.ents (pipeline: empty)" in result.output


# -- resumable ---------------------------------------------------------------------------


def test_killed_and_resumed_run_writes_exactly_the_uninterrupted_output(scored, tmp_path):
    code, _, slow_model = scored
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"Doc {i} : Alice met Bob in Paris ."} for i in range(300)])
    args = ["annotate", str(slow_model), str(src), str(tmp_path / "out.jsonl"), "--shard-size", "30", "--code", str(code)]
    proc = subprocess.Popen([sys.executable, "-m", "spacy_posattn_ner", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "out.jsonl.parts"
    deadline = time.monotonic() + 300
    while not list(parts.glob("part-*.jsonl")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    finished = sorted(p.name for p in parts.glob("part-*.jsonl"))
    assert 1 <= len(finished) < 10 and not (tmp_path / "out.jsonl").exists()  # killed midway
    (parts / ".tmp-part-00000-000009.jsonl").write_text('{"half": ')  # as a kill mid-write leaves it

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"Skipped {len(finished) * 30:,} documents in {len(finished)} shards" in result.output

    run(slow_model, src, tmp_path / "reference.jsonl", shard_size=30, code=str(code))
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 300 and not parts.exists()


def test_a_changed_input_or_option_is_reported_not_mixed(ruler_model, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": f"London {i}"} for i in range(5)])
    out = tmp_path / "out"
    run(ruler_model, src, out, shard_size=2)
    again = run(ruler_model, src, out, shard_size=2)  # finished: nothing to redo
    assert (again.documents, again.skipped_documents, again.skipped_shards) == (0, 5, 3)
    with pytest.raises(AnnotateError, match=r"option shard_size: was 2, is 3"):
        run(ruler_model, src, out, shard_size=3)
    with open(src, "a") as f:
        f.write(json.dumps({"text": "Paris"}) + "\n")
    with pytest.raises(AnnotateError, match=r"other inputs, model or options:\n  - input .*in.jsonl: size was \d+, is \d+"):
        run(ruler_model, src, out, shard_size=2)
    redone = run(ruler_model, src, out, shard_size=2, overwrite=True)
    assert redone.documents == 6 and len(list(read_rows(out))) == 6
    run(ruler_model, src, tmp_path / "single.jsonl")
    with pytest.raises(AnnotateError, match="already exists .* pass --overwrite"):
        run(ruler_model, src, tmp_path / "single.jsonl")


# -- Ray ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own DataContext fields
def test_ray_engine_writes_what_the_local_engine_writes(tiny_exit_pipeline, scored, tmp_path):
    pytest.importorskip("ray.data")
    code = scored[0]
    nlp = spacy.load(tiny_exit_pipeline)  # posattn_ner, then batch-dependent scores for its entities
    nlp.add_pipe("batch_scorer")
    model = tmp_path / "model"
    nlp.to_disk(model)
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(TEXTS * 4)])
    with open(folder / "a.jsonl", "ab") as f:
        f.write(b'{"id": "bad", "text": 1}\n\xff\n')
    (folder / "b.txt").write_text("\n".join(TEXTS[:4]) + "\n", encoding="utf8")
    make_input(folder, "parquet", TEXTS[2:6])
    options = {"shard_size": 7, "batch_size": 3, "limit": 40, "code": str(code)}
    local = tmp_path / "local"
    run(model, folder, local, **options)
    shards = sorted(p.name for p in local.glob("part-*"))
    assert len(shards) == 7  # a.jsonl: 34 records, b.txt: 4, in.parquet: 2 of its 4 (--limit 40); 7 a shard

    # resume a copy that lost all shards but the first: Ray redoes the others and skips that one
    ray_out = tmp_path / "ray"
    shutil.copytree(local, ray_out)
    for name in shards[1:]:
        (ray_out / name).unlink()
    summary = run(model, folder, ray_out, engine="ray", workers=2, cpus_per_worker=1, **options)
    assert (summary.skipped_documents, summary.documents, summary.errors) == (7, 40 - 7, 2)
    for name in shards:
        assert (ray_out / name).read_bytes() == (local / name).read_bytes(), name
    rows = list(read_rows(ray_out))
    assert rows[32]["error"] == f"{folder / 'a.jsonl'} line 33: 'text' is a number, not a string"
    first_scores = {r["entities"][0]["score"] for r in rows if r["entities"]}
    assert {0.001, 0.003} <= first_scores <= {0.001, 0.002, 0.003}  # batches of 3, 3, 1 in each shard of 7
    assert all("exit_layer" in r for r in rows if r["entities"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_dataset_hands_out_one_pipeline_batch_per_block(tmp_path):
    """Ray merges a read task's output into a few blocks, and an actor takes a block
    whole: without the cut into one batch per block, one of two actors got most of the work."""
    pytest.importorskip("ray.data")
    import ray

    from spacy_posattn_ner.annotate.inputs import resolve_inputs
    from spacy_posattn_ner.annotate.ray_engine import batches_dataset, group_from_json
    from spacy_posattn_ner.annotate.records import ReadOptions

    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"London {i}"} for i in range(23)])
    files, _ = resolve_inputs(str(src))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        ds = batches_dataset(files, ReadOptions(), shard_size=10, batch_size=4).materialize()
        assert ds.num_blocks() == ds.count() == 7  # shards of 10: batches of 4, 4, 2, 4, 4, 2, 3
        groups = [group_from_json(row["group"]) for row in ds.iter_rows()]
    finally:
        ray.shutdown()
    assert [[r.id for r in g] for g in groups] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12, 13], [14, 15, 16, 17], [18, 19], [20, 21, 22]
    ]


def test_ray_engine_refuses_docbin_output(ruler_model, tmp_path):
    pytest.importorskip("ray.data")
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "London"}])
    with pytest.raises(AnnotateError, match="--engine ray writes .jsonl or .parquet"):
        run(ruler_model, src, tmp_path / "out.spacy", engine="ray")


# -- entry points --------------------------------------------------------------------------


def console_script_command():
    """The installed console script; where this checkout is not pip-installed (a worktree
    on PYTHONPATH), what pip's wrapper for setup.py's entry point runs."""
    entry = re.search(r'"spacy-posattn-ner = ([\w.]+):(\w+)"', (ROOT / "setup.py").read_text())
    assert entry, "setup.py declares no spacy-posattn-ner console script"
    script = Path(sys.executable).parent / "spacy-posattn-ner"
    if script.exists():
        return [str(script)]
    module, func = entry.groups()
    return [sys.executable, "-c", f"import sys; sys.argv[0] = 'spacy-posattn-ner'; from {module} import {func}; sys.exit({func}())"]


def test_console_script_and_python_m(ruler_model, tmp_path):
    result = subprocess.run([sys.executable, "-m", "spacy_posattn_ner", "annotate", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: spacy-posattn-ner annotate [OPTIONS] {MODEL} {INPUT} {OUTPUT}" in result.stdout
    assert "--engine" in result.stdout and "--n-process" in result.stdout and "--strict" in result.stdout
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "The United Nations met in London ."}])
    out = tmp_path / "out.jsonl"
    summary_json = tmp_path / "summary.json"
    result = subprocess.run(
        [*console_script_command(), "annotate", str(ruler_model), str(src), str(out), "--summary-json", str(summary_json)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Annotated 1 documents, 7 words, 2 entities in [\d.]+ s \([\d,]+ words/s\); 0 rows with errors", result.stdout)
    assert [e["text"] for e in json.loads(out.read_text())["entities"]] == ["United Nations", "London"]
    summary = json.loads(summary_json.read_text())
    assert (summary["documents"], summary["words"], summary["entities"], summary["errors"]) == (1, 7, 2, 0)


def _has_pyarrow() -> bool:
    try:
        import pyarrow.fs  # noqa: F401
    except ImportError:
        return False
    return True
