"""The journal on SQLite and PostgreSQL: schema, transitions, constraints, recovery, claims."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_support import drop_pg_database, fresh_pg_database, pg_server
from healthcard_apdu.batch.errors import JournalError
from healthcard_apdu.batch.journal import (
    MIGRATIONS,
    ChipSerialConflict,
    Journal,
    NewRow,
    StateConflict,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        with Journal.open(tmp_path / "j.sqlite") as jnl:
            yield jnl
        return
    server = pg_server()
    dsn, name = fresh_pg_database(server)
    try:
        with Journal.open(dsn) as jnl:
            yield jnl
    finally:
        drop_pg_database(server, name)


def _rows(n: int, start: int = 1, prefix: str = "C") -> list[NewRow]:
    return [NewRow(i, f"{prefix}{i:05d}", f"I{prefix}{i:05d}", {"DDF1EF06": {"XM": f"n{i}"}})
            for i in range(start, start + n)]


def _load(journal: Journal, name: str, rows: list[NewRow]) -> None:
    journal.ensure_batch(name, f"{name}.csv", "f" * 64, "utf-8", "csv")
    journal.load_rows(name, rows)
    journal.finish_load(name, len(rows))


def test_migrations_are_recorded_and_idempotent(journal: Journal) -> None:
    latest = MIGRATIONS[-1][0]
    assert journal.schema_version() == latest
    assert journal.migrate() == latest
    assert journal.schema_version() == latest


def test_batch_fingerprint_must_match(journal: Journal) -> None:
    journal.ensure_batch("b", "b.csv", "a" * 64, "utf-8", "csv")
    journal.ensure_batch("b", "b.csv", "a" * 64, "utf-8", "csv")
    journal.load_rows("b", _rows(2))
    journal.finish_load("b", 2)
    with pytest.raises(JournalError, match="different contents"):
        journal.ensure_batch("b", "b.csv", "b" * 64, "utf-8", "csv")


def test_a_failed_load_is_registered_again_from_the_fixed_file(journal: Journal) -> None:
    """Registration commits before the rows load: a load that failed half way (bad input)
    must not pin the batch to the broken file's contents."""
    journal.ensure_batch("b", "b.csv", "a" * 64, "utf-8", "csv")
    journal.load_rows("b", _rows(3))  # ... then the file turned out broken at row 4
    info = journal.ensure_batch("b", "b.csv", "b" * 64, "gbk", "csv")
    assert (info.fingerprint, info.encoding, info.loaded_at) == ("b" * 64, "gbk", None)
    assert journal.last_loaded_row("b") == 0  # the old rows are gone, the load starts over
    assert [e["kind"] for e in journal.events("b")] == ["batch-created", "batch-reloaded"]
    with pytest.raises(JournalError, match="registered again"):  # a loader of the old file
        journal.load_rows("b", _rows(2, start=4), fingerprint="a" * 64)
    journal.load_rows("b", _rows(5), fingerprint="b" * 64)
    assert sum(journal.counts("b").values()) == 5


def test_a_batch_with_a_claimed_row_keeps_its_contents(journal: Journal) -> None:
    journal.ensure_batch("b", "b.csv", "a" * 64, "utf-8", "csv")
    journal.load_rows("b", _rows(3))
    row = journal.claim_next("b", "s", "r")
    assert row is not None
    journal.release_claim(row, "card unusable")  # queued again, but it was claimed once
    with pytest.raises(JournalError, match="different contents"):
        journal.ensure_batch("b", "b.csv", "b" * 64, "utf-8", "csv")


