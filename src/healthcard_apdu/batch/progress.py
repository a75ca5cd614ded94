"""Live progress of a batch run: one line per reader plus a total, rate and ETA.

On a terminal the block is redrawn in place a few times a second; otherwise (logs, CI) a plain
line is printed every ``interval`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TextIO

from healthcard_apdu.batch.journal import Pending
from healthcard_apdu.batch.worker import WorkerStats


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def rate_and_eta(issued: int, elapsed: float, remaining: int) -> tuple[float, float | None]:
    """Cards per minute so far and seconds left at that rate (None until one card is done)."""
    if issued <= 0 or elapsed <= 0:
        return 0.0, None
    per_minute = issued * 60.0 / elapsed
    return per_minute, remaining * 60.0 / per_minute


class ProgressDisplay:
    """Renders :class:`WorkerStats` and the journal's pending counts to a stream."""

    def __init__(self, stream: TextIO, stats: Sequence[WorkerStats],
                 pending: Callable[[], Pending], *, tty: bool | None = None,
                 interval: float = 10.0, width: int = 100) -> None:
        self.stream = stream
        self.stats = stats
        self.pending = pending
        self.tty = stream.isatty() if tty is None else tty
        self.interval = interval if not self.tty else 0.3
        self.width = width
        self.started = time.monotonic()
        self._last = self.started
        self._drawn = 0

    def lines(self) -> list[str]:
        elapsed = time.monotonic() - self.started
        left = self.pending()
        issued = sum(s.issued for s in self.stats)
        failed = sum(s.failed for s in self.stats)
        rework = sum(s.rework for s in self.stats)
        rate, eta = rate_and_eta(issued, elapsed, left.queued + left.needs_erase)
        out = []
        for s in self.stats:
            row = f" row {s.row_no}" if s.row_no is not None else ""
            line = (f"{s.reader[:24]:<24} {s.state:<13} done {s.issued:>6} failed {s.failed:>4}"
                    f"{row}  {s.message}")
            out.append(line[: self.width])
        out.append(
            f"issued {issued}  failed {failed}  set aside {rework}  queued {left.queued}  "
            f"needs erase {left.needs_erase}  {rate:.1f} cards/min  "
            f"elapsed {format_seconds(elapsed)}  ETA {format_seconds(eta)}"
        )
        return out

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        lines = self.lines()
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")
            for line in lines:
                self.stream.write(f"\x1b[2K{line}\n")
            self._drawn = len(lines)
        else:
            self.stream.write(lines[-1] + "\n")
        self.stream.flush()
