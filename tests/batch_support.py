"""Test support for the batch tests (and bench/bench_batch.py): a raw-APDU card issuer for the
simulated card, the real personalizer as issuer (``perso_issuer``, ``perso_row``), a SimCard
store for card pools, fault hooks, resident files and invariants.

The issuer writes real files on the simulated card with FMCOS commands, so tears and removals
interrupt real card I/O:

    SELECT MF; CREATE DF DDF1; CREATE EF 0005 (binary: card number, name); UPDATE BINARY;
    CREATE EF 0006 (binary, ``extra`` bytes) written in chunks; END ISSUANCE;
    CREATE-free marker: UPDATE BINARY EF 0007 = 01 (written last, so "issued" = marker set)

``inspect`` only reads; ``erase`` is ERASE DF on the MF (free on a blank-profile card).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcard_apdu.apdu import CommandApdu, ResponseApdu
from healthcard_apdu.batch.issuer import CardIdentity, IssueOutcome
from healthcard_apdu.batch.journal import Journal, is_postgres_target
from healthcard_apdu.batch.slots import Insertion
from healthcard_apdu.model.validators import id_check_digit
from healthcard_apdu.sim.card import SimCard
from healthcard_apdu.sim.faults import FaultPlan, LatencyModel
from healthcard_apdu.transport import Transport, parse_atr
from healthcard_apdu.transport.inprocess import CardLike

DDF1 = 0xDDF1
EF_ID = 0x0005
EF_EXTRA = 0x0006
EF_MARKER = 0x0007
ID_SIZE = 18 + 30


def _send(transport: Transport, cmd: CommandApdu) -> ResponseApdu:
    return ResponseApdu.from_bytes(transport.transmit(cmd.to_bytes()))


def _ok(transport: Transport, cmd: CommandApdu) -> ResponseApdu:
    return _send(transport, cmd).check(cmd.label, cmd.ins)


def _select(fid: int) -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x00, 0x00, fid.to_bytes(2, "big"), name=f"SELECT {fid:04X}")


def _create_ef(fid: int, size: int) -> CommandApdu:
    # binary EF (28), size, read F0, write F0, erase FF, byte7 FF
    data = bytes((0x28,)) + size.to_bytes(2, "big") + bytes((0xF0, 0xF0, 0xFF, 0xFF))
    return CommandApdu(0x80, 0xE0, fid >> 8, fid & 0xFF, data, name=f"CREATE EF {fid:04X}")


def _create_df(fid: int, name: bytes) -> CommandApdu:
    data = bytes((0x38,)) + (0x2000).to_bytes(2, "big") + bytes((0xF0, 0xF0, 0x95, 0xFF, 0xFF))
    return CommandApdu(0x80, 0xE0, fid >> 8, fid & 0xFF, data + name, name="CREATE DF DDF1")


def _update(offset: int, data: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0xD6, offset >> 8, offset & 0xFF, data, name="UPDATE BINARY")


def _read(offset: int, length: int) -> CommandApdu:
    return CommandApdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length, name="READ BINARY")


def card_number_of(resident: Mapping[str, Any]) -> str:
    return str(resident["DDF1EF05"]["KH"])


class RawIssuer:
    """A :class:`CardIssuer` for the simulated card that writes a small file set.

    ``extra`` is the size of the bulk file (written in ``chunk``-byte UPDATE BINARY commands);
    raise it to make a card take more APDUs (benchmarks). ``fail_on`` maps card numbers to how
    many times ``issue`` raises for them (after writing part of the card) before it succeeds.
    """

    def __init__(self, extra: int = 256, chunk: int = 128,
                 fail_on: Mapping[str, int] | None = None) -> None:
        self.extra = extra
        self.chunk = chunk
        self.fail_on = dict(fail_on or {})
        self._lock = threading.Lock()

    def inspect(self, transport: Transport) -> CardIdentity:
        factor = parse_atr(transport.atr()).historical_bytes[:8].hex().upper()
        _ok(transport, _select(0x3F00))
        if _send(transport, _select(DDF1)).sw == 0x6A82:
            return CardIdentity(factor, factor, False)
        if _send(transport, _select(EF_MARKER)).sw != 0x9000:
            return CardIdentity(factor, factor, False)
        marker = _ok(transport, _read(0, 1)).data
        _ok(transport, _select(EF_ID))
        number = _ok(transport, _read(0, 18)).data.rstrip(b"\x00").decode("ascii", "replace")
        issued = marker == b"\x01"
        return CardIdentity(factor, factor, issued, number if issued else None)

    def issue(self, transport: Transport, resident: Mapping[str, Any]) -> IssueOutcome:
        number = card_number_of(resident)
        name = str(resident.get("DDF1EF06", {}).get("XM", ""))
        _ok(transport, _select(0x3F00))
        _ok(transport, _create_df(DDF1, b"WS.SYS.DDF01"))
        _ok(transport, _create_ef(EF_ID, ID_SIZE))
        _ok(transport, _create_ef(EF_EXTRA, self.extra))
        _ok(transport, _create_ef(EF_MARKER, 1))
        _ok(transport, _select(EF_ID))
        payload = number.encode("ascii").ljust(18, b"\x00") + name.encode("gbk")[:30].ljust(30,
                                                                                        b"\x00")
        _ok(transport, _update(0, payload))
        with self._lock:
            refuse = self.fail_on.get(number, 0) > 0
            if refuse:
                self.fail_on[number] -= 1
        if refuse:
            raise ValueError(f"card number {number}: refused by the test issuer")
        _ok(transport, _select(EF_EXTRA))
        blob = json.dumps(resident, ensure_ascii=False, sort_keys=True).encode()
        blob = (blob * (self.extra // max(1, len(blob)) + 1))[: self.extra]
        for offset in range(0, self.extra, self.chunk):
            _ok(transport, _update(offset, blob[offset : offset + self.chunk]))
        _ok(transport, CommandApdu(0x80, 0xE8, 0x00, 0x00, name="END ISSUANCE"))
        _ok(transport, _select(EF_MARKER))
        _ok(transport, _update(0, b"\x01"))
        return IssueOutcome("test-profile/1", "test-keys/1")

    def erase(self, transport: Transport) -> None:
        _ok(transport, _select(0x3F00))
        _ok(transport, CommandApdu(0x80, 0x0E, 0x00, 0x00, name="ERASE DF"))


def make_issuer(profile: str | None = None, keys: str | None = None) -> RawIssuer:
    """Factory for ``healthcard batch run --issuer batch_support:make_issuer``."""
    del profile, keys
    return RawIssuer()


class SimStore:
    """CardStore over SimCard image files (random chip serials, images persist themselves)."""

    def __init__(self, latency: LatencyModel | None = None) -> None:
        self.latency = latency

    def create(self, path: Path, number: int) -> CardLike:
        return SimCard.blank(os.urandom(8), path=path, durable=False)

    def load(self, path: Path) -> CardLike:
        return SimCard.open(path, durable=False, latency=self.latency)

    def save(self, card: CardLike, path: Path) -> None:
        """Nothing to do: a SimCard with a path writes its image after every write."""


@dataclass
class FaultSchedule:
    """Fault hook: tears on some cards' first insertion and one pulled card.

    A torn card loses power at a random APDU in ``tear_first..tear_last`` (counted from the
    card's insertion; the raw issuer's writes are APDUs 6-14), its writes applied or not at
    random. ``forced`` maps card numbers (pool creation order) to a fixed ``(tear_at,
    applies)``; ``torn`` records every planned tear as ``card number -> (tear_at, applies)``.
    """

    tear_rate: float = 0.05
    remove_card: int | None = None
    seed: int = 7
    tear_first: int = 6
    tear_last: int = 14
    remove_at: int = 9
    forced: dict[int, tuple[int, bool]] = field(default_factory=dict)
    torn: dict[int, tuple[int, bool]] = field(default_factory=dict)

    def __call__(self, card: CardLike, insertion: Insertion) -> None:
        if insertion.count != 1 or not isinstance(card, SimCard):
            return
        rng = random.Random(self.seed * 1_000_003 + insertion.number)
        if insertion.number == self.remove_card:
            card.faults = FaultPlan(remove_at=self.remove_at)
            return
        plan = self.forced.get(insertion.number)
        if plan is None and rng.random() < self.tear_rate:
            plan = (rng.randint(self.tear_first, self.tear_last), rng.random() < 0.5)
        if plan is not None:
            self.torn[insertion.number] = plan
            card.faults = FaultPlan(tear_at=plan[0], tear_applies=plan[1])


# ------------------------------------------------------------------ resident files
def valid_row(index: int) -> dict[str, str]:
    year = 1940 + index % 60
    month = 1 + index % 12
    day = 1 + index % 28
    birth = f"{year:04d}{month:02d}{day:02d}"
    first = f"{110100 + index // 1000 % 100:06d}{birth}{index % 1000:03d}"
    return {
        "XM": f"居民{index}",
        "XB": "1" if index % 2 else "2",
        "MZ": "01",
        "CSRQ": birth,
        "SFZH": first + id_check_digit(first),
        "BRDH1": f"138{index:08d}",
    }


def write_csv(path: Path, rows: Iterable[Mapping[str, str]], *, encoding: str = "utf-8",
              columns: tuple[str, ...] = ("XM", "XB", "MZ", "CSRQ", "SFZH", "BRDH1")) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        handle.write(",".join(columns) + "\r\n")
        for row in rows:
            handle.write(",".join(str(row.get(c, "")) for c in columns) + "\r\n")
    return path


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """One JSON object per line (UTF-8), as ``batch run`` reads JSON Lines."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ------------------------------------------------------------ the real personalizer
PERSO_PROFILE = "national-32k"
PERSO_PASSPHRASE = "batch-test-pass"


