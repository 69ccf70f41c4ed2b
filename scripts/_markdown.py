"""Replace one marked section of a markdown file (BENCHMARKS.md), leaving the rest alone.

Shared by the benchmark scripts: each owns the text between its own
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers.
"""
import re
from pathlib import Path

NEW_FILE_HEADER = "# Benchmarks\n\n"


def replace_section(path: Path, section: str, mark_start: str, mark_end: str) -> None:
    """Write ``section`` (which starts with ``mark_start`` and ends with ``mark_end``)
    into ``path``: in place of the existing marked section, appended if the file has
    none, or as a new file. Raises ValueError if the markers are duplicated or out of order."""
    path = Path(path)
    if path.exists():
        text = path.read_text(encoding="utf8")
        n_start, n_end = text.count(mark_start), text.count(mark_end)
        if (n_start, n_end) == (1, 1) and text.index(mark_start) < text.index(mark_end):
            pattern = re.compile(re.escape(mark_start) + r".*?" + re.escape(mark_end), re.S)
            text = pattern.sub(lambda _: section, text)
        elif n_start == n_end == 0:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        else:
            raise ValueError(
                f"{path}: expected one {mark_start} followed by one {mark_end}, found {n_start} and {n_end}"
            )
    else:
        text = NEW_FILE_HEADER + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf8")
