"""The personalization plan: a pure function of (profile, record, card factor, security module)
to an ordered list of named APDU steps.

Order (docs/profiles.md §4): for each DF in profile order — SELECT of the parent when needed,
CREATE FILE of the DF (the MF is redefined), its key file, WRITE KEY of each key, CREATE FILE of
each EF; then the data: one GET CHALLENGE + EXTERNAL AUTHENTICATE with the read key (the
read-back needs it; during issuance writes need no authentication, docs/cos.md §7), and per
file its writes followed by the read-back of exactly what was written. Last, END ISSUANCE.

Steps that need the card's challenge (external authentication) carry a ``build`` callback
evaluated by the executor; everything else is a finished :class:`CommandApdu`. Key values
sit only inside WRITE KEY commands; ``secret`` marks their byte ranges, and every textual form
of a step or plan (``repr``, :meth:`Plan.to_json`) masks them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.card.signing import signed_record
from healthcard_apdu.crypto import BlockCipher, challenge_iv, ecb_encrypt
from healthcard_apdu.model import CardData, CyclicFile, InpatientRecord, OutpatientRecord
from healthcard_apdu.perso.chunks import cover
from healthcard_apdu.perso.errors import ProfileError, SecurityModuleUnsuitable
from healthcard_apdu.perso.profile import (
    DfProfile,
    FileProfile,
    KeyProfile,
    Profile,
    access_granted_by,
    access_kind,
    check_record,
    city_factor_of,
    file_image,
)
from healthcard_apdu.security import CardFactors, SecurityModule
from healthcard_apdu.security.errors import (
    SecurityModuleError,
    UnknownKeyRole,
    UnsupportedOperation,
)
from healthcard_apdu.transport.trace import Range, mask_hex, wire_data_offset

__all__ = [
    "RK_PLAIN",
    "Plan",
    "Step",
    "StepKind",
    "build_plan",
    "erase_steps",
    "external_auth_step",
]

StepKind = Literal[
    "create_df", "create_key_file", "write_key", "create_ef", "select", "challenge",
    "authenticate", "write", "read", "erase", "end_issuance",
]
#: Plaintext A of EXTERNAL AUTHENTICATE with read keys (HDOS convention,
#: docs/reference/healthcard-layout.md §3.5).
RK_PLAIN = bytes.fromhex("1122334455667788")
HEALTH_AUTH_LEN = 17
END_ISSUANCE = CommandApdu(0x80, 0xE8, 0x00, 0x00, le=256, name="END ISSUANCE")

Builder = Callable[[bytes], tuple[CommandApdu, tuple[Range, ...]]]


@dataclass(frozen=True, eq=False)
class Step:
    """One APDU of the plan.

    ``command`` is None for steps built from the card's challenge (``build``). ``secret`` are
    byte ranges of the command's data field that hold keys. ``expect_data`` is what a read-back
    must return. ``response_length`` is the response data length the plan expects (for costs).
    """

    name: str
    kind: StepKind
    command: CommandApdu | None = field(default=None, repr=False)
    secret: tuple[Range, ...] = ()
    expect_sw: int = 0x9000
    expect_data: bytes | None = field(default=None, repr=False)
    response_length: int = 0
    build: Builder | None = field(default=None, repr=False)
    command_length: int = 0
    df: str | None = None
    file: str | None = None
    role: str | None = None

    @property
    def needs_challenge(self) -> bool:
        return self.build is not None

    @property
    def secret_ranges(self) -> tuple[Range, ...]:
        """Alias of ``secret``: byte ranges of key values in the command's data field."""
        return self.secret

    @property
    def wire_bytes(self) -> int:
        """Command bytes + response data + SW (what crosses the interface)."""
        sent = len(self.command.to_bytes()) if self.command is not None else self.command_length
        return sent + self.response_length + 2

    def masked_apdu(self) -> str | None:
        """Upper-case hex of the command with every secret nibble as ``*``."""
        if self.command is None:
            return None
        offset = wire_data_offset(self.command)
        ranges = [(start + offset, end + offset) for start, end in self.secret]
        return mask_hex(self.command.to_bytes(), ranges)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.command is None:
            out["apdu"] = None
            out["note"] = "built at execution from the card's challenge"
        else:
            out["apdu"] = self.masked_apdu()
        out["expect_sw"] = f"{self.expect_sw:04X}"
        if self.expect_data is not None:
            out["expect_length"] = len(self.expect_data)
        if self.secret:
            out["secret"] = True
        for label in ("df", "file", "role"):
            value = getattr(self, label)
            if value is not None:
                out[label] = value
        out["bytes"] = self.wire_bytes
        return out

    def __repr__(self) -> str:
        shown = self.masked_apdu() or "<challenge>"
        return f"Step({self.name!r}, {self.kind}, {shown})"