def test_full_life_of_a_row(journal: Journal) -> None:
    _load(journal, "b", _rows(2))
    row = journal.claim_next("b", "st", "r1")
    assert row is not None and row.row_no == 1 and row.state == "claimed"
    assert row.attempts == 1
    started = journal.start_personalizing(row, "CHIP1", "CHIP1", station="st", reader="r1")
    assert started.state == "personalizing" and started.chip_serial == "CHIP1"
    journal.finish_issued(started, "p/1", "k/1")
    done = journal.row(row.id)
    assert done is not None and done.state == "issued"
    assert (done.profile_version, done.keys_version) == ("p/1", "k/1")
    kinds = [e["kind"] for e in journal.events("b", row_id=row.id)]
    assert kinds == ["claimed", "personalizing", "issued"]
    assert journal.counts("b")["issued"] == 1
    assert journal.find_by_chip("CHIP1") == done


def test_transitions_check_the_current_state(journal: Journal) -> None:
    _load(journal, "b", _rows(1))
    row = journal.claim_next("b", "st", "r1")
    assert row is not None
    with pytest.raises(StateConflict, match="expected state personalizing, found claimed"):
        journal.finish_issued(row, None, None)
    started = journal.start_personalizing(row, "C1", "C1", station="st", reader="r1")
    journal.mark_needs_erase(started, "torn")
    with pytest.raises(StateConflict):
        journal.mark_needs_erase(started, "again")
    # recovery must happen on the same chip
    with pytest.raises(StateConflict, match="bound to chip C1"):
        journal.start_personalizing(started, "OTHER", "OTHER", station="st", reader="r1")
    again = journal.start_personalizing(started, "C1", "C1", station="st", reader="r2")
    assert again.state == "personalizing" and again.attempts == 2


def test_chip_serial_is_unique_by_constraint(journal: Journal) -> None:
    _load(journal, "b", _rows(2))
    first = journal.claim_next("b", "st", "r1")
    second = journal.claim_next("b", "st", "r2")
    assert first is not None and second is not None
    journal.start_personalizing(first, "SAME", "SAME", station="st", reader="r1")
    with pytest.raises(ChipSerialConflict):
        journal.start_personalizing(second, "SAME", "SAME", station="st", reader="r2")
    assert journal.row(second.id).state == "claimed"  # type: ignore[union-attr]


def test_card_number_is_unique_across_batches(journal: Journal) -> None:
    _load(journal, "a", _rows(3))
    journal.ensure_batch("b", "b.csv", "e" * 64, "utf-8", "csv")
    stored = journal.load_rows("b", _rows(2, start=2) + _rows(1, start=10))
    by_row = {r.row_no: r for r in stored}
    assert not by_row[2].valid and not by_row[3].valid and by_row[10].valid
    assert "already in the journal: batch 'a' row 2" in by_row[2].issues[0]["reason"]
    counts = journal.counts("b")
    assert (counts["invalid"], counts["queued"]) == (2, 1)


def test_load_resumes_without_duplicating(journal: Journal) -> None:
    journal.ensure_batch("b", "b.csv", "c" * 64, "utf-8", "csv")
    journal.load_rows("b", _rows(3))
    assert journal.last_loaded_row("b") == 3
    stored = journal.load_rows("b", _rows(5))  # rows 1-3 again (a resumed load) plus 4-5
    assert [r.row_no for r in stored] == [4, 5]
    assert sum(journal.counts("b").values()) == 5


def test_recover_station(journal: Journal) -> None:
    _load(journal, "b", _rows(4))
    claimed = journal.claim_next("b", "dead", "r1")
    half = journal.claim_next("b", "dead", "r2")
    other = journal.claim_next("b", "alive", "r1")
    assert claimed and half and other
    journal.start_personalizing(half, "H", "H", station="dead", reader="r2")
    assert journal.recover_station("dead") == {"requeued": 1, "needs_erase": 1}
    assert journal.row(claimed.id).state == "queued"  # type: ignore[union-attr]
    recovered = journal.row(half.id)
    assert recovered is not None and recovered.state == "needs-erase"
    assert recovered.chip_serial == "H" and recovered.reason
    assert journal.row(other.id).state == "claimed"  # type: ignore[union-attr]


