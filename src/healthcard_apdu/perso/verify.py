"""Verify a personalized card against its profile and record.

Three checks, reported together (:class:`VerifyReport`):

* **data**: every file of the profile that holds data in the record is read in full and
  compared; differences name the file and the item (code, English name, both values);
* **keys**: every external-authentication key answers its EXTERNAL AUTHENTICATE (health form;
  DF master keys in the FMCOS form), the internal-authentication key its INTERNAL
  AUTHENTICATE, and each DF's STK a secure-messaging UPDATE that writes back the value just
  read (so no data changes). Lock and block keys (LK, BK) and STM are not exercised: the only
  commands that use them block the application or the card. Their try counters are read
  instead (EXTERNAL AUTHENTICATE without data, ISO/IEC 7816-4, never a try): a blocked key
  fails the check, so it is never invisible;
* **forbidden accesses** (a sample): per DF, a protected file is read without authentication,
  and, after END ISSUANCE, a file is written (with its current value) in a state that does not
  grant the write. Each must be refused.

Authentications are never retried. A refused key is reported with its SW and tries left.
Before the first one the card factor is confirmed with INTERNAL AUTHENTICATE (no try counter;
``perso.execute.check_card_factor``): when no candidate of the profile's rule and the other
known rules is confirmed, :class:`FactorNotConfirmed` is raised and no key is tried at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.card.factor import FactorConfirmation
from healthcard_apdu.card.signing import valid_signature
from healthcard_apdu.crypto import challenge_iv, ecb_encrypt
from healthcard_apdu.model import (
    CardData,
    CyclicFile,
    FileValue,
    InpatientRecord,
    ModelError,
    OutpatientRecord,
)
from healthcard_apdu.perso.errors import PersoError
from healthcard_apdu.perso.execute import CountingTransport, check_card_factor, factor_rule_of
from healthcard_apdu.perso.plan import RK_PLAIN
from healthcard_apdu.perso.profile import (
    DfProfile,
    FileProfile,
    KeyProfile,
    Profile,
    access_granted_by,
    access_kind,
    access_ok,
    city_factor_of,
    file_image,
    resident_from,
)
from healthcard_apdu.security import (
    CardFactors,
    SecurityModule,
    external_auth_cryptogram,
    protect_update,
)
from healthcard_apdu.security.errors import SecurityModuleError, UnsupportedOperation
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.trace import Tracer

__all__ = ["AccessProbe", "DataDifference", "KeyCheck", "VerifyReport", "verify_card"]

log = logging.getLogger(__name__)

KeyResult = Literal["ok", "refused", "skipped", "blocked", "error"]
#: Status words that count as "access refused" for a forbidden-access probe.
REFUSED = frozenset({0x6982, 0x6985, 0x6900, 0x6986})
_SHOWN = 60


def _show(value: object) -> str:
    if isinstance(value, bytes):
        text = value.hex().upper()
        return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(value)} bytes)"
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


@dataclass(frozen=True)
class DataDifference:
    """One difference between the card and the record (item None: the whole file)."""

    file: str
    message: str
    item: str | None = None

    def __str__(self) -> str:
        where = f"{self.file} {self.item}" if self.item else self.file
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "item": self.item, "message": self.message}


@dataclass(frozen=True)
class KeyCheck:
    role: str
    df: str
    result: KeyResult
    how: str
    sw: int | None = None
    detail: str = ""

    @property
    def tries_left(self) -> int | None:
        if self.sw is None:
            return None
        if self.sw & 0xFFF0 == 0x63C0:
            return self.sw & 0x0F
        return 0 if self.sw == 0x6983 else None

    def __str__(self) -> str:
        text = f"{self.role} ({self.df}, {self.how}): {self.result}"
        if self.sw is not None:
            text += f" SW {self.sw:04X}"
        if self.tries_left is not None and self.result != "ok":
            text += f", {self.tries_left} tries left"
        if self.detail:
            text += f"; {self.detail}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "df": self.df, "result": self.result, "how": self.how,
                "sw": None if self.sw is None else f"{self.sw:04X}",
                "tries_left": self.tries_left, "detail": self.detail}


@dataclass(frozen=True)
class AccessProbe:
    """A forbidden access and the card's answer; ``refused`` is what must happen."""

    name: str
    apdu: str
    sw: int
    refused: bool

    def __str__(self) -> str:
        verdict = "refused" if self.refused else "NOT refused"
        return f"{self.name}: SW {self.sw:04X} ({verdict})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "apdu": self.apdu, "sw": f"{self.sw:04X}",
                "refused": self.refused}


