"""Batch runs on simulated readers: the acceptance scenario, retries, recovery, odd cards."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_support import (
    FaultSchedule,
    RawIssuer,
    SimStore,
    check_invariants,
    drop_pg_database,
    fresh_pg_database,
    pg_server,
    valid_row,
    write_csv,
)
from healthcard_apdu.batch.journal import Journal
from healthcard_apdu.batch.progress import format_seconds, rate_and_eta
from healthcard_apdu.batch.runner import BatchRunner
from healthcard_apdu.batch.slots import CardPool, SimReaderFaults, SimReaderSlot
from healthcard_apdu.sim.card import SimCard
from healthcard_apdu.transport import InProcessTransport


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "residents.journal.sqlite")
        return
    server = pg_server()
    dsn, name = fresh_pg_database(server)
    try:
        yield dsn
    finally:
        drop_pg_database(server, name)


def _acceptance_rows() -> tuple[list[dict[str, str]], set[int]]:
    """1,000 rows: 20 invalid (four kinds) and one duplicate ID. Returns rows and the file
    line numbers that must be rejected."""
    rows = [valid_row(i) for i in range(1000)]
    bad: set[int] = set()
    for k in range(20):
        i = 50 * k + 7
        kind = k % 4
        if kind == 0:  # wrong check digit
            last = rows[i]["SFZH"][-1]
            rows[i]["SFZH"] = rows[i]["SFZH"][:-1] + ("0" if last != "0" else "1")
        elif kind == 1:  # birth date does not match the ID number
            rows[i]["CSRQ"] = "19990909"
        elif kind == 2:  # name too long in GBK (16 characters = 32 bytes > 30)
            rows[i]["XM"] = "张" * 16
        else:  # unknown ethnicity code
            rows[i]["MZ"] = "77"
        bad.add(i + 2)
    rows[999] = dict(rows[3])  # duplicate ID number (and card number) of row 5 (line 5)
    bad.add(999 + 2)
    return rows, bad


def _runner(journal: Journal, pool: CardPool, readers: int, *, vanish: int | None = None,
            issuer: RawIssuer | None = None, **kwargs: object) -> BatchRunner:
    slots = [
        SimReaderSlot(f"sim{i}", pool, faults=SimReaderFaults(vanish_on_card=vanish)
                      if vanish is not None and i == readers - 1 else None)
        for i in range(readers)
    ]
    return BatchRunner(journal, issuer or RawIssuer(), slots, station="station-1",
                       reader_grace=0.0, **kwargs)  # type: ignore[arg-type]


def test_acceptance_1000_rows_four_readers_with_faults(tmp_path: Path,
                                                       journal_target: str) -> None:
    rows, bad_lines = _acceptance_rows()
    path = write_csv(tmp_path / "residents.csv", rows)
    pool_dir = tmp_path / "cards"
    faults = FaultSchedule(tear_rate=0.05, remove_card=17, seed=3)
    with Journal.open(journal_target, synchronous="NORMAL") as journal:
        pool = CardPool(pool_dir, SimStore(), fault_hook=faults)
        with _runner(journal, pool, 4, vanish=25) as runner:
            batch, report = runner.load(path)
            assert report.invalid == len(bad_lines) == 21
            assert {issue.row for issue in report.issues} == bad_lines
            first = runner.run(batch)
        counts = check_invariants(journal, batch, [pool_dir], expected_rows=1000)
        # the vanished reader took its card with it; everything else got issued
        assert first.counts["needs-erase"] == 1 and counts["needs-erase"] == 1
        assert counts["issued"] == 1000 - 21 - 1
        assert pool.stats.stuck == 1
        gone = [r for r in first.readers if r["state"] == "reader-gone"]
        assert len(gone) == 1
        # the faults really happened: torn / pulled cards were set aside and recovered
        tears = [e for e in journal.events(batch, kinds=["needs-erase"])]
        assert len(tears) >= 30
        assert all(e["detail"] for e in tears)
        assert first.this_run["recovered"] >= len(tears) - 1
        assert not first.complete

        # second run: a fresh feeder finds the card left in the vanished reader
        pool2 = CardPool(pool_dir, SimStore())
        with _runner(journal, pool2, 4) as runner:
            runner.load(path)
            second = runner.run(batch)
        counts = check_invariants(journal, batch, [pool_dir], expected_rows=1000)
        assert counts["issued"] == 1000 - 21
        assert second.complete
        assert second.this_run["issued"] == 1
        # every row claimed by exactly one reader at a time: each issued row's claims match
        # its attempts
        claims: dict[int, int] = {}
        for event in journal.events(batch, kinds=["claimed"]):
            claims[event["row_id"]] = claims.get(event["row_id"], 0) + 1
        for row in journal.rows(batch, ["issued"]):
            assert claims[row.id] <= row.attempts


def test_failures_are_retried_in_the_next_run(tmp_path: Path) -> None:
    rows = [valid_row(i) for i in range(40)]
    path = write_csv(tmp_path / "r.csv", rows)
    flaky = rows[5]["SFZH"]
    stubborn = rows[9]["SFZH"]
    issuer = RawIssuer(fail_on={flaky: 1, stubborn: 100})
    with Journal.open(tmp_path / "j.sqlite", synchronous="NORMAL") as journal:
        pool = CardPool(tmp_path / "cards", SimStore())
        with _runner(journal, pool, 2, issuer=issuer, max_attempts=2) as runner:
            batch, _ = runner.load(path)
            first = runner.run(batch)
        assert first.counts["failed"] == 2
        assert all("refused by the test issuer" in f["reason"] for f in first.failures)
        # the cards were erased and reused: no card carries a failed resident
        check_invariants(journal, batch, [tmp_path / "cards"], expected_rows=40)
        with _runner(journal, CardPool(tmp_path / "cards", SimStore()), 2, issuer=issuer,
                     max_attempts=2) as runner:
            second = runner.run(batch)
        assert second.retried == 2
        assert second.counts["issued"] == 39
        (left,) = second.failures
        assert left["attempts"] == 2 and "refused" in left["reason"]
        with _runner(journal, CardPool(tmp_path / "cards", SimStore()), 2, issuer=issuer,
                     max_attempts=2) as runner:
            third = runner.run(batch)
        assert third.retried == 0  # attempts used up: stays failed, with its reason
        check_invariants(journal, batch, [tmp_path / "cards"], expected_rows=40)


def test_consecutive_failures_stop_a_reader(tmp_path: Path) -> None:
    rows = [valid_row(i) for i in range(30)]
    path = write_csv(tmp_path / "r.csv", rows)
    issuer = RawIssuer(fail_on={r["SFZH"]: 100 for r in rows})
    with Journal.open(tmp_path / "j.sqlite", synchronous="NORMAL") as journal:
        pool = CardPool(tmp_path / "cards", SimStore())
        with _runner(journal, pool, 1, issuer=issuer, max_consecutive_failures=4) as runner:
            batch, _ = runner.load(path)
            summary = runner.run(batch)
    assert summary.readers[0]["state"] == "stopped"
    assert summary.counts["failed"] == 4 and summary.counts["queued"] == 26


def _issued_card(path: Path, number: str) -> None:
    card = SimCard.blank(bytes.fromhex("1122334455667788"), path=path, durable=False)
    link = InProcessTransport(card)
    RawIssuer().issue(link, {"DDF1EF05": {"KH": number}, "DDF1EF06": {"XM": "x"}})
    link.close()


def test_odd_cards_in_the_stock(tmp_path: Path) -> None:
    """A card issued by someone else is set aside; a void card is erased and used."""
    rows = [valid_row(i) for i in range(3)]
    path = write_csv(tmp_path / "r.csv", rows)
    stock = tmp_path / "cards" / "stock"
    stock.mkdir(parents=True)
    _issued_card(stock / "card000001.card.json", "999999999999999999")
    void = SimCard.blank(bytes.fromhex("AABBCCDDEEFF0011"), path=stock / "card000002.card.json",
                         durable=False)
    link = InProcessTransport(void)
    RawIssuer().issue(link, {"DDF1EF05": {"KH": rows[0]["SFZH"]}, "DDF1EF06": {"XM": "x"}})
    link.close()
    with Journal.open(tmp_path / "j.sqlite") as journal:
        journal.void_card("AABBCCDDEEFF0011", "declared lost before this test")
        pool = CardPool(tmp_path / "cards", SimStore())
        with _runner(journal, pool, 1) as runner:
            batch, _ = runner.load(path)
            summary = runner.run(batch)
        assert summary.counts["issued"] == 3
        assert pool.stats.rejected == 1
        rejected = journal.events(batch, kinds=["card-rejected"])
        assert "not by this journal" in rejected[0]["detail"]
        assert journal.events(batch, kinds=["void-erased"])
        assert not journal.is_void("AABBCCDDEEFF0011")
        assert [p.name for p in pool.paths("rejected")] == ["card000001.card.json"]
        check_invariants(journal, batch, [tmp_path / "cards" / "done"], expected_rows=3)


def test_reader_that_comes_back_continues(tmp_path: Path) -> None:
    rows = [valid_row(i) for i in range(60)]
    path = write_csv(tmp_path / "r.csv", rows)
    with Journal.open(tmp_path / "j.sqlite", synchronous="NORMAL") as journal:
        pool = CardPool(tmp_path / "cards", SimStore())
        slots = [SimReaderSlot("only", pool,
                               faults=SimReaderFaults(vanish_on_card=3, back_after=0.3))]
        with BatchRunner(journal, RawIssuer(), slots, station="s", reader_grace=5.0) as runner:
            batch, _ = runner.load(path)
            summary = runner.run(batch)
        assert summary.complete
        kinds = [e["kind"] for e in journal.events(batch, kinds=["reader-lost", "reader-back"])]
        assert kinds == ["reader-lost", "reader-back"]
        check_invariants(journal, batch, [tmp_path / "cards"], expected_rows=60)


def test_progress_display_and_summary_text(tmp_path: Path) -> None:
    assert rate_and_eta(0, 10.0, 5) == (0.0, None)
    rate, eta = rate_and_eta(30, 60.0, 60)
    assert rate == 30.0 and eta == 120.0
    assert format_seconds(3725) == "1:02:05" and format_seconds(None) == "--:--"
    rows = [valid_row(i) for i in range(10)]
    path = write_csv(tmp_path / "r.csv", rows)
    stream = io.StringIO()
    with Journal.open(tmp_path / "j.sqlite") as journal:
        pool = CardPool(tmp_path / "cards", SimStore())
        with _runner(journal, pool, 2, progress=stream, progress_tty=True) as runner:
            batch, _ = runner.load(path)
            summary = runner.run(batch)
    text = stream.getvalue()
    assert "sim0" in text and "sim1" in text and "cards/min" in text
    assert "\x1b[" in text  # redrawn in place on a terminal
    human = "\n".join(summary.lines())
    assert "issued 10" in human and "complete" in human
    data = summary.to_dict()
    assert data["complete"] is True and data["counts"]["issued"] == 10
