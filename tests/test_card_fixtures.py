"""Shared helpers of the card-layer tests, and checks that the helpers build what they claim.

A test card is issued by ``sim_issuance`` (raw FMCOS APDUs, no host code); DDF1/EF05 and EF06,
which are not rewritable after issuance, are written with plain UPDATE RECORDs before END
ISSUANCE. The host side uses a key set holding the same master keys, either in software or
exported into a simulated PSAM. The application city code must start with 21, the province of
the city factor the test card's keys were diversified with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import sim_issuance as si
from healthcard_apdu import model
from healthcard_apdu.apdu import commands
from healthcard_apdu.card import HealthCard, Sam
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import CardData, FileValue, Item
from healthcard_apdu.security import (
    STANDARD_KEY_SPECS,
    KeySet,
    MasterKey,
    SecurityModule,
    SoftwareSecurityModule,
    build_certificate,
)
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim import SimCard, SimSam
from healthcard_apdu.sim.image import decode_image
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport import CardLike, Channel, InProcessTransport

CITY_CODE = si.CITY_CODE  # "210000": the province the test card's keys were diversified with
RARE = "喆堃赟龑"  # GBK characters outside the common set
SAM_PIN = si.SAM_PIN
CERTIFICATE = build_certificate(
    si.SAM_SM2_PRIVATE,
    subject=bytes.fromhex("48430000000000000042"),
    issuer=b"HCAPDU01",
    not_before=dt.date(2024, 1, 1),
    not_after=dt.date(2034, 1, 1),
)


def keyset(overrides: dict[str, bytes] | None = None) -> KeySet:
    """The master keys of the sim_issuance card (``overrides`` replaces some values)."""
    values = {r.name: si.master_key(r.name) for r in si.ROLES if r.name in STANDARD_KEY_SPECS}
    values.update(overrides or {})
    keys = {role: MasterKey.create(BlockCipher.SM4, value) for role, value in values.items()}
    return KeySet(BlockCipher.SM4, keys, SAM_PIN, si.SAM_SM2_PRIVATE, CERTIFICATE)


def sim_sam(keys: KeySet | None = None) -> SimSam:
    sam = SimSam(sam_state_from_json(simulator_sam_document(keys or keyset())))
    return sam


def sam_over(card: SimSam, *, pin: str | None = SAM_PIN) -> Sam:
    return Sam(Channel(InProcessTransport(card)), pin=pin)


def with_city(data: CardData, code: str = CITY_CODE) -> CardData:
    return dataclasses.replace(data, issuer=data.issuer.replace(application_city_code=code))


def sample() -> CardData:
    """The model's sample resident, moved to the test card's province."""
    return with_city(model.sample_resident())


class Recorder(InProcessTransport):
    """In-process transport that keeps every command sent."""

    def __init__(self, card: CardLike) -> None:
        super().__init__(card, name="recorder")
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        return super().transmit(apdu)

    def headers(self) -> list[str]:
        """CLA INS P1 P2 of the commands sent, as hex."""
        return [a[:4].hex().upper() for a in self.sent]


def _ok(card: SimCard, apdu: bytes) -> None:
    reply = card.process(apdu)
    ok = reply[-2:] == b"\x90\x00" or reply[-2] == 0x61  # T=0: FCI waits for GET RESPONSE
    assert ok, f"{apdu.hex().upper()} -> {reply.hex().upper()}"


def issued_card(data: CardData | None = None, protocol: str = "T=1") -> SimCard:
    """A powered sim card issued by sim_issuance, with ``data``'s EF05/EF06 (default: sample)."""
    data = data or sample()
    card = SimCard(decode_image(si.issued_image_bytes(protocol=protocol, end=False)))
    card.power_on()
    _ok(card, bytes.fromhex("00A40000023F00"))
    _ok(card, bytes.fromhex("00A4000002DDF1"))
    for fid, value in (("EF05", data.issuer), ("EF06", data.holder)):
        _ok(card, bytes.fromhex("00A4000002" + fid))
        for number, record in value.to_records():
            _ok(card, bytes((0x00, 0xDC, number, 0x04, len(record))) + record)
    _ok(card, bytes.fromhex("80E8000000"))  # END ISSUANCE (docs/cos.md)
    card.reset()
    return card


def security_module(kind: str, keys: KeySet | None = None) -> SecurityModule:
    """``software`` or ``psam`` (the simulated SAM, PIN verified)."""
    keys = keys or keyset()
    if kind == "software":
        return SoftwareSecurityModule(keys)
    return sam_over(sim_sam(keys)).security


@contextmanager
def health_card(
    kind: str = "software", data: CardData | None = None, protocol: str = "T=1", **options: Any
) -> Iterator[tuple[HealthCard, SimCard, Recorder]]:
    card = issued_card(data, protocol)
    transport = Recorder(card)
    module = security_module(kind)
    try:
        yield HealthCard(Channel(transport), module, **options), card, transport
    finally:
        module.close()
        transport.close()


def ee_data(card: SimCard, fid: int) -> bytearray:
    """The bytes of DF03/EE0n or ED0n inside the simulated card's image (for tampering)."""
    mf: Any = card.image.mf
    node = mf.children[0xDDF1].children[0xDF03].children[fid]
    data: bytearray = node.data
    return data


