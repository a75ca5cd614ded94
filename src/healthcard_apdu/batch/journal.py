"""The batch journal: one row per resident, every state change logged, on SQLite or PostgreSQL.

States of a row::

    queued -> claimed -> personalizing -> issued
                 |             |------> failed (reason)       card erased again, or never touched
                 v             '------> needs-erase (reason)  card half done; bound to its chip
              queued                        |
                                            '-> personalizing (recovery, same card) -> ...
    invalid (reasons)   rejected by validation; never issued

The chip serial is written (state ``personalizing``) before the first write to a card, so after a
crash every half-done card can be found by its chip serial. Card number, ID number and chip serial
are unique by database constraint across all batches of one journal: no resident can be given two
cards, and no card can be given to two residents.

Both back ends use the same schema and the same numbered migrations. SQLite runs in WAL mode with
``BEGIN IMMEDIATE`` write transactions; PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so that
several stations can share one queue. Key values and PINs are never stored; resident records are
(they are needed to issue and are not secret).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from healthcard_apdu.batch.errors import JournalError
from healthcard_apdu.fileio import create_private

State = Literal[
    "queued", "claimed", "personalizing", "issued", "failed", "needs-erase", "invalid"
]
STATES: Final[tuple[State, ...]] = (
    "queued", "claimed", "personalizing", "issued", "failed", "needs-erase", "invalid"
)
IN_FLIGHT: Final[tuple[State, ...]] = ("claimed", "personalizing")

HEARTBEAT_STALE = timedelta(seconds=30)

Holder = tuple[str, int, str]  # (batch, row_no, state) of a row that holds a number

# Numbered migrations. ``{pk}`` becomes the dialect's auto-increment primary key.
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (1, (
        """CREATE TABLE batches (
            name TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            encoding TEXT NOT NULL,
            format TEXT NOT NULL,
            created_at TEXT NOT NULL,
            loaded_at TEXT,
            total_rows INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE rows (
            id {pk},
            batch TEXT NOT NULL REFERENCES batches(name),
            row_no INTEGER NOT NULL,
            card_number TEXT UNIQUE,
            id_number TEXT UNIQUE,
            state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'personalizing',
                'issued', 'failed', 'needs-erase', 'invalid')),
            reason TEXT,
            issues TEXT,
            record TEXT,
            chip_serial TEXT UNIQUE,
            card_factor TEXT,
            reader TEXT,
            station TEXT,
            claimed_at TEXT,
            started_at TEXT,
            finished_at TEXT,
            profile_version TEXT,
            keys_version TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            UNIQUE (batch, row_no)
        )""",
        "CREATE INDEX rows_batch_state ON rows (batch, state, row_no)",
        "CREATE INDEX rows_station_state ON rows (station, state)",
        """CREATE TABLE events (
            id {pk},
            at TEXT NOT NULL,
            batch TEXT NOT NULL,
            row_id INTEGER,
            row_no INTEGER,
            station TEXT,
            reader TEXT,
            kind TEXT NOT NULL,
            state_from TEXT,
            state_to TEXT,
            chip_serial TEXT,
            detail TEXT
        )""",
        "CREATE INDEX events_row ON events (row_id)",
        """CREATE TABLE void_cards (
            chip_serial TEXT PRIMARY KEY,
            row_id INTEGER,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        """CREATE TABLE stations (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL
        )""",
    )),
)

_ROW_COLUMNS: Final = (
    "id, batch, row_no, card_number, id_number, state, reason, issues, record, chip_serial, "
    "card_factor, reader, station, claimed_at, started_at, finished_at, profile_version, "
    "keys_version, attempts"
)


def now() -> str:
    """UTC time as ISO-8601 text (the journal's time format)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class RowRecord:
    """One journal row."""

    id: int
    batch: str
    row_no: int
    card_number: str | None
    id_number: str | None
    state: State
    reason: str | None
    issues: str | None
    record: str | None
    chip_serial: str | None
    card_factor: str | None
    reader: str | None
    station: str | None
    claimed_at: str | None
    started_at: str | None
    finished_at: str | None
    profile_version: str | None
    keys_version: str | None
    attempts: int

    @property
    def resident(self) -> dict[str, Any]:
        """The stored resident record (pinyin codes -> values)."""
        if self.record is None:
            raise JournalError(f"batch {self.batch} row {self.row_no}: no resident record stored")
        value = json.loads(self.record)
        if not isinstance(value, dict):
            raise JournalError(f"batch {self.batch} row {self.row_no}: record is not an object")
        return value


@dataclass(frozen=True, slots=True)
class BatchInfo:
    name: str
    source: str
    fingerprint: str
    encoding: str
    format: str
    created_at: str
    loaded_at: str | None
    total_rows: int


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row to load: valid (``record`` set, state queued) or invalid (``issues`` set)."""

    row_no: int
    card_number: str | None
    id_number: str | None
    record: Mapping[str, Any] | None
    issues: Sequence[Mapping[str, Any]] = ()

    @property
    def valid(self) -> bool:
        return not self.issues