@dataclass(frozen=True, eq=False)
class Plan:
    """An ordered personalization; ``erase`` holds the steps run first when erasing."""

    profile: Profile
    card_factor: bytes
    city_factor: bytes | None
    steps: tuple[Step, ...]
    erase: tuple[Step, ...] = ()
    record: CardData | None = field(default=None, repr=False)

    @property
    def apdus(self) -> int:
        return len(self.steps)

    @property
    def bytes(self) -> int:
        return sum(s.wire_bytes for s in self.steps)

    def counts(self) -> dict[str, int]:
        """Number of steps per kind."""
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out

    def to_json(self, *, include_erase: bool = False) -> dict[str, Any]:
        """The plan as JSON with every secret masked (the ``--dry-run`` output)."""
        from healthcard_apdu.perso.minimum import minimum_cost

        minimum = minimum_cost(self.profile, self.record or CardData())
        out: dict[str, Any] = {
            "format": "healthcard-apdu/plan",
            "profile": self.profile.name,
            "production": self.profile.production,
            "card_factor": self.card_factor.hex().upper(),
            "city_factor": None if self.city_factor is None else self.city_factor.hex().upper(),
            "apdus": self.apdus,
            "bytes": self.bytes,
            "minimum": {"apdus": minimum.apdus, "bytes": minimum.bytes},
            "counts": self.counts(),
            "steps": [s.to_json() for s in self.steps],
        }
        if include_erase:
            out["erase_steps"] = [s.to_json() for s in self.erase]
        return out

    def __repr__(self) -> str:
        return (f"Plan(profile={self.profile.name!r}, card_factor={self.card_factor.hex().upper()},"
                f" {self.apdus} APDUs, {self.bytes} bytes)")


# --- building -------------------------------------------------------------------------------


def _select(fid: int, name: str, *, df: str | None, file: str | None, response: int) -> Step:
    command = commands.select_fid(fid)
    command = CommandApdu(command.cla, command.ins, command.p1, command.p2, command.data,
                          name=name)
    return Step(name, "select", command, response_length=response, df=df, file=file)


def _named(cmd: CommandApdu, name: str) -> CommandApdu:
    return CommandApdu(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, cmd.le, cmd.extended,
                       name=name)


def _card_key(security: SecurityModule, key: KeyProfile, factors: CardFactors) -> bytes:
    try:
        return security.derive_card_key(key.spec, factors)
    except UnsupportedOperation as exc:
        raise SecurityModuleUnsuitable(
            f"security module {security.name} cannot derive the card key {key.role} for "
            f"WRITE KEY ({exc}); personalize with a key file or a PKCS#11 token"
        ) from None


def external_auth_step(
    key: KeyProfile,
    factors: CardFactors,
    security: SecurityModule,
    *,
    name: str | None = None,
    plain: bytes | None = None,
) -> Step:
    """EXTERNAL AUTHENTICATE with ``key``, built from the preceding GET CHALLENGE."""
    label = name or f"{key.df}: EXTERNAL AUTHENTICATE {key.role}"
    block = security.algorithm.block_size
    if key.auth == "fmcos":

        def build_fmcos(challenge: bytes) -> tuple[CommandApdu, tuple[Range, ...]]:
            card_key = _card_key(security, key, factors)
            crypt = ecb_encrypt(security.algorithm, card_key, challenge_iv(challenge, block))
            return _named(commands.external_authenticate(key.ref, crypt), label), ()

        return Step(label, "authenticate", build=build_fmcos, command_length=5 + block,
                    df=key.df, role=key.role)

    def build_health(challenge: bytes) -> tuple[CommandApdu, tuple[Range, ...]]:
        a = plain if plain is not None else challenge
        data = security.external_auth_data(key.spec, factors, challenge, a)
        return _named(commands.external_authenticate(key.ref, data), label), ()

    return Step(label, "authenticate", build=build_health,
                command_length=5 + HEALTH_AUTH_LEN, df=key.df, role=key.role)


