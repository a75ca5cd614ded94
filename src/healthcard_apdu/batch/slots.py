"""Reader slots: where a worker gets its next card and where it puts it afterwards.

A :class:`ReaderSlot` hides whether cards arrive in a PC/SC reader (an operator inserts and
removes them) or in a simulated reader fed from a :class:`CardPool` of card images. The batch
layer does not import the simulator: the pool takes a :class:`CardStore` (create / load / save
card images) and an optional fault hook, both supplied by the caller.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from healthcard_apdu.batch.errors import ReaderGoneError
from healthcard_apdu.transport.base import NoCardError, NoReaderError, Transport, TransportError
from healthcard_apdu.transport.inprocess import CardLike, InProcessTransport


class Disposition(enum.Enum):
    """What happens to a card once the worker is done with it."""

    ISSUED = "issued"  # finished: to the output tray
    ALREADY_ISSUED = "already-issued"  # was already issued by this journal: output tray
    BLANK = "blank"  # untouched or erased again: back to the blank stock
    REWORK = "rework"  # half done and bound to its row: set aside, insert again later
    REJECTED = "rejected"  # not usable here (issued elsewhere, unreadable): set aside


class ReaderSlot(Protocol):
    """One reader as a worker sees it."""

    @property
    def name(self) -> str: ...

    def wait_for_card(self, timeout: float, *, want_blank: bool) -> Transport | None:
        """Connect to the next inserted card, or None after ``timeout`` seconds. ``want_blank``
        tells a simulated feeder whether a blank card is of any use. Raises
        :class:`ReaderGoneError` when the reader is gone."""
        ...

    def reconnect(self, transport: Transport) -> Transport | None:
        """After a torn exchange, power the card in the reader up again; None when it is gone."""
        ...

    def remove_card(self, transport: Transport, disposition: Disposition, message: str,
                    stop: threading.Event) -> None:
        """Have the card taken out (the operator is told ``message``); returns once it is out
        or ``stop`` is set."""
        ...

    def card_lost(self, transport: Transport | None) -> None:
        """The reader vanished with this card inside."""
        ...

    def wait_for_reader(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a vanished reader; True when it is back."""
        ...

    @property
    def exhausted(self) -> bool:
        """No card will ever come again (a simulated pool with nothing left to offer)."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- PC/SC
class PcscReaderSlot:
    """A PC/SC reader served by an operator."""

    def __init__(self, reader: str, *, poll: float = 0.5) -> None:
        self._reader = reader
        self._poll = poll
        self.prompt = ""

    @property
    def name(self) -> str:
        return self._reader

    def wait_for_card(self, timeout: float, *, want_blank: bool) -> Transport | None:
        from healthcard_apdu.transport import pcsc

        self.prompt = "insert a card"
        try:
            pcsc.wait_for_card(self._reader, present=True, timeout=timeout)
        except NoCardError:
            return None
        except NoReaderError as exc:
            raise ReaderGoneError(f"reader {self._reader!r}: {exc}") from exc
        try:
            return pcsc.PcscTransport(self._reader)
        except NoReaderError as exc:
            raise ReaderGoneError(f"reader {self._reader!r}: {exc}") from exc
        except (NoCardError, TransportError):
            return None

    def reconnect(self, transport: Transport) -> Transport | None:
        try:
            transport.reset(cold=True)
        except NoReaderError as exc:
            raise ReaderGoneError(f"reader {self._reader!r}: {exc}") from exc
        except TransportError:
            return None
        return transport

    def remove_card(self, transport: Transport, disposition: Disposition, message: str,
                    stop: threading.Event) -> None:
        from healthcard_apdu.transport import pcsc

        transport.close()
        self.prompt = f"remove the card ({message})"
        while not stop.is_set():
            try:
                pcsc.wait_for_card(self._reader, present=False, timeout=self._poll)
                return
            except NoReaderError:
                return
            except TransportError:
                continue

    def card_lost(self, transport: Transport | None) -> None:
        if transport is not None:
            with contextlib.suppress(TransportError):
                transport.close()

    def wait_for_reader(self, timeout: float) -> bool:
        from healthcard_apdu.transport import pcsc

        time.sleep(min(timeout, self._poll))
        try:
            return self._reader in pcsc.list_readers()
        except TransportError:
            return False

    @property
    def exhausted(self) -> bool:
        return False

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ simulated pool
class CardStore(Protocol):
    """Creates, loads and saves simulated card images (supplied by the simulator's user)."""

    def create(self, path: Path, number: int) -> CardLike:
        """A new blank card whose image lives at ``path`` (``number`` makes it unique)."""
        ...

    def load(self, path: Path) -> CardLike: ...

    def save(self, card: CardLike, path: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class Insertion:
    """One insertion of a simulated card, for fault hooks."""

    path: Path
    number: int  # the card's number in the pool (creation order)
    count: int  # how many times this card has been inserted (1 = first)
    reader: str


FaultHook = Callable[[CardLike, Insertion], None]


@dataclass
class _Card:
    path: Path
    number: int
    insertions: int = 0


@dataclass
class PoolStats:
    created: int = 0
    inserted: int = 0
    issued: int = 0
    rejected: int = 0
    rework: int = 0
    stuck: int = 0
    given_up: int = 0
    out: dict[str, Path] = field(default_factory=dict)


class CardPool:
    """Simulated card stock shared by simulated readers, kept in a directory.

    ``stock/`` holds cards to insert (blank, or half done after a tear), ``done/`` the
    finished cards an operator took out, ``rejected/`` cards set aside. New blank cards are
    made on demand. After a restart every card still in ``stock/`` is inserted again before
    any new one, so half-done cards are found by their chip serial. A card inserted
    ``max_insertions`` times without being finished is set aside in ``rejected/``.
    """

    SUFFIX = ".card.json"

    def __init__(self, directory: str | Path, store: CardStore, *,
                 fault_hook: FaultHook | None = None, max_insertions: int = 4,
                 max_cards: int | None = None) -> None:
        self.directory = Path(directory)
        self.store = store
        self.fault_hook = fault_hook
        self.max_insertions = max_insertions
        self.max_cards = max_cards
        self.stats = PoolStats()
        self._lock = threading.Lock()
        for sub in ("stock", "done", "rejected"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self._rework: deque[_Card] = deque()
        self._blank: deque[_Card] = deque()
        self._next_number = 1 + max(
            (self._number_of(p) for sub in ("stock", "done", "rejected")
             for p in (self.directory / sub).glob(f"*{self.SUFFIX}")),
            default=0,
        )
        for path in sorted((self.directory / "stock").glob(f"*{self.SUFFIX}")):
            self._rework.append(_Card(path, self._number_of(path)))

    @staticmethod
    def _number_of(path: Path) -> int:
        stem = path.name.split(".", 1)[0]
        digits = "".join(ch for ch in stem if ch.isdigit())
        return int(digits) if digits else 0

    def take(self, reader: str, *, want_blank: bool) -> tuple[_Card, CardLike] | None:
        """The next card to insert: cards set aside for rework first, then blank stock, then
        a new blank card (when ``want_blank``). None when nothing is worth inserting."""
        with self._lock:
            card: _Card | None = None
            if self._rework:
                card = self._rework.popleft()
            elif want_blank and self._blank:
                card = self._blank.popleft()
            elif want_blank and (self.max_cards is None or self.stats.created < self.max_cards):
                number = self._next_number
                self._next_number += 1
                path = self.directory / "stock" / f"card{number:06d}{self.SUFFIX}"
                self.store.create(path, number)
                self.stats.created += 1
                card = _Card(path, number)
            if card is None:
                return None
            card.insertions += 1
            self.stats.inserted += 1
            self.stats.out[reader] = card.path
        loaded = self.store.load(card.path)
        if self.fault_hook is not None:
            self.fault_hook(loaded, Insertion(card.path, card.number, card.insertions, reader))
        return card, loaded

    def give_back(self, reader: str, card: _Card, loaded: CardLike,
                  disposition: Disposition) -> None:
        """The card left the reader: save its image and file it by disposition."""
        self.store.save(loaded, card.path)
        with self._lock:
            self.stats.out.pop(reader, None)
            if disposition in (Disposition.ISSUED, Disposition.ALREADY_ISSUED):
                self._move(card, "done")
                self.stats.issued += disposition is Disposition.ISSUED
            elif disposition is Disposition.REJECTED:
                self._move(card, "rejected")
                self.stats.rejected += 1
            elif card.insertions >= self.max_insertions and disposition is Disposition.REWORK:
                self._move(card, "rejected")
                self.stats.given_up += 1
            elif disposition is Disposition.REWORK:
                self._rework.append(card)
                self.stats.rework += 1
            else:
                self._blank.append(card)

    def stuck(self, reader: str, card: _Card, loaded: CardLike) -> None:
        """The reader vanished with the card inside: it stays in ``stock/`` for a later run
        (or until the reader comes back, see :meth:`take_back`)."""
        self.store.save(loaded, card.path)
        with self._lock:
            self.stats.out.pop(reader, None)
            self.stats.stuck += 1

    def take_back(self, reader: str, card: _Card) -> CardLike:
        """A reader came back with its stuck card still inside: it is powered up again."""
        with self._lock:
            card.insertions += 1
            self.stats.inserted += 1
            self.stats.stuck -= 1
            self.stats.out[reader] = card.path
        return self.store.load(card.path)

    def _move(self, card: _Card, sub: str) -> None:
        target = self.directory / sub / card.path.name
        card.path.replace(target)
        card.path = target

    @property
    def idle(self) -> bool:
        """Nothing to rework and no card in any live reader."""
        with self._lock:
            return not self._rework and not self.stats.out

    def paths(self, sub: str) -> list[Path]:
        return sorted((self.directory / sub).glob(f"*{self.SUFFIX}"))


@dataclass
class SimReaderFaults:
    """Reader-level faults of a simulated reader.

    ``vanish_on_card``: the reader disappears during its n-th card (1-based), at APDU
    ``vanish_at_apdu`` of that card. ``back_after``: seconds until it returns (None: never).
    """

    vanish_on_card: int | None = None
    vanish_at_apdu: int = 5
    back_after: float | None = None


class _SimLink(Transport):
    """In-process link that can lose its reader and can persist the card after each APDU."""

    def __init__(self, slot: SimReaderSlot, card: CardLike, vanish_at: int | None,
                 save: Callable[[], None] | None) -> None:
        self._slot = slot
        self._inner = InProcessTransport(card, name=f"sim:{slot.name}")
        self._vanish_at = vanish_at
        self._save = save
        self._count = 0
        self.card = card

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def protocol(self) -> str | None:
        return self._inner.protocol

    def transmit(self, apdu: bytes) -> bytes:
        self._count += 1
        if self._vanish_at is not None and self._count >= self._vanish_at:
            self._slot.vanish()
        if self._slot.gone:
            raise NoReaderError(f"reader {self._slot.name!r} was unplugged")
        try:
            return self._inner.transmit(apdu)
        finally:
            if self._save is not None:
                self._save()

    def atr(self) -> bytes:
        if self._slot.gone:
            raise NoReaderError(f"reader {self._slot.name!r} was unplugged")
        return self._inner.atr()

    def reset(self, cold: bool = False) -> bytes:
        if self._slot.gone:
            raise NoReaderError(f"reader {self._slot.name!r} was unplugged")
        return self._inner.reset(cold)

    def close(self) -> None:
        self._inner.close()


class SimReaderSlot:
    """A simulated reader fed from a :class:`CardPool`; the "operator" is instantaneous.

    With ``durable`` the card image is saved after every APDU, so that a runner killed with
    ``kill -9`` leaves the card exactly as far as it got (slow; meant for crash tests).
    """

    def __init__(self, name: str, pool: CardPool, *, faults: SimReaderFaults | None = None,
                 durable: bool = False) -> None:
        self._name = name
        self._pool = pool
        self._faults = faults or SimReaderFaults()
        self._durable = durable
        self._cards_seen = 0
        self._gone_since: float | None = None
        self._current: tuple[_Card, CardLike] | None = None
        self._stuck: _Card | None = None
        self.prompt = ""

    @property
    def name(self) -> str:
        return self._name

    @property
    def gone(self) -> bool:
        if self._gone_since is None:
            return False
        back = self._faults.back_after
        if back is not None and time.monotonic() - self._gone_since >= back:
            self._gone_since = None
            return False
        return True

    def vanish(self) -> None:
        if self._gone_since is None:
            self._gone_since = time.monotonic()

    def wait_for_card(self, timeout: float, *, want_blank: bool) -> Transport | None:
        if self.gone:
            raise ReaderGoneError(f"reader {self._name!r} was unplugged")
        if self._stuck is not None:
            card = self._stuck
            self._stuck = None
            loaded = self._pool.take_back(self._name, card)
            self._current = (card, loaded)
            return _SimLink(self, loaded, None, self._saver(card, loaded))
        taken = self._pool.take(self._name, want_blank=want_blank)
        if taken is None:
            time.sleep(min(timeout, 0.02))
            return None
        self._cards_seen += 1
        self._current = taken
        card, loaded = taken
        vanish_at = (self._faults.vanish_at_apdu
                     if self._faults.vanish_on_card == self._cards_seen else None)
        return _SimLink(self, loaded, vanish_at, self._saver(card, loaded))

    def reconnect(self, transport: Transport) -> Transport | None:
        if self.gone:
            raise ReaderGoneError(f"reader {self._name!r} was unplugged")
        if self._current is None:
            return None
        card, loaded = self._current
        if not loaded.present:
            return None  # torn or pulled: the card goes back to the operator's rework pile
        with contextlib.suppress(TransportError, ConnectionError):
            transport.close()
        try:
            return _SimLink(self, loaded, None, self._saver(card, loaded))
        except (TransportError, ConnectionError):
            return None

    def _saver(self, card: _Card, loaded: CardLike) -> Callable[[], None] | None:
        if not self._durable:
            return None
        return lambda: self._pool.store.save(loaded, card.path)

    def remove_card(self, transport: Transport, disposition: Disposition, message: str,
                    stop: threading.Event) -> None:
        self.prompt = message
        with contextlib.suppress(TransportError, ConnectionError):
            transport.close()
        if self._current is not None:
            card, loaded = self._current
            self._current = None
            self._pool.give_back(self._name, card, loaded, disposition)

    def card_lost(self, transport: Transport | None) -> None:
        if self._current is not None:
            card, loaded = self._current
            self._current = None
            self._pool.stuck(self._name, card, loaded)
            self._stuck = card

    def wait_for_reader(self, timeout: float) -> bool:
        if not self.gone:
            return True
        time.sleep(timeout)
        return not self.gone

    @property
    def exhausted(self) -> bool:
        return self._pool.idle

    def close(self) -> None:
        if self._current is not None:
            card, loaded = self._current
            self._current = None
            self._pool.stuck(self._name, card, loaded)
