"""``HealthCard``: typed reads and writes of every file of the user card.

Each operation selects what it needs, authenticates with the key the model names for the file
and operation (``model.ef(path).read_key / write_key / erase_key``), and sends the command form
of docs/reference/healthcard-layout.md §3.3:

==============================  =========================================================
TLV record files                READ RECORD by number (DDF1/EF05 by tag, as in the traces);
                                SM UPDATE RECORD ``04 DC rr 04`` with the DF's STK
cyclic DF02/EF07, EF08          READ RECORD n; plain ``00 DC 00 03`` (new record 1)
transparent EF07, EE0n, ED0n    READ / UPDATE BINARY in chunks (128 bytes by default)
DF03/EF05, EF06 index flags     READ RECORD; ``84 D2 rr 04`` (00, UK1) / ``84 0C rr 04`` (FF, UK2)
==============================  =========================================================

EE/ED records are signed on write (SM3 + SM2 by the security module, items 211/212 or
383/384, docs/keys.md §5) and their signature is verified on read (:class:`SignatureInvalid`;
an unsigned record is normal in the field and reads as ``unsigned`` unless
``require_signatures``). Reads are lenient: bytes out of spec give a best-effort value and a
:class:`CardNotice` in :attr:`HealthCard.warnings`; writes stay strict. Before the first
EXTERNAL AUTHENTICATE the card factor is confirmed with INTERNAL AUTHENTICATE
(:mod:`healthcard_apdu.card.factor`). Runtime state (selection, security state, factors)
lives in :class:`CardSession`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import NotFound
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.card.errors import (
    CardOperationError,
    NotWritable,
    RecordInvalid,
    SignatureInvalid,
    SignatureMissing,
)
from healthcard_apdu.card.factor import (
    CardNotGenuine,
    FactorConfirmation,
    FactorStatus,
    InternalAuthentication,
    internal_authenticate,
)
from healthcard_apdu.card.notices import CardNotice, SignatureStatus
from healthcard_apdu.card.session import CardSession
from healthcard_apdu.card.signing import signature_slots, signed_record
from healthcard_apdu.model import (
    EF,
    Addresses,
    Allergies,
    AllergyEntry,
    CardContact,
    CardData,
    ClinicalBasics,
    Contacts,
    CyclicFile,
    DecodeWarning,
    FileContent,
    FileValue,
    HolderData,
    IdDocuments,
    ImmunizationEntry,
    Immunizations,
    InpatientIndex,
    InpatientRecord,
    IssuerData,
    ItemError,
    LayoutError,
    ModelError,
    OccupationMarriage,
    OutpatientIndex,
    OutpatientRecord,
    Photo,
    SpecialInfo,
    Value,
    decode_item_lenient,
    ef,
    file_class,
    item,
    items_in_range,
)
from healthcard_apdu.model import key as model_key
from healthcard_apdu.security import (
    DEFAULT_FACTOR_RULE,
    STANDARD_KEY_SPECS,
    CardFactors,
    FactorRule,
    KeySpec,
    SecurityModule,
    sign_record,
    verify_record,
)
from healthcard_apdu.security.errors import CertificateError
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.channel import Channel

__all__ = ["DEFAULT_CHUNK", "HealthCard", "SignMode"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 128
"""READ/UPDATE BINARY chunk size of the traces."""

SignMode = bool | None
"""EE/ED signing on write: ``None`` (auto) keeps a signature that still verifies over the data
and signs otherwise; ``True`` always signs with the security module; ``False`` writes as given."""

F = TypeVar("F", bound=FileValue)
T = TypeVar("T")

_ISSUER = "DDF1/EF05"
_PHOTO = "DDF1/EF07"
_PHOTO_HEADER = 2
#: READ RECORD by number asks for the whole record (Le = 00), as the terminals in public
#: reader logs do; a card that wants the exact length answers 6Cxx and gets it.
_WHOLE_RECORD = 256


@dataclass(frozen=True)
class _RecordKind:
    """EE (inpatient) or ED (outpatient) records and their index file."""

    label: str
    cls: type[FileValue]
    prefix: str
    count: int
    index: str

    def path(self, number: int) -> str:
        if isinstance(number, bool) or not isinstance(number, int):
            raise LayoutError(f"{self.label} number must be an int 1..{self.count}")
        if not 1 <= number <= self.count:
            raise LayoutError(f"{self.label} number must be 1..{self.count}, got {number}")
        return f"{self.prefix}{number}"

    def where(self, number: int) -> str:
        return f"{self.path(number)} ({self.label} {number})"


_INPATIENT = _RecordKind("inpatient record", InpatientRecord, "DF03/EE0", 3, "DF03/EF05")
_OUTPATIENT = _RecordKind("outpatient record", OutpatientRecord, "DF03/ED0", 5, "DF03/EF06")
_KINDS = {"DF03/EE": _INPATIENT, "DF03/ED": _OUTPATIENT}
_CYCLIC: dict[str, type[CyclicFile[Any]]] = {"DF02/EF07": Allergies, "DF02/EF08": Immunizations}


# Per-file read plans: the commands and error contexts of a file's reads are built once per
# process (commands are immutable), not per APDU. Keyed by EF path; bounded.
_Step = tuple[CommandApdu, str]
_Chunk = tuple[CommandApdu, str, int]
_STEPS: dict[tuple[str, int, int, bool], _Step] = {}
_BINARY_PLANS: dict[tuple[str, int, int, int], tuple[_Chunk, ...]] = {}
_RECORD_READS: dict[tuple[str, bool, bool], tuple[tuple[int, CommandApdu, str], ...]] = {}
_MAX_STEPS = 4096


def _remember(key: tuple[str, int, int, bool], step: _Step) -> _Step:
    if len(_STEPS) >= _MAX_STEPS:
        _STEPS.clear()
    _STEPS[key] = step
    return step


def _binary_plan(path: str, offset: int, length: int, chunk: int) -> tuple[_Chunk, ...]:
    """(READ BINARY, error context, size) of each chunk of bytes ``offset .. offset+length-1``."""
    key = (path, offset, length, chunk)
    plan = _BINARY_PLANS.get(key)
    if plan is None:
        steps = []
        for position in range(offset, offset + length, chunk):
            size = min(chunk, offset + length - position)
            where = f"{path} bytes {position}-{position + size - 1}"
            steps.append((commands.read_binary(position, size), where, size))
        if len(_BINARY_PLANS) >= _MAX_STEPS:
            _BINARY_PLANS.clear()
        plan = _BINARY_PLANS[key] = tuple(steps)
    return plan


def _record_step(path: str, number: int, length: int) -> _Step:
    """READ RECORD ``number`` (``length`` bytes) and its error context."""
    step = _STEPS.get((path, number, length, False))
    if step is None:
        step = _remember(
            (path, number, length, False),
            (commands.read_record(number, length), f"{path} record {number}"),
        )
    return step


def _record_reads(
    target: EF, by_tag: bool, whole: bool
) -> tuple[tuple[int, CommandApdu, str], ...]:
    """(record number, READ RECORD, error context) for every record of a record file; by
    number with Le = 00 (the whole record) when ``whole``."""
    plan = _RECORD_READS.get((target.path, by_tag, whole))
    if plan is None:
        steps: list[tuple[int, CommandApdu, str]] = []
        if target.structure == "tlv_records":
            for it in target.items:
                assert it.record is not None and it.tag is not None
                steps.append((
                    it.record,
                    commands.read_record_by_tag(it.tag, it.tlv_length)
                    if by_tag
                    else commands.read_record(it.record, _WHOLE_RECORD if whole else it.tlv_length),
                    f"{target.path} record {it.record} (item {it.no} {it.code})",
                ))
        else:
            for number, length in target.record_lengths().items():
                steps.append(
                    (number, commands.read_record(number, _WHOLE_RECORD if whole else length),
                     f"{target.path} record {number}")
                )
        plan = _RECORD_READS[(target.path, by_tag, whole)] = tuple(steps)
    return plan


def _blank(raw: bytes) -> bool:
    return not raw.strip(b"\x00") or not raw.strip(b"\xff")


def _with_path(exc: ItemError, path: str) -> ItemError:
    """The same model error with the EF path as context (when it names only the layout)."""
    if exc.context not in (None, "", *_KINDS, path):
        return exc
    return type(exc)(exc.item, exc.value, exc.reason, context=path)


class HealthCard:
    """The user card over a channel, with a security module for the SAM role.

    ``channel`` may be a :class:`Channel` or a bare :class:`Transport` (wrapped in a Channel).
    ``card_factor`` / ``city_code`` override the factors taken from the ATR and DDF1/EF05.
    ``read_chunk`` / ``write_chunk`` are the READ / UPDATE BINARY sizes (capped by the
    channel's ``max_response`` / ``max_command_data``). ``verify_signatures`` is the default of
    the ``verify`` argument of the EE/ED reads; ``require_signatures`` makes an unsigned
    record a failure (:class:`SignatureMissing`). ``secure_record_updates=False`` writes TLV
    records with plain ``00 DC`` (for cards whose files do not require secure messaging).
    ``factor_rule`` is the card product's card-factor rule (default first 8 historical bytes;
    ``card_factor`` is the rule ``fixed``); ``confirm_factor=False`` turns the INTERNAL
    AUTHENTICATE check before the first EXTERNAL AUTHENTICATE off. ``on_notice`` hears every
    :class:`CardNotice` as it is added to :attr:`warnings`.
    """

    def __init__(
        self,
        channel: Channel | Transport,
        security: SecurityModule,
        *,
        card_factor: bytes | None = None,
        city_code: str | None = None,
        key_specs: Mapping[str, KeySpec] = STANDARD_KEY_SPECS,
        read_chunk: int = DEFAULT_CHUNK,
        write_chunk: int = DEFAULT_CHUNK,
        verify_signatures: bool = True,
        read_issuer_by_tag: bool = True,
        secure_record_updates: bool = True,
        factor_rule: FactorRule | str = DEFAULT_FACTOR_RULE,
        confirm_factor: bool = True,
        require_signatures: bool = False,
        on_notice: Callable[[CardNotice], None] | None = None,
    ) -> None:
        if isinstance(channel, Transport):
            channel = Channel(channel)
        if read_chunk < 1 or write_chunk < 1:
            raise ValueError("read_chunk and write_chunk must be positive")
        self.channel = channel
        self.security = security
        #: Notices of this card's reads (items out of spec, the factor check), oldest first.
        self.warnings: list[CardNotice] = []
        #: Signature status of each EE/ED record read, by path ("DF03/EE01").
        self.signatures: dict[str, SignatureStatus] = {}
        self.on_notice = on_notice
        self.require_signatures = require_signatures
        self.session = CardSession(
            channel, security, key_specs=key_specs, card_factor=card_factor, city_code=city_code,
            factor_rule=factor_rule, confirm_factor=confirm_factor,
            on_notice=self._factor_notice,
        )
        self.read_chunk = min(read_chunk, channel.max_response)
        self.write_chunk = min(write_chunk, channel.max_command_data)
        self.verify_signatures = verify_signatures
        self.read_issuer_by_tag = read_issuer_by_tag
        self.secure_record_updates = secure_record_updates

    def __repr__(self) -> str:
        return f"HealthCard({self.channel.transport.name}, security={self.security.name})"

    # == notices and the card factor =========================================================

    def _notice(self, notice: CardNotice) -> None:
        self.warnings.append(notice)
        log.info("%s", notice.message)
        if self.on_notice is not None:
            self.on_notice(notice)

    def add_notice(self, notice: CardNotice) -> None:
        """Add a notice of work done on this card (``card.document`` reports unreadable files
        this way): kept in :attr:`warnings`, passed to ``on_notice``."""
        self._notice(notice)

    def _factor_notice(self, confirmation: FactorConfirmation) -> None:
        self._notice(CardNotice("factor", confirmation.message))

    @property
    def factor_confirmation(self) -> FactorConfirmation | None:
        """The card-factor check of the current card (None until it ran)."""
        return self.session.factor_confirmation

    def confirm_card_factor(self) -> FactorConfirmation:
        """Run the card-factor check now (once per card) and return it: the candidates, each
        INTERNAL AUTHENTICATE and the confirmed factor. Does not raise when nothing was
        confirmed (``status`` says so; the next authentication raises
        :class:`~healthcard_apdu.card.factor.FactorNotConfirmed`)."""
        return self.session.check_factor()

    def prove_genuine(self) -> InternalAuthentication:
        """Prove that the card holds this security module's keys: INTERNAL AUTHENTICATE with
        IRK_DDF1 and a fresh challenge, checked by the security module (no try counter).

        Raises :class:`~healthcard_apdu.card.factor.CardNotGenuine` when the answer differs,
        when no card-factor candidate is confirmed (a clone or a card of another key set), or
        when the card or the module has no internal key (nothing can be proven). Selects DDF1
        and forgets the security state (the next protected access authenticates again).
        """
        confirmation = self.session.check_factor()
        if confirmation.status is FactorStatus.NOT_CONFIRMED:
            raise CardNotGenuine(f"card not genuine for this key set: {confirmation.message}")
        if confirmation.status is FactorStatus.IMPOSSIBLE:
            raise CardNotGenuine(f"the card cannot prove it is genuine: {confirmation.reason}")
        session = self.session
        session.invalidate()
        session.select_df(model_key(confirmation.key).df)
        city = confirmation.city_factor
        if city is None and session.key_spec(confirmation.key).levels == 2:
            city = session.city_factor
            session.select_df(model_key(confirmation.key).df)
        result = internal_authenticate(
            self.channel, self.security, CardFactors(confirmation.factor, city),
            key=confirmation.key, key_specs=session.key_specs, rng=session.rng)
        session.invalidate()
        if not result.genuine:
            what = (f"answered {result.sw:04X}" if not result.answered
                    else "answered a cryptogram the security module did not compute")
            raise CardNotGenuine(
                f"card not genuine for this key set: INTERNAL AUTHENTICATE with "
                f"{confirmation.key} {what}", result)
        return result

    # == device-level delegations ===========================================================

    def reset(self, cold: bool = False) -> bytes:
        """Reset the card (PowerOn); forgets the selection, security state and factors."""
        atr = self.channel.reset(cold)
        self.session.invalidate()
        self.session.reset_factors()
        return atr

    def transmit(self, command: CommandApdu | bytes) -> ResponseApdu:
        """Send a raw APDU (SendAPDU); any status word is returned, not raised.

        The cached selection and security state are forgotten, since the command may change them.
        """
        if not isinstance(command, CommandApdu):
            command = CommandApdu.from_bytes(bytes(command))
        try:
            return self.channel.send(command)
        finally:
            self.session.invalidate()

    # == generic file access ================================================================

    def read_file(self, name: str) -> FileContent:
        """Read one EF by path ("DDF1/EF06", "DF03EE02") or name ("holder", "inpatient_2").

        Returns the file's dataclass; cyclic files give ``Allergies`` / ``Immunizations``.
        """
        target = ef(name)
        kind = _KINDS.get(target.layout)
        if kind is not None:
            return self._read_record(kind, int(target.path[-1]), None)
        if target.structure == "cyclic":
            return self._read_cyclic(_CYCLIC[target.path])
        if target.path == _PHOTO:
            return self.read_photo()
        return self._read_records(file_class(target.path), target)

    def write_file(self, name: str, value: object) -> None:
        """Write one EF. ``value`` is the file's dataclass; for cyclic files an ``Allergies`` /
        ``Immunizations`` replaces the content and a single entry is appended; the photo also
        takes the JPEG bytes; EE/ED records are signed (auto mode, see :data:`SignMode`)."""
        target = ef(name)
        kind = _KINDS.get(target.layout)
        if kind is not None:
            self._write_record(kind, int(target.path[-1]), self._typed(kind.cls, value), None)
        elif target.structure == "cyclic":
            container = _CYCLIC[target.path]
            if isinstance(value, CyclicFile):
                self._replace_cyclic(self._typed(container, value))
            else:
                self._append(target, self._typed(container.ENTRY, value))
        elif target.path == _PHOTO:
            self.write_photo(cast(Photo | bytes, value))
        elif target.structure == "linear_fixed":
            self._write_index(self._typed(file_class(target.path), value))
        else:
            self._write_records(self._typed(file_class(target.path), value))

    # == DDF1 ================================================================================

    def read_issuer(self) -> IssuerData:
        """DDF1/EF05 (free read; records read by tag as in the traces; lenient)."""
        issuer = self._read_records(IssuerData, ef(_ISSUER))
        code = issuer.application_city_code
        if code and not self.session.has_city_factor:
            # an unusable code is reported by the first 2-level key that needs the factor
            with contextlib.suppress(CardOperationError):
                self.session.set_city_code(code)
        return issuer

    def read_holder(self) -> HolderData:
        """DDF1/EF06 (RK1_DDF1)."""
        return self._read_records(HolderData, ef("DDF1/EF06"))

    def read_photo(self) -> Photo:
        """DDF1/EF07: reads the 2-byte length, then only the JPEG bytes."""
        target = ef(_PHOTO)
        size = target.size or 0
        first = self._read_binary(target, 0, min(self.read_chunk, size), target.read_key)
        length = int.from_bytes(first[:_PHOTO_HEADER], "big")
        total = _PHOTO_HEADER + length
        if length in (0, 0xFFFF) or total > size or total <= len(first):
            return self._decoded(target.path, lambda w: Photo.from_bytes(first, warnings=w))
        rest = self._read_binary(target, len(first), total - len(first), target.read_key)
        return self._decoded(target.path, lambda w: Photo.from_bytes(first + rest, warnings=w))

    def write_photo(self, photo: bytes | Photo) -> None:
        """DDF1/EF07 (UK1_DDF1): the whole 3074-byte file (length, JPEG, zero padding)."""
        value = photo if isinstance(photo, Photo) else Photo(photo_jpeg=bytes(photo))
        target = ef(_PHOTO)
        raw = self._model(target.path, value.to_bytes)
        self._write_binary(target, 0, raw, self._write_key(target))

    def read_contact_info(self) -> CardContact:
        """DDF1/EF08: expiry date, phones, payment methods (RK1_DDF1)."""
        return self._read_records(CardContact, ef("DDF1/EF08"))

    def write_contact_info(self, value: CardContact) -> None:
        """DDF1/EF08 (UK1_DDF1, SM UPDATE RECORD)."""
        self._write_records(self._typed(CardContact, value))

    # == DF01 ================================================================================

    def read_addresses(self) -> Addresses:
        return self._read_records(Addresses, ef("DF01/EF05"))

    def write_addresses(self, value: Addresses) -> None:
        self._write_records(self._typed(Addresses, value))

    def read_contacts(self) -> Contacts:
        return self._read_records(Contacts, ef("DF01/EF06"))

    def write_contacts(self, value: Contacts) -> None:
        self._write_records(self._typed(Contacts, value))

    def read_occupation_marriage(self) -> OccupationMarriage:
        return self._read_records(OccupationMarriage, ef("DF01/EF07"))

    def write_occupation_marriage(self, value: OccupationMarriage) -> None:
        self._write_records(self._typed(OccupationMarriage, value))

    def read_id_documents(self) -> IdDocuments:
        return self._read_records(IdDocuments, ef("DF01/EF08"))

    def write_id_documents(self, value: IdDocuments) -> None:
        self._write_records(self._typed(IdDocuments, value))

    # == DF02 ================================================================================

    def read_clinical(self) -> ClinicalBasics:
        return self._read_records(ClinicalBasics, ef("DF02/EF05"))

    def write_clinical(self, value: ClinicalBasics) -> None:
        """DF02/EF05 (UK1_DF02)."""
        self._write_records(self._typed(ClinicalBasics, value))

    def read_special(self) -> SpecialInfo:
        return self._read_records(SpecialInfo, ef("DF02/EF06"))

    def write_special(self, value: SpecialInfo) -> None:
        """DF02/EF06 (UK2_DF02)."""
        self._write_records(self._typed(SpecialInfo, value))

    def read_allergy(self, number: int) -> AllergyEntry:
        """Record ``number`` of DF02/EF07 (1 = newest); NotFound if the card has no such record."""
        return self._read_cyclic_entry(AllergyEntry, number)

    def read_allergies(self) -> Allergies:
        """All allergy entries, newest first (blank records dropped)."""
        return cast(Allergies, self._read_cyclic(Allergies))

    def append_allergy(self, entry: AllergyEntry) -> None:
        """New record 1 of the cyclic DF02/EF07 (UK3_DF02); the oldest drops out when full."""
        self._append(ef("DF02/EF07"), self._typed(AllergyEntry, entry))

    def write_allergies(self, value: Allergies) -> None:
        """Make DF02/EF07 hold exactly ``value`` (blank records pushed first, then oldest first)."""
        self._replace_cyclic(self._typed(Allergies, value))

    def read_immunization(self, number: int) -> ImmunizationEntry:
        return self._read_cyclic_entry(ImmunizationEntry, number)

    def read_immunizations(self) -> Immunizations:
        return cast(Immunizations, self._read_cyclic(Immunizations))

    def append_immunization(self, entry: ImmunizationEntry) -> None:
        self._append(ef("DF02/EF08"), self._typed(ImmunizationEntry, entry))

    def write_immunizations(self, value: Immunizations) -> None:
        self._replace_cyclic(self._typed(Immunizations, value))

    # == DF03 index flags ===================================================================

    def read_inpatient_index(self) -> InpatientIndex:
        """DF03/EF05: ``inpatient_record_valid_n`` True when EE0n is valid (byte 00)."""
        return self._read_records(InpatientIndex, ef(_INPATIENT.index))

    def read_outpatient_index(self) -> OutpatientIndex:
        return self._read_records(OutpatientIndex, ef(_OUTPATIENT.index))

    def set_inpatient_flag(self, number: int) -> None:
        """Flag EE0n valid: ``84 D2 n 04`` after UK1_DF03."""
        self._flag(_INPATIENT, number, valid=True)

    def erase_inpatient_flag(self, number: int) -> None:
        """Flag EE0n invalid: ``84 0C n 04`` after UK2_DF03."""
        self._flag(_INPATIENT, number, valid=False)

    def set_outpatient_flag(self, number: int) -> None:
        self._flag(_OUTPATIENT, number, valid=True)

    def erase_outpatient_flag(self, number: int) -> None:
        self._flag(_OUTPATIENT, number, valid=False)

    # == DF03 records ========================================================================

    def read_inpatient(self, number: int, *, verify: bool | None = None) -> InpatientRecord:
        """EE0n (RecordInvalid when its flag is FF; SignatureInvalid when the signature fails)."""
        return cast(InpatientRecord, self._read_record(_INPATIENT, number, verify))

    def write_inpatient(
        self, number: int, record: InpatientRecord, *, sign: SignMode = None
    ) -> InpatientRecord:
        """Write EE0n (signed, see :data:`SignMode`) and flag it valid; returns what was written."""
        value = self._typed(InpatientRecord, record)
        return cast(InpatientRecord, self._write_record(_INPATIENT, number, value, sign))

    def read_inpatient_items(self, number: int, pos: int, length: int) -> dict[str, Value]:
        """Items covering bytes ``pos .. pos+length-1`` of EE0n (item-aligned; not verified)."""
        return self._read_items(_INPATIENT, number, pos, length)

    def write_inpatient_items(
        self, number: int, values: Mapping[str | int, Value], *, sign: SignMode = None
    ) -> None:
        """Rewrite adjacent items of a valid EE0n (names, codes or item numbers as keys).

        The record is re-signed unless ``sign`` is False (then the old signature stays and no
        longer verifies) or only signature/certificate items are written.
        """
        self._write_items(_INPATIENT, number, values, sign)

    def read_outpatient(self, number: int, *, verify: bool | None = None) -> OutpatientRecord:
        return cast(OutpatientRecord, self._read_record(_OUTPATIENT, number, verify))

    def write_outpatient(
        self, number: int, record: OutpatientRecord, *, sign: SignMode = None
    ) -> OutpatientRecord:
        value = self._typed(OutpatientRecord, record)
        return cast(OutpatientRecord, self._write_record(_OUTPATIENT, number, value, sign))

    def read_outpatient_items(self, number: int, pos: int, length: int) -> dict[str, Value]:
        return self._read_items(_OUTPATIENT, number, pos, length)

    def write_outpatient_items(
        self, number: int, values: Mapping[str | int, Value], *, sign: SignMode = None
    ) -> None:
        self._write_items(_OUTPATIENT, number, values, sign)

    # == whole card ==========================================================================

    def read_card(self, *, verify: bool | None = None) -> CardData:
        """Every file; EE/ED records only where their index flag is 00 (others are None)."""
        issuer = self.read_issuer()
        fields: dict[str, Any] = {
            "issuer": issuer,
            "holder": self.read_holder(),
            "photo": self.read_photo(),
            "card_contact": self.read_contact_info(),
            "addresses": self.read_addresses(),
            "contacts": self.read_contacts(),
            "occupation_marriage": self.read_occupation_marriage(),
            "id_documents": self.read_id_documents(),
            "clinical": self.read_clinical(),
            "special": self.read_special(),
            "allergies": self.read_allergies(),
            "immunizations": self.read_immunizations(),
        }
        for name, kind in (("inpatient", _INPATIENT), ("outpatient", _OUTPATIENT)):
            index = self._read_records(file_class(kind.index), ef(kind.index))
            flags = list(index.values().values())
            fields[name] = tuple(
                self._read_record(kind, n, verify, check_flag=False) if valid else None
                for n, valid in enumerate(flags, start=1)
            )
        return CardData(**fields)

    def write_card(self, data: CardData, *, sign: SignMode = None) -> CardData:
        """Write every writable file so that the card holds ``data``; returns what was written.

        DDF1/EF05 and EF06 are not rewritable after issuance and are not written (they stay as
        personalized). Everything is encoded and the EE/ED records are signed before the first
        card command, so bad data or a refusing SAM leave the card untouched. Empty EE/ED slots
        get their index flag erased.
        """
        for target, content in data.file_contents():
            if content is None or target.write_key is None:
                continue
            if isinstance(content, FileValue) and target.structure == "tlv_records":
                self._model(target.path, content.to_records)
            elif isinstance(content, FileValue) and target.path == _PHOTO:
                self._model(target.path, content.to_bytes)
            elif isinstance(content, CyclicFile):
                for entry in content.entries:
                    self._model(target.path, entry.to_bytes)
        signed: dict[str, tuple[FileValue | None, ...]] = {}
        for name, kind in (("inpatient", _INPATIENT), ("outpatient", _OUTPATIENT)):
            slots = cast(tuple[FileValue | None, ...], getattr(data, name))
            signed[name] = tuple(
                None if r is None else self._signed(kind, n, r, sign)
                for n, r in enumerate(slots, start=1)
            )
        self.write_photo(data.photo)
        self.write_contact_info(data.card_contact)
        self.write_addresses(data.addresses)
        self.write_contacts(data.contacts)
        self.write_occupation_marriage(data.occupation_marriage)
        self.write_id_documents(data.id_documents)
        self.write_clinical(data.clinical)
        self.write_special(data.special)
        self.write_allergies(data.allergies)
        self.write_immunizations(data.immunizations)
        for name, kind in (("inpatient", _INPATIENT), ("outpatient", _OUTPATIENT)):
            for n, record in enumerate(signed[name], start=1):
                if record is not None:
                    self._write_record(kind, n, record, False)
        for name, kind in (("inpatient", _INPATIENT), ("outpatient", _OUTPATIENT)):
            for n, record in enumerate(signed[name], start=1):
                if record is None:
                    self._flag(kind, n, valid=False)
        return dataclasses.replace(
            data,
            inpatient=cast(tuple[InpatientRecord | None, ...], signed["inpatient"]),
            outpatient=cast(tuple[OutpatientRecord | None, ...], signed["outpatient"]),
        )

    # == internals: helpers ==================================================================

    @staticmethod
    def _typed(cls: type[T], value: object) -> T:
        if not isinstance(value, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(value).__name__}")
        return value

    @staticmethod
    def _write_key(target: EF) -> str:
        if target.write_key is None:
            raise NotWritable(
                f"{target.path} ({target.name}) is not rewritable after issuance; "
                "personalization writes it",
                path=target.path,
            )
        return target.write_key

    @staticmethod
    def _model(path: str, action: Callable[[], T]) -> T:
        """Run a codec call; its ItemError names the EF path."""
        try:
            return action()
        except ItemError as exc:
            raise _with_path(exc, path) from exc

    def _decoded(self, path: str, decode: Callable[[list[DecodeWarning]], T]) -> T:
        """Decode card bytes leniently; each item out of spec becomes a :class:`CardNotice`."""
        found: list[DecodeWarning] = []
        value = self._model(path, lambda: decode(found))
        for warning in found:
            self._notice(CardNotice.from_decode(warning, path))
        return value

    def _whole_records(self) -> bool:
        """READ RECORD by number asks for the whole record when the channel can take it."""
        return self.channel.max_response >= _WHOLE_RECORD

    def _record_le(self, length: int) -> int:
        return _WHOLE_RECORD if self._whole_records() else length

    def _read_binary(self, target: EF, offset: int, length: int, key: str | None) -> bytes:
        session = self.session
        session.ensure_access(target, key, target.path)
        call = session.call_data
        parts = []
        for command, where, size in _binary_plan(target.path, offset, length, self.read_chunk):
            data = call(command, where)
            if len(data) != size:
                raise CardOperationError(
                    f"{where}: card returned {len(data)} bytes, expected {size}", path=target.path
                )
            parts.append(data)
        return b"".join(parts)

    def _write_binary(self, target: EF, offset: int, data: bytes, key: str) -> None:
        session = self.session
        session.ensure_access(target, key, target.path)
        for start in range(0, len(data), self.write_chunk):
            chunk = data[start : start + self.write_chunk]
            position = offset + start
            where = f"{target.path} bytes {position}-{position + len(chunk) - 1}"
            session.call(commands.update_binary(position, chunk), where)

    # == internals: record files ============================================================

    def _read_records(self, cls: type[F], target: EF) -> F:
        session = self.session
        session.ensure_access(target, target.read_key, target.path)
        by_tag = self.read_issuer_by_tag and target.path == _ISSUER
        call = session.call_data
        records: dict[int, bytes] = {}
        for number, command, where in _record_reads(target, by_tag, self._whole_records()):
            records[number] = call(command, where)
        return self._decoded(target.path, lambda w: cls.from_records(records, warnings=w))

    def _write_records(self, value: FileValue) -> None:
        target = ef(value.LAYOUT)
        key = self._write_key(target)
        records = self._model(target.path, value.to_records)
        session = self.session
        session.ensure_access(target, key, target.path)
        for number, record in records:
            where = f"{target.path} record {number}"
            if self.secure_record_updates:
                session.update_record_sm(number, record, where)
            else:
                session.call(commands.update_record(number, record), where)

    # == internals: cyclic files ============================================================

    def _read_cyclic_entry(self, cls: type[F], number: int) -> F:
        target = ef(cls.LAYOUT)
        count = target.record_count or 0
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= count:
            raise LayoutError(f"{target.path}: record number must be 1..{count}, got {number!r}")
        self.session.ensure_access(target, target.read_key, target.path)
        raw = self.session.call(
            commands.read_record(number, self._record_le(target.record_length or 256)),
            f"{target.path} record {number}",
        ).data
        found: list[DecodeWarning] = []
        value = self._model(target.path, lambda: cls.from_bytes(raw, warnings=found))
        for warning in found:
            self._notice(CardNotice.from_decode(dataclasses.replace(warning, record=number),
                                                target.path))
        return value

    def _read_cyclic(self, container: type[CyclicFile[Any]]) -> CyclicFile[Any]:
        target = ef(container.LAYOUT)
        self.session.ensure_access(target, target.read_key, target.path)
        records: dict[int, bytes] = {}
        for number in range(1, (target.record_count or 0) + 1):
            try:
                records[number] = self.session.call_data(
                    *_record_step(target.path, number,
                                  self._record_le(target.record_length or 256))
                )
            except NotFound:
                break  # a cyclic file holds only the records written so far
        return self._decoded(target.path, lambda w: container.from_records(records, warnings=w))

    def _push(self, target: EF, raw: bytes) -> None:
        self.session.call(commands.update_record(0, raw, p2=0x03), f"{target.path} new record 1")

    def _append(self, target: EF, entry: FileValue) -> None:
        raw = self._model(target.path, entry.to_bytes)
        self.session.ensure_access(target, self._write_key(target), target.path)
        self._push(target, raw)

    def _replace_cyclic(self, value: CyclicFile[Any]) -> None:
        target = ef(value.LAYOUT)
        blank = value.ENTRY().to_bytes()
        raws = [self._model(target.path, e.to_bytes) for e in value.append_order()]
        raws = [blank] * ((target.record_count or 0) - len(raws)) + raws
        self.session.ensure_access(target, self._write_key(target), target.path)
        for raw in raws:
            self._push(target, raw)

    # == internals: index flags and EE/ED records ============================================

    def _write_index(self, value: FileValue) -> None:
        kind = _OUTPATIENT if isinstance(value, OutpatientIndex) else _INPATIENT
        flags = list(value.values().values())
        for number, valid in enumerate(flags, start=1):
            if valid:
                self._flag(kind, number, valid=True)
        for number, valid in enumerate(flags, start=1):
            if not valid:
                self._flag(kind, number, valid=False)

    def _flag(self, kind: _RecordKind, number: int, *, valid: bool) -> None:
        kind.path(number)
        target = ef(kind.index)
        key = target.write_key if valid else target.erase_key
        assert key is not None
        where = f"{target.path} record {number}"
        self.session.ensure_access(target, key, where)
        if valid:
            self.session.call(commands.write_record_flag(number), where)
        else:
            self.session.call(commands.erase_record_flag(number), where)

    def _check_flag(self, kind: _RecordKind, number: int) -> None:
        where = kind.where(number)
        target = ef(kind.index)
        self.session.ensure_access(target, target.read_key, target.path)
        raw = self.session.call(
            commands.read_record(number, self._record_le(1)), f"{target.path} record {number}"
        ).data
        flag_item = item(62 if kind is _INPATIENT else 63)
        valid, warning = decode_item_lenient(flag_item, raw)
        if warning is not None:
            self._notice(CardNotice.from_decode(dataclasses.replace(warning, record=number),
                                                target.path))
        if not valid:
            raise RecordInvalid(
                f"{where}: index flag {target.path} record {number} is FF (record invalid)",
                path=kind.path(number),
                record=number,
            )

    def _read_record(
        self, kind: _RecordKind, number: int, verify: bool | None, *, check_flag: bool = True
    ) -> FileValue:
        path = kind.path(number)
        target = ef(path)
        if check_flag:
            self._check_flag(kind, number)
        raw = self._read_binary(target, 0, target.size or 0, target.read_key)
        if self.verify_signatures if verify is None else verify:
            try:
                signed = self._verify_raw(kind, number, raw)
            except SignatureInvalid:
                self.signatures[path] = SignatureStatus.SIGNATURE_INVALID
                raise
            self.signatures[path] = (
                SignatureStatus.SIGNED_VALID if signed else SignatureStatus.UNSIGNED
            )
            if not signed and self.require_signatures:
                sig_item = signature_slots(kind.cls)[0].item
                raise SignatureMissing(
                    f"{kind.where(number)}: unsigned (no SM2 signature in item {sig_item.no}) "
                    "and signatures are required",
                    path=path,
                    record=number,
                    record_value=self._lenient_record(kind, raw),
                )
        else:
            self.signatures[path] = SignatureStatus.NOT_CHECKED
        return self._decoded(path, lambda w: kind.cls.from_bytes(raw, warnings=w))

    @staticmethod
    def _lenient_record(kind: _RecordKind, raw: bytes) -> Any:
        try:
            return kind.cls.from_bytes(raw, warnings=[])
        except ModelError:
            return None

    def _verify_raw(self, kind: _RecordKind, number: int, raw: bytes) -> bool:
        """Check the signature over the raw data bytes; False when the record is unsigned."""
        where = kind.where(number)
        path = kind.path(number)
        signature_slot, certificate_slot = signature_slots(kind.cls)
        sig_item, cert_item = signature_slot.item, certificate_slot.item
        signature = raw[sig_item.offset : sig_item.end]
        certificate = raw[cert_item.offset : cert_item.end]
        if _blank(signature):
            return False

        def fail(reason: str) -> SignatureInvalid:
            value = self._lenient_record(kind, raw)
            return SignatureInvalid(
                f"{where}: signature check failed: {reason}",
                path=path,
                record=number,
                record_value=value,
            )

        if _blank(certificate):
            raise fail(
                f"item {sig_item.no} holds a signature but item {cert_item.no} "
                "holds no SAM certificate"
            )
        try:
            ok = verify_record(raw[: kind.cls.data_length()], signature, certificate)
        except CertificateError as exc:
            raise fail(f"the SAM certificate in item {cert_item.no} is unusable ({exc})") from None
        if not ok:
            raise fail(
                f"the SM2 signature (item {sig_item.no}) does not verify over bytes "
                f"0-{kind.cls.data_length() - 1} with the SAM certificate in the record "
                f"(item {cert_item.no}); the record was changed after signing or the "
                "signature is corrupt"
            )
        return True

    def _signed(
        self, kind: _RecordKind, number: int, record: FileValue, sign: SignMode
    ) -> FileValue:
        self._model(kind.path(number), record.to_bytes)  # encoding errors name the file
        if sign is False:
            return record
        return signed_record(record, self.security, keep_valid=sign is None)

    def _write_record(
        self, kind: _RecordKind, number: int, record: FileValue, sign: SignMode
    ) -> FileValue:
        path = kind.path(number)
        record = self._signed(kind, number, record, sign)
        raw = self._model(path, record.to_bytes)
        target = ef(path)
        self._write_binary(target, 0, raw, self._write_key(target))
        self._flag(kind, number, valid=True)
        return record

    @staticmethod
    def _field_values(cls: type[FileValue], values: Mapping[str | int, Value]) -> dict[str, Value]:
        """Keys by English name, pinyin code or item number -> field names of ``cls``."""
        fields = {s.item.no: s.field for s in cls.slots()}
        out: dict[str, Value] = {}
        for key, value in values.items():
            found = item(key)
            if found.no not in fields:
                raise LayoutError(f"{cls.LAYOUT}: item {found.no} {found.code} is not in this file")
            out[fields[found.no]] = value
        return out

    def _read_items(
        self, kind: _RecordKind, number: int, pos: int, length: int
    ) -> dict[str, Value]:
        path = kind.path(number)
        items_in_range(kind.cls.LAYOUT, pos, length)
        self._check_flag(kind, number)
        target = ef(path)
        raw = self._read_binary(target, pos, length, target.read_key)
        return self._decoded(path, lambda w: kind.cls.decode_range(pos, raw, warnings=w))

    def _write_items(
        self, kind: _RecordKind, number: int, values: Mapping[str | int, Value], sign: SignMode
    ) -> None:
        path = kind.path(number)
        target = ef(path)
        fields = self._field_values(kind.cls, values)
        pos, data = self._model(path, lambda: kind.cls.encode_range(fields))
        data_length = kind.cls.data_length()
        self._check_flag(kind, number)
        key = self._write_key(target)
        if sign is False or pos >= data_length:
            self._write_binary(target, pos, data, key)
            return
        image = bytearray(self._read_binary(target, 0, data_length, target.read_key))
        image[pos : pos + len(data)] = data
        signature = sign_record(self.security, bytes(image[:data_length]))
        tail = signature + self.security.certificate()
        if len(tail) != (target.size or 0) - data_length:
            raise CardOperationError(
                f"{path}: signature and certificate are {len(tail)} bytes, the record has room "
                f"for {(target.size or 0) - data_length}",
                path=path,
            )
        self._write_binary(target, pos, data, key)
        self._write_binary(target, data_length, tail, key)
