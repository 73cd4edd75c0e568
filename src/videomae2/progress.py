"""A dependency-free progress line: count, rate, ETA and whatever the job wants to show."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Redraws one line on a terminal; prints a line every `every` seconds elsewhere (logs)."""

    def __init__(
        self,
        total: int,
        unit: str = "it",
        stream: TextIO | None = None,
        every: float = 10.0,
        enabled: bool = True,
    ) -> None:
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.every = every
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.count = 0
        self._last = 0.0

    def line(self, extra: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        width = len(str(self.total))
        text = (
            f"[{self.count:>{width}}/{self.total}] {rate:.2f} {self.unit}/s "
            f"elapsed {format_seconds(elapsed)} ETA {format_seconds(eta)}"
        )
        return f"{text} {extra}".rstrip()

    def update(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        if not self.enabled:
            return
        now = time.perf_counter()
        done = self.count >= self.total
        if self.tty:
            self.stream.write("\r" + self.line(extra) + ("\n" if done else ""))
            self.stream.flush()
        elif done or now - self._last >= self.every:
            self.stream.write(self.line(extra) + "\n")
            self.stream.flush()
            self._last = now
