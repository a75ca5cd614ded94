"""One worker thread per reader: take a card, decide what it is, issue or recover it, let go.

Per card::

    inspect (no write)
      chip void            -> erase, then treat as blank
      chip bound to a row:
        issued             -> "already issued" (output tray)
        needs-erase        -> personalizing; finished on the card? issued : erase + issue again
      card issued, unknown -> rejected ("issued elsewhere")
      blank                -> claim next row -> personalizing (chip recorded) -> issue -> issued

Any failure after the chip is recorded: a lost card or link leaves the row ``needs-erase``
(bound to that chip, recovered when the card comes back); any other failure erases the card
and marks the row ``failed`` with the reason (``needs-erase`` if the erase fails too).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace

from healthcard_apdu.batch.errors import ReaderGoneError
from healthcard_apdu.batch.issuer import CardIdentity, CardIssuer
from healthcard_apdu.batch.journal import ChipSerialConflict, Journal, RowRecord, StateConflict
from healthcard_apdu.batch.slots import Disposition, ReaderSlot
from healthcard_apdu.transport.base import NoReaderError, Transport, TransportError

_POLL = 0.25
_IO_ERRORS = (TransportError, ConnectionError)  # link lost: card pulled, torn, mute


class _ReaderLost(Exception):
    """Internal: the reader vanished while a card was in it."""


@dataclass
class WorkerStats:
    """What one reader did; read by the progress display (plain attribute writes only)."""

    reader: str
    state: str = "starting"
    message: str = ""
    issued: int = 0
    failed: int = 0
    rework: int = 0
    rejected: int = 0
    recovered: int = 0
    cards: int = 0
    row_no: int | None = None
    started: float = 0.0
    busy_seconds: float = 0.0
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """A one-line reason: exception type and message (messages never carry secrets)."""
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True, slots=True)
class _Result:
    disposition: Disposition
    message: str
    retry_same_card: bool = False


class ReaderWorker(threading.Thread):
    """Issues cards on one reader until the batch is done, the pool is empty or ``stop``."""

    def __init__(self, slot: ReaderSlot, issuer: CardIssuer, journal: Journal, batch: str,
                 station: str, stop: threading.Event, *, idle_timeout: float | None = None,
                 max_consecutive_failures: int = 10, immediate_retries: int = 1) -> None:
        super().__init__(name=f"reader:{slot.name}", daemon=True)
        self.slot = slot
        self.issuer = issuer
        self.journal = journal
        self.batch = batch
        self.station = station
        self.stop = stop
        self.idle_timeout = idle_timeout
        self.max_consecutive_failures = max_consecutive_failures
        self.immediate_retries = immediate_retries
        self.stats = WorkerStats(slot.name)
        self.waiting_for_reader = False
        self._consecutive_failures = 0

    # ------------------------------------------------------------------- loop
    def run(self) -> None:
        self.stats.started = time.monotonic()
        try:
            self._loop()
        except BaseException as exc:  # the thread must report, never die silently
            self.stats.state = "crashed"
            self.stats.error = describe_error(exc)
            self.stats.message = self.stats.error
        finally:
            with contextlib.suppress(Exception):
                self.slot.close()
            self.journal.close_thread_connection()

    def _status(self, state: str, message: str = "") -> None:
        self.stats.state = state
        self.stats.message = message

    def _loop(self) -> None:
        idle_since = time.monotonic()
        while not self.stop.is_set():
            pending = self.journal.pending(self.batch)
            if pending.done:
                self._status("done", "batch complete")
                return
            self._status("waiting", "insert a card" if pending.queued else
                         "waiting for cards set aside for rework")
            try:
                transport = self.slot.wait_for_card(_POLL, want_blank=pending.queued > 0)
            except (ReaderGoneError, NoReaderError) as exc:
                self._wait_for_reader(describe_error(exc))
                continue
            if transport is None:
                if self.slot.exhausted:
                    self._status("done", "no more cards to insert")
                    return
                if (self.idle_timeout is not None and pending.queued == 0
                        and time.monotonic() - idle_since > self.idle_timeout):
                    self._status("done", f"no card for {self.idle_timeout:g} s")
                    return
                continue
            idle_since = time.monotonic()
            self.stats.cards += 1
            began = time.monotonic()
            try:
                transport, result = self._process(transport)
            except _ReaderLost as exc:
                self.slot.card_lost(transport)
                self._wait_for_reader(str(exc))
                continue
            finally:
                self.stats.busy_seconds += time.monotonic() - began
                self.stats.row_no = None
            self._status("remove", result.message)
            try:
                self.slot.remove_card(transport, result.disposition, result.message, self.stop)
            except (ReaderGoneError, NoReaderError) as exc:
                self.slot.card_lost(transport)
                self._wait_for_reader(describe_error(exc))
                continue
            if (self.max_consecutive_failures
                    and self._consecutive_failures >= self.max_consecutive_failures):
                self._status("stopped", f"{self._consecutive_failures} failures in a row; "
                                        f"last: {result.message}")
                return

    def _wait_for_reader(self, reason: str) -> None:
        self.journal.note(self.batch, "reader-lost", station=self.station,
                          reader=self.slot.name, detail=reason)
        self._status("reader-gone", f"reader unavailable ({reason}); waiting for it")
        self.waiting_for_reader = True
        try:
            while not self.stop.is_set():
                if self.slot.wait_for_reader(_POLL):
                    self.journal.note(self.batch, "reader-back", station=self.station,
                                      reader=self.slot.name)
                    return
        finally:
            self.waiting_for_reader = False

    # ------------------------------------------------------------------ one card
    def _process(self, transport: Transport) -> tuple[Transport, _Result]:
        for _attempt in range(1 + self.immediate_retries):
            result = self._handle(transport)
            if not result.retry_same_card:
                break
            try:
                again = self.slot.reconnect(transport)
            except (ReaderGoneError, NoReaderError) as exc:
                raise _ReaderLost(describe_error(exc)) from exc
            if again is None:
                return transport, _Result(Disposition.REWORK, result.message)
            transport = again
        if result.retry_same_card:
            result = _Result(Disposition.REWORK, result.message)
        return transport, result

    def _handle(self, transport: Transport) -> _Result:
        self._status("reading", "identifying card")
        try:
            ident = self.issuer.inspect(transport)
        except NoReaderError as exc:
            raise _ReaderLost(describe_error(exc)) from exc
        except _IO_ERRORS as exc:
            return self._reject(None, Disposition.REWORK, f"card not readable: "
                                                          f"{describe_error(exc)}")
        except Exception as exc:
            return self._reject(None, Disposition.REJECTED,
                                f"card not usable: {describe_error(exc)}")
        chip = ident.chip_serial
        if self.journal.is_void(chip):
            erased = self._erase_void(transport, ident)
            if erased is not None:
                return erased
            ident = replace(ident, issued=False, card_number=None)
        row = self.journal.find_by_chip(chip)
        if row is not None:
            return self._known_card(transport, ident, row)
        if ident.issued:
            holder = (self.journal.find_by_card_number(ident.card_number)
                      if ident.card_number else None)
            where = (f"; the journal has that card number on batch {holder.batch!r} row "
                     f"{holder.row_no}, chip {holder.chip_serial}" if holder else "")
            return self._reject(chip, Disposition.REJECTED,
                                f"card {chip} is already issued (card number "
                                f"{ident.card_number or 'unknown'}) but not by this journal"
                                f"{where}")
        claimed = self.journal.claim_next(self.batch, self.station, self.slot.name)
        if claimed is None:
            return _Result(Disposition.BLANK, "no resident left to issue")
        try:
            started = self.journal.start_personalizing(
                claimed, chip, ident.card_factor, station=self.station, reader=self.slot.name
            )
        except ChipSerialConflict as exc:
            self.journal.release_claim(claimed, describe_error(exc))
            return self._reject(chip, Disposition.REJECTED, str(exc))
        return self._personalize(transport, started, erase_first=False)

    def _reject(self, chip: str | None, disposition: Disposition, message: str) -> _Result:
        self.journal.note(self.batch, "card-rejected", station=self.station,
                          reader=self.slot.name, chip_serial=chip, detail=message)
        if disposition is Disposition.REJECTED:
            self.stats.rejected += 1
        return _Result(disposition, message)

    def _erase_void(self, transport: Transport, ident: CardIdentity) -> _Result | None:
        self._status("erasing", f"erasing void card {ident.chip_serial}")
        try:
            self.issuer.erase(transport)
        except NoReaderError as exc:
            raise _ReaderLost(describe_error(exc)) from exc
        except Exception as exc:
            return self._reject(ident.chip_serial, Disposition.REJECTED,
                                f"void card {ident.chip_serial} could not be erased: "
                                f"{describe_error(exc)}")
        self.journal.unvoid_card(ident.chip_serial, "erased")
        self.journal.note(self.batch, "void-erased", station=self.station,
                          reader=self.slot.name, chip_serial=ident.chip_serial)
        return None

    def _known_card(self, transport: Transport, ident: CardIdentity, row: RowRecord) -> _Result:
        chip = ident.chip_serial
        if row.state == "issued":
            if ident.issued and ident.card_number == row.card_number:
                return _Result(Disposition.ALREADY_ISSUED,
                               f"card {chip} is already issued to batch {row.batch!r} row "
                               f"{row.row_no}")
            return self._reject(chip, Disposition.REJECTED,
                                f"journal has card {chip} issued to batch {row.batch!r} row "
                                f"{row.row_no}, but the card "
                                + ("holds card number " + str(ident.card_number)
                                   if ident.issued else "is not issued"))
        if row.state == "needs-erase":
            if row.batch != self.batch:
                return self._reject(chip, Disposition.REWORK,
                                    f"card {chip} belongs to batch {row.batch!r} row "
                                    f"{row.row_no} (needs erase); run that batch")
            return self._recover(transport, ident, row)
        return self._reject(chip, Disposition.REJECTED,
                            f"card {chip} is bound to batch {row.batch!r} row {row.row_no} in "
                            f"state {row.state} (station {row.station}, reader {row.reader})")

    def _recover(self, transport: Transport, ident: CardIdentity, row: RowRecord) -> _Result:
        try:
            started = self.journal.start_personalizing(
                row, ident.chip_serial, ident.card_factor, station=self.station,
                reader=self.slot.name,
            )
        except StateConflict as exc:
            return self._reject(ident.chip_serial, Disposition.REWORK, str(exc))
        if ident.issued and ident.card_number == row.card_number:
            self.journal.finish_issued(started, ident.profile_version, ident.keys_version,
                                       detail="issuance found complete on the card")
            self.stats.recovered += 1
            self.stats.issued += 1
            self._consecutive_failures = 0
            return _Result(Disposition.ISSUED,
                           f"row {row.row_no}: card {ident.chip_serial} was already complete")
        self.stats.recovered += 1
        return self._personalize(transport, started, erase_first=True)

    def _personalize(self, transport: Transport, row: RowRecord, *, erase_first: bool
                     ) -> _Result:
        self.stats.row_no = row.row_no
        chip = row.chip_serial
        try:
            if erase_first:
                self._status("erasing", f"row {row.row_no}: erasing half-done card {chip}")
                self.issuer.erase(transport)
                self.journal.note(self.batch, "erased", row=row, station=self.station,
                                  reader=self.slot.name, chip_serial=chip)
            self._status("personalizing", f"row {row.row_no} on card {chip}")
            outcome = self.issuer.issue(transport, row.resident)
        except NoReaderError as exc:
            self._needs_erase(row, f"reader lost during issuance: {describe_error(exc)}")
            raise _ReaderLost(describe_error(exc)) from exc
        except _IO_ERRORS as exc:
            reason = f"card link lost during issuance: {describe_error(exc)}"
            self._needs_erase(row, reason)
            return _Result(Disposition.REWORK, f"row {row.row_no}: {reason}",
                           retry_same_card=True)
        except Exception as exc:
            return self._failed(transport, row, describe_error(exc))
        self.journal.finish_issued(row, outcome.profile_version, outcome.keys_version)
        self.stats.issued += 1
        self._consecutive_failures = 0
        return _Result(Disposition.ISSUED,
                       f"row {row.row_no} issued on card {chip} (card number {row.card_number})")

    def _needs_erase(self, row: RowRecord, reason: str) -> None:
        self.journal.mark_needs_erase(row, reason)
        self.stats.rework += 1

    def _failed(self, transport: Transport, row: RowRecord, reason: str) -> _Result:
        """Issuance refused by the card or the issuer: erase the card, fail the row."""
        self._status("erasing", f"row {row.row_no}: {reason}; erasing the card")
        try:
            self.issuer.erase(transport)
        except NoReaderError as exc:
            self._needs_erase(row, f"{reason}; reader lost while erasing")
            raise _ReaderLost(describe_error(exc)) from exc
        except Exception as exc:
            self._needs_erase(row, f"{reason}; erase failed: {describe_error(exc)}")
            return _Result(Disposition.REWORK,
                           f"row {row.row_no}: {reason}; erase failed, card set aside")
        self.journal.mark_failed(row, reason)
        self.stats.failed += 1
        self._consecutive_failures += 1
        return _Result(Disposition.BLANK, f"row {row.row_no} failed: {reason}")
