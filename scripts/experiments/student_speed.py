"""Student vs spaCy's CNN ner: words/s (nlp.pipe, entity scores on, fp32) on one-sentence
and 8-sentence docs and single-text nlp(text) latency, systems alternating in one process.

    python -m scripts.experiments.student_speed corpus/test.spacy --student DIR|--student-config configs/student.cfg \\
        [--cnn training/cnn_ner/model-best] [--threads 2]

Without --cnn, a CNN is built from configs/cnn_ner.cfg and initialized (untrained: as fast
as a trained one). Without --student, an untrained student of --student-config with a
random vectors table of --vocab rows (the size a distilled one has) is timed.
"""
import statistics
import time
from pathlib import Path
from typing import List, Optional

import numpy
import spacy
import torch
import typer
from spacy.tokens import Doc
from spacy.training import Corpus, Example

import spacy_posattn_ner  # noqa: F401
from scripts.bench.data import fresh_docs

app = typer.Typer(add_completion=False)


def build_cnn(train: Path):
    from spacy.util import load_config

    config = load_config("configs/cnn_ner.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    egs = list(Corpus(train, limit=300)(nlp))
    nlp.initialize(lambda: egs)
    return nlp


def build_student(config_path: Path, train: Path, vocab: int):
    from spacy.util import load_config

    from spacy_posattn_ner.student.model import set_vectors
    from spacy_posattn_ner.student.vectors import StaticVectors

    block = load_config(config_path)["components"]["posattn_ner"]
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ner = nlp.add_pipe("posattn_ner", config={"model": block["model"], "precision": "fp32"})
    egs = list(Corpus(train, limit=300)(nlp))
    words = sorted({t.norm for eg in list(Corpus(train, limit=5000)(nlp)) for t in eg.reference})[:vocab]
    width = ner.model.get_ref("backbone").attrs["backbone"].width
    keys = numpy.asarray(sorted(words), dtype="uint64")
    rng = numpy.random.default_rng(0)
    set_vectors(ner.model, StaticVectors(width, keys, rng.normal(size=(len(keys), width)).astype("float16")))
    nlp.initialize(lambda: egs)
    return nlp


def eight(refs: List[Doc]) -> List[Doc]:
    out = []
    for i in range(0, len(refs), 8):
        part = refs[i : i + 8]
        words = [t.text for d in part for t in d]
        spaces = [bool(t.whitespace_) or (j == len(d) - 1) for d in part for j, t in enumerate(d)]
        out.append(Doc(part[0].vocab, words=words, spaces=spaces))
    return out


def wps(nlp, docs: List[Doc], batch_size: int) -> float:
    fresh = fresh_docs(docs)
    start = time.perf_counter()
    n = sum(len(d) for d in nlp.pipe(fresh, batch_size=batch_size))
    return n / (time.perf_counter() - start)


def latency(nlp, texts: List[str]) -> float:
    times = []
    for text in texts:
        start = time.perf_counter()
        nlp(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


@app.command()
def main(
    test: Path,
    train: Path = typer.Option(Path("/work/runs/base/corpus/train.spacy")),
    student: Optional[Path] = typer.Option(None),
    student_config: Path = typer.Option(Path("configs/student.cfg")),
    cnn: Optional[Path] = typer.Option(None),
    vocab: int = typer.Option(30000),
    threads: int = typer.Option(2),
    limit: int = typer.Option(2000),
    repeats: int = typer.Option(3),
    batch_size: int = typer.Option(256),
    profile_decode: bool = typer.Option(True),
):
    torch.set_num_threads(threads)
    systems = {
        "cnn": spacy.load(cnn) if cnn else build_cnn(train),
        "student": spacy.load(student) if student else build_student(student_config, train, vocab),
    }
    ner = systems["student"].get_pipe("posattn_ner")
    ner.precision = "fp32"
    ner.scores = True
    nlp0 = systems["cnn"]
    refs = [eg.reference for eg in Corpus(test, limit=limit)(nlp0)]
    docs8 = eight(refs)
    texts = [d.text for d in refs[:300]]
    for name, nlp in systems.items():  # warm up
        list(nlp.pipe(fresh_docs(refs[:256]), batch_size=batch_size))
        latency(nlp, texts[:20])
    results = {k: {"1": [], "8": [], "lat": []} for k in systems}
    for _ in range(repeats):
        for name, nlp in systems.items():
            results[name]["1"].append(wps(nlp, refs, batch_size))
            results[name]["8"].append(wps(nlp, docs8, max(1, batch_size // 8)))
            results[name]["lat"].append(latency(nlp, texts))
    import os

    print(f"threads {threads}, load average {os.getloadavg()}, {len(refs)} sentences, {sum(len(d) for d in refs)} words")
    for name, r in results.items():
        print(f"{name:8s} 1-sent {max(r['1']):9,.0f} w/s  8-sent {max(r['8']):9,.0f} w/s  nlp(text) {min(r['lat']):.2f} ms")
    c, s = results["cnn"], results["student"]
    print(f"ratio student/cnn: 1-sent {max(s['1'])/max(c['1']):.2f}x  8-sent {max(s['8'])/max(c['8']):.2f}x  "
          f"latency {min(s['lat'])/min(c['lat']):.2f}x")
    if profile_decode:
        nlp = systems["student"]
        for label, docs, bs in (("1-sent", refs, batch_size), ("8-sent", docs8, max(1, batch_size // 8))):
            fresh = [nlp.get_pipe("sentencizer")(d) for d in fresh_docs(docs)]
            t_model = t_decode = t_set = 0.0
            for i in range(0, len(fresh), bs):
                batch = fresh[i : i + bs]
                t0 = time.perf_counter()
                scores = ner.model.predict(batch)
                t1 = time.perf_counter()
                pred = ner.decode(scores, batch)
                t2 = time.perf_counter()
                ner.set_annotations(batch, pred)
                t3 = time.perf_counter()
                t_model += t1 - t0
                t_decode += t2 - t1
                t_set += t3 - t2
            total = t_model + t_decode + t_set
            print(f"student {label}: model {t_model/total:.0%}, decode (viterbi+marginals) {t_decode/total:.0%}, "
                  f"set_annotations {t_set/total:.0%} of {total:.2f} s")
        # one text
        doc = nlp.make_doc(texts[0])
        doc = nlp.get_pipe("sentencizer")(doc)
        t = {"model": [], "decode": [], "set": []}
        for _ in range(200):
            t0 = time.perf_counter(); s_ = ner.model.predict([doc]); t1 = time.perf_counter()
            p = ner.decode(s_, [doc]); t2 = time.perf_counter(); ner.set_annotations([doc], p); t3 = time.perf_counter()
            t["model"].append(t1 - t0); t["decode"].append(t2 - t1); t["set"].append(t3 - t2)
        print("student one text (ms, median): " + ", ".join(f"{k} {statistics.median(v)*1000:.2f}" for k, v in t.items()))


if __name__ == "__main__":
    app()