def perso_row(index: int) -> dict[str, Any]:
    """A full resident for the national profile (nested card JSON keyed by pinyin code): the
    model's sample resident (photo, contacts, allergies, EE/ED records: about 250 APDUs to
    issue) with the holder, card number and phone of :func:`valid_row`."""
    import copy

    from healthcard_apdu import model

    flat = valid_row(index)
    record: dict[str, Any] = copy.deepcopy(model.sample_resident().to_json(keys="code"))
    record["DDF1EF06"] = {"XM": flat["XM"], "XB": int(flat["XB"]), "MZ": flat["MZ"],
                          "CSRQ": flat["CSRQ"], "SFZH": flat["SFZH"]}
    record["DDF1EF05"]["KH"] = flat["SFZH"]
    record["DF01EF08"]["ZJHM"] = flat["SFZH"]
    record["DDF1EF08"]["BRDH1"] = flat["BRDH1"]
    return record


def perso_keyset() -> Any:
    """A fresh random SM4 key set for the national profile (no SM2 key: nothing is signed)."""
    from healthcard_apdu.crypto import BlockCipher
    from healthcard_apdu.security import DEFAULT_ROLES, KeySet

    return KeySet.generate(DEFAULT_ROLES, BlockCipher.SM4)  # SM2 key signs the EE/ED records


