"""Hostile APDUs against both sides: random bytes through the APDU codec, random command
sequences against an issued simulated card, random card replies against the host's channel
and ``HealthCard`` reads. Only the project's typed errors may come out; the card stays a card
(every reply ends in a status word, the image survives, no key value leaves it, LK and BK keep
every try)."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.card import HealthCard
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import decode_image, encode_image
from healthcard_apdu.sim.keys import TYPE_LINE_PROTECTION
from healthcard_apdu.transport import Channel
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.testing import T1_ATR
from hostile_support import budget, count, only_typed_errors
from perso_support import issued_card, software

ISSUED = encode_image(issued_card().image)


def _key_values(card: SimCard) -> list[bytes]:
    out: list[bytes] = []
    stack = [card.image.mf]
    while stack:
        df = stack.pop()
        if df.keyfile is not None:
            out += [key.value for key in df.keyfile.keys]
        stack += [child for child in df.children.values() if hasattr(child, "keyfile")]
    return out


def _lock_counters(card: SimCard) -> list[int]:
    """b4 of every 36/03 key (LK in DF01..03, BK in the MF)."""
    out: list[int] = []
    stack = [card.image.mf]
    while stack:
        df = stack.pop()
        if df.keyfile is not None:
            out += [k.b4 for k in df.keyfile.keys if k.base == TYPE_LINE_PROTECTION
                    and k.kid == 0x03]
        stack += [child for child in df.children.values() if hasattr(child, "keyfile")]
    return out


@budget(2500)
@given(st.binary(max_size=300))
def test_random_bytes_parse_as_a_command_or_an_apdu_format_error(raw: bytes) -> None:
    count("apdu-parse")
    try:
        command = CommandApdu.from_bytes(raw)
    except ApduFormatError:
        return
    assert command.to_bytes() == raw


@budget(600)
@given(st.binary(max_size=300))
def test_random_bytes_parse_as_a_response_or_an_apdu_format_error(raw: bytes) -> None:
    count("response-parse")
    try:
        response = ResponseApdu.from_bytes(raw)
    except ApduFormatError:
        assert len(raw) < 2
        return
    assert response.to_bytes() == raw


_HEADERS = st.sampled_from([
    (0x00, 0xA4), (0x00, 0xB0), (0x00, 0xB2), (0x00, 0xD6), (0x04, 0xD6), (0x00, 0xDC),
    (0x04, 0xDC), (0x00, 0xE2), (0x04, 0xE2), (0x84, 0xD2), (0x84, 0x0C), (0x00, 0x84),
    (0x00, 0x82), (0x00, 0x88), (0x00, 0x20), (0x80, 0x5E), (0x84, 0x1E), (0x84, 0x18),
    (0x84, 0x16), (0x80, 0xE0), (0x80, 0xD4), (0x84, 0xD4), (0x80, 0x0E), (0x80, 0xE8),
    (0x00, 0xC0),
])
_SELECTS = st.sampled_from(["00A40000023F00", "00A4000002DDF1", "00A4000002DF01",
                            "00A4000002DF02", "00A4000002DF03", "00A4000002EF05",
                            "00A4000002EF06", "0084000008"]).map(bytes.fromhex)


@st.composite
def _apdu(draw: st.DrawFn) -> bytes:
    """A raw command: well-formed with known CLA/INS and random rest, or any bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=270))
    if kind <= 2:
        return draw(_SELECTS)
    cla, ins = draw(_HEADERS)
    p1, p2 = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    data = draw(st.binary(max_size=40))
    le = draw(st.one_of(st.none(), st.integers(1, 256)))
    try:
        return CommandApdu(cla, ins, p1, p2, data, le).to_bytes()
    except ApduFormatError:  # pragma: no cover - the strategy stays inside short APDUs
        return bytes((cla, ins, p1, p2))


_DFS = st.sampled_from([["3F00"], ["DDF1"], ["DDF1", "DF01"], ["DDF1", "DF02"],
                        ["DDF1", "DF03"]])
