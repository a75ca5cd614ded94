"""Software security module and secure messaging, checked against hand-computed flows and traces."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcard_apdu.apdu import CommandApdu
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security import (
    STANDARD_KEY_SPECS,
    CardFactors,
    KeySet,
    MasterKey,
    SecureMessagingFormatError,
    SecurityModuleError,
    SoftwareSecurityModule,
    SoftwareSession,
    UnknownKeyRole,
    UnsupportedOperation,
    external_auth_cryptogram,
    protect_update,
    protect_update_binary,
    protect_update_record,
    unprotect,
)

# card factor of the trace (docs/reference/healthcard-layout.md §3.4)
CARD = bytes.fromhex("0081866B00001015")
CITY = b"21000000"
FACTORS = CardFactors(CARD, CITY)
MK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def _ecb(cipher: BlockCipher, key: bytes, data: bytes) -> bytes:
    """Independent ECB (straight from `cryptography`, not the crypto layer)."""
    algo = algorithms.SM4(key) if cipher is BlockCipher.SM4 else TripleDES(key + key[:8])
    enc = Cipher(algo, modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def _div(cipher: BlockCipher, key: bytes, factor: bytes) -> bytes:
    inverted = bytes(b ^ 0xFF for b in factor)
    if cipher is BlockCipher.SM4:
        return _ecb(cipher, key, factor + inverted)
    return _ecb(cipher, key, factor) + _ecb(cipher, key, inverted)


def _cbc_mac(cipher: BlockCipher, key: bytes, data: bytes) -> bytes:
    """Independent 4-byte session MAC: SM4 CBC-MAC, or 3DES retail MAC, zero IV, method-2 pad."""
    bs = cipher.block_size
    data = data + b"\x80" + bytes(-(len(data) + 1) % bs)
    chain = bytes(bs)
    single = key if cipher is BlockCipher.SM4 else key[:8] * 2
    for i in range(0, len(data), bs):
        xored = bytes(a ^ b for a, b in zip(chain, data[i : i + bs], strict=True))
        chain = _ecb(cipher, single, xored)
    if cipher is BlockCipher.TDES:
        dec = Cipher(TripleDES(key[8:] * 3), modes.ECB()).decryptor()
        chain = _ecb(cipher, key[:8] * 2, dec.update(chain) + dec.finalize())
    return chain[:4]


DEFAULT_TEST_ROLES = ("RK1_DF03", "UK1_DDF1", "STK_DDF1", "STK_DF03")


def _module(
    cipher: BlockCipher, roles: tuple[str, ...] = DEFAULT_TEST_ROLES
) -> SoftwareSecurityModule:
    keys = {role: MasterKey.create(cipher, MK, 1) for role in roles}
    return SoftwareSecurityModule(KeySet(cipher, keys))


@pytest.mark.parametrize("cipher", [BlockCipher.SM4, BlockCipher.TDES])
def test_session_key_is_three_level_diversification(cipher: BlockCipher) -> None:
    module = _module(cipher)
    key = STANDARD_KEY_SPECS["RK1_DF03"]  # 2-level: card, city, then the challenge
    challenge = bytes.fromhex("30CB83A6ADABFE3F")
    sk = _div(cipher, _div(cipher, _div(cipher, MK, CARD), CITY), challenge)
    session = module.session(key, FACTORS, challenge)
    block = bytes(range(cipher.block_size))
    assert session.encrypt(block) == _ecb(cipher, sk, block)
    assert module.derive_card_key(key, FACTORS) == _div(cipher, _div(cipher, MK, CARD), CITY)


def test_one_level_key_ignores_city_factor() -> None:
    module = _module(BlockCipher.SM4)
    key = STANDARD_KEY_SPECS["UK1_DDF1"]
    assert key.levels == 1
    assert module.derive_card_key(key, CardFactors(CARD)) == _div(BlockCipher.SM4, MK, CARD)
    assert module.derive_card_key(key, FACTORS) == module.derive_card_key(key, CardFactors(CARD))


def test_two_level_key_without_city_factor_is_an_error() -> None:
    with pytest.raises(SecurityModuleError, match=r"RK1_DF03.*city"):
        _module(BlockCipher.SM4).derive_card_key(STANDARD_KEY_SPECS["RK1_DF03"], CardFactors(CARD))


def test_sm4_external_auth_data_is_folded_cryptogram_a_and_version() -> None:
    module = _module(BlockCipher.SM4)
    key = STANDARD_KEY_SPECS["RK1_DF03"]
    r = bytes.fromhex("30CB83A6ADABFE3F")
    a = bytes.fromhex("1122334455667788")
    data = module.external_auth_data(key, FACTORS, r, a)
    sk = _div(BlockCipher.SM4, _div(BlockCipher.SM4, _div(BlockCipher.SM4, MK, CARD), CITY), r)
    c = _ecb(BlockCipher.SM4, sk, a + bytes(8))
    assert data == bytes(x ^ y for x, y in zip(c[:8], c[8:], strict=True)) + a + b"\x01"
    assert len(data) == 17


def test_tdes_external_auth_data_is_unfolded_single_block() -> None:
    module = _module(BlockCipher.TDES)
    key = STANDARD_KEY_SPECS["UK1_DDF1"]
    r, a = bytes.fromhex("64EF14A0B9B8DA51"), bytes(range(8))
    sk = _div(BlockCipher.TDES, _div(BlockCipher.TDES, MK, CARD), r)
    expected = _ecb(BlockCipher.TDES, sk, a) + a + b"\x01"
    assert module.external_auth_data(key, FACTORS, r, a) == expected


class _TraceSession:
    """Answers with the SAM outputs of the reference traces and records what it was asked."""

    cipher = BlockCipher.SM4

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, bytes]] = []

    def encrypt(self, data: bytes) -> bytes:
        self.asked.append(("enc", data))
        return self.answers[data]

    def mac(self, data: bytes, iv: bytes | None = None) -> bytes:
        self.asked.append(("mac", data))
        assert iv is None
        return self.answers[data]


def test_external_auth_fold_reproduces_trace() -> None:
    # docs/reference/healthcard-layout.md §3.5:
    # 80FA ... 1122334455667788 00*8 -> C; card got B47B16DBF08684DE.
    a = bytes.fromhex("1122334455667788")
    c = bytes.fromhex("6C37FF3CB7DA5458D84CE9E7475CD086")
    session = _TraceSession({a + bytes(8): c})
    assert external_auth_cryptogram(session, a) == bytes.fromhex("B47B16DBF08684DE")


def test_secure_messaging_update_record_reproduces_trace() -> None:
    # docs/reference/healthcard-layout.md §3.6: DDF1/EF08 record 1 <- TLV 07 04 2011FFFF.
    e = bytes.fromhex("DC6D00224B94CD8B98F32DD68C55FA86")
    padded_plain = bytes.fromhex("0607042011FFFF80") + bytes(8)
    mac_input = bytes.fromhex("04DC010414") + e
    session = _TraceSession({padded_plain: e, mac_input: bytes.fromhex("786DB395")})
    command = protect_update_record(session, 1, bytes.fromhex("07042011FFFF"))
    assert command.to_bytes() == bytes.fromhex("04DC010414") + e + bytes.fromhex("786DB395")
    assert session.asked == [("enc", padded_plain), ("mac", mac_input)]


@pytest.mark.parametrize("cipher", [BlockCipher.SM4, BlockCipher.TDES])
def test_protect_update_matches_independent_computation(cipher: BlockCipher) -> None:
    sk = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
    plain = bytes.fromhex("07042011FFFF")
    command = protect_update(SoftwareSession(cipher, sk), 0x00, 0xDC, 0x01, 0x04, plain)
    bs = cipher.block_size
    body = bytes([len(plain)]) + plain
    body += b"\x80" + bytes(-(len(body) + 1) % bs)
    e = _ecb(cipher, sk, body)
    header = bytes((0x04, 0xDC, 0x01, 0x04, len(e) + 4))
    assert command.to_bytes() == header + e + _cbc_mac(cipher, sk, header + e)


def test_block_aligned_plaintext_gets_no_padding() -> None:
    session = SoftwareSession(BlockCipher.SM4, MK)
    command = protect_update_binary(session, 0x0102, bytes(15))  # LD + 15 = one block
    assert command.header == bytes.fromhex("04D60102")
    assert len(command.data) == 16 + 4


@settings(max_examples=60, deadline=None)
@given(
    cipher=st.sampled_from([BlockCipher.SM4, BlockCipher.TDES]),
    key=st.binary(min_size=16, max_size=16),
    plain=st.binary(max_size=239),
    record=st.integers(1, 254),
)
def test_unprotect_inverts_protect(
    cipher: BlockCipher, key: bytes, plain: bytes, record: int
) -> None:
    session = SoftwareSession(cipher, key)
    protected = protect_update_record(session, record, plain)
    assert protected.cla == 0x04 and len(protected.data) <= 255
    clear = unprotect(session, protected)
    assert clear.data == plain
    assert (clear.cla, clear.ins, clear.p1, clear.p2) == (0x00, 0xDC, record, 0x04)


def test_unprotect_rejects_wrong_mac_and_wrong_key() -> None:
    session = SoftwareSession(BlockCipher.SM4, MK)
    protected = protect_update_record(session, 1, b"\x07\x04\x20\x11\xff\xff")
    tampered = protected.with_data(protected.data[:-1] + bytes([protected.data[-1] ^ 1]))
    with pytest.raises(SecureMessagingFormatError, match="MAC"):
        unprotect(session, tampered)
    with pytest.raises(SecureMessagingFormatError, match="MAC"):
        unprotect(SoftwareSession(BlockCipher.SM4, bytes(16)), protected)
    with pytest.raises(SecureMessagingFormatError, match="SM bit"):
        unprotect(session, protected.with_cla(0x00))
    with pytest.raises(SecureMessagingFormatError, match="blocks"):
        unprotect(session, CommandApdu(0x04, 0xDC, 1, 4, bytes(10)))
    # an extended-length command: Lc' of the MAC input would not fit its one byte
    with pytest.raises(SecureMessagingFormatError, match="292 data bytes"):
        unprotect(session, CommandApdu(0x04, 0xDC, 1, 4, bytes(288 + 4)))


def test_protect_rejects_plaintext_too_long_for_short_apdu() -> None:
    with pytest.raises(SecureMessagingFormatError, match="240 bytes exceeds the 239"):
        protect_update_record(SoftwareSession(BlockCipher.SM4, MK), 1, bytes(240))
    longest_tdes = protect_update_record(SoftwareSession(BlockCipher.TDES, MK), 1, bytes(247))
    assert len(longest_tdes.data) == 248 + 4


def test_unknown_role_and_version_mismatch() -> None:
    module = _module(BlockCipher.SM4, ("RK1_DF03",))
    with pytest.raises(UnknownKeyRole, match="UK1_DDF1"):
        module.derive_card_key(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS)
    spec_v2 = STANDARD_KEY_SPECS["RK1_DF03"].__class__("RK1_DF03", 0x47, 0x54, 2, version=2)
    with pytest.raises(UnknownKeyRole, match="version 2"):
        module.session(spec_v2, FACTORS, bytes(8))


def test_challenge_must_be_eight_bytes() -> None:
    with pytest.raises(SecurityModuleError, match="challenge must be 8 bytes, got 4"):
        _module(BlockCipher.SM4).session(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS, bytes(4))


def test_signing_needs_sm2_key() -> None:
    module = _module(BlockCipher.SM4)
    with pytest.raises(UnsupportedOperation, match="no SM2 key"):
        module.sign_digest(bytes(32))
    with pytest.raises(UnsupportedOperation, match="no certificate"):
        module.certificate()


def test_key_check_values_are_kcvs_of_master_keys() -> None:
    module = _module(BlockCipher.SM4, ("RK1_DF03", "MK_MF"))
    expected = _ecb(BlockCipher.SM4, MK, bytes(16))[:3].hex().upper()
    assert module.key_check_values() == {"RK1_DF03": expected, "MK_MF": expected}


def test_software_flow_is_fast_enough_for_bulk_personalization() -> None:
    import time

    keyset = KeySet.generate(algorithm=BlockCipher.SM4, with_sm2=False)
    module = SoftwareSecurityModule(keyset)
    spec = STANDARD_KEY_SPECS["UK1_DF03"]
    start = time.perf_counter()
    for i in range(200):
        module.external_auth_data(spec, FACTORS, i.to_bytes(8, "big"), bytes(8))
        protect_update_record(module.session(spec, FACTORS, bytes(8)), 1, bytes(40))
    per_card_pair = (time.perf_counter() - start) / 200
    # A personalization needs on the order of 20 such pairs; 50 cards/s leaves 1 ms per pair.
    assert per_card_pair < 0.001