@dataclass
class VerifyReport:
    profile: str
    card_factor: str
    differences: list[DataDifference] = field(default_factory=list)
    keys: list[KeyCheck] = field(default_factory=list)
    probes: list[AccessProbe] = field(default_factory=list)
    files_checked: int = 0
    apdus: int = 0
    bytes: int = 0
    factor_check: FactorConfirmation | None = None

    @property
    def data_ok(self) -> bool:
        return not self.differences

    @property
    def keys_ok(self) -> bool:
        return all(k.result in ("ok", "skipped") for k in self.keys)

    def not_exercised(self) -> list[str]:
        """The keys verify did not use, with their tries left when the card told them."""
        out = []
        for k in self.keys:
            if k.result != "skipped":
                continue
            tries = f"{k.tries_left} tries left" if k.tries_left is not None else "tries unknown"
            out.append(f"{k.role} ({k.df}): {tries}")
        return out

    @property
    def access_ok(self) -> bool:
        return all(p.refused for p in self.probes)

    @property
    def ok(self) -> bool:
        return self.data_ok and self.keys_ok and self.access_ok

    def problems(self) -> list[str]:
        """Every failed check as one line."""
        out = [str(d) for d in self.differences]
        out += [f"key {k}" for k in self.keys if k.result not in ("ok", "skipped")]
        out += [f"access {p}" for p in self.probes if not p.refused]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "profile": self.profile,
            "card_factor": self.card_factor,
            "data_ok": self.data_ok,
            "keys_ok": self.keys_ok,
            "access_ok": self.access_ok,
            "files_checked": self.files_checked,
            "differences": [d.to_json() for d in self.differences],
            "keys": [k.to_json() for k in self.keys],
            "forbidden_accesses": [p.to_json() for p in self.probes],
            "apdus": self.apdus,
            "bytes": self.bytes,
            "factor_check": None if self.factor_check is None else self.factor_check.to_json(),
        }


@dataclass
class _FileRead:
    """What was read of one file: records by number, or the binary image."""

    records: dict[int, bytes] = field(default_factory=dict)
    image: bytes | None = None


