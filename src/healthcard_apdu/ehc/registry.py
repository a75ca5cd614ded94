"""The local e-card registry: issued e-cards, their physical cards, consumed codes and uses.

SQLite by default (one terminal, a file), PostgreSQL for several terminals sharing one
registry -- the same schema and numbered migrations on both, as the batch journal does
(docs/batch.md). Tables:

* ``ecards`` -- one row per e-card: ehcId (primary key), master index, ID type and number
  (unique together: one e-card per person), name, the person as JSON, status (``active`` /
  ``revoked``), and the **physical card** it was issued from or linked to (``card_number``,
  unique: one card, one e-card; ``chip_serial``) -- the columns the card-issuance flow fills;
* ``consumed_codes`` -- the jti of every signed code accepted once (one-time use across all
  terminals: the primary key decides which terminal was first);
* ``uses`` -- accepted uses with the scene, channel and step codes (exported as JSON Lines);
* ``events`` -- issued, card linked, revoked (who, when, why).

Every change runs in one transaction; a refused code or a bad use context writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal

from healthcard_apdu.ehc.errors import EhcInputError, QrRejected, RegistryConflict, RegistryError
from healthcard_apdu.ehc.person import Person
from healthcard_apdu.ehc.uses import UseContext, UseRecord

if TYPE_CHECKING:
    from healthcard_apdu.ehc.verify import Verification

__all__ = [
    "MIGRATIONS",
    "EcardRecord",
    "Registry",
    "Status",
    "is_postgres_target",
]

Status = Literal["active", "revoked"]

MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (1, (
        """CREATE TABLE ecards (
            ehc_id TEXT PRIMARY KEY,
            master_index TEXT NOT NULL,
            id_type TEXT NOT NULL,
            id_number TEXT NOT NULL,
            name TEXT NOT NULL,
            person TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
            reason TEXT,
            card_number TEXT UNIQUE,
            chip_serial TEXT,
            issued_at TEXT NOT NULL,
            issued_by TEXT,
            keys_version TEXT,
            revoked_at TEXT,
            UNIQUE (id_type, id_number)
        )""",
        """CREATE TABLE consumed_codes (
            jti TEXT PRIMARY KEY,
            ehc_id TEXT NOT NULL,
            kid TEXT,
            expires_at TEXT NOT NULL,
            at TEXT NOT NULL,
            terminal TEXT
        )""",
        """CREATE TABLE uses (
            id {pk},
            at TEXT NOT NULL,
            ehc_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            card_type TEXT NOT NULL,
            org_code TEXT NOT NULL,
            terminal TEXT NOT NULL,
            channel TEXT NOT NULL,
            medstep TEXT NOT NULL,
            scene TEXT,
            city_code TEXT,
            department TEXT,
            cost_type TEXT,
            jti TEXT,
            kid TEXT
        )""",
        "CREATE INDEX uses_at ON uses (at)",
        "CREATE INDEX uses_ehc ON uses (ehc_id)",
        """CREATE TABLE events (
            id {pk},
            at TEXT NOT NULL,
            ehc_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            terminal TEXT,
            detail TEXT
        )""",
        "CREATE INDEX events_ehc ON events (ehc_id)",
    )),
)

_ECARD_COLUMNS: Final = (
    "ehc_id, master_index, id_type, id_number, name, person, status, reason, card_number, "
    "chip_serial, issued_at, issued_by, keys_version, revoked_at"
)
_USE_COLUMNS: Final = (
    "id, at, ehc_id, kind, card_type, org_code, terminal, channel, medstep, scene, city_code, "
    "department, cost_type, jti, kid"
)


def _now_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


@dataclass(frozen=True)
class EcardRecord:
    """One registered e-card."""

    ehc_id: str
    master_index: str
    person: Person
    status: Status
    reason: str | None
    card_number: str | None
    chip_serial: str | None
    issued_at: dt.datetime
    issued_by: str | None
    keys_version: str | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ehc_id": self.ehc_id,
            "master_index": self.master_index,
            "person": self.person.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "card_number": self.card_number,
            "chip_serial": self.chip_serial,
            "issued_at": self.issued_at.isoformat(),
            "issued_by": self.issued_by,
            "keys_version": self.keys_version,
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


def _ecard(raw: Sequence[Any]) -> EcardRecord:
    (ehc_id, mindex, _type, _number, _name, person, status, reason, card_number, chip,
     issued_at, issued_by, keys_version, revoked_at) = raw
    issued = _time(issued_at)
    assert issued is not None
    return EcardRecord(
        ehc_id, mindex, Person.from_mapping(json.loads(person)), status, reason, card_number,
        chip, issued, issued_by, keys_version, _time(revoked_at),
    )


def _use(raw: Sequence[Any]) -> UseRecord:
    (use_id, at, ehc_id, kind, card_type, org, terminal, channel, medstep, scene, city, dept,
     cost, jti, kid) = raw
    moment = _time(at)
    assert moment is not None
    context = UseContext(org_code=org, terminal=terminal, channel=channel, medstep=medstep,
                         scene=scene, city_code=city, department=dept, cost_type=cost)
    return UseRecord(id=int(use_id), at=moment, ehc_id=ehc_id, kind=kind, context=context,
                     jti=jti, kid=kid, card_type=card_type)


def is_postgres_target(target: str | Path) -> bool:
    """A ``postgresql://`` URL or a libpq ``key=value`` string (not a file path)."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return True
    words = text.split()
    return bool(words) and all("=" in word for word in words) and any(
        word.split("=", 1)[0] in ("dbname", "host", "service") for word in words)