@dataclass(frozen=True, slots=True)
class Pending:
    """What is left to do in a batch."""

    queued: int
    needs_erase: int
    in_flight: int

    @property
    def done(self) -> bool:
        return self.queued == 0 and self.needs_erase == 0 and self.in_flight == 0


class StateConflict(JournalError):
    """A row was not in the state a transition expected (someone else moved it)."""


class ChipSerialConflict(JournalError):
    """The chip serial is already bound to another row."""


def _is_db_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg")


def _is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate == "23505"


class _Dialect:
    """What differs between SQLite and PostgreSQL, behind one small surface."""

    name: str
    pk: str

    def connect(self) -> Any:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text

    @contextlib.contextmanager
    def transaction(self, conn: Any) -> Iterator[Any]:
        raise NotImplementedError
        yield  # pragma: no cover

    def claim_sql(self) -> str:
        raise NotImplementedError

    lock_rows = ""  # suffix of a SELECT that locks the rows it reads

    def migration_lock(self, cur: Any) -> None:
        """Serialize migrations between processes (inside the transaction)."""

    def load_lock(self, cur: Any, batch: str) -> None:
        """Serialize loading of one batch between processes (inside the transaction)."""

    def describe(self) -> str:
        raise NotImplementedError


class _SqliteDialect(_Dialect):
    name = "sqlite"
    pk = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous

    def connect(self) -> sqlite3.Connection:
        # The journal holds residents' records: create it 0600 (SQLite gives its -wal and
        # -shm files the database file's mode). An existing file keeps its mode.
        if str(self.path) != ":memory:":
            with contextlib.suppress(OSError):  # a missing directory: sqlite says so below
                create_private(self.path)
        try:
            conn = sqlite3.connect(
                self.path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch SQLite to WAL (got {mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open SQLite journal: {exc}") from exc
        return conn

    @contextlib.contextmanager
    def transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def claim_sql(self) -> str:
        # Runs inside BEGIN IMMEDIATE, which already excludes every other writer.
        return (
            "UPDATE rows SET state = 'claimed', station = ?, reader = ?, claimed_at = ?, "
            "attempts = attempts + 1 WHERE id = (SELECT id FROM rows WHERE batch = ? AND "
            f"state = 'queued' ORDER BY row_no LIMIT 1) RETURNING {_ROW_COLUMNS}"
        )

    def describe(self) -> str:
        return f"sqlite:{self.path}"


class _PostgresDialect(_Dialect):
    name = "postgresql"
    lock_rows = " FOR UPDATE"
    pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise JournalError(
                "a PostgreSQL journal needs psycopg 3: pip install 'healthcard-apdu[postgresql]'"
            ) from exc
        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=15)
        except psycopg.Error as exc:
            raise JournalError(
                f"{self.describe()}: cannot connect: {str(exc).strip()}"
            ) from exc

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @contextlib.contextmanager
    def transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def claim_sql(self) -> str:
        return (
            "UPDATE rows SET state = 'claimed', station = %s, reader = %s, claimed_at = %s, "
            "attempts = attempts + 1 WHERE id = (SELECT id FROM rows WHERE batch = %s AND "
            "state = 'queued' ORDER BY row_no LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"AND state = 'queued' RETURNING {_ROW_COLUMNS}"
        )

    def migration_lock(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(7243551)")

    def load_lock(self, cur: Any, batch: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(7243552, hashtext(%s))", (batch,))

    def describe(self) -> str:
        # Never print a password that may sit in the DSN.
        try:
            from psycopg.conninfo import conninfo_to_dict

            parts = conninfo_to_dict(self.dsn)
        except Exception:
            return "postgresql"
        host = parts.get("host") or "localhost"
        return f"postgresql://{parts.get('user') or ''}@{host}:{parts.get('port') or 5432}/" \
               f"{parts.get('dbname') or ''}"


def is_postgres_target(target: str | Path) -> bool:
    """A ``postgresql://`` URL or a libpq ``key=value`` connection string (not a file path)."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return True
    words = text.split()
    return bool(words) and all("=" in word for word in words) and any(
        word.split("=", 1)[0] in ("dbname", "host", "service") for word in words)


def default_journal_path(residents: str | Path) -> Path:
    """The SQLite journal next to a resident file (``x.csv`` -> ``x.journal.sqlite``)."""
    path = Path(residents)
    return path.with_name(f"{path.stem}.journal.sqlite")


class Journal:
    """Thread-safe access to one journal; each thread gets its own connection."""

    def __init__(self, dialect: _Dialect) -> None:
        self._dialect = dialect
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, target: str | Path, *, synchronous: str = "FULL", migrate: bool = True
             ) -> Journal:
        """Open (and migrate) the journal at a SQLite path or a ``postgresql://`` URL."""
        text = str(target)
        dialect: _Dialect
        if is_postgres_target(text):
            dialect = _PostgresDialect(text)
        else:
            if text.startswith("sqlite:"):
                text = text.removeprefix("sqlite:").removeprefix("//")
            dialect = _SqliteDialect(Path(text), synchronous)
        journal = cls(dialect)
        if migrate:
            journal.migrate()
        return journal

    @property
    def backend(self) -> str:
        return self._dialect.name

    def describe(self) -> str:
        """Where the journal lives, without credentials."""
        return self._dialect.describe()

    def _conn(self) -> Any:
        if self._closed:
            raise JournalError(f"{self.describe()}: journal is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._dialect.connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection opened by any thread."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(Exception):
                    conn.close()
            self._connections.clear()

    def close_thread_connection(self) -> None:
        """Close the calling thread's connection (workers call this when they end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        try:
            with self._dialect.transaction(self._conn()) as cur:
                yield cur
        except JournalError:
            raise
        except Exception as exc:
            if _is_unique_violation(exc):
                raise
            if _is_db_error(exc):
                raise JournalError(f"{self.describe()}: {str(exc).strip()}") from exc
            raise

    def _q(self, text: str) -> str:
        return self._dialect.sql(text)

    def _read(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn()
        try:
            cur = conn.cursor()
            try:
                cur.execute(self._q(text), tuple(params))
                return list(cur.fetchall())
            finally:
                cur.close()
        except Exception as exc:
            if _is_db_error(exc):
                raise JournalError(f"{self.describe()}: {str(exc).strip()}") from exc
            raise

    # -------------------------------------------------------------- migrations
    def schema_version(self) -> int:
        rows = self._read(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
            if self.backend == "postgresql"
            else "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                 "AND name = 'schema_version'"
        )
        if not rows[0][0]:
            return 0
        version = self._read("SELECT MAX(version) FROM schema_version")[0][0]
        return int(version or 0)

    def migrate(self) -> int:
        """Apply every migration not yet applied; returns the resulting schema version."""
        latest = MIGRATIONS[-1][0]
        with self._tx() as cur:
            self._dialect.migration_lock(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                        "applied_at TEXT NOT NULL)")
            cur.execute("SELECT MAX(version) FROM schema_version")
            current = int(cur.fetchone()[0] or 0)
            if current > latest:
                raise JournalError(
                    f"{self.describe()}: schema version {current} is newer than this program "
                    f"knows ({latest}); upgrade healthcard-apdu"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    cur.execute(statement.replace("{pk}", self._dialect.pk))
                cur.execute(self._q("INSERT INTO schema_version (version, applied_at) "
                                    "VALUES (?, ?)"), (version, now()))
        return latest

    # ------------------------------------------------------------------ events
    def _event(self, cur: Any, batch: str, kind: str, *, row: RowRecord | None = None,
               row_id: int | None = None, row_no: int | None = None,
               station: str | None = None, reader: str | None = None,
               state_from: str | None = None, state_to: str | None = None,
               chip_serial: str | None = None, detail: str | None = None) -> None:
        if row is not None:
            row_id = row.id if row_id is None else row_id
            row_no = row.row_no if row_no is None else row_no
        cur.execute(
            self._q("INSERT INTO events (at, batch, row_id, row_no, station, reader, kind, "
                    "state_from, state_to, chip_serial, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (now(), batch, row_id, row_no, station, reader, kind, state_from, state_to,
             chip_serial, detail),
        )

    # ------------------------------------------------------------------ stations
    def register_station(self, station: str, *, host: str | None = None,
                         pid: int | None = None) -> None:
        """Take the station lease; refuse when a live process already holds it.

        A lease is live when its heartbeat is recent and, on this host, its process exists.
        """
        host = host or socket.gethostname()
        pid = os.getpid() if pid is None else pid
        with self._tx() as cur:
            cur.execute(self._q("SELECT host, pid, heartbeat_at FROM stations WHERE name = ?"),
                        (station,))
            found = cur.fetchone()
            if found is not None:
                old_host, old_pid, beat = found
                if not (old_host == host and int(old_pid) == pid) and _lease_alive(
                    old_host, int(old_pid), beat, host
                ):
                    raise JournalError(
                        f"station {station!r} is already running (pid {old_pid} on {old_host}); "
                        "give each runner its own --station name"
                    )
                cur.execute(self._q("UPDATE stations SET host = ?, pid = ?, started_at = ?, "
                                    "heartbeat_at = ? WHERE name = ?"),
                            (host, pid, now(), now(), station))
            else:
                cur.execute(self._q("INSERT INTO stations (name, host, pid, started_at, "
                                    "heartbeat_at) VALUES (?, ?, ?, ?, ?)"),
                            (station, host, pid, now(), now()))

    def heartbeat(self, station: str) -> None:
        with self._tx() as cur:
            cur.execute(self._q("UPDATE stations SET heartbeat_at = ? WHERE name = ?"),
                        (now(), station))

    def unregister_station(self, station: str) -> None:
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM stations WHERE name = ? AND pid = ?"),
                        (station, os.getpid()))

    def station_alive(self, station: str) -> bool:
        rows = self._read("SELECT host, pid, heartbeat_at FROM stations WHERE name = ?",
                          (station,))
        if not rows:
            return False
        host, pid, beat = rows[0]
        return _lease_alive(host, int(pid), beat, socket.gethostname())

    # ------------------------------------------------------------------- batches
    def batch(self, name: str) -> BatchInfo | None:
        rows = self._read("SELECT name, source, fingerprint, encoding, format, created_at, "
                          "loaded_at, total_rows FROM batches WHERE name = ?", (name,))
        return BatchInfo(*rows[0]) if rows else None

    def batches(self) -> list[BatchInfo]:
        rows = self._read("SELECT name, source, fingerprint, encoding, format, created_at, "
                          "loaded_at, total_rows FROM batches ORDER BY created_at")
        return [BatchInfo(*row) for row in rows]

    def ensure_batch(self, name: str, source: str, fingerprint: str, encoding: str,
                     fmt: str) -> BatchInfo:
        """Create the batch, or check that an existing one was loaded from the same bytes.

        A batch whose load never finished and none of whose rows was ever claimed (a load
        that failed on bad input) is registered again from the new contents: its rows are
        dropped and loading starts over (event ``batch-reloaded``). Any other batch keeps its
        contents: a changed file needs a new batch name.
        """
        with self._tx() as cur:
            self._dialect.load_lock(cur, name)
            cur.execute(self._q("SELECT fingerprint, source, loaded_at FROM batches "
                                f"WHERE name = ?{self._dialect.lock_rows}"), (name,))
            found = cur.fetchone()
            if found is None:
                cur.execute(
                    self._q("INSERT INTO batches (name, source, fingerprint, encoding, format, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?)"),
                    (name, source, fingerprint, encoding, fmt, now()),
                )
                self._event(cur, name, "batch-created", detail=source)
            elif found[0] != fingerprint and found[2] is None and self._untouched(cur, name):
                cur.execute(self._q("DELETE FROM rows WHERE batch = ?"), (name,))
                cur.execute(
                    self._q("UPDATE batches SET source = ?, fingerprint = ?, encoding = ?, "
                            "format = ?, total_rows = 0 WHERE name = ?"),
                    (source, fingerprint, encoding, fmt, name),
                )
                self._event(cur, name, "batch-reloaded",
                            detail=f"{source}: the earlier load (sha256 {found[0][:16]}…) did "
                                   "not finish and no row was claimed; loading again")
            elif found[0] != fingerprint:
                raise JournalError(
                    f"batch {name!r} was loaded from {found[1]} with different contents "
                    f"(sha256 {found[0][:16]}…, now {fingerprint[:16]}…); "
                    "use a new --batch name for a changed file"
                )
        info = self.batch(name)
        assert info is not None
        return info

    def _untouched(self, cur: Any, batch: str) -> bool:
        """No row of the batch was ever claimed (all queued or invalid, no attempt)."""
        cur.execute(self._q("SELECT COUNT(*) FROM rows WHERE batch = ? AND (attempts > 0 OR "
                            "state NOT IN ('queued', 'invalid'))"), (batch,))
        return int(cur.fetchone()[0]) == 0

    def last_loaded_row(self, batch: str) -> int:
        rows = self._read("SELECT MAX(row_no) FROM rows WHERE batch = ?", (batch,))
        return int(rows[0][0] or 0)

    def existing_numbers(self, cur: Any, card_numbers: Sequence[str], id_numbers: Sequence[str]
                         ) -> tuple[dict[str, Holder], dict[str, Holder]]:
        """Card and ID numbers already in the journal: number -> (batch, row_no, state)."""
        by_card: dict[str, Holder] = {}
        by_id: dict[str, Holder] = {}
        for column, values, out in (("card_number", card_numbers, by_card),
                                    ("id_number", id_numbers, by_id)):
            unique = sorted(set(values))
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                marks = ", ".join("?" for _ in part)
                cur.execute(self._q(f"SELECT {column}, batch, row_no, state FROM rows "
                                    f"WHERE {column} IN ({marks})"), tuple(part))
                for number, batch, row_no, state in cur.fetchall():
                    out[number] = (batch, int(row_no), state)
        return by_card, by_id

    def lookup_numbers(self, card_numbers: Sequence[str], id_numbers: Sequence[str]
                       ) -> tuple[dict[str, Holder], dict[str, Holder]]:
        with self._tx() as cur:
            return self.existing_numbers(cur, card_numbers, id_numbers)

    def load_rows(self, batch: str, rows: Sequence[NewRow], *, fingerprint: str | None = None
                  ) -> list[NewRow]:
        """Insert a chunk of rows in one transaction, after checking their card and ID numbers
        against the journal inside that same transaction. Rows whose number is already present
        (another batch, or a concurrent loader) are stored as invalid with that reason.
        Rows already loaded (same batch and row number) are skipped. Returns the rows as stored.
        With ``fingerprint``, refuses when the batch is registered with other contents now
        (another station loaded it again from a corrected file meanwhile).
        """
        stored: list[NewRow] = []
        with self._tx() as cur:
            self._dialect.load_lock(cur, batch)
            if fingerprint is not None:
                cur.execute(self._q("SELECT fingerprint FROM batches WHERE name = ?"), (batch,))
                found = cur.fetchone()
                if found is None or found[0] != fingerprint:
                    raise JournalError(f"batch {batch!r} was registered again from other "
                                       "contents while this file was loading; run again")
            cur.execute(self._q("SELECT MAX(row_no) FROM rows WHERE batch = ?"), (batch,))
            last = int(cur.fetchone()[0] or 0)
            fresh = [row for row in rows if row.row_no > last]
            by_card, by_id = self.existing_numbers(
                cur,
                [r.card_number for r in fresh if r.valid and r.card_number],
                [r.id_number for r in fresh if r.valid and r.id_number],
            )
            for row in fresh:
                final = row
                if row.valid:
                    problems = journal_clashes(batch, row.row_no, row.card_number,
                                               row.id_number, by_card, by_id)
                    if problems:
                        final = NewRow(row.row_no, row.card_number, row.id_number, None, problems)
                if final.valid:
                    cur.execute(
                        self._q("INSERT INTO rows (batch, row_no, card_number, id_number, state, "
                                "record) VALUES (?, ?, ?, ?, 'queued', ?)"),
                        (batch, final.row_no, final.card_number, final.id_number,
                         json.dumps(final.record, ensure_ascii=False, sort_keys=True)),
                    )
                else:
                    reason = "; ".join(
                        f"{issue.get('field', '-')}: {issue.get('reason', '')}"
                        for issue in final.issues
                    )
                    cur.execute(
                        self._q("INSERT INTO rows (batch, row_no, state, reason, issues) "
                                "VALUES (?, ?, 'invalid', ?, ?)"),
                        (batch, final.row_no, reason,
                         json.dumps(list(final.issues), ensure_ascii=False)),
                    )
                stored.append(final)
        return stored

    def finish_load(self, batch: str, total_rows: int) -> None:
        with self._tx() as cur:
            cur.execute(self._q("UPDATE batches SET loaded_at = ?, total_rows = ? "
                                "WHERE name = ? AND loaded_at IS NULL"),
                        (now(), total_rows, batch))
            if cur.rowcount:
                self._event(cur, batch, "batch-loaded", detail=f"{total_rows} rows")

    # ------------------------------------------------------------------- reading
    def row(self, row_id: int) -> RowRecord | None:
        rows = self._read(f"SELECT {_ROW_COLUMNS} FROM rows WHERE id = ?", (row_id,))
        return _row(rows[0]) if rows else None

    def row_by_number(self, batch: str, row_no: int) -> RowRecord | None:
        rows = self._read(f"SELECT {_ROW_COLUMNS} FROM rows WHERE batch = ? AND row_no = ?",
                          (batch, row_no))
        return _row(rows[0]) if rows else None

    def find_by_chip(self, chip_serial: str) -> RowRecord | None:
        rows = self._read(f"SELECT {_ROW_COLUMNS} FROM rows WHERE chip_serial = ?",
                          (chip_serial,))
        return _row(rows[0]) if rows else None

    def find_by_card_number(self, card_number: str) -> RowRecord | None:
        rows = self._read(f"SELECT {_ROW_COLUMNS} FROM rows WHERE card_number = ?",
                          (card_number,))
        return _row(rows[0]) if rows else None

    def rows(self, batch: str, states: Sequence[State] | None = None) -> Iterator[RowRecord]:
        """Rows of a batch in row order, optionally only some states (fetched in pages)."""
        after = 0
        while True:
            clause = ""
            params: list[Any] = [batch, after]
            if states:
                clause = f" AND state IN ({', '.join('?' for _ in states)})"
                params.extend(states)
            page = self._read(f"SELECT {_ROW_COLUMNS} FROM rows WHERE batch = ? AND row_no > ?"
                              f"{clause} ORDER BY row_no LIMIT 1000", params)
            if not page:
                return
            for raw in page:
                yield _row(raw)
            after = int(page[-1][2])

    def counts(self, batch: str) -> dict[str, int]:
        """Number of rows per state (every state present, zero when none)."""
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        for state, count in self._read("SELECT state, COUNT(*) FROM rows WHERE batch = ? "
                                       "GROUP BY state", (batch,)):
            out[state] = int(count)
        return out

    def pending(self, batch: str) -> Pending:
        counts = self.counts(batch)
        return Pending(counts["queued"], counts["needs-erase"],
                       counts["claimed"] + counts["personalizing"])

    def events(self, batch: str | None = None, *, row_id: int | None = None,
               kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Events in order, as dicts (for status output and tests)."""
        clauses: list[str] = []
        params: list[Any] = []
        if batch is not None:
            clauses.append("batch = ?")
            params.append(batch)
        if row_id is not None:
            clauses.append("row_id = ?")
            params.append(row_id)
        if kinds:
            clauses.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        names = ("id", "at", "batch", "row_id", "row_no", "station", "reader", "kind",
                 "state_from", "state_to", "chip_serial", "detail")
        rows = self._read(f"SELECT {', '.join(names)} FROM events{where} ORDER BY id", params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def is_void(self, chip_serial: str) -> bool:
        return bool(self._read("SELECT 1 FROM void_cards WHERE chip_serial = ?", (chip_serial,)))

    # --------------------------------------------------------------- transitions
    def _transition(self, cur: Any, row_id: int, expected: Sequence[State], sets: str,
                    params: Sequence[Any]) -> RowRecord:
        marks = ", ".join("?" for _ in expected)
        cur.execute(self._q(f"SELECT {_ROW_COLUMNS} FROM rows WHERE id = ?"
                            f"{self._dialect.lock_rows}"), (row_id,))
        found = cur.fetchone()
        if found is None:
            raise StateConflict(f"journal row id {row_id} does not exist")
        before = _row(found)
        cur.execute(self._q(f"UPDATE rows SET {sets} WHERE id = ? AND state IN ({marks})"),
                    (*params, row_id, *expected))
        if cur.rowcount != 1:
            raise StateConflict(
                f"batch {before.batch} row {before.row_no}: expected state "
                f"{'/'.join(expected)}, found {before.state}"
            )
        return before

    def claim_next(self, batch: str, station: str, reader: str) -> RowRecord | None:
        """Claim the first queued row of the batch for this station and reader, or None."""
        try:
            with self._tx() as cur:
                cur.execute(self._dialect.claim_sql(), (station, reader, now(), batch))
                found = cur.fetchone()
                if found is None:
                    return None
                row = _row(found)
                self._event(cur, batch, "claimed", row=row, station=station, reader=reader,
                            state_from="queued", state_to="claimed")
                return row
        except Exception as exc:
            # PostgreSQL may report a serialization failure under heavy contention: retry later.
            if getattr(exc, "sqlstate", None) in ("40001", "40P01"):
                return None
            raise

    def release_claim(self, row: RowRecord, detail: str) -> None:
        """claimed -> queued: the card turned out unusable before anything was written."""
        with self._tx() as cur:
            self._transition(cur, row.id, ("claimed",),
                             "state = 'queued', reader = NULL, station = NULL, claimed_at = NULL",
                             ())
            self._event(cur, row.batch, "released", row=row, station=row.station,
                        reader=row.reader, state_from="claimed", state_to="queued", detail=detail)

    def start_personalizing(self, row: RowRecord, chip_serial: str, card_factor: str,
                            *, station: str, reader: str) -> RowRecord:
        """claimed (or needs-erase, for recovery on the same card) -> personalizing.

        Must be called before the first write to the card. Raises :class:`ChipSerialConflict`
        when the chip is bound to another row.
        """
        try:
            with self._tx() as cur:
                before = self._transition(
                    cur, row.id, ("claimed", "needs-erase"),
                    "state = 'personalizing', chip_serial = ?, card_factor = ?, station = ?, "
                    "reader = ?, started_at = ?, finished_at = NULL, "
                    "attempts = attempts + (CASE WHEN state = 'needs-erase' THEN 1 ELSE 0 END)",
                    (chip_serial, card_factor, station, reader, now()),
                )
                if before.state == "needs-erase" and before.chip_serial != chip_serial:
                    raise StateConflict(
                        f"batch {row.batch} row {row.row_no} is bound to chip "
                        f"{before.chip_serial}, not {chip_serial}"
                    )
                self._event(cur, row.batch, "personalizing", row=row, station=station,
                            reader=reader, state_from=before.state, state_to="personalizing",
                            chip_serial=chip_serial)
        except JournalError:
            raise
        except Exception as exc:
            if _is_unique_violation(exc):
                raise ChipSerialConflict(
                    f"chip {chip_serial} is already bound to another journal row"
                ) from exc
            raise
        updated = self.row(row.id)
        assert updated is not None
        return updated

    def finish_issued(self, row: RowRecord, profile_version: str | None,
                      keys_version: str | None, *, detail: str | None = None) -> None:
        """personalizing -> issued."""
        with self._tx() as cur:
            self._transition(cur, row.id, ("personalizing",),
                             "state = 'issued', reason = NULL, finished_at = ?, "
                             "profile_version = COALESCE(?, profile_version), "
                             "keys_version = COALESCE(?, keys_version)",
                             (now(), profile_version, keys_version))
            self._event(cur, row.batch, "issued", row=row, station=row.station, reader=row.reader,
                        state_from="personalizing", state_to="issued",
                        chip_serial=row.chip_serial, detail=detail)

    def mark_needs_erase(self, row: RowRecord, reason: str) -> None:
        """personalizing -> needs-erase: the card is half done and stays bound to the row."""
        with self._tx() as cur:
            self._transition(cur, row.id, ("personalizing",),
                             "state = 'needs-erase', reason = ?, finished_at = ?",
                             (reason, now()))
            self._event(cur, row.batch, "needs-erase", row=row, station=row.station,
                        reader=row.reader, state_from="personalizing", state_to="needs-erase",
                        chip_serial=row.chip_serial, detail=reason)

    def mark_failed(self, row: RowRecord, reason: str) -> None:
        """claimed/personalizing -> failed; the card is blank (erased or never written), so the
        chip is no longer bound to the row."""
        with self._tx() as cur:
            before = self._transition(
                cur, row.id, ("claimed", "personalizing"),
                "state = 'failed', reason = ?, finished_at = ?, chip_serial = NULL",
                (reason, now()),
            )
            self._event(cur, row.batch, "failed", row=row, station=row.station,
                        reader=row.reader, state_from=before.state, state_to="failed",
                        chip_serial=before.chip_serial, detail=reason)

    def note(self, batch: str, kind: str, *, row: RowRecord | None = None,
             station: str | None = None, reader: str | None = None,
             chip_serial: str | None = None, detail: str | None = None) -> None:
        """Log an event that changes no row (card rejected, reader lost, card erased...)."""
        with self._tx() as cur:
            self._event(cur, batch, kind, row=row, station=station, reader=reader,
                        chip_serial=chip_serial, detail=detail)

    def recover_station(self, station: str) -> dict[str, int]:
        """After a crash of ``station``: claimed -> queued (no card was touched) and
        personalizing -> needs-erase (the card may be half done; found again by chip serial)."""
        out = {"requeued": 0, "needs_erase": 0}
        with self._tx() as cur:
            cur.execute(self._q(f"SELECT {_ROW_COLUMNS} FROM rows WHERE station = ? "
                                "AND state IN ('claimed', 'personalizing')"
                                f"{self._dialect.lock_rows}"), (station,))
            for raw in cur.fetchall():
                row = _row(raw)
                if row.state == "claimed":
                    cur.execute(self._q("UPDATE rows SET state = 'queued', reader = NULL, "
                                        "station = NULL, claimed_at = NULL WHERE id = ?"),
                                (row.id,))
                    self._event(cur, row.batch, "recovered", row=row, station=station,
                                reader=row.reader, state_from="claimed", state_to="queued",
                                detail="runner stopped before the card was touched")
                    out["requeued"] += 1
                else:
                    reason = "runner stopped during personalization"
                    cur.execute(self._q("UPDATE rows SET state = 'needs-erase', reason = ? "
                                        "WHERE id = ?"), (reason, row.id))
                    self._event(cur, row.batch, "recovered", row=row, station=station,
                                reader=row.reader, state_from="personalizing",
                                state_to="needs-erase", chip_serial=row.chip_serial,
                                detail=reason)
                    out["needs_erase"] += 1
        return out

    def requeue_failed(self, batch: str, max_attempts: int) -> int:
        """failed -> queued for rows with fewer than ``max_attempts`` attempts (run start)."""
        with self._tx() as cur:
            cur.execute(self._q(f"SELECT {_ROW_COLUMNS} FROM rows WHERE batch = ? "
                                "AND state = 'failed' AND attempts < ?"), (batch, max_attempts))
            rows = [_row(raw) for raw in cur.fetchall()]
            for row in rows:
                cur.execute(self._q("UPDATE rows SET state = 'queued', station = NULL, "
                                    "reader = NULL, claimed_at = NULL WHERE id = ?"), (row.id,))
                self._event(cur, batch, "retry", row=row, state_from="failed",
                            state_to="queued", detail=row.reason)
        return len(rows)

    def void_card(self, chip_serial: str, reason: str) -> RowRecord | None:
        """Declare a half-done card lost or destroyed: its row goes back to the queue and the
        chip is remembered as void (erased on sight if it ever comes back)."""
        with self._tx() as cur:
            cur.execute(self._q(f"SELECT {_ROW_COLUMNS} FROM rows WHERE chip_serial = ?"),
                        (chip_serial,))
            found = cur.fetchone()
            row = _row(found) if found is not None else None
            if row is not None and row.state != "needs-erase":
                raise StateConflict(
                    f"chip {chip_serial} belongs to batch {row.batch} row {row.row_no} in state "
                    f"{row.state}; only a needs-erase card can be declared void"
                )
            cur.execute(self._q("SELECT 1 FROM void_cards WHERE chip_serial = ?"),
                        (chip_serial,))
            if cur.fetchone() is None:
                cur.execute(self._q("INSERT INTO void_cards (chip_serial, row_id, reason, at) "
                                    "VALUES (?, ?, ?, ?)"),
                            (chip_serial, row.id if row else None, reason, now()))
            if row is not None:
                cur.execute(self._q("UPDATE rows SET state = 'queued', chip_serial = NULL, "
                                    "card_factor = NULL, station = NULL, reader = NULL, "
                                    "reason = ? WHERE id = ?"),
                            (f"card {chip_serial} declared void: {reason}", row.id))
                self._event(cur, row.batch, "voided", row=row, state_from="needs-erase",
                            state_to="queued", chip_serial=chip_serial, detail=reason)
        return row

    def purge(self, before: datetime, batch: str | None = None) -> dict[str, int]:
        """Drop the personal data of finished rows (docs/batch.md "Personal data").

        Issued rows finished before ``before`` and invalid rows of batches loaded before it
        lose their resident record, card number, ID number, validation issues and reason, and
        their events lose their detail. What audit needs stays: batch, row number, state
        (outcome), chip serial and card factor, station, reader, times, attempts, versions.
        Queued, in-flight, failed and needs-erase rows are kept whole (work not done). One
        ``purged`` event per batch records the cut-off. SQLite overwrites the dropped bytes
        (``secure_delete``) and truncates its WAL afterwards. Returns rows purged per batch.
        """
        cutoff = before.astimezone(UTC).isoformat(timespec="microseconds")
        personal = ("record IS NOT NULL OR card_number IS NOT NULL OR id_number IS NOT NULL "
                    "OR issues IS NOT NULL OR reason IS NOT NULL")
        only = " AND batch = ?" if batch is not None else ""
        extra: tuple[Any, ...] = (batch,) if batch is not None else ()
        purged: dict[str, int] = {}
        if self.backend == "sqlite":
            self._conn().execute("PRAGMA secure_delete = ON")
        with self._tx() as cur:
            cur.execute(self._q(
                f"SELECT id, batch FROM rows WHERE ({personal}) AND ((state = 'issued' AND "
                "finished_at < ?) OR (state = 'invalid' AND batch IN (SELECT name FROM "
                f"batches WHERE loaded_at < ?))){only}{self._dialect.lock_rows}"),
                (cutoff, cutoff, *extra))
            found = [(int(row_id), str(name)) for row_id, name in cur.fetchall()]
            for start in range(0, len(found), 500):
                ids = [row_id for row_id, _ in found[start:start + 500]]
                marks = ", ".join("?" for _ in ids)
                cur.execute(self._q(
                    "UPDATE rows SET record = NULL, card_number = NULL, id_number = NULL, "
                    f"issues = NULL, reason = NULL WHERE id IN ({marks})"), ids)
                cur.execute(self._q(f"UPDATE events SET detail = NULL WHERE row_id IN ({marks})"),
                            ids)
            for _, name in found:
                purged[name] = purged.get(name, 0) + 1
            for name, count in sorted(purged.items()):
                self._event(cur, name, "purged",
                            detail=f"personal data of {count} rows finished before {cutoff}")
        if self.backend == "sqlite" and purged:
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return purged

    def unvoid_card(self, chip_serial: str, detail: str) -> None:
        """The void card was erased: forget it."""
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM void_cards WHERE chip_serial = ?"), (chip_serial,))


def journal_clashes(batch: str, row_no: int, card_number: str | None, id_number: str | None,
                    by_card: Mapping[str, Holder], by_id: Mapping[str, Holder]
                    ) -> list[dict[str, Any]]:
    """Issues for a row whose card or ID number another journal row already holds (a row
    never clashes with itself; one issue when both numbers point at the same row)."""
    problems: list[dict[str, Any]] = []
    seen_holders: set[Holder] = set()
    for field, label, number, index in (("KH", "card number", card_number, by_card),
                                        ("SFZH", "ID number", id_number, by_id)):
        holder = index.get(number) if number else None
        if holder is None or (holder[0] == batch and holder[1] == row_no):
            continue
        if holder in seen_holders:
            continue
        seen_holders.add(holder)
        reason = (f"duplicate {label}: also on row {holder[1]}" if holder[0] == batch else
                  f"{label} already in the journal: batch {holder[0]!r} row {holder[1]} "
                  f"({holder[2]})")
        problems.append({"field": field, "value": number, "reason": reason})
    return problems


def _lease_alive(host: str, pid: int, heartbeat_at: str, this_host: str) -> bool:
    try:
        beat = datetime.fromisoformat(heartbeat_at)
    except ValueError:
        return False
    if datetime.now(UTC) - beat > HEARTBEAT_STALE:
        return False
    if host == this_host:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _row(raw: Sequence[Any]) -> RowRecord:
    values = list(raw)
    values[0] = int(values[0])
    values[2] = int(values[2])
    values[-1] = int(values[-1])
    state = values[5]
    if state not in STATES:
        raise JournalError(f"journal row id {values[0]} has unknown state {state!r}")
    return RowRecord(*values)
