#!/usr/bin/env python
"""Convert the Kaggle GMB NER corpus into spaCy DocBin files (train/dev/test).

The canonical split (first 80% train, next 10% dev, rest test, in file order)
is computed over ALL sentences before any limit is applied, so a run with
``--limit``/``--eval-limit`` uses a prefix of the very same splits as a full
run and never moves a sentence from one split to another.

Usage:
    python scripts/convert_gmb.py INPUT OUTPUT_DIR [--limit N] [--eval-limit M] [--lang en]
"""

import time
from pathlib import Path
from typing import List, Tuple

import spacy
import typer
from spacy.tokens import DocBin
from wasabi import msg

from spacy_posattn_ner.gmb import GmbSentence, canonical_split, read_gmb, sentences_to_docs

app = typer.Typer(add_completion=False)


def _n_tokens(sentences: List[GmbSentence]) -> int:
    return sum(len(sent.words) for sent in sentences)


@app.command()
def main(
    input_path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="ner_dataset.csv.zip (one .csv inside) or ner_dataset.csv"
    ),
    output_dir: Path = typer.Argument(
        ..., file_okay=False, help="Directory for train.spacy, dev.spacy and test.spacy"
    ),
    limit: int = typer.Option(
        0, "--limit", min=0, help="Max training sentences, the first in file order (0 = all)"
    ),
    eval_limit: int = typer.Option(
        0, "--eval-limit", min=0, help="Max dev and max test sentences each, the first in file order (0 = all)"
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the blank pipeline whose vocab the Docs use"),
) -> None:
    """Read and validate the GMB CSV, split it canonically and write DocBins."""
    start_time = time.perf_counter()
    sentences = list(read_gmb(input_path))
    n_sents, n_tokens = len(sentences), _n_tokens(sentences)
    msg.info(f"Read {n_sents:,} sentences, {n_tokens:,} tokens from {input_path}")
    if not sentences:
        msg.fail("No sentences in the input", exits=1)

    n_train, n_dev, n_test = canonical_split(n_sents)
    msg.info(f"Canonical split: train {n_train:,} / dev {n_dev:,} / test {n_test:,} sentences")
    splits: List[Tuple[str, List[GmbSentence], int]] = [
        ("train", sentences[:n_train], limit),
        ("dev", sentences[n_train : n_train + n_dev], eval_limit),
        ("test", sentences[n_train + n_dev :], eval_limit),
    ]
    if sum(len(split) for _, split, _ in splits) != n_sents:
        msg.fail("The split does not cover every sentence exactly once", exits=1)

    nlp = spacy.blank(lang)
    output_dir.mkdir(parents=True, exist_ok=True)
    total_sents = total_tokens = 0
    for name, split, max_sents in splits:
        selected = split[:max_sents] if max_sents else split
        out_path = output_dir / f"{name}.spacy"
        DocBin(docs=sentences_to_docs(nlp.vocab, selected)).to_disk(out_path)
        # Count from the file as written, not from what we meant to write.
        docs = list(DocBin().from_disk(out_path).get_docs(nlp.vocab))
        w_sents, w_tokens = len(docs), sum(len(doc) for doc in docs)
        w_ents = sum(len(doc.ents) for doc in docs)
        if (w_sents, w_tokens) != (len(selected), _n_tokens(selected)):
            msg.fail(
                f"{name}: wrote {w_sents:,} sentences / {w_tokens:,} tokens, expected "
                f"{len(selected):,} / {_n_tokens(selected):,}",
                exits=1,
            )
        limited = f" (limited from {len(split):,})" if len(selected) < len(split) else ""
        msg.good(
            f"{name}: {w_sents:,} sentences{limited}, {w_tokens:,} tokens, "
            f"{w_ents:,} entities -> {out_path}"
        )
        total_sents += w_sents
        total_tokens += w_tokens

    if not limit and not eval_limit and (total_sents, total_tokens) != (n_sents, n_tokens):
        msg.fail(
            f"Wrote {total_sents:,} sentences / {total_tokens:,} tokens in total, "
            f"but read {n_sents:,} / {n_tokens:,}",
            exits=1,
        )
    msg.good(
        f"Wrote {total_sents:,} sentences, {total_tokens:,} tokens in total "
        f"(read {n_sents:,} / {n_tokens:,}) in {time.perf_counter() - start_time:.1f}s"
    )


if __name__ == "__main__":
    app()