# -- edge data ---------------------------------------------------------------------------------


def max_text(length: int) -> str:
    """GBK text of exactly ``length`` bytes made of rare characters (ASCII for an odd byte)."""
    chars = (RARE * (length // 8 + 1))[: length // 2]
    return chars + ("Z" if length % 2 else "")


def max_value(item: Item, rng: random.Random) -> Any:
    """A value that fills the item completely (no padding left)."""
    if item.fmt == "ans":
        if item.kind in ("phone", "numeric_text", "id_number"):
            return "".join(rng.choice("0123456789") for _ in range(item.length))
        return max_text(item.length)
    if item.fmt == "cn":
        digits = 2 * item.length
        if item.kind == "date":
            return "20241231"
        if item.kind == "datetime":
            return "20241231235959"
        if item.kind == "decimal":
            return "9" * (digits - 3) + ".25"
        return "".join(rng.choice("0123456789") for _ in range(digits))
    if item.kind == "flag":
        return rng.choice((True, False))
    if item.kind == "code":
        return rng.randrange(0, 255)
    if item.kind == "photo":
        body = bytes(rng.randrange(256) for _ in range(item.length - 2 - 4))
        return b"\xff\xd8" + body + b"\xff\xd9"
    return bytes(rng.randrange(256) for _ in range(item.length))


def max_file(cls: type[FileValue], rng: random.Random) -> Any:
    """Every item of the file at its maximum length (signature items left empty)."""
    values = {}
    for slot in cls.slots():
        if slot.item.kind == "index_flag" or slot.item.no in (211, 212, 383, 384):
            continue
        values[slot.field] = max_value(slot.item, rng)
    return cls(**values)


def edge_card(seed: int = 7) -> CardData:
    """Every item of every file at its maximum length, rare GBK characters, full cyclic files."""
    rng = random.Random(seed)
    issuer = max_file(model.IssuerData, rng).replace(application_city_code=CITY_CODE)
    return CardData(
        issuer=issuer,
        holder=max_file(model.HolderData, rng),
        photo=max_file(model.Photo, rng),
        card_contact=max_file(model.CardContact, rng),
        addresses=max_file(model.Addresses, rng),
        contacts=max_file(model.Contacts, rng),
        occupation_marriage=max_file(model.OccupationMarriage, rng),
        id_documents=max_file(model.IdDocuments, rng),
        clinical=max_file(model.ClinicalBasics, rng),
        special=max_file(model.SpecialInfo, rng),
        allergies=model.Allergies(tuple(max_file(model.AllergyEntry, rng) for _ in range(3))),
        immunizations=model.Immunizations(
            tuple(max_file(model.ImmunizationEntry, rng) for _ in range(10))
        ),
        inpatient=tuple(max_file(model.InpatientRecord, rng) for _ in range(3)),
        outpatient=tuple(max_file(model.OutpatientRecord, rng) for _ in range(5)),
    )


def empty_card() -> CardData:
    """Only what the card needs (the city code); every optional item empty, empty records."""
    return CardData(
        issuer=model.IssuerData(application_city_code=CITY_CODE),
        inpatient=(model.InpatientRecord(), None, None),
        outpatient=(None, None, None, None, model.OutpatientRecord()),
    )


def without_signatures(data: CardData) -> dict[str, Any]:
    """JSON of ``data`` with the signature and certificate items of EE/ED blanked."""
    blank = {"ZYJYXXQM": "", "ZYSAMKZS": "", "MZJYXXQM": "", "MZSAMKZS": ""}
    out = data.to_json("code")
    for group in ("DF03EE", "DF03ED"):
        out[group] = [
            None if r is None else {**r, **{k: v for k, v in blank.items() if k in r}}
            for r in out[group]
        ]
    return out


# -- checks of the helpers themselves ----------------------------------------------------------


def test_edge_data_fills_every_item_and_encodes() -> None:
    data = edge_card()
    for target, content in data.file_contents():
        if content is None or target.structure == "linear_fixed":
            continue
        files = content.entries if isinstance(content, model.CyclicFile) else (content,)
        for value in files:
            for slot, item_value in value.items():
                if slot.item.no in (211, 212, 383, 384):
                    continue
                assert item_value != model.empty_value(slot.item), (target.path, slot.field)
    assert data.holder.name == max_text(30) and len(data.holder.name.encode("gbk")) == 30
    assert all(ch in data.holder.name for ch in RARE)
    assert len(data.photo.photo_jpeg) == 3072


def test_issued_card_holds_the_written_issuer_data_and_the_trace_card_factor() -> None:
    card = issued_card()
    channel = Channel(InProcessTransport(card))
    channel.call(commands.select_fid(0xDDF1))
    channel.call(commands.select_fid(0xEF05))
    raw = channel.call(commands.read_record_by_tag(0x39, 5)).data
    assert raw == bytes.fromhex("3903210000")
    assert card.atr()[3:11] == si.TRACE_CARD_FACTOR  # the first 8 historical bytes


@pytest.mark.parametrize("kind", ["software", "psam"])
def test_security_modules_share_the_card_keys(kind: str) -> None:
    module = security_module(kind)
    assert module.certificate() == CERTIFICATE
