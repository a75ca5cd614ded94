"""PSAM backend: APDUs identical to the reference traces, PIN handling, and the simulated SAM."""

from __future__ import annotations

import io

import pytest

from healthcard_apdu.apdu import CommandApdu
from healthcard_apdu.crypto import BlockCipher, ecb_encrypt, mac_iso9797_alg1, sm3
from healthcard_apdu.security import (
    DEFAULT_ROLES,
    STANDARD_KEY_SPECS,
    CardFactors,
    KeySet,
    SamPinError,
    SoftwareSecurityModule,
    UnsupportedOperation,
    protect_update_record,
    sign_record,
    verify_record,
)
from healthcard_apdu.security.errors import SamCommandError
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.psam import PsamSecurityModule, pin_to_bcd
from healthcard_apdu.sim.card import SimSam
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.inprocess import InProcessTransport
from healthcard_apdu.transport.trace import Tracer

FACTORS = CardFactors(bytes.fromhex("0081866B00001015"), b"21000000")


class ScriptedSam:
    """A card object that expects an exact APDU script (hex) and answers from it."""

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = [(bytes.fromhex(c), bytes.fromhex(r)) for c, r in script]
        self.seen: list[bytes] = []

    present = True

    def atr(self) -> bytes:
        return bytes.fromhex("3B00")

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def process(self, apdu: bytes) -> bytes:
        self.seen.append(apdu)
        assert self.script, f"unexpected extra APDU {apdu.hex().upper()}"
        expected, response = self.script.pop(0)
        assert apdu == expected, f"expected {expected.hex().upper()}, got {apdu.hex().upper()}"
        return response


def _module(
    script: list[tuple[str, str]], pin: str | None = "123456"
) -> tuple[PsamSecurityModule, ScriptedSam]:
    sam = ScriptedSam(script)
    return PsamSecurityModule(Channel(InProcessTransport(sam)), pin=pin), sam


UNLOCK = [("00A4000002DF01", "9000"), ("0020000003123456", "9000")]


def test_external_auth_reproduces_the_rk1_df03_trace() -> None:
    # docs/reference/healthcard-layout.md §3.5, read DF03 with RK1_DF03
    module, sam = _module(
        [
            *UNLOCK,
            ("80DE4734180081866B00001015323130303030303030CB83A6ADABFE3F", "9000"),
            ("80FA00001011223344556677880000000000000000", "6110"),
            ("00C0000010", "6C37FF3CB7DA5458D84CE9E7475CD0869000"),
        ]
    )
    data = module.external_auth_data(
        STANDARD_KEY_SPECS["RK1_DF03"],
        FACTORS,
        bytes.fromhex("30CB83A6ADABFE3F"),
        bytes.fromhex("1122334455667788"),
    )
    # the card accepted 0082008411 B47B16DBF08684DE 1122334455667788 01
    assert data == bytes.fromhex("B47B16DBF08684DE112233445566778801")
    assert not sam.script


def test_secure_messaging_reproduces_the_ddf1_ef08_trace() -> None:
    # docs/reference/healthcard-layout.md §3.6: STK_DDF1 session, E via 80FA 00,
    # MAC via 80FA 05 with a zero IV.
    e = "DC6D00224B94CD8B98F32DD68C55FA86"
    module, sam = _module(
        [
            *UNLOCK,
            ("80DE2802100081866B0000101564EF14A0B9B8DA51", "9000"),
            ("80FA0000100607042011FFFF800000000000000000", "6110"),
            ("00C0000010", e + "9000"),
            ("80FA050030" + "00" * 16 + "04DC010414" + e + "80" + "00" * 10, "6104"),
            ("00C0000004", "786DB3959000"),
        ]
    )
    session = module.session(
        STANDARD_KEY_SPECS["STK_DDF1"], FACTORS, bytes.fromhex("64EF14A0B9B8DA51")
    )
    command = protect_update_record(session, 1, bytes.fromhex("07042011FFFF"))
    assert command.to_bytes() == bytes.fromhex("04DC010414" + e + "786DB395")
    assert not sam.script


