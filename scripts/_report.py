"""Shared by the benchmark scripts: the machine a figure was measured on, and the
marked section of BENCHMARKS.md each script owns (the text between its own
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers), replaced in place.
"""
import os
import platform
import re
from pathlib import Path
from typing import Any, Dict, List

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


def machine_info() -> Dict[str, Any]:
    """Platform, CPUs, torch threads, library versions and the load average now."""
    import spacy
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "spacy": spacy.__version__,
        "torch": torch.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def report_footer(report: Dict[str, Any], machine: Dict[str, Any], threads: int, extra: str = "") -> List[str]:
    """The closing lines every section has: the exact command, the machine, the date."""
    load = machine.get("load_average") or machine.get("load_average_at_start")
    return [
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs ({machine['cpus_usable']} usable), "
        f"torch threads {threads}{extra}"
        + (f", load average at start {load[0]:.2f}" if load else "")
        + f". spaCy {machine['spacy']}, torch {machine['torch']}"
        + (f", spacy-transformers {machine['spacy_transformers']}" if machine.get("spacy_transformers") else "")
        + ".",
        "",
        f"Date: {report['date']}",
    ]
