"""Counting what a run did: a tqdm bar with documents and words/s while it runs, and
the summary at the end (also what the Python API returns)."""
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from tqdm import tqdm

from .annotator import Annotated
from .messages import Messages


@dataclass
class Summary:
    """This run's work; documents in shards that an earlier run finished are counted
    apart (skipped_documents) and not in words/s."""

    output: str
    documents: int = 0
    words: int = 0
    entities: int = 0
    errors: int = 0
    seconds: float = 0.0
    shards_written: int = 0
    skipped_documents: int = 0
    skipped_shards: int = 0
    engine: str = "local"

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "words_per_second": self.words_per_second}

    def line(self) -> str:
        return (
            f"{self.documents:,} documents, {self.words:,} words, {self.entities:,} entities in "
            f"{self.seconds:.1f} s ({self.words_per_second:,.0f} words/s); {self.errors:,} rows with errors"
        )


class Progress:
    """Updates the summary as rows arrive and shows them on a tqdm bar (on a terminal)."""

    def __init__(self, summary: Summary, printer: Messages, show: bool = True) -> None:
        self.summary = summary
        self.printer = printer
        self.show = show
        self.start = time.perf_counter()
        self.bar: Optional[tqdm] = tqdm(unit=" docs", disable=None if show else True, dynamic_ncols=True, leave=False)
        self._shown = self.start

    def row(self, item: Annotated) -> None:
        s = self.summary
        s.documents += 1
        s.words += item.n_words
        s.entities += len(item.row["entities"])
        s.errors += "error" in item.row
        self.bar.update(1)
        now = time.perf_counter()
        if now - self._shown > 0.5:
            self._shown = now
            self.bar.set_postfix_str(f"{s.words / (now - self.start):,.0f} words/s", refresh=False)

    def skipped(self) -> None:
        self.summary.skipped_documents += 1

    def shard(self, name: str, rows: int) -> None:
        self.summary.shards_written += 1
        if self.show and self.bar.disable:  # no bar (a log file, CI): one line per shard instead
            elapsed = time.perf_counter() - self.start
            self.printer.text(f"{name}: {rows:,} rows ({self.summary.documents:,} documents, {self.summary.words / max(elapsed, 1e-9):,.0f} words/s)")

    def close(self) -> Summary:
        self.summary.seconds = time.perf_counter() - self.start
        self.bar.close()
        return self.summary