class _Verifier:
    def __init__(
        self,
        channel: Channel,
        profile: Profile,
        card: CardData,
        factors: CardFactors,
        security: SecurityModule,
        report: VerifyReport,
    ) -> None:
        self.channel = channel
        self.profile = profile
        self.card = card
        self.factors = factors
        self.security = security
        self.report = report
        self.contents = {ef.path: content for ef, content in card.file_contents()}
        self.reads: dict[str, _FileRead] = {}
        self.state = 0
        self.checked: set[str] = set()

    # -- plumbing ----------------------------------------------------------------------------

    def send(self, command: CommandApdu) -> ResponseApdu:
        response = self.channel.send(command)
        log.debug("verify %s -> %04X", command.label, response.sw)
        return response

    def select_df(self, df: DfProfile) -> bool:
        path: list[DfProfile] = []
        node: DfProfile | None = df
        while node is not None:
            path.append(node)
            node = self.profile.df(node.parent) if node.parent is not None else None
        for d in reversed(path):
            response = self.send(commands.select_fid(d.fid))
            if not response.ok:
                self.report.differences.append(DataDifference(
                    d.name, f"DF cannot be selected: SW {response.sw:04X}"))
                return False
        self.state = 0
        return True

    def challenge(self) -> bytes | None:
        response = self.send(commands.get_challenge(8))
        return response.data if response.ok and len(response.data) == 8 else None

    def authenticate(self, key: KeyProfile) -> bool:
        """One EXTERNAL AUTHENTICATE (never retried); records the key check."""
        how = "external authenticate (FMCOS form)" if key.auth == "fmcos" else \
            "external authenticate"
        challenge = self.challenge()
        if challenge is None:
            self.report.keys.append(KeyCheck(key.role, key.df, "error", how,
                                             detail="GET CHALLENGE failed"))
            return False
        try:
            if key.auth == "fmcos":
                card_key = self.security.derive_card_key(key.spec, self.factors)
                block = self.security.algorithm.block_size
                data = ecb_encrypt(self.security.algorithm, card_key,
                                   challenge_iv(challenge, block))
            else:
                plain = RK_PLAIN if key.follow_up == 1 else challenge
                data = self.security.external_auth_data(key.spec, self.factors, challenge, plain)
        except UnsupportedOperation as exc:
            self.report.keys.append(KeyCheck(key.role, key.df, "skipped", how,
                                             detail=f"security module: {exc}"))
            return False
        except SecurityModuleError as exc:
            self.report.keys.append(KeyCheck(key.role, key.df, "error", how, detail=str(exc)))
            return False
        response = self.send(commands.external_authenticate(key.ref, data))
        ok = response.ok
        detail = "key not present on this card (no try spent)" if response.sw == 0x6A88 else ""
        self.report.keys.append(KeyCheck(key.role, key.df, "ok" if ok else "refused", how,
                                         response.sw, detail))
        if ok and key.follow_up is not None:
            self.state = key.follow_up
        return ok

    # -- per DF ------------------------------------------------------------------------------

    def run(self) -> None:
        for df in self.profile.dfs:
            if not self.select_df(df):
                continue
            self.verify_df(df)

    def verify_df(self, df: DfProfile) -> None:
        files = self.profile.files_in(df.name)
        protected = [f for f in files if access_kind(f.read) not in ("free", "never")]
        if protected:
            self.probe_read(protected[0])
        groups: dict[str, list[FileProfile]] = {}
        for f in files:
            if access_kind(f.read) == "free":
                self.read_file(f)
            else:
                role = self.read_key(f)
                if role is not None:
                    groups.setdefault(role, []).append(f)
        for role, group in groups.items():
            key = self.profile.key(role)
            self.checked.add(role)
            if self.authenticate(key):
                for f in group:
                    self.read_file(f)
            else:
                for f in group:
                    if self.contents.get(f.path) is not None:
                        self.report.differences.append(DataDifference(
                            f.path, f"not read: {role} was refused"))
        if self.profile.end_issuance:
            self.probe_write(files)
        self.check_other_keys(df, files)

    def read_key(self, f: FileProfile) -> str | None:
        scope = "MF" if access_kind(f.read) == "mf" else f.df
        keys = [k for k in self.profile.keys_in(scope) if access_granted_by(f.read, k)]
        preferred = [k for k in keys if k.role == f.ef.read_key]
        chosen = (preferred or keys)
        return chosen[0].role if chosen else None

    def check_other_keys(self, df: DfProfile, files: tuple[FileProfile, ...]) -> None:
        stk = next((k for k in self.profile.keys_in(df.name)
                    if k.type == "line" and k.kid == 0x02 and k.df != "MF"), None)
        stk_done = False
        for key in self.profile.keys_in(df.name):
            if key.role in self.checked:
                continue
            if key.type == "internal":
                self.check_internal(key)
                continue
            if key.type == "line":
                if key is not stk:
                    self.report_tries(key, "not exercised: its commands block the "
                                           "application or card")
                continue
            if key.auth == "fmcos":
                continue  # the master key last: its state grants no data access
            ok = self.authenticate(key)
            if ok and stk is not None and not stk_done:
                stk_done = self.check_stk(stk, key, files)
        if stk is not None and not stk_done:
            self.report_tries(stk, "not exercised: no file writable with an authenticated "
                                   "key was read")
        master = self.profile.master_key(df.name)
        if master is not None and master.role not in self.checked:
            self.authenticate(master)

    def report_tries(self, key: KeyProfile, why: str) -> None:
        """A key verify does not use: its try counter, read with EXTERNAL AUTHENTICATE
        without data (ISO/IEC 7816-4 7.5.4; P1 = the key type), which spends no try. 63Cx
        gives the tries left, 6983 a blocked key (a failed check); any other answer means
        the card does not offer the query."""
        query = CommandApdu(0x00, 0x82, key.type_byte & 0x3F, key.kid,
                            name=f"{key.df}: try counter of {key.role}")
        response = self.send(query)
        how = "try counter (EXTERNAL AUTHENTICATE without data)"
        if response.sw == 0x6983 or response.sw == 0x63C0:
            self.report.keys.append(KeyCheck(key.role, key.df, "blocked", how, response.sw,
                                             "the key is blocked"))
        elif response.sw & 0xFFF0 == 0x63C0:
            self.report.keys.append(KeyCheck(key.role, key.df, "skipped", how, response.sw,
                                             why))
        else:
            self.report.keys.append(KeyCheck(
                key.role, key.df, "skipped", how, None,
                f"{why}; the card does not tell its try counter (SW {response.sw:04X})"))

    def check_stk(
        self, stk: KeyProfile, writer: KeyProfile, files: tuple[FileProfile, ...]
    ) -> bool:
        """Secure-messaging UPDATE of a file ``writer`` may write, with its current value."""
        for f in files:
            read = self.reads.get(f.path)
            if read is None or not access_granted_by(f.write, writer):
                continue
            if f.structure in ("tlv_records", "linear_fixed") and 1 in read.records:
                p1, p2, ins, offset_data = 1, 0x04, 0xDC, read.records[1]
            elif f.structure == "transparent" and read.image:
                p1, p2, ins, offset_data = 0, 0, 0xD6, read.image[:16]
            else:
                continue
            # the challenge is valid for the next command only: select the file first
            self.send(commands.select_fid(f.fid))
            challenge = self.challenge()
            if challenge is None:
                return False
            how = f"secure-messaging UPDATE of {f.path} (same value)"
            try:
                session = self.security.session(stk.spec, self.factors, challenge)
                command = protect_update(session, 0x00, ins, p1, p2, offset_data,
                                         name=f"{f.path}: SM UPDATE (verify {stk.role})")
            except UnsupportedOperation as exc:
                self.report.keys.append(KeyCheck(stk.role, stk.df, "skipped", how,
                                                 detail=f"security module: {exc}"))
                return True
            response = self.send(command)
            self.report.keys.append(KeyCheck(stk.role, stk.df, "ok" if response.ok else "refused",
                                             how, response.sw))
            return True
        return False

    def check_internal(self, key: KeyProfile) -> None:
        how = "internal authenticate"
        rs = os.urandom(8)
        a = RK_PLAIN
        try:
            session = self.security.session(key.spec, self.factors, rs)
            expected = external_auth_cryptogram(session, a)
        except UnsupportedOperation as exc:
            self.report.keys.append(KeyCheck(key.role, key.df, "skipped", how,
                                             detail=f"security module: {exc}"))
            return
        data = rs + a + bytes((key.version,))
        response = self.send(commands.internal_authenticate(key.ref, data))
        ok = response.ok and response.data == expected
        detail = "" if ok or not response.ok else "the card's answer differs"
        self.report.keys.append(KeyCheck(key.role, key.df, "ok" if ok else "refused", how,
                                         response.sw, detail))

    # -- forbidden accesses ------------------------------------------------------------------

    def probe(self, name: str, command: CommandApdu) -> None:
        response = self.send(command)
        self.report.probes.append(AccessProbe(name, command.to_bytes().hex().upper(),
                                              response.sw, response.sw in REFUSED))

    def probe_read(self, f: FileProfile) -> None:
        self.send(commands.select_fid(f.fid))
        if f.structure == "transparent":
            command = commands.read_binary(0, 1)
        else:
            command = commands.read_record(1, 256)
        self.probe(f"{f.path}: read without authentication", command)

    def probe_write(self, files: tuple[FileProfile, ...]) -> None:
        """A same-value write in a state that does not grant it (after END ISSUANCE)."""
        candidates = [f for f in files if f.path in self.reads
                      and not access_ok(f.write, self.state, 0)]
        candidates.sort(key=lambda f: (access_kind(f.write) != "never", f.type_byte & 0xC0 != 0))
        for f in candidates:
            read = self.reads[f.path]
            if f.structure == "transparent" and read.image:
                command = commands.update_binary(0, read.image[:1])
            elif f.structure != "transparent" and 1 in read.records:
                command = commands.update_record(1, read.records[1])
            else:
                continue
            self.send(commands.select_fid(f.fid))
            self.probe(f"{f.path}: write (same value) in state {self.state:X}, write right "
                       f"{f.write:02X}", command)
            return

    # -- data --------------------------------------------------------------------------------

    def read_file(self, f: FileProfile) -> None:
        content = self.contents.get(f.path)
        if content is None:
            return
        selected = self.send(commands.select_fid(f.fid))
        if not selected.ok:
            self.report.differences.append(DataDifference(
                f.path, f"file missing: SELECT -> {selected.sw:04X}"))
            return
        self.report.files_checked += 1
        read = _FileRead()
        if f.structure == "transparent":
            image = bytearray()
            step = self.profile.card.max_response
            for offset in range(0, f.size, step):
                size = min(step, f.size - offset)
                response = self.send(commands.read_binary(offset, size))
                if not response.ok:
                    self.report.differences.append(DataDifference(
                        f.path, f"READ BINARY {offset}+{size} -> {response.sw:04X}"))
                    return
                if len(response.data) != size:
                    self.report.differences.append(DataDifference(
                        f.path, f"READ BINARY {offset}+{size} returned {len(response.data)} "
                                "bytes"))
                    return
                image += response.data
            read.image = bytes(image)
            self.reads[f.path] = read
            self.compare_binary(f, content, read.image)
            return
        count = f.nrec if f.structure == "cyclic" else len(_expected_records(content))
        for number in range(1, count + 1):
            response = self.send(commands.read_record(number, 256))
            if response.sw == 0x6A83 and f.structure == "cyclic":
                break
            if not response.ok:
                self.report.differences.append(DataDifference(
                    f.path, f"READ RECORD {number} -> {response.sw:04X}"))
                return
            read.records[number] = response.data
        self.reads[f.path] = read
        self.compare_records(f, content, read.records)

    def compare_binary(self, f: FileProfile, content: Any, got: bytes) -> None:
        expected = file_image(f, content)
        if (
            isinstance(content, InpatientRecord | OutpatientRecord)
            and len(expected) > type(content).data_length()  # the file stores a signature
            and not valid_signature(content)
        ):
            # Personalization signed this record: its data must be the record's, and the
            # signature and certificate on the card must verify over that data.
            size = type(content).data_length()
            expected = expected[:size] + got[size : len(expected)]
            if got == expected and not _signature_verifies(type(content), got):
                self.report.differences.append(DataDifference(
                    f.path, "the SM2 signature on the card does not verify over the record's "
                    "data (items 211/212 or 383/384)"))
                return
        if got == expected:
            return
        cls = type(content)
        try:
            mine = cls.from_bytes(expected)
            theirs = cls.from_bytes(got)
        except ModelError:
            self.report.differences.append(DataDifference(
                f.path, f"bytes differ from offset {_first_difference(got, expected)}"))
            return
        if not self._compare_values(f.path, theirs, mine):
            self.report.differences.append(DataDifference(
                f.path, f"bytes differ from offset {_first_difference(got, expected)} "
                        "(same decoded values)"))

    def compare_records(self, f: FileProfile, content: Any, got: dict[int, bytes]) -> None:
        expected = _expected_records(content)
        if isinstance(content, CyclicFile):
            if len(got) != len(expected):
                self.report.differences.append(DataDifference(
                    f.path, f"card holds {len(got)} entries, record has {len(expected)}"))
            entry_cls = content.ENTRY
            for number in sorted(set(got) & set(expected)):
                if got[number] == expected[number]:
                    continue
                try:
                    theirs = entry_cls.from_bytes(got[number])
                except ModelError:
                    self.report.differences.append(DataDifference(
                        f.path, f"entry {number} does not decode"))
                    continue
                mine = entry_cls.from_bytes(expected[number])
                if not self._compare_values(f"{f.path} entry {number}", theirs, mine):
                    self.report.differences.append(DataDifference(
                        f.path, f"entry {number} differs in its bytes (same decoded values)"))
            return
        if got == expected:
            return
        cls = type(content)
        try:
            theirs = cls.from_records(got)
        except ModelError as exc:
            self.report.differences.append(DataDifference(f.path, f"records do not decode: {exc}"))
            return
        if not self._compare_values(f.path, theirs, content):
            numbers = [n for n in sorted(set(got) | set(expected)) if got.get(n) != expected.get(n)]
            self.report.differences.append(DataDifference(
                f.path, f"records {numbers} differ in their bytes (same decoded values)"))

    def _compare_values(self, where: str, theirs: FileValue, mine: FileValue) -> bool:
        """Add one difference per differing item; True when any was found."""
        found = False
        for (slot, card_value), (_, record_value) in zip(theirs.items(), mine.items(),
                                                        strict=True):
            if card_value != record_value:
                found = True
                it = slot.item
                label = f"item {it.no} {slot.json_code} ({slot.field})"
                self.report.differences.append(DataDifference(
                    where, f"card {_show(card_value)}, record {_show(record_value)}", label))
        return found