def perso_issuer(keyset: Any | None = None) -> Any:
    """The personalizer as the batch runner's issuer (national profile, software keys)."""
    from healthcard_apdu.perso.batch_issuer import PersoCardIssuer
    from healthcard_apdu.perso.profile import load_profile
    from healthcard_apdu.security import SoftwareSecurityModule

    return PersoCardIssuer(load_profile(PERSO_PROFILE),
                           SoftwareSecurityModule(keyset or perso_keyset()))


def save_perso_keys(path: Path, keyset: Any) -> Path:
    """Write ``keyset`` as an encrypted key file (passphrase :data:`PERSO_PASSPHRASE`) for
    ``batch run --keys``."""
    keyset.save(path, PERSO_PASSPHRASE, scrypt_n=2**10)
    return path


def perso_card_reader(keyset: Any) -> Callable[[Path], dict[str, Any] | None]:
    """A ``read_card`` for :func:`check_invariants`: DDF1/EF05 and DDF1/EF06 of an issued
    card image read with the card layer (EF06 needs the read key of the run's key set), as
    ``{"KH": ..., "DDF1EF06": {...}}``, or None when the card is not issued."""
    from healthcard_apdu.card import HealthCard
    from healthcard_apdu.security import SoftwareSecurityModule
    from healthcard_apdu.transport import InProcessTransport

    security = SoftwareSecurityModule(keyset)

    def read(path: Path) -> dict[str, Any] | None:
        card = SimCard.open(path, durable=False)
        if not card.image.issued:
            return None
        with InProcessTransport(card) as link:
            reader = HealthCard(link, security)
            issuer = reader.read_issuer().to_json("code")
            holder = reader.read_holder().to_json("code")
        return {"KH": issuer.get("KH"), "DDF1EF06": holder}

    return read