class _Dialect:
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

    def migration_lock(self, cur: Any) -> None:
        """Serialize migrations between processes (inside the transaction)."""

    def describe(self) -> str:
        raise NotImplementedError


class _Sqlite(_Dialect):
    name = "sqlite"
    pk = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise RegistryError(f"{self.path}: cannot open the SQLite registry: {exc}") from exc
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

    def describe(self) -> str:
        return f"sqlite:{self.path}"


class _Postgres(_Dialect):
    name = "postgresql"
    pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise RegistryError(
                "a PostgreSQL registry needs psycopg 3: pip install 'healthcard-apdu[postgresql]'"
            ) from exc
        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=15)
        except psycopg.Error as exc:
            raise RegistryError(f"{self.describe()}: cannot connect: {str(exc).strip()}") from exc

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @contextlib.contextmanager
    def transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def migration_lock(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(7243561)")

    def describe(self) -> str:
        try:
            from psycopg.conninfo import conninfo_to_dict

            parts = conninfo_to_dict(self.dsn)
        except Exception:
            return "postgresql"
        host = parts.get("host") or "localhost"
        return (f"postgresql://{parts.get('user') or ''}@{host}:{parts.get('port') or 5432}/"
                f"{parts.get('dbname') or ''}")


def _is_db_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg")


def _is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    return getattr(exc, "sqlstate", None) == "23505"


class Registry:
    """Thread-safe access to one registry; each thread gets its own connection."""

    def __init__(self, dialect: _Dialect) -> None:
        self._dialect = dialect
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, target: str | Path, *, migrate: bool = True) -> Registry:
        """Open (and migrate) the registry at a SQLite path or a ``postgresql://`` URL."""
        text = str(target)
        dialect: _Dialect
        if is_postgres_target(text):
            dialect = _Postgres(text)
        else:
            dialect = _Sqlite(Path(text.removeprefix("sqlite:").removeprefix("//")))
        registry = cls(dialect)
        if migrate:
            try:
                registry.migrate()
            except BaseException:
                registry.close()
                raise
        return registry

    @property
    def backend(self) -> str:
        return self._dialect.name

    def describe(self) -> str:
        """Where the registry lives, without credentials."""
        return self._dialect.describe()

    def __repr__(self) -> str:
        return f"Registry({self.describe()})"

    def _conn(self) -> Any:
        if self._closed:
            raise RegistryError(f"{self.describe()}: registry is closed")
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

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        try:
            with self._dialect.transaction(self._conn()) as cur:
                yield cur
        except (RegistryError, QrRejected, EhcInputError):
            raise
        except Exception as exc:
            if _is_unique_violation(exc):
                raise RegistryConflict(f"{self.describe()}: {str(exc).strip()}") from exc
            if _is_db_error(exc):
                raise RegistryError(f"{self.describe()}: {str(exc).strip()}") from exc
            raise

    def _q(self, text: str) -> str:
        return self._dialect.sql(text)

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor for reads outside a write transaction (autocommit)."""
        try:
            cur = self._conn().cursor()
            try:
                yield cur
            finally:
                cur.close()
        except (RegistryError, QrRejected, EhcInputError):
            raise
        except Exception as exc:
            if _is_db_error(exc):
                raise RegistryError(f"{self.describe()}: {str(exc).strip()}") from exc
            raise

    def _read(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(self._q(text), tuple(params))
            return list(cur.fetchall())

    # -- migrations ----------------------------------------------------------------------

    def schema_version(self) -> int:
        exists = self._read(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
            if self.backend == "postgresql"
            else "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                 "AND name = 'schema_version'"
        )
        if not exists[0][0]:
            return 0
        return int(self._read("SELECT MAX(version) FROM schema_version")[0][0] or 0)

    def migrate(self) -> int:
        """Apply every migration not yet applied; returns the schema version."""
        latest = MIGRATIONS[-1][0]
        with self._tx() as cur:
            self._dialect.migration_lock(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                        "applied_at TEXT NOT NULL)")
            cur.execute("SELECT MAX(version) FROM schema_version")
            current = int(cur.fetchone()[0] or 0)
            if current > latest:
                raise RegistryError(
                    f"{self.describe()}: schema version {current} is newer than this program "
                    f"knows ({latest}); upgrade healthcard-apdu"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    cur.execute(statement.replace("{pk}", self._dialect.pk))
                cur.execute(self._q("INSERT INTO schema_version (version, applied_at) "
                                    "VALUES (?, ?)"), (version, _now_text(dt.datetime.now(dt.UTC))))
        return latest

    # -- e-cards -------------------------------------------------------------------------

    def _event(self, cur: Any, ehc_id: str, kind: str, moment: dt.datetime,
               terminal: str | None, detail: str | None = None) -> None:
        cur.execute(self._q("INSERT INTO events (at, ehc_id, kind, terminal, detail) "
                            "VALUES (?, ?, ?, ?, ?)"),
                    (_now_text(moment), ehc_id, kind, terminal, detail))

    def _get(self, cur: Any, column: str, values: Sequence[Any]) -> EcardRecord | None:
        clause = " AND ".join(f"{name} = ?" for name in column.split(","))
        cur.execute(self._q(f"SELECT {_ECARD_COLUMNS} FROM ecards WHERE {clause}"),
                    tuple(values))
        row = cur.fetchone()
        return None if row is None else _ecard(row)

    def get(self, ehc_id: str) -> EcardRecord | None:
        """The e-card with this ID, or None."""
        with self._cursor() as cur:
            return self._get(cur, "ehc_id", (ehc_id.upper(),))

    def find_by_identity(self, id_type: str, id_number: str) -> EcardRecord | None:
        with self._cursor() as cur:
            return self._get(cur, "id_type,id_number", (id_type, id_number))

    def find_by_card_number(self, card_number: str) -> EcardRecord | None:
        """The e-card linked to a physical card number (KH), or None."""
        with self._cursor() as cur:
            return self._get(cur, "card_number", (card_number,))

    def register(
        self,
        person: Person,
        master_index: str,
        ehc_id: str,
        *,
        card_number: str | None = None,
        chip_serial: str | None = None,
        terminal: str | None = None,
        keys_version: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[EcardRecord, bool]:
        """Record an issued e-card (and the physical card it came from); ``(record, created)``.

        Issuing the same person again returns the existing row (and links ``card_number`` when
        given). :class:`RegistryConflict` when the identity holds another e-card, the card
        number is linked to another e-card, or the e-card was revoked."""
        moment = now or dt.datetime.now(dt.UTC)
        ehc_id = ehc_id.upper()
        with self._tx() as cur:
            existing = self._get(cur, "ehc_id", (ehc_id,))
            if existing is None:
                holder = self._get(cur, "id_type,id_number", (person.id_type, person.id_number))
                if holder is not None:
                    raise RegistryConflict(
                        f"ID {person.id_type}/{person.id_number[:4]}... already holds e-card "
                        f"{holder.ehc_id[:16]}... (registered as {holder.person.name}); "
                        "revoke it before issuing under another name"
                    )
                self._check_card_free(cur, card_number, ehc_id)
                cur.execute(
                    self._q(f"INSERT INTO ecards ({_ECARD_COLUMNS}) VALUES "
                            "(?, ?, ?, ?, ?, ?, 'active', NULL, ?, ?, ?, ?, ?, NULL)"),
                    (ehc_id, master_index, person.id_type, person.id_number, person.name,
                     json.dumps(person.to_dict(), ensure_ascii=False, sort_keys=True),
                     card_number, chip_serial, _now_text(moment), terminal, keys_version),
                )
                self._event(cur, ehc_id, "issued", moment, terminal,
                            None if card_number is None else f"card {card_number}")
                created = True
            else:
                if not existing.active:
                    raise RegistryConflict(
                        f"e-card {ehc_id[:16]}... was revoked ({existing.reason}); it is not "
                        "issued again"
                    )
                if card_number is not None and card_number != existing.card_number:
                    self._link(cur, ehc_id, card_number, chip_serial, terminal, moment,
                               existing.card_number)
                created = False
            record = self._get(cur, "ehc_id", (ehc_id,))
        assert record is not None
        return record, created

    def _check_card_free(self, cur: Any, card_number: str | None, ehc_id: str) -> None:
        if card_number is None:
            return
        other = self._get(cur, "card_number", (card_number,))
        if other is not None and other.ehc_id != ehc_id:
            raise RegistryConflict(
                f"physical card {card_number} is already linked to e-card {other.ehc_id[:16]}..."
            )

    def _link(self, cur: Any, ehc_id: str, card_number: str, chip_serial: str | None,
              terminal: str | None, moment: dt.datetime, previous: str | None) -> None:
        self._check_card_free(cur, card_number, ehc_id)
        cur.execute(self._q("UPDATE ecards SET card_number = ?, chip_serial = ? "
                            "WHERE ehc_id = ?"), (card_number, chip_serial, ehc_id))
        detail = f"card {card_number}" + ("" if previous is None else f" (was {previous})")
        self._event(cur, ehc_id, "card-linked", moment, terminal, detail)

    def link_card(self, ehc_id: str, card_number: str, *, chip_serial: str | None = None,
                  terminal: str | None = None, now: dt.datetime | None = None) -> EcardRecord:
        """Link a physical card number (KH) to an active e-card (a replacement card
        replaces the old number; the event keeps it)."""
        if not card_number:
            raise EhcInputError("card_number", "must not be empty")
        moment = now or dt.datetime.now(dt.UTC)
        with self._tx() as cur:
            record = self._get(cur, "ehc_id", (ehc_id.upper(),))
            if record is None:
                raise RegistryConflict(f"no e-card {ehc_id[:16]}... in {self.describe()}")
            if not record.active:
                raise RegistryConflict(f"e-card {ehc_id[:16]}... is revoked")
            if record.card_number != card_number:
                self._link(cur, record.ehc_id, card_number, chip_serial, terminal, moment,
                           record.card_number)
            updated = self._get(cur, "ehc_id", (record.ehc_id,))
        assert updated is not None
        return updated

    def revoke(self, ehc_id: str, reason: str, *, terminal: str | None = None,
               now: dt.datetime | None = None) -> EcardRecord:
        """Revoke an e-card: every later verification with this registry refuses it."""
        if not reason.strip():
            raise EhcInputError("reason", "a revocation needs a reason")
        moment = now or dt.datetime.now(dt.UTC)
        with self._tx() as cur:
            record = self._get(cur, "ehc_id", (ehc_id.upper(),))
            if record is None:
                raise RegistryConflict(f"no e-card {ehc_id[:16]}... in {self.describe()}")
            if record.active:
                cur.execute(self._q("UPDATE ecards SET status = 'revoked', reason = ?, "
                                    "revoked_at = ? WHERE ehc_id = ?"),
                            (reason, _now_text(moment), record.ehc_id))
                self._event(cur, record.ehc_id, "revoked", moment, terminal, reason)
            updated = self._get(cur, "ehc_id", (record.ehc_id,))
        assert updated is not None
        return updated

    def events(self, ehc_id: str | None = None) -> list[dict[str, Any]]:
        names = ("id", "at", "ehc_id", "kind", "terminal", "detail")
        where, params = ("", ()) if ehc_id is None else (" WHERE ehc_id = ?", (ehc_id.upper(),))
        rows = self._read(f"SELECT {', '.join(names)} FROM events{where} ORDER BY id", params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    # -- verification and uses -----------------------------------------------------------

    def accept(
        self,
        verification: Verification,
        *,
        use: UseContext | None = None,
        one_time: bool = True,
        now: dt.datetime | None = None,
    ) -> tuple[EcardRecord | None, UseRecord | None]:
        """The registry's part of a verification, in one transaction: the e-card must not be
        revoked (and, for a national code, must be registered here); a signed code's jti is
        consumed (``replayed`` when another terminal was first); the use is recorded.
        :class:`QrRejected` rolls everything back."""
        moment = now or dt.datetime.now(dt.UTC)
        ehc_id = verification.ehc_id
        with self._tx() as cur:
            record = self._get(cur, "ehc_id", (ehc_id,))
            if record is None and verification.kind != "signed":
                raise QrRejected("unknown-card", f"e-card {ehc_id[:16]}... is not registered here")
            if record is not None and not record.active:
                raise QrRejected(
                    "revoked-card", f"e-card {ehc_id[:16]}... was revoked ({record.reason})"
                )
            if verification.jti is not None and one_time:
                expires = verification.expires_at or moment
                cur.execute(
                    self._q("INSERT INTO consumed_codes (jti, ehc_id, kid, expires_at, at, "
                            "terminal) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (jti) DO NOTHING"),
                    (verification.jti, ehc_id, verification.kid, _now_text(expires),
                     _now_text(moment), None if use is None else use.terminal),
                )
                if cur.rowcount != 1:
                    raise QrRejected("replayed", f"code {verification.jti} was already used")
            recorded = None
            if use is not None:
                recorded = self._insert_use(cur, verification, use, moment)
        return record, recorded

    def _insert_use(self, cur: Any, verification: Verification, use: UseContext,
                    moment: dt.datetime) -> UseRecord:
        values = (_now_text(moment), verification.ehc_id, verification.kind, "11", use.org_code,
                  use.terminal, use.channel, use.medstep, use.scene, use.city_code,
                  use.department, use.cost_type, verification.jti, verification.kid)
        cur.execute(self._q(f"INSERT INTO uses ({_USE_COLUMNS.removeprefix('id, ')}) VALUES "
                            f"({', '.join('?' for _ in values)}) RETURNING id"), values)
        use_id = int(cur.fetchone()[0])
        return _use((use_id, *values))

    def purge_consumed(self, before: dt.datetime) -> int:
        """Forget consumed codes that expired before ``before`` (they fail the time check
        anyway); returns how many. Keep ``before`` earlier than now minus the clock skew."""
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM consumed_codes WHERE expires_at < ?"),
                        (_now_text(before),))
            return int(cur.rowcount)

    def uses(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
             ehc_id: str | None = None) -> Iterator[UseRecord]:
        """Recorded uses in order (fetched in pages), optionally a time range or one e-card."""
        after = 0
        while True:
            clauses: list[str] = ["id > ?"]
            params: list[Any] = [after]
            if since is not None:
                clauses.append("at >= ?")
                params.append(_now_text(since))
            if until is not None:
                clauses.append("at < ?")
                params.append(_now_text(until))
            if ehc_id is not None:
                clauses.append("ehc_id = ?")
                params.append(ehc_id.upper())
            page = self._read(f"SELECT {_USE_COLUMNS} FROM uses WHERE {' AND '.join(clauses)} "
                              "ORDER BY id LIMIT 1000", params)
            if not page:
                return
            for raw in page:
                yield _use(raw)
            after = int(page[-1][0])

    def export_uses(self, out: IO[str], **filters: Any) -> int:
        """Write the uses as JSON Lines to ``out``; returns how many."""
        count = 0
        for record in self.uses(**filters):
            out.write(record.to_json() + "\n")
            count += 1
        return count
