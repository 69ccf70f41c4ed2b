#!/usr/bin/env python
"""Make sure the GMB zip is in place and intact before anything reads it.

There is no download here (the corpus is never committed, and the machines this
project runs on may be offline): if the asset is missing it is copied from
``--source`` when that exists, otherwise the error says where to put it.
"""
import hashlib
import shutil
from pathlib import Path

import typer
from wasabi import msg

app = typer.Typer(add_completion=False)


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as file_:
        for chunk in iter(lambda: file_.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@app.command()
def main(
    asset: Path = typer.Argument(..., help="Where the workflow reads the zip, e.g. assets/ner_dataset.csv.zip"),
    md5: str = typer.Argument(..., help="Expected md5 of the zip"),
    source: Path = typer.Option(None, "--source", help="A local copy to take it from if it is missing"),
) -> None:
    if not asset.exists():
        if source is not None and source.exists():
            asset.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, asset)
            msg.info(f"Copied {source} -> {asset}")
        else:
            msg.fail(
                f"GMB corpus not found at {asset}",
                "Copy ner_dataset.csv.zip there (e.g. from ../shared/assets/gmb/), or run "
                "`python -m spacy project assets` where the public URL in project.yml is reachable.",
                exits=1,
            )
    found = md5sum(asset)
    if found != md5:
        msg.fail(f"{asset}: md5 {found} does not match the expected {md5}", exits=1)
    msg.good(f"{asset}: md5 {found} OK")


if __name__ == "__main__":
    app()