# ----------------------------------------------------------------------- invariants
def cards_by_number(pool_dir: Path, issuer: Any | None = None
                    ) -> dict[str, list[tuple[str, Path]]]:
    """Every issued card image under the pool -> card number -> [(chip serial, path)]."""
    from healthcard_apdu.transport import InProcessTransport

    issuer = issuer or RawIssuer()
    found: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(pool_dir.rglob("*.card.json")):
        card = SimCard.open(path, durable=False)
        link = InProcessTransport(card)
        try:
            ident = issuer.inspect(link)
        finally:
            link.close()
        if ident.issued and ident.card_number:
            found.setdefault(ident.card_number, []).append((ident.chip_serial, path))
    return found


CardReader = Callable[[Path], "dict[str, Any] | None"]


def check_invariants(journal: Journal, batch: str, pool_dirs: Iterable[Path],
                     expected_rows: int, *, issuer: Any | None = None,
                     read_card: CardReader | None = None) -> dict[str, int]:
    """Assert the batch guarantees; returns the journal counts.

    * every row of the file is in the journal, in exactly one state;
    * no card number appears on two issued cards (in any pool), as ``issuer.inspect`` sees
      them (default: the raw test issuer);
    * each issued row's chip carries that row's card number, and no issued card is unknown;
    * with ``read_card`` (e.g. :func:`perso_card_reader`): each issued row's card holds that
      row's card number and holder items (DDF1/EF06) as stored in the journal;
    * every failed / needs-erase / invalid row has a reason.
    """
    counts = journal.counts(batch)
    assert sum(counts.values()) == expected_rows, counts
    cards: dict[str, list[tuple[str, Path]]] = {}
    for pool in pool_dirs:
        for number, found in cards_by_number(pool, issuer).items():
            cards.setdefault(number, []).extend(found)
    duplicates = {n: c for n, c in cards.items() if len(c) > 1}
    assert not duplicates, f"card numbers on more than one card: {duplicates}"
    issued_rows = list(journal.rows(batch, ["issued"]))
    for row in issued_rows:
        assert row.card_number in cards, f"row {row.row_no} issued but no card holds it"
        chip, path = cards[row.card_number][0]
        assert chip == row.chip_serial, (row, cards[row.card_number])
        if read_card is not None:
            data = read_card(path)
            assert data is not None, f"row {row.row_no}: card {path.name} is not issued"
            assert data["KH"] == row.card_number, (row.row_no, data["KH"])
            holder = row.resident["DDF1EF06"]
            on_card = {code: data["DDF1EF06"].get(code) for code in holder}
            assert on_card == holder, f"row {row.row_no}: card holds {on_card}, not {holder}"
    assert len(cards) == len(issued_rows), (len(cards), len(issued_rows))
    for row in journal.rows(batch, ["failed", "needs-erase", "invalid"]):
        assert row.reason, f"row {row.row_no} ({row.state}) has no reason"
    return counts


