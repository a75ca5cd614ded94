"""Batch issuance: load (validate into the journal), recover, run one worker per reader, sum up.

Order of a run::

    take the station lease -> recover this station's rows left by a crash
    -> load the file (validation pass; resumes a partial load; skipped when loaded)
    -> failed rows with attempts left go back to the queue
    -> workers until the batch is done / the card pool is empty / Ctrl-C
    -> summary from the journal (every row of the file accounted for)
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from healthcard_apdu.batch.input import FileInfo, Format, read_residents, scan_file
from healthcard_apdu.batch.issuer import CardIssuer, RecordCheckingIssuer
from healthcard_apdu.batch.journal import Holder, Journal, NewRow, journal_clashes
from healthcard_apdu.batch.progress import ProgressDisplay, format_seconds
from healthcard_apdu.batch.slots import ReaderSlot
from healthcard_apdu.batch.validate import (
    RecordChecker,
    RowIssue,
    RowVerdict,
    ValidationReport,
    validate_rows,
)
from healthcard_apdu.batch.worker import ReaderWorker, WorkerStats

LOAD_CHUNK = 500
T = TypeVar("T")
HEARTBEAT_EVERY = 5.0


def default_station() -> str:
    return socket.gethostname()


def default_batch_name(path: str | Path) -> str:
    return Path(path).stem


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _new_row(verdict: RowVerdict) -> NewRow:
    return NewRow(verdict.row, verdict.card_number, verdict.id_number, verdict.record,
                  [issue.to_dict() for issue in verdict.issues])


def validate_file(path: str | Path, *, encoding: str | None = None, fmt: Format | None = None,
                  journal: Journal | None = None, batch: str | None = None,
                  checker: RecordChecker | None = None) -> ValidationReport:
    """The validation pass alone (``--validate-only``): nothing is written anywhere.

    With a journal, card and ID numbers it already holds are reported too (except by the
    same row of the same batch, i.e. when the file was loaded before)."""
    batch = batch or default_batch_name(path)
    info = scan_file(path, encoding=encoding, fmt=fmt)
    report = ValidationReport.for_file(info)
    for chunk in _chunks(validate_rows(read_residents(info), checker), LOAD_CHUNK):
        if journal is not None:
            by_card, by_id = journal.lookup_numbers(
                [v.card_number for v in chunk if v.valid and v.card_number],
                [v.id_number for v in chunk if v.valid and v.id_number],
            )
            chunk = [_against_journal(v, batch, by_card, by_id) for v in chunk]
        for verdict in chunk:
            report.add(verdict)
    return report


def _against_journal(verdict: RowVerdict, batch: str, by_card: dict[str, Holder],
                     by_id: dict[str, Holder]) -> RowVerdict:
    if not verdict.valid:
        return verdict
    clashes = journal_clashes(batch, verdict.row, verdict.card_number, verdict.id_number,
                              by_card, by_id)
    if not clashes:
        return verdict
    issues = tuple(_issue_from_dict(verdict.row, clash) for clash in clashes)
    return RowVerdict(verdict.row, None, verdict.card_number, verdict.id_number, issues)


def load_batch(journal: Journal, info: FileInfo, batch: str,
               checker: RecordChecker | None = None) -> ValidationReport:
    """Validate the file into the journal (queued or invalid rows). Resumes a partial load;
    a loaded batch is not read again and its report comes from the journal."""
    existing = journal.ensure_batch(batch, str(info.path), info.fingerprint, info.encoding,
                                    info.format)
    if existing.loaded_at is not None:
        return report_from_journal(journal, info, batch)
    last = journal.last_loaded_row(batch)
    for rows in _chunks(read_residents(info), LOAD_CHUNK):
        if rows[-1].row <= last:
            continue  # loaded before an interruption
        # duplicates inside the chunk here, against earlier chunks by the journal's indexes
        journal.load_rows(batch, [_new_row(v) for v in validate_rows(rows, checker)],
                          fingerprint=info.fingerprint)
    journal.finish_load(batch, sum(journal.counts(batch).values()))
    return report_from_journal(journal, info, batch)


def report_from_journal(journal: Journal, info: FileInfo, batch: str) -> ValidationReport:
    """The validation report of a loaded batch, rebuilt from its invalid rows."""
    report = ValidationReport.for_file(info)
    counts = journal.counts(batch)
    report.rows = sum(counts.values())
    report.invalid = counts["invalid"]
    report.valid = report.rows - report.invalid
    for row in journal.rows(batch, ["invalid"]):
        for issue in json.loads(row.issues or "[]"):
            report.issues.append(_issue_from_dict(row.row_no, issue))
    return report


def _issue_from_dict(row: int, issue: dict[str, Any]) -> RowIssue:
    return RowIssue(row, str(issue.get("field", "-")), str(issue.get("reason", "")),
                    issue.get("value"), issue.get("item"), issue.get("name"))


@dataclass
class RunSummary:
    """The end of a run, from the journal: every row of the batch is in one state."""

    batch: str
    station: str
    journal: str
    started_at: str
    seconds: float
    counts: dict[str, int]
    this_run: dict[str, int]
    cards_per_minute: float
    readers: list[dict[str, Any]]
    failures: list[dict[str, Any]] = field(default_factory=list)
    needs_erase: list[dict[str, Any]] = field(default_factory=list)
    recovered_at_start: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    validation: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def complete(self) -> bool:
        """Every valid row is issued."""
        return self.counts["issued"] + self.counts["invalid"] == self.total

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total"] = self.total
        out["complete"] = self.complete
        return out

    def lines(self, limit: int = 30) -> list[str]:
        c = self.counts
        out = [
            f"batch {self.batch!r} on station {self.station!r} ({self.journal})",
            f"  rows {self.total}: issued {c['issued']}, failed {c['failed']}, needs erase "
            f"{c['needs-erase']}, queued {c['queued']}, in flight "
            f"{c['claimed'] + c['personalizing']}, invalid {c['invalid']}",
            f"  this run: issued {self.this_run.get('issued', 0)}, failed "
            f"{self.this_run.get('failed', 0)}, set aside {self.this_run.get('rework', 0)}, "
            f"recovered {self.this_run.get('recovered', 0)}, rejected cards "
            f"{self.this_run.get('rejected', 0)} in {format_seconds(self.seconds)} "
            f"({self.cards_per_minute:.1f} cards/min)",
        ]
        if self.recovered_at_start and any(self.recovered_at_start.values()):
            out.append(f"  recovered after a stop: {self.recovered_at_start['requeued']} "
                       f"claims re-queued, {self.recovered_at_start['needs_erase']} cards "
                       "marked needs-erase")
        for reader in self.readers:
            out.append(f"  reader {reader['reader']}: {reader['state']}, issued "
                       f"{reader['issued']}, failed {reader['failed']}"
                       + (f" ({reader['message']})" if reader.get("message") else ""))
        for failure in self.failures[:limit]:
            out.append(f"  failed row {failure['row']}: {failure['reason']}")
        if len(self.failures) > limit:
            out.append(f"  ... {len(self.failures) - limit} more failed rows")
        for item in self.needs_erase[:limit]:
            out.append(f"  needs erase row {item['row']}: card {item['chip_serial']} "
                       f"({item['reason']}); insert that card again")
        if len(self.needs_erase) > limit:
            out.append(f"  ... {len(self.needs_erase) - limit} more cards need erasing")
        if self.interrupted:
            out.append("  stopped by the operator; run again to continue")
        out.append("  complete" if self.complete else "  not complete: run again to continue")
        return out


class BatchRunner:
    """Runs one batch of a journal on a set of reader slots."""

    def __init__(self, journal: Journal, issuer: CardIssuer, slots: Sequence[ReaderSlot], *,
                 station: str | None = None, max_attempts: int = 3,
                 idle_timeout: float | None = None, reader_grace: float = 60.0,
                 max_consecutive_failures: int = 10, progress: TextIO | None = None,
                 progress_tty: bool | None = None, progress_interval: float = 10.0) -> None:
        self.journal = journal
        self.issuer = issuer
        self.slots = list(slots)
        self.station = station or default_station()
        self.max_attempts = max_attempts
        self.idle_timeout = idle_timeout
        self.reader_grace = reader_grace
        self.max_consecutive_failures = max_consecutive_failures
        self.progress = progress
        self.progress_tty = progress_tty
        self.progress_interval = progress_interval
        self.stop = threading.Event()
        self.recovered: dict[str, int] = {}
        self._registered = False

    def __enter__(self) -> BatchRunner:
        self.register()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()

    def register(self) -> dict[str, int]:
        """Take the station lease and recover what a crash of this station left behind."""
        self.journal.register_station(self.station)
        self._registered = True
        self.recovered = self.journal.recover_station(self.station)
        return self.recovered

    def unregister(self) -> None:
        if self._registered:
            self._registered = False
            with contextlib.suppress(Exception):
                self.journal.unregister_station(self.station)

    def load(self, path: str | Path, *, batch: str | None = None, encoding: str | None = None,
             fmt: Format | None = None, checker: RecordChecker | None = None
             ) -> tuple[str, ValidationReport]:
        """Validate the file into the journal; an issuer with ``check_record`` (the
        personalizer: the profile's record rules) joins the validation."""
        info = scan_file(path, encoding=encoding, fmt=fmt)
        name = batch or default_batch_name(path)
        if checker is None and isinstance(self.issuer, RecordCheckingIssuer):
            checker = RecordChecker(self.issuer.check_record)
        return name, load_batch(self.journal, info, name, checker)

    def run(self, batch: str) -> RunSummary:
        """Issue the batch's queued (and recoverable) rows on every slot until done."""
        if not self._registered:
            self.register()
        if self.journal.batch(batch) is None:
            raise ValueError(f"batch {batch!r} is not in the journal {self.journal.describe()}")
        retried = self.journal.requeue_failed(batch, self.max_attempts)
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        began = time.monotonic()
        workers = [
            ReaderWorker(slot, self.issuer, self.journal, batch, self.station, self.stop,
                         idle_timeout=self.idle_timeout,
                         max_consecutive_failures=self.max_consecutive_failures)
            for slot in self.slots
        ]
        display = None
        if self.progress is not None:
            display = ProgressDisplay(self.progress, [w.stats for w in workers],
                                      lambda: self.journal.pending(batch),
                                      tty=self.progress_tty, interval=self.progress_interval)
        interrupted = False
        for worker in workers:
            worker.start()
        try:
            self._supervise(workers, display)
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
            if self.progress is not None:
                self.progress.write("\nstopping after the cards in the readers "
                                    "(Ctrl-C again to abort; the journal stays consistent)\n")
            for worker in workers:
                worker.join()
        if display is not None:
            display.update(force=True)
        seconds = time.monotonic() - began
        return self._summary(batch, workers, started_at, seconds, retried, interrupted)

    def _supervise(self, workers: list[ReaderWorker], display: ProgressDisplay | None) -> None:
        last_beat = time.monotonic()
        only_gone_since: float | None = None
        while any(w.is_alive() for w in workers):
            for worker in workers:
                worker.join(timeout=0.1)
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_EVERY:
                self.journal.heartbeat(self.station)
                last_beat = now
            if display is not None:
                display.update()
            alive = [w for w in workers if w.is_alive()]
            if alive and all(w.waiting_for_reader for w in alive):
                only_gone_since = only_gone_since or now
                if now - only_gone_since >= self.reader_grace:
                    self.stop.set()
            else:
                only_gone_since = None

    def _summary(self, batch: str, workers: list[ReaderWorker], started_at: str,
                 seconds: float, retried: int, interrupted: bool) -> RunSummary:
        counts = self.journal.counts(batch)
        totals: dict[str, int] = {}
        for key in ("issued", "failed", "rework", "rejected", "recovered", "cards"):
            totals[key] = sum(int(getattr(w.stats, key)) for w in workers)
        failures = [{"row": r.row_no, "reason": r.reason, "attempts": r.attempts}
                    for r in self.journal.rows(batch, ["failed"])]
        needs_erase = [{"row": r.row_no, "chip_serial": r.chip_serial, "reason": r.reason}
                       for r in self.journal.rows(batch, ["needs-erase"])]
        readers = [_reader_dict(w.stats) for w in workers]
        rate = totals["issued"] * 60.0 / seconds if seconds > 0 else 0.0
        info = self.journal.batch(batch)
        validation = {"rows": sum(counts.values()), "invalid": counts["invalid"]}
        if info is not None:
            validation["file_rows"] = info.total_rows
        return RunSummary(batch, self.station, self.journal.describe(), started_at, seconds,
                          counts, totals, rate, readers, failures, needs_erase,
                          dict(self.recovered), retried, validation, interrupted)


def _reader_dict(stats: WorkerStats) -> dict[str, Any]:
    return {"reader": stats.reader, "state": stats.state, "message": stats.message,
            "issued": stats.issued, "failed": stats.failed, "set_aside": stats.rework,
            "rejected": stats.rejected, "recovered": stats.recovered, "cards": stats.cards,
            "error": stats.error}


def print_lines(lines: Iterable[str], stream: TextIO | None = None) -> None:
    target = stream or sys.stdout
    for line in lines:
        target.write(line + "\n")
