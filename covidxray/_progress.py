"""A minimal progress bar that only draws when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Set to False to turn every progress bar off (the command line's --quiet).
BARS = True


class Progress:
    """Draw `label: done/total` on a terminal; do nothing otherwise.

    Examples:
        >>> import io
        >>> bar = Progress(10, "Scanning", stream=io.StringIO(), min_total=1)
        >>> bar.enabled  # a StringIO is not a terminal
        False
        >>> bar.update(10); bar.close()
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        min_total: int = 500,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = BARS and total >= min_total and bool(isatty())
        self.done = 0
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(
                f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total}"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
