"""End to end: host-side security objects against the simulated user card (and SAM).

A minimal card image is built directly (no personalization layer): the MF holds the card
keys UK1_DDF1 (external auth, KID 05) and STK_DDF1 (line protection, KID 02) diversified
from a key set, and a variable-record EF that needs UK1 state 2 for writes.
"""

from __future__ import annotations

import pytest

from healthcard_apdu.apdu import commands
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security import (
    STANDARD_KEY_SPECS,
    CardFactors,
    KeySet,
    SecurityModule,
    SoftwareSecurityModule,
    protect_update_record,
)
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim.card import SimCard, SimSam
from healthcard_apdu.sim.fs import Ef, EfKind
from healthcard_apdu.sim.image import CardImage
from healthcard_apdu.sim.keys import Key, KeyFile
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.inprocess import InProcessTransport

SERIAL = bytes.fromhex("0081866B00001015")
UK = STANDARD_KEY_SPECS["UK1_DDF1"]
STK = STANDARD_KEY_SPECS["STK_DDF1"]


def _card(keyset: KeySet) -> SimCard:
    soft = SoftwareSecurityModule(keyset)
    factors = CardFactors(SERIAL)
    image = CardImage.blank(SERIAL, cipher16=keyset.algorithm)
    image.issued = True
    image.mf.keyfile = KeyFile(
        size=0x100,
        sfi_byte=0x00,
        add_ac=0xF0,
        keys=[
            Key(0x39, 0x05, 0xF0, 0xF0, 0x02, 0x33, soft.derive_card_key(UK, factors)),
            Key(0x36, 0x02, 0xF0, 0xF0, 0xFF, 0x33, soft.derive_card_key(STK, factors)),
        ],
    )
    image.mf.add(
        Ef(
            0x0008,
            EfKind.VARIABLE,
            0xEC,
            read_ac=0xF0,
            write_ac=0x22,
            size=64,
            records=[bytes.fromhex("07040000 0000")],
        )
    )
    return SimCard(image)


def _module(kind: str, keyset: KeySet) -> SecurityModule:
    if kind == "software":
        return SoftwareSecurityModule(keyset)
    sam = SimSam(sam_state_from_json(simulator_sam_document(keyset)))
    return PsamSecurityModule(
        Channel(InProcessTransport(sam)), pin=keyset.sam_pin, algorithm=keyset.algorithm
    )


@pytest.mark.parametrize("kind", ["software", "psam"])
@pytest.mark.parametrize(
    "cipher",
    [BlockCipher.SM4, BlockCipher.TDES],
)
def test_external_auth_and_secure_update_accepted_by_the_card(
    kind: str, cipher: BlockCipher
) -> None:
    keyset = KeySet.generate(("UK1_DDF1", "STK_DDF1"), cipher)
    card = _card(keyset)
    channel = Channel(InProcessTransport(card))
    module = _module(kind, keyset)
    factors = CardFactors(SERIAL)

    channel.call(commands.select_fid(0x0008))
    challenge = channel.call(commands.get_challenge()).data
    auth = module.external_auth_data(UK, factors, challenge, challenge)
    channel.call(commands.external_authenticate(0x05, auth))

    challenge = channel.call(commands.get_challenge()).data
    session = module.session(STK, factors, challenge)
    channel.call(protect_update_record(session, 1, bytes.fromhex("07042011FFFF")))
    assert channel.call(commands.read_record(1)).data == bytes.fromhex("07042011FFFF")


def test_card_rejects_a_wrong_mac() -> None:
    keyset = KeySet.generate(("UK1_DDF1", "STK_DDF1"), BlockCipher.SM4)
    channel = Channel(InProcessTransport(_card(keyset)))
    module = SoftwareSecurityModule(keyset)
    factors = CardFactors(SERIAL)
    channel.call(commands.select_fid(0x0008))
    challenge = channel.call(commands.get_challenge()).data
    channel.call(
        commands.external_authenticate(
            0x05, module.external_auth_data(UK, factors, challenge, challenge)
        )
    )
    challenge = channel.call(commands.get_challenge()).data
    command = protect_update_record(module.session(STK, factors, challenge), 1, bytes(6))
    bad = command.with_data(command.data[:-1] + bytes([command.data[-1] ^ 0xFF]))
    assert channel.send(bad).sw == 0x9302