def raw_counts(db: Path, batch: str) -> dict[str, int]:
    """State counts read straight from a SQLite journal file."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT state, COUNT(*) FROM rows WHERE batch = ? "
                                 "GROUP BY state", (batch,)).fetchall())


# ------------------------------------------------------------------------ PostgreSQL
ROOT = Path(__file__).resolve().parent.parent
_PG_SERVER: dict[str, str] = {}


def _pg_unavailable(reason: str) -> None:
    import pytest

    if os.environ.get("HEALTHCARD_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL required (HEALTHCARD_REQUIRE_PG=1) but {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def pg_server() -> str:
    """DSN of a PostgreSQL server for tests: $HEALTHCARD_TEST_PG_DSN, else a throwaway
    cluster started once per test process with scripts/postgres.sh (stopped at exit)."""
    import atexit
    import subprocess

    if "dsn" in _PG_SERVER:
        return _PG_SERVER["dsn"]
    dsn = os.environ.get("HEALTHCARD_TEST_PG_DSN")
    if not dsn:
        script = ROOT / "scripts" / "postgres.sh"
        try:
            done = subprocess.run([str(script), "start"], capture_output=True, text=True,
                                  timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _pg_unavailable(f"scripts/postgres.sh start failed: {exc}")
            raise AssertionError("unreachable") from exc
        if done.returncode != 0 or not done.stdout.strip():
            _pg_unavailable(f"scripts/postgres.sh start: {done.stderr.strip()[-300:]}")
        dsn = done.stdout.strip().splitlines()[-1]
        cluster = dsn.rsplit("host=", 1)[1].removesuffix("/socket")

        def stop() -> None:
            subprocess.run([str(script), "stop", cluster], capture_output=True, check=False)

        atexit.register(stop)
    _PG_SERVER["dsn"] = dsn
    return dsn


def fresh_pg_database(server_dsn: str) -> tuple[str, str]:
    """Create an empty database on the server; returns (dsn, name)."""
    import uuid

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"hc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    return make_conninfo("", **params), name


def drop_pg_database(server_dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- crash tests: journal per backend, state counts read from outside the runner ----------


def state_counter(journal: str) -> Callable[[], dict[str, int]]:
    if is_postgres_target(journal):
        import psycopg

        def pg_counts() -> dict[str, int]:
            try:
                with psycopg.connect(journal, autocommit=True) as conn:
                    rows = conn.execute("SELECT state, COUNT(*) FROM rows GROUP BY state")
                    return {state: int(n) for state, n in rows.fetchall()}
            except psycopg.Error:
                return {}

        return pg_counts

    def sqlite_counts() -> dict[str, int]:
        if not Path(journal).exists():
            return {}
        try:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as conn:
                rows = conn.execute("SELECT state, COUNT(*) FROM rows GROUP BY state")
                return {state: int(n) for state, n in rows.fetchall()}
        except sqlite3.Error:
            return {}

    return sqlite_counts


def kill_9_when(command: list[str], env: Mapping[str, str], counts: Callable[[], dict[str, int]],
                ready: Callable[[dict[str, int]], bool], *, timeout: float) -> dict[str, int]:
    """Start the runner ``command``, ``kill -9`` it once ``ready(counts())`` holds, and return
    the journal's state counts at the kill. Fails the test if the runner ends or never gets
    there in ``timeout`` seconds."""
    import os
    import signal
    import subprocess
    import time

    import pytest

    proc = subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready(counts()):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        else:
            pytest.fail("the runner never got going")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return counts()
