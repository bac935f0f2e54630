"""Progress of long work (the first full read of a large shop): done / total, rate, time left.

On a terminal a one-line bar is redrawn on stderr; otherwise (journald) a log line is
written at most every :data:`LOG_EVERY` seconds, so a 50,000-variant build logs a
handful of lines, not thousands.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import structlog

log = structlog.get_logger("daemon.progress")

#: seconds between progress log lines when not on a terminal
LOG_EVERY = 10.0
#: seconds between redraws of the terminal bar
DRAW_EVERY = 0.2


class Progress:
    """Counts records done of ``total`` (None when unknown) and reports now and then."""

    def __init__(
        self,
        what: str,
        total: int | None,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        **context: object,
    ) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self.context = context
        self._clock = clock
        self._started = clock()
        self._last_report = self._started
        self._stream = stream if stream is not None else sys.stderr
        self._bar = self._stream.isatty()

    @property
    def rate(self) -> float:
        """Records per second so far."""
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds to finish; None when the total or the rate is unknown."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    def expect(self, total: int | None) -> None:
        """The total became known (or changed) while working: a paged API tells it with its
        first page (Rackbeat's ``pages`` times the page size, Shopify's count)."""
        self.total = total

    def advance(self, count: int) -> None:
        """``count`` more records are done; report when it is time."""
        self.done += count
        now = self._clock()
        if now - self._last_report >= (DRAW_EVERY if self._bar else LOG_EVERY):
            self._last_report = now
            self._report()

    def finish(self) -> None:
        """The work is complete: one final line."""
        if self._bar:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
        log.info(
            "progress.done",
            work=self.what,
            records=self.done,
            seconds=round(self._clock() - self._started, 1),
            per_second=round(self.rate, 1),
            **self.context,
        )

    def _report(self) -> None:
        left = self.seconds_left
        if self._bar:
            if self.total:
                share = min(self.done / self.total, 1.0)
                filled = int(share * 30)
                bar = f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}"
            else:
                bar = f"{self.done}"
            eta = f", {left:.0f} s left" if left is not None else ""
            self._stream.write(f"\r\x1b[K{self.what}: {bar} ({self.rate:.0f}/s{eta})")
            self._stream.flush()
            return
        log.info(
            "progress.update",
            work=self.what,
            done=self.done,
            total=self.total,
            per_second=round(self.rate, 1),
            seconds_left=round(left) if left is not None else None,
            **self.context,
        )