def challenge_step(df: str | None, name: str | None = None) -> Step:
    label = name or f"{df}: GET CHALLENGE"
    return Step(label, "challenge", _named(commands.get_challenge(8), label),
                response_length=8, df=df)


def erase_steps(
    profile: Profile, factors: CardFactors, security: SecurityModule
) -> tuple[Step, ...]:
    """GET CHALLENGE, EXTERNAL AUTHENTICATE with the MF master key, ERASE DF (of the MF)."""
    master = profile.master_key("MF")
    if master is None:
        return ()
    erase = _named(commands.erase_df(), "MF: ERASE DF")
    return (
        challenge_step("MF", "MF: GET CHALLENGE (erase)"),
        external_auth_step(master, factors, security, name=f"MF: EXTERNAL AUTHENTICATE "
                                                           f"{master.role} (erase)"),
        Step("MF: ERASE DF", "erase", erase, df="MF"),
    )


def build_plan(
    profile: Profile,
    resident: CardData | Mapping[str, Any],
    card_factor: bytes,
    security: SecurityModule,
    *,
    read_back: bool = True,
) -> Plan:
    """Build the plan; raises :class:`ProfileError` (all record problems) or
    :class:`SecurityModuleUnsuitable` before anything is sent. No card I/O."""
    card, problems = check_record(profile, resident)
    if card is None:
        raise ProfileError("record", problems)
    if len(card_factor) != 8:
        raise ProfileError("card", [_problem("card_factor",
                                             f"must be 8 bytes, got {len(card_factor)}")])
    if security.algorithm is not profile.algorithm:
        raise SecurityModuleUnsuitable(
            f"profile {profile.name} uses {_alg(profile.algorithm)} keys, security module "
            f"{security.name} holds {_alg(security.algorithm)} keys"
        )
    city = city_factor_of(card) if profile.needs_city_factor else None
    factors = CardFactors(bytes(card_factor), city)
    card = _signed_clinical_records(profile, card, security)
    builder = _Builder(profile, card, factors, security, read_back)
    steps = builder.run()
    if builder.unavailable:
        raise SecurityModuleUnsuitable(
            f"security module {security.name} lacks {len(builder.unavailable)} key(s) the "
            f"profile writes: " + "; ".join(builder.unavailable)
        )
    try:
        erase = erase_steps(profile, factors, security)
    except SecurityModuleError as exc:  # pragma: no cover - defensive
        raise SecurityModuleUnsuitable(str(exc)) from None
    return Plan(profile, bytes(card_factor), city, tuple(steps), erase, card)


def _signed_clinical_records(
    profile: Profile, card: CardData, security: SecurityModule
) -> CardData:
    """The record with every in/out-patient record signed the SAM way (a signature that
    already verifies is kept); a module that cannot sign is refused before any card I/O.
    Profiles whose EE/ED files hold only the data part (8K variants) store no signature."""
    signed: dict[str, Any] = {}
    for field_name, first_file in (("inpatient", "DF03/EE01"), ("outpatient", "DF03/ED01")):
        records = getattr(card, field_name)
        if not any(r is not None for r in records) or not _stores_signature(profile, first_file):
            continue
        try:
            signed[field_name] = tuple(
                None if r is None else signed_record(r, security) for r in records
            )
        except SecurityModuleError as exc:
            raise SecurityModuleUnsuitable(
                f"the record holds {field_name} records, which must carry the SAM's SM2 "
                f"signature, and security module {security.name} cannot sign them ({exc})"
            ) from None
    return dataclasses.replace(card, **signed) if signed else card


