"""Record signing (SM2 over SM3 with the default user ID) and the 190-byte SAM certificate."""

from __future__ import annotations

import datetime as dt

import pytest

from healthcard_apdu.crypto import (
    DEFAULT_SM2_USER_ID,
    BlockCipher,
    sm2_generate_private,
    sm2_public_key,
    sm2_verify,
)
from healthcard_apdu.security import (
    CertificateError,
    KeySet,
    SamCertificate,
    SoftwareSecurityModule,
    build_certificate,
    sign_record,
    verify_record,
)
from healthcard_apdu.security.signing import record_digest

DAY = dt.date(2026, 1, 2)


def _cert(private: int, issuer_private: int | None = None) -> bytes:
    return build_certificate(
        private,
        subject=bytes.fromhex("11223344556677889900"),
        issuer=b"ISSUER01",
        not_before=DAY,
        not_after=DAY.replace(year=2036),
        issuer_private=issuer_private,
    )


def test_certificate_layout() -> None:
    d = sm2_generate_private()
    raw = _cert(d)
    x, y = sm2_public_key(d)
    assert len(raw) == 190
    assert raw[:6] == b"HCSC\x01\x01"
    assert raw[6:16] == bytes.fromhex("11223344556677889900")
    assert raw[16:24] == b"ISSUER01"
    assert raw[24:32] == bytes.fromhex("2026010220360102")
    assert raw[32:96] == x.to_bytes(32, "big") + y.to_bytes(32, "big")
    assert raw[96:126] == bytes(30)
    assert sm2_verify((x, y), raw[:126], raw[126:], DEFAULT_SM2_USER_ID)
    cert = SamCertificate.from_bytes(raw)
    assert cert.public_key == (x, y) and cert.not_after == dt.date(2036, 1, 2)
    assert cert.verify_signature() and cert.to_bytes() == raw
    assert cert.valid_on(DAY) and not cert.valid_on(dt.date(2037, 1, 1))


def test_certificate_signed_by_issuer() -> None:
    d, issuer = sm2_generate_private(), sm2_generate_private()
    cert = SamCertificate.from_bytes(_cert(d, issuer))
    assert cert.verify_signature(sm2_public_key(issuer))
    assert not cert.verify_signature()  # not self-signed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:189], "190 bytes, got 189"),
        (lambda raw: b"XXXX" + raw[4:], "magic"),
        (lambda raw: raw[:4] + b"\x02" + raw[5:], "version/algorithm 02/01"),
        (lambda raw: raw[:24] + bytes.fromhex("20261302") + raw[28:], "not-before 20261302"),
        (lambda raw: raw[:32] + bytes(64) + raw[96:], "not a point"),
    ],
)
def test_malformed_certificates(mutate: object, message: str) -> None:
    raw = _cert(sm2_generate_private())
    assert callable(mutate)
    with pytest.raises(CertificateError, match=message):
        SamCertificate.from_bytes(mutate(raw))
    with pytest.raises(CertificateError):
        verify_record(b"data", bytes(64), mutate(raw))


def test_sign_record_with_software_module_verifies() -> None:
    keyset = KeySet.generate(("RK1_DF03",), BlockCipher.SM4)
    module = SoftwareSecurityModule(keyset)
    record = bytes(range(256)) * 6 + bytes(103)  # 1639 data bytes, the EE size
    signature = sign_record(module, record)
    cert = module.certificate()
    assert len(signature) == 64
    assert verify_record(record, signature, cert)
    # Standard SM2 with the default user ID, checked with the crypto layer directly.
    assert sm2_verify(SamCertificate.from_bytes(cert).public_key, record, signature)
    assert not verify_record(record[:-1] + b"\x01", signature, cert)
    assert not verify_record(record, signature[:-1] + bytes([signature[-1] ^ 1]), cert)
    assert not verify_record(record, signature[:10], cert)
    other = KeySet.generate(("RK1_DF03",), BlockCipher.SM4).certificate
    assert other is not None and not verify_record(record, signature, other)


def test_record_digest_is_what_sign_digest_signs() -> None:
    keyset = KeySet.generate(("RK1_DF03",), BlockCipher.SM4)
    module = SoftwareSecurityModule(keyset)
    public = SamCertificate.from_bytes(module.certificate()).public_key
    signature = module.sign_digest(record_digest(b"abc", public))
    assert verify_record(b"abc", signature, module.certificate())