#: Commands whose protection is a MAC over a fresh challenge (the oracle / exhaustion cases).
_MACED = st.sampled_from([(0x84, 0x1E, 0x00, 0x00, 4), (0x84, 0x1E, 0x00, 0x01, 4),
                          (0x84, 0x18, 0x00, 0x00, 4), (0x84, 0x16, 0x00, 0x00, 4),
                          (0x84, 0xD4, 0x01, 0x05, 36), (0x04, 0xDC, 0x01, 0x04, 20),
                          (0x04, 0xD6, 0x00, 0x00, 20), (0x84, 0xD2, 0x01, 0x04, 4)])


@st.composite
def _maced(draw: st.DrawFn) -> list[bytes]:
    """Select a DF, GET CHALLENGE, then a MAC-protected command with a guessed MAC."""
    path = [bytes.fromhex("00A40000023F00")] + [
        bytes.fromhex("00A4000002" + fid) for fid in draw(_DFS) if fid != "3F00"]
    cla, ins, p1, p2, size = draw(_MACED)
    data = draw(st.binary(min_size=size, max_size=size))
    return [*path, bytes.fromhex("0084000008"), CommandApdu(cla, ins, p1, p2, data).to_bytes()]


_STEPS = st.lists(st.one_of(_apdu().map(lambda raw: [raw]), _maced()), min_size=1, max_size=6)


@budget(1500)
@given(_STEPS)
def test_an_issued_card_answers_every_command_sequence(steps: list[list[bytes]]) -> None:
    count("sim-sequence")
    card = SimCard(decode_image(ISSUED))
    card.power_on()
    secrets = _key_values(card)
    locks = _lock_counters(card)
    for raw in (apdu for step in steps for apdu in step):
        reply = card.process(raw)
        assert len(reply) >= 2
        assert not any(secret in reply for secret in secrets)
    assert _lock_counters(card) == locks  # nobody without LK / BK can exhaust them
    decode_image(encode_image(card.image))  # the image is still a valid image


class _Hostile(Transport):
    """A card that answers with whatever the probe chose, in order (then 6F00)."""

    def __init__(self, replies: list[bytes]) -> None:
        self._replies: Iterator[bytes] = iter(replies)

    @property
    def name(self) -> str:
        return "hostile"

    def transmit(self, apdu: bytes) -> bytes:
        return next(self._replies, b"\x6f\x00")

    def atr(self) -> bytes:
        return T1_ATR

    def reset(self, cold: bool = False) -> bytes:
        return T1_ATR

    def close(self) -> None:
        pass


_REPLIES = st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from(["9000", "6100", "6110", "6C08", "6C00", "6A82", "63C1", "6983", "9303",
                     "6282"]).map(bytes.fromhex),
    st.binary(min_size=1, max_size=300).map(lambda b: b + b"\x90\x00"),
), max_size=30)


@budget(1500)
@given(_REPLIES, st.sampled_from(["read_binary", "read_record", "select", "challenge"]))
def test_the_channel_takes_any_reply_or_raises_a_typed_error(replies: list[bytes],
                                                              op: str) -> None:
    count("channel")
    channel = Channel(_Hostile(replies))
    command = {
        "read_binary": commands.read_binary(0, 200),
        "read_record": commands.read_record(1, 256),
        "select": commands.select_fid(0xDDF1),
        "challenge": commands.get_challenge(8),
    }[op]
    with only_typed_errors():
        response = channel.send(command)
        assert 0 <= response.sw <= 0xFFFF


_READS = ["read_issuer", "read_holder", "read_contact_info", "read_addresses",
          "read_contacts", "read_clinical", "read_special", "read_allergies",
          "read_inpatient_index", "read_photo"]


@budget(1200)
@given(_REPLIES, st.sampled_from(_READS))
def test_healthcard_reads_take_any_reply_or_raise_a_typed_error(replies: list[bytes],
                                                                read: str) -> None:
    count("healthcard-read")
    card = HealthCard(_Hostile(replies), software(), card_factor=bytes(8), city_code="110000")
    with only_typed_errors():
        getattr(card, read)()
