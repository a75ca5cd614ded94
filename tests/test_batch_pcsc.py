"""The PC/SC reader slot with the pcsc module replaced by a scripted operator and reader."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import pytest

from batch_support import RawIssuer, check_invariants, valid_row, write_csv
from healthcard_apdu.batch.journal import Journal
from healthcard_apdu.batch.runner import BatchRunner
from healthcard_apdu.batch.slots import PcscReaderSlot
from healthcard_apdu.sim.card import SimCard
from healthcard_apdu.sim.faults import FaultPlan
from healthcard_apdu.transport import InProcessTransport, NoCardError, NoReaderError, pcsc


class _SeatedTransport(InProcessTransport):
    """A card that stays seated in the reader: a cold reset after a power loss brings it back
    (what a PC/SC reader does after a tear)."""

    def reset(self, cold: bool = False) -> bytes:
        card = self.card
        if isinstance(card, SimCard) and not card.present:
            card.insert()
        return super().reset(cold)


class _FakeReader:
    """Scripted PC/SC: cards arrive from a queue; removal is immediate; the reader can vanish
    once (before card ``vanish_before``) and comes back on the next poll."""

    def __init__(self, cards: list[SimCard], vanish_before: int | None = None) -> None:
        self.cards = deque(cards)
        self.inserted: list[SimCard] = []
        self.current: SimCard | None = None
        self.vanish_before = vanish_before
        self.vanished = False

    def wait_for_card(self, reader: str, *, present: bool = True, timeout: float = 10.0
                      ) -> bytes:
        if not present:
            self.current = None
            return b""
        if self.vanish_before == len(self.inserted) + 1 and not self.vanished:
            self.vanished = True
            raise NoReaderError(f"reader {reader!r} was removed")
        if self.current is None:
            if not self.cards:
                raise NoCardError("no card")
            self.current = self.cards.popleft()
            self.inserted.append(self.current)
        return self.current.atr()

    def transport(self, reader: str) -> InProcessTransport:
        assert self.current is not None
        return _SeatedTransport(self.current, name=f"pcsc:{reader}")

    def list_readers(self) -> list[str]:
        return ["Fake Reader 0"]


def _blank(tmp_path: Path, n: int) -> SimCard:
    return SimCard.blank(os.urandom(8), path=tmp_path / f"card{n}.card.json", durable=False)


def test_pcsc_slot_issues_recovers_a_torn_card_in_place_and_survives_unplug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [valid_row(i) for i in range(4)]
    path = write_csv(tmp_path / "r.csv", rows)
    cards = [_blank(tmp_path, i) for i in range(4)]
    cards[1].faults = FaultPlan(tear_at=10)  # power lost in the middle of issuance
    fake = _FakeReader(cards, vanish_before=3)
    monkeypatch.setattr(pcsc, "wait_for_card", fake.wait_for_card)
    monkeypatch.setattr(pcsc, "PcscTransport", fake.transport)
    monkeypatch.setattr(pcsc, "list_readers", fake.list_readers)
    with Journal.open(tmp_path / "j.sqlite") as journal:
        slot = PcscReaderSlot("Fake Reader 0", poll=0.01)
        with BatchRunner(journal, RawIssuer(), [slot], station="desk", idle_timeout=0.2,
                         reader_grace=5.0) as runner:
            batch, _ = runner.load(path)
            summary = runner.run(batch)
        assert summary.complete, summary.lines()
        # the torn card was finished on the same insertion: four cards for four residents
        assert len(fake.inserted) == 4
        torn = journal.find_by_chip(cards[1].card_factor.hex().upper())
        assert torn is not None and torn.state == "issued" and torn.attempts == 2
        kinds = [e["kind"] for e in journal.events(batch, row_id=torn.id)]
        assert kinds == ["claimed", "personalizing", "needs-erase", "personalizing", "erased",
                         "issued"]
        assert [e["kind"] for e in journal.events(batch, kinds=["reader-lost", "reader-back"])
                ] == ["reader-lost", "reader-back"]
        check_invariants(journal, batch, [tmp_path], expected_rows=4)