def _first_difference(got: bytes, expected: bytes) -> int:
    """Offset of the first differing byte; the shorter length when one is a prefix."""
    return next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)))


def _expected_records(content: Any) -> dict[int, bytes]:
    if isinstance(content, CyclicFile):
        return {n: e.to_bytes() for n, e in enumerate(content.entries, start=1)}
    return dict(content.to_records())


def _signature_verifies(cls: type[InpatientRecord] | type[OutpatientRecord], raw: bytes) -> bool:
    try:
        return valid_signature(cls.from_bytes(raw))
    except ModelError:
        return False


def verify_card(
    transport: Transport,
    profile: Profile,
    resident: CardData | Mapping[str, Any],
    security: SecurityModule,
    *,
    tracer: Tracer | None = None,
    reset: bool = True,
    card_factor: bytes | None = None,
    confirm_factor: bool = True,
) -> VerifyReport:
    """Check the card behind ``transport`` against ``profile`` and ``resident``.

    The card factor follows the profile's product rule (or ``card_factor``) and is confirmed
    first (``confirm_factor``); :class:`FactorNotConfirmed` before any key is tried when no
    candidate matches.
    """
    card = resident_from(resident)
    if reset:
        transport.reset()
    try:
        city = city_factor_of(card) if profile.needs_city_factor else None
    except (SecurityModuleError, ModelError) as exc:
        raise PersoError(f"record: no city factor ({exc})") from None
    counter = CountingTransport(transport)
    check = check_card_factor(counter, profile, security, rule=factor_rule_of(profile, card_factor),
                              confirm=confirm_factor, city_factor=city, tracer=tracer)
    factors = CardFactors(check.factor, city)
    channel = Channel(counter, max_command_data=profile.card.max_command_data,
                      max_response=profile.card.max_response, trace=tracer)
    report = VerifyReport(profile.name, factors.card.hex().upper(), factor_check=check)
    _Verifier(channel, profile, card, factors, security, report).run()
    report.apdus = counter.apdus
    report.bytes = counter.sent + counter.received
    log.info("verified card %s: %s", report.card_factor, "ok" if report.ok else "FAILED")
    return report