def _stores_signature(profile: Profile, path: str) -> bool:
    """True when the profile's record file has room for the signature and certificate."""
    f = profile.file(path)
    cls = InpatientRecord if "/EE" in path else OutpatientRecord
    return f is not None and (f.size or 0) > cls.data_length()


def _alg(cipher: BlockCipher) -> str:
    return "SM4" if cipher is BlockCipher.SM4 else "3DES"


def _problem(path: str, message: str) -> Any:
    from healthcard_apdu.perso.errors import Problem

    return Problem(path, message)


class _Builder:
    def __init__(
        self,
        profile: Profile,
        card: CardData,
        factors: CardFactors,
        security: SecurityModule,
        read_back: bool,
    ) -> None:
        self.profile = profile
        self.card = card
        self.factors = factors
        self.security = security
        self.read_back = read_back
        self.contents = {ef.path: content for ef, content in card.file_contents()}
        self.steps: list[Step] = []
        self.current = "MF"
        #: Keys the security module does not hold (all reported together by build_plan).
        self.unavailable: list[str] = []

    def run(self) -> list[Step]:
        for df in self.profile.dfs:
            self._df(df)
        if self.profile.end_issuance:
            self.steps.append(Step("END ISSUANCE", "end_issuance", END_ISSUANCE))
        return self.steps

    # -- structure ---------------------------------------------------------------------------

    def _navigate(self, target: str) -> None:
        if target == self.current:
            return
        chain: list[DfProfile] = []
        node: DfProfile | None = self.profile.df(target)
        while node is not None:
            chain.append(node)
            node = self.profile.df(node.parent) if node.parent is not None else None
        chain.reverse()
        current = self.profile.df(self.current)
        path = [chain[-1]] if target == "MF" or current.parent == target else chain
        for d in path:
            self.steps.append(_select(d.fid, f"{d.name}: SELECT {d.fid:04X}", df=d.name,
                                      file=None, response=len(d.expected_fci())))
        self.current = target

    def _df(self, df: DfProfile) -> None:
        if df.parent is not None:
            self._navigate(df.parent)
        label = "CREATE FILE 3F00 (MF)" if df.is_mf else f"CREATE FILE {df.fid:04X}"
        self.steps.append(Step(f"{df.name}: {label}", "create_df",
                               _named(commands.create_file(df.fid, df.create_data()),
                                      f"{df.name}: {label}"), df=df.name))
        self.current = df.name
        name = f"{df.name}: CREATE FILE key file"
        self.steps.append(Step(name, "create_key_file",
                               _named(commands.create_file(0x0000, df.key_file_data()), name),
                               df=df.name))
        for key in self.profile.keys_in(df.name):
            self.steps.append(self._write_key(key))
        for f in self.profile.files_in(df.name):
            name = f"{f.path}: CREATE FILE {f.fid:04X}"
            self.steps.append(Step(name, "create_ef",
                                   _named(commands.create_file(f.fid, f.create_data()), name),
                                   df=df.name, file=f.path))
        self._data(df)

    def _write_key(self, key: KeyProfile) -> Step:
        try:
            value = _card_key(self.security, key, self.factors)
        except UnknownKeyRole as exc:
            self.unavailable.append(str(exc))
            value = bytes(16)  # placeholder: build_plan raises before the plan is returned
        header = key.header()
        name = f"{key.df}: WRITE KEY {key.role} (type {key.type_byte:02X}, KID {key.kid:02X})"
        command = _named(commands.write_key(0x01, key.kid, header + value), name)
        return Step(name, "write_key", command, secret=((len(header), len(header) + len(value)),),
                    df=key.df, role=key.role)

    # -- data --------------------------------------------------------------------------------

    def _data(self, df: DfProfile) -> None:
        files = [f for f in self.profile.files_in(df.name) if self._has_writes(f)]
        if not files:
            return
        sfis = [f.sfi for f in self.profile.files_in(df.name)]
        groups: dict[str, list[FileProfile]] = {}
        free: list[FileProfile] = []
        for f in files:
            key = self._read_key(f) if self.read_back else None
            if key is None:
                free.append(f)
            else:
                groups.setdefault(key.role, []).append(f)
        for f in free:
            self._file(f, sfis.count(f.sfi) == 1)
        for role, group in groups.items():
            key = self.profile.key(role)
            self.steps.append(challenge_step(df.name))
            plain = RK_PLAIN if key.auth == "health" else None
            self.steps.append(external_auth_step(key, self.factors, self.security, plain=plain))
            for f in group:
                self._file(f, sfis.count(f.sfi) == 1)

    def _read_key(self, f: FileProfile) -> KeyProfile | None:
        if access_kind(f.read) == "free":
            return None
        preferred = f.ef.read_key
        keys = self.profile.keys_in("MF" if access_kind(f.read) == "mf" else f.df)
        candidates = [k for k in keys if access_granted_by(f.read, k)]
        for k in candidates:
            if k.role == preferred:
                return k
        if not candidates:  # validation guarantees one; keep a clear error anyway
            raise ProfileError(self.profile.name, [_problem(f"files.{f.path}.read",
                                                            "no key meets this right")])
        return candidates[0]

    def _has_writes(self, f: FileProfile) -> bool:
        content = self.contents.get(f.path)
        if content is None:
            return False
        if isinstance(content, CyclicFile):
            return bool(content.entries)
        if f.structure == "transparent":
            image = file_image(f, content)
            fill = self.profile.card.binary_fill
            return fill is None or image.count(fill) != len(image)
        return True

    def _file(self, f: FileProfile, sfi_unique: bool) -> None:
        content = self.contents[f.path]
        if f.structure == "transparent":
            self._binary(f, file_image(f, content), sfi_unique)
            return
        if isinstance(content, CyclicFile):
            appended = [e.to_bytes() for e in content.append_order()]
            expected = [e.to_bytes() for e in content.entries]
        else:
            assert content is not None
            records = sorted(content.to_records())
            appended = [r for _, r in records]
            expected = appended
        p2 = f.sfi << 3 if sfi_unique else 0x00
        if not sfi_unique:
            self.steps.append(_select(f.fid, f"{f.path}: SELECT {f.fid:04X}", df=f.df,
                                      file=f.path, response=0))
        for number, record in enumerate(appended, start=1):
            name = f"{f.path}: APPEND RECORD ({number}/{len(appended)})"
            command = CommandApdu(0x00, 0xE2, 0x00, p2, record, name=name)
            self.steps.append(Step(name, "write", command, df=f.df, file=f.path))
        if not self.read_back:
            return
        for number, record in enumerate(expected, start=1):
            name = f"{f.path}: READ RECORD {number} (read-back)"
            command = CommandApdu(0x00, 0xB2, number, p2 | 0x04, le=len(record), name=name)
            self.steps.append(Step(name, "read", command, expect_data=record,
                                   response_length=len(record), df=f.df, file=f.path))

    def _binary(self, f: FileProfile, image: bytes, sfi_unique: bool) -> None:
        card = self.profile.card
        chunks = cover(image, card.binary_fill, card.max_command_data)
        if not chunks:
            return
        use_sfi = sfi_unique and chunks[0][0] <= 0xFF
        if not use_sfi:
            self.steps.append(_select(f.fid, f"{f.path}: SELECT {f.fid:04X}", df=f.df,
                                      file=f.path, response=0))
        for index, (offset, length) in enumerate(chunks):
            name = f"{f.path}: UPDATE BINARY {offset}+{length}"
            data = image[offset : offset + length]
            if index == 0 and use_sfi:
                command = CommandApdu(0x00, 0xD6, 0x80 | f.sfi, offset, data, name=name)
            else:
                command = _named(commands.update_binary(offset, data), name)
            self.steps.append(Step(name, "write", command, df=f.df, file=f.path))
        if not self.read_back:
            return
        for offset, length in chunks:
            for start in range(offset, offset + length, card.max_response):
                size = min(card.max_response, offset + length - start)
                name = f"{f.path}: READ BINARY {start}+{size} (read-back)"
                command = _named(commands.read_binary(start, size), name)
                self.steps.append(Step(name, "read", command,
                                       expect_data=image[start : start + size],
                                       response_length=size, df=f.df, file=f.path))
