"""wasabi's look (icons, colours) without its 80-column wrapping: messages here name
paths and lines, and a wrapped path cannot be copied or grepped."""
import sys
from typing import Optional

from wasabi import Printer, color


class Messages:
    def __init__(self, quiet: bool = False) -> None:
        self._style = Printer()
        self.quiet = quiet

    def _say(self, kind: Optional[str], title: str, text: Optional[str] = None) -> None:
        if self.quiet:
            return
        line = title
        if kind and self._style.pretty:
            line = f"{self._style.icons.get(kind, '')} {title}".strip()
            if self._style.show_color:
                line = color(line, fg=self._style.colors.get(kind))
        print(line + (f"\n{text}" if text else ""), flush=True)

    def good(self, title: str, text: Optional[str] = None) -> None:
        self._say("good", title, text)

    def info(self, title: str, text: Optional[str] = None) -> None:
        self._say("info", title, text)

    def warn(self, title: str, text: Optional[str] = None) -> None:
        self._say("warn", title, text)

    def text(self, title: str, text: Optional[str] = None) -> None:
        self._say(None, title, text)

    def fail(self, title: str, text: Optional[str] = None, exits: Optional[int] = None) -> None:
        self._say("fail", title, text)
        if exits is not None:
            sys.stdout.flush()
            sys.exit(exits)
