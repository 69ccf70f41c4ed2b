#!/usr/bin/env python
"""Convert the Kaggle GMB NER corpus into spaCy DocBin files (train/dev/test).

The canonical split (first 80% train, next 10% dev, rest test, in file order)
is computed over ALL sentences before any limit is applied, so a run with
``--limit``/``--eval-limit`` uses a prefix of the very same splits as a full
run and never moves a sentence from one split to another. ``--n-sents N``
then groups consecutive sentences of one split into Docs of N sentences
(like ``spacy convert -n``); limits count sentences, not Docs.

Nothing may be lost on the way: the command reports the file's own line and
row counts next to the sentences and tokens it read, and for every split the
sentences, tokens and entities it meant to write (in) against those in the
file it wrote, read back and compared sentence by sentence (out).

Usage:
    python -m scripts.convert_gmb INPUT OUTPUT_DIR [--limit N] [--eval-limit M] [--n-sents K] [--lang en]
"""

import time
from pathlib import Path
from typing import List, Tuple

import spacy
import typer
from spacy.tokens import DocBin
from wasabi import msg

from scripts.gmb import (
    ENCODING,
    CorpusCounts,
    GmbSentence,
    canonical_split,
    count_sentences,
    read_gmb,
    sentences_to_docs,
    verify_docs,
)

app = typer.Typer(add_completion=False)


def _in_out(counts_in: CorpusCounts, counts_out: CorpusCounts) -> str:
    return ", ".join(
        f"{field} in/out {n_in:,}/{n_out:,}"
        for field, n_in, n_out in zip(CorpusCounts._fields, counts_in, counts_out)
    )


@app.command()
def main(
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="ner_dataset.csv.zip (one .csv inside) or ner_dataset.csv"),
    output_dir: Path = typer.Argument(..., file_okay=False, help="Directory for train.spacy, dev.spacy and test.spacy"),
    limit: int = typer.Option(0, "--limit", min=0, help="Max training SENTENCES (not docs), the first in file order, taken before --n-sents groups them (0 = all)"),
    eval_limit: int = typer.Option(0, "--eval-limit", min=0, help="Max dev and max test SENTENCES (not docs) each, the first in file order (0 = all)"),
    n_sents: int = typer.Option(1, "--n-sents", "-n", min=1, help="Sentences per doc: consecutive sentences of one split, sentence starts set; a split's last doc may hold fewer (1 = one doc per sentence)"),
    lang: str = typer.Option("en", "--lang", help="Language of the blank pipeline whose vocab the Docs use"),
) -> None:  # fmt: skip
    """Read and validate the GMB CSV, split it canonically and write DocBins."""
    start_time = time.perf_counter()
    reader = read_gmb(input_path)
    sentences = list(reader)
    read = reader.counts
    total_in = count_sentences(sentences)
    msg.info(
        f"Read {total_in.sentences:,} sentences, {total_in.tokens:,} tokens, {total_in.entities:,} entities "
        f"from {read.lines:,} lines (header + {read.rows:,} rows) of {input_path}"
    )
    if read.encoding != ENCODING:
        msg.warn(f"{input_path} is not {ENCODING} like the published corpus: its bytes are a UTF-8 copy, "
                 f"decoded as {read.encoding} (to the same words)")  # fmt: skip
    if not read.complete or (read.sentences, read.tokens) != total_in[:2]:
        msg.fail(f"The reader's counts {read} do not match the sentences it gave", exits=1)
    if not sentences:
        msg.fail("No sentences in the input", exits=1)

    n_train, n_dev, n_test = canonical_split(total_in.sentences)
    msg.info(f"Canonical split: train {n_train:,} / dev {n_dev:,} / test {n_test:,} sentences")
    splits: List[Tuple[str, List[GmbSentence], int]] = [
        ("train", sentences[:n_train], limit),
        ("dev", sentences[n_train : n_train + n_dev], eval_limit),
        ("test", sentences[n_train + n_dev :], eval_limit),
    ]
    if sum(len(split) for _, split, _ in splits) != total_in.sentences:
        msg.fail("The split does not cover every sentence exactly once", exits=1)

    nlp = spacy.blank(lang)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = CorpusCounts(0, 0, 0)
    n_docs_total = 0
    for name, split, max_sents in splits:
        selected = split[:max_sents] if max_sents else split
        out_path = output_dir / f"{name}.spacy"
        DocBin(docs=sentences_to_docs(nlp.vocab, selected, n_sents)).to_disk(out_path)
        # Count from the file as written, not from what we meant to write.
        docs = list(DocBin().from_disk(out_path).get_docs(nlp.vocab))
        counts_in = count_sentences(selected)
        try:
            counts_out = verify_docs(docs, selected)
        except ValueError as err:
            msg.fail(f"{name}: {out_path} does not hold what was read: {err}", exits=1)
        if counts_out != counts_in:
            msg.fail(f"{name}: {_in_out(counts_in, counts_out)} in {out_path}", exits=1)
        limited = f" (limited from {len(split):,} sentences)" if len(selected) < len(split) else ""
        msg.good(
            f"{name}: {_in_out(counts_in, counts_out)}{limited}; "
            f"{len(docs):,} docs of up to {n_sents} sentences -> {out_path}"
        )
        written = CorpusCounts(*(a + b for a, b in zip(written, counts_out)))
        n_docs_total += len(docs)

    if not limit and not eval_limit and written != total_in:
        msg.fail(f"In total: {_in_out(total_in, written)}", exits=1)
    msg.good(
        f"Wrote {written.sentences:,} sentences, {written.tokens:,} tokens in total, "
        f"{written.entities:,} entities in {n_docs_total:,} docs "
        f"(read {total_in.sentences:,} / {total_in.tokens:,} / {total_in.entities:,}) "
        f"in {time.perf_counter() - start_time:.1f}s"
    )


if __name__ == "__main__":
    app()