def test_interleaved_sessions_re_send_their_80de() -> None:
    rk = "80DE4734180081866B000010153231303030303030" + "11" * 8
    uk = "80DE272A100081866B00001015" + "22" * 8
    module, sam = _module(
        [
            *UNLOCK,
            (rk, "9000"),
            (uk, "9000"),
            ("80FA000010" + "00" * 16, "6110"),
            ("00C0000010", "AA" * 16 + "9000"),
            (rk, "9000"),
            ("80FA000010" + "00" * 16, "6110"),
            ("00C0000010", "BB" * 16 + "9000"),
        ]
    )
    first = module.session(STANDARD_KEY_SPECS["RK1_DF03"], FACTORS, b"\x11" * 8)
    second = module.session(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS, b"\x22" * 8)
    assert second.encrypt(bytes(16)) == b"\xaa" * 16
    assert first.encrypt(bytes(16)) == b"\xbb" * 16
    assert not sam.script


def test_wrong_pin_is_reported_once_and_never_resent() -> None:
    module, sam = _module([("00A4000002DF01", "9000"), ("0020000003123456", "63C2")])
    with pytest.raises(SamPinError, match="2 tries left") as info:
        module.session(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS, bytes(8))
    assert info.value.retries_left == 2
    sent = len(sam.seen)
    with pytest.raises(SamPinError, match="not retried"):
        module.session(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS, bytes(8))
    assert len(sam.seen) == sent  # nothing was sent again
    assert "123456" not in str(info.value)


def test_blocked_pin() -> None:
    module, _ = _module([("00A4000002DF01", "9000"), ("0020000003123456", "6983")])
    with pytest.raises(SamPinError, match="blocked") as info:
        module.unlock()
    assert info.value.retries_left == 0


def test_card_keys_and_kcvs_cannot_leave_a_psam() -> None:
    module, sam = _module([])
    with pytest.raises(UnsupportedOperation, match="UK1_DDF1"):
        module.derive_card_key(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS)
    with pytest.raises(UnsupportedOperation, match="check values"):
        module.key_check_values()
    assert not sam.seen


def test_pin_to_bcd() -> None:
    assert pin_to_bcd("123456") == bytes.fromhex("123456")
    assert pin_to_bcd("12345") == bytes.fromhex("12345F")


def test_long_sm4_mac_chains_leading_blocks_through_ecb() -> None:
    """A MAC input longer than one 80FA 05 command is split; the result is the plain CBC-MAC."""
    key = bytes(range(16))

    class CipherSam(ScriptedSam):
        def __init__(self) -> None:
            super().__init__([])
            self.pending = b""

        def process(self, apdu: bytes) -> bytes:
            self.seen.append(apdu)
            cmd = CommandApdu.from_bytes(apdu)
            if cmd.ins in (0xA4, 0x20, 0xDE):
                return b"\x90\x00"
            if cmd.ins == 0xC0:
                out, self.pending = self.pending, b""
                return out + b"\x90\x00"
            assert cmd.ins == 0xFA and len(cmd.data) <= 240
            if cmd.p1 == 0x00:
                self.pending = ecb_encrypt(BlockCipher.SM4, key, cmd.data)
            else:
                iv, body = cmd.data[:16], cmd.data[16:]
                self.pending = mac_iso9797_alg1(BlockCipher.SM4, key, body, iv, pad=False)[:4]
            return bytes((0x61, len(self.pending)))

    sam = CipherSam()
    module = PsamSecurityModule(Channel(InProcessTransport(sam)), pin=None)
    session = module.session(STANDARD_KEY_SPECS["STK_DDF1"], FACTORS, bytes(8))
    data = bytes(range(256)) + bytes(100)
    assert session.mac(data) == mac_iso9797_alg1(BlockCipher.SM4, key, data)[:4]
    assert session.encrypt(bytes(512)) == ecb_encrypt(BlockCipher.SM4, key, bytes(512))


# --- against the simulated SAM ----------------------------------------------------------

PIN = "24681357"


def _sim(
    cipher: BlockCipher, *, pin: str = PIN, trace: Tracer | None = None
) -> tuple[KeySet, SoftwareSecurityModule, PsamSecurityModule]:
    keyset = KeySet.generate(DEFAULT_ROLES, cipher, sam_pin=PIN)
    sam = SimSam(sam_state_from_json(simulator_sam_document(keyset)))
    channel = Channel(InProcessTransport(sam), trace=trace)
    return (
        keyset,
        SoftwareSecurityModule(keyset),
        PsamSecurityModule(channel, pin=pin, algorithm=cipher),
    )