def test_failed_rows_retry_until_attempts_run_out(journal: Journal) -> None:
    _load(journal, "b", _rows(1))
    for attempt in range(1, 4):
        row = journal.claim_next("b", "st", "r1")
        assert row is not None and row.attempts == attempt
        started = journal.start_personalizing(row, "X", "X", station="st", reader="r1")
        journal.mark_failed(started, f"refused {attempt}")
        failed = journal.row(row.id)
        assert failed is not None and failed.chip_serial is None  # card is blank again
        assert journal.claim_next("b", "st", "r1") is None  # not retried within a run
        journal.requeue_failed("b", max_attempts=3)
    assert journal.counts("b")["failed"] == 1  # third failure: no attempts left
    assert journal.requeue_failed("b", max_attempts=4) == 1


def test_void_card_requeues_row_and_remembers_chip(journal: Journal) -> None:
    _load(journal, "b", _rows(1))
    row = journal.claim_next("b", "st", "r1")
    assert row is not None
    started = journal.start_personalizing(row, "LOST", "LOST", station="st", reader="r1")
    with pytest.raises(StateConflict):
        journal.void_card("LOST", "still personalizing")
    journal.mark_needs_erase(started, "pulled")
    journal.void_card("LOST", "card destroyed")
    assert journal.is_void("LOST")
    again = journal.row(row.id)
    assert again is not None and again.state == "queued" and again.chip_serial is None
    journal.unvoid_card("LOST", "erased")
    assert not journal.is_void("LOST")


def test_station_lease(journal: Journal) -> None:
    journal.register_station("s1")
    journal.register_station("s1")  # the same process may take it again
    with pytest.raises(JournalError, match="already running"):
        journal.register_station("s1", pid=os.getppid())
    assert journal.station_alive("s1")
    journal.unregister_station("s1")
    assert not journal.station_alive("s1")
    # a lease left by a dead process on this host is taken over at once
    journal.register_station("s2", pid=2**22 + 12345)
    journal.register_station("s2")


def test_concurrent_claims_never_share_a_row(journal: Journal) -> None:
    _load(journal, "b", _rows(200))
    claims: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(reader: str) -> None:
        try:
            while (row := journal.claim_next("b", "st", reader)) is not None:
                with lock:
                    claims.append(row.row_no)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            journal.close_thread_connection()

    threads = [threading.Thread(target=claimer, args=(f"r{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(claims) == list(range(1, 201))


def test_sqlite_journal_is_wal_and_keeps_no_secrets(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as jnl:
        _load(jnl, "b", _rows(1))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {r[1] for r in conn.execute("PRAGMA table_info(rows)")}
    assert not {c for c in columns if "key" in c and not c.endswith("_version")}
    assert not {c for c in columns if "pin" in c}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future')")
    with pytest.raises(JournalError, match="newer than this program"):
        Journal.open(path)


def test_bad_postgres_dsn_names_the_server_without_password() -> None:
    with pytest.raises(JournalError) as info:
        Journal.open("postgresql://user:s3cret@127.0.0.1:1/none?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_purge_keeps_unfinished_work_on_both_backends(journal: Journal) -> None:
    from datetime import UTC, datetime, timedelta

    _load(journal, "b", _rows(4))
    done = journal.claim_next("b", "s", "r")
    assert done is not None
    done = journal.start_personalizing(done, "CHIP1", "F", station="s", reader="r")
    journal.finish_issued(done, "p", "k")
    failed = journal.claim_next("b", "s", "r")
    assert failed is not None
    journal.mark_failed(failed, "card refused")
    assert journal.purge(datetime.now(UTC) - timedelta(days=1)) == {}  # too recent
    assert journal.purge(datetime.now(UTC) + timedelta(seconds=1), "b") == {"b": 1}
    by_no = {r.row_no: r for r in journal.rows("b")}
    assert by_no[1].record is None and by_no[1].chip_serial == "CHIP1"
    assert by_no[1].state == "issued" and by_no[1].card_number is None
    assert by_no[2].state == "failed" and by_no[2].record is not None  # may be retried
    assert by_no[3].state == "queued" and by_no[3].resident  # still to issue