@pytest.mark.parametrize("cipher", [BlockCipher.SM4, BlockCipher.TDES])
def test_simulated_sam_external_auth_equals_software_for_every_role(cipher: BlockCipher) -> None:
    _, soft, psam = _sim(cipher)
    for index, role in enumerate(DEFAULT_ROLES):
        spec = STANDARD_KEY_SPECS[role]
        challenge, a = bytes([index]) * 8, bytes(range(index, index + 8))
        assert psam.external_auth_data(spec, FACTORS, challenge, a) == soft.external_auth_data(
            spec, FACTORS, challenge, a
        ), role


@pytest.mark.parametrize("cipher", [BlockCipher.SM4, BlockCipher.TDES])
@pytest.mark.parametrize("role", ["STK_DDF1", "STK_DF01", "STK_DF02", "STK_DF03"])
def test_simulated_sam_secure_messaging_equals_software(cipher: BlockCipher, role: str) -> None:
    _, soft, psam = _sim(cipher)
    spec = STANDARD_KEY_SPECS[role]
    challenge = bytes.fromhex("64EF14A0B9B8DA51")
    for plain in (bytes.fromhex("07042011FFFF"), bytes(15), bytes(range(200))):
        expected = protect_update_record(soft.session(spec, FACTORS, challenge), 1, plain)
        assert protect_update_record(psam.session(spec, FACTORS, challenge), 1, plain) == expected


def test_simulated_sam_long_mac_and_encrypt_equal_software() -> None:
    _, soft, psam = _sim(BlockCipher.SM4)
    spec = STANDARD_KEY_SPECS["STK_DF03"]
    hw, sw = psam.session(spec, FACTORS, bytes(8)), soft.session(spec, FACTORS, bytes(8))
    data = bytes(range(256)) * 2
    assert hw.mac(data) == sw.mac(data)
    assert hw.mac(data, bytes(range(16))) == sw.mac(data, bytes(range(16)))
    assert hw.encrypt(data) == sw.encrypt(data)


def test_simulated_sam_signs_records_with_its_certificate() -> None:
    keyset, soft, psam = _sim(BlockCipher.SM4)
    assert psam.certificate() == keyset.certificate == soft.certificate()
    record = bytes(range(256)) * 12  # 3072 bytes: several 80F4 blocks
    assert psam.sm3(record) == sm3(record)
    assert psam.sm3(b"") == sm3(b"")
    signature = sign_record(psam, record)
    assert verify_record(record, signature, psam.certificate())
    assert not verify_record(record + b"\x00", signature, psam.certificate())


def test_simulated_sam_wrong_pin_and_no_pin_in_trace() -> None:
    stream = io.StringIO()
    _, _, psam = _sim(BlockCipher.SM4, pin="11112222", trace=Tracer(stream))
    with pytest.raises(SamPinError, match="2 tries left"):
        psam.session(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS, bytes(8))
    with pytest.raises(SamPinError):
        psam.sign_digest(bytes(32))
    assert stream.getvalue().count('"name": "VERIFY"') == 1  # verified once, never retried
    assert "11112222" not in stream.getvalue()

    stream = io.StringIO()
    _, _, psam = _sim(BlockCipher.SM4, trace=Tracer(stream))
    psam.external_auth_data(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS, bytes(8), bytes(8))
    assert '"VERIFY"' in stream.getvalue() and PIN not in stream.getvalue()


def test_simulated_sam_without_pin_cannot_sign() -> None:
    _, _, psam = _sim(BlockCipher.SM4, pin=PIN)
    psam_no_pin = PsamSecurityModule(psam.channel, pin=None)
    with pytest.raises(SamCommandError, match="SAM SM2 SIGN: SW 6982") as info:
        psam_no_pin.sign_digest(bytes(32))
    assert info.value.sw == 0x6982


def test_an_interrupted_pin_verification_never_goes_on_without_the_pin() -> None:
    class InterruptedSam(ScriptedSam):
        def process(self, apdu: bytes) -> bytes:
            if apdu.startswith(bytes.fromhex("0020")):
                self.seen.append(apdu)
                raise KeyboardInterrupt  # operator pressed Ctrl-C while the PIN was in flight
            return super().process(apdu)

    sam = InterruptedSam([("00A4000002DF01", "9000")])
    module = PsamSecurityModule(Channel(InProcessTransport(sam)), pin="123456")
    with pytest.raises(KeyboardInterrupt):
        module.unlock()
    sent = len(sam.seen)
    with pytest.raises(SamPinError, match="interrupted"):
        module.unlock()
    assert len(sam.seen) == sent  # no second VERIFY, and no use of the SAM as if unlocked
