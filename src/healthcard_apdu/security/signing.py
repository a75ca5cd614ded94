"""Record signing (docs/reference/healthcard-layout.md §3.9) and the 190-byte SAM certificate
field: OUR documented choice.

The national SAM specification is not public, so this toolkit defines:

* record signature = SM2 (GB/T 32918.2) over the record's data bytes with the default user ID
  ``1234567812345678``: e = SM3(Z_A || data), signature = r || s (64 bytes). With a SAM this is
  ``SM3Digest(Z_A || data)`` then ``SM2SignHash(e)``; :func:`sign_record` does exactly that.
* SAM certificate (190 bytes, SAM DF01/EF1C) = the layout of :class:`SamCertificate`
  (docs/keys.md): magic ``HCSC``, format version, algorithm id, subject (SAM serial, 10 B),
  issuer id (8 B), validity (2 x 4 B BCD YYYYMMDD), public key X || Y (64 B), 30 reserved
  zero bytes, and the issuer's SM2 signature over the first 126 bytes (self-signed when the
  issuer key is the SAM key).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from healthcard_apdu.crypto import (
    DEFAULT_SM2_USER_ID,
    CryptoError,
    sm2_public_key,
    sm2_sign,
    sm2_verify,
    sm2_za,
    sm3,
)
from healthcard_apdu.security.errors import CertificateError

if TYPE_CHECKING:
    from healthcard_apdu.security.module import SecurityModule

__all__ = [
    "CERTIFICATE_LENGTH",
    "CERTIFICATE_MAGIC",
    "SIGNATURE_LENGTH",
    "SamCertificate",
    "build_certificate",
    "record_digest",
    "sign_record",
    "verify_record",
]

CERTIFICATE_LENGTH = 190
CERTIFICATE_MAGIC = b"HCSC"
CERTIFICATE_VERSION = 0x01
ALGORITHM_SM2_SM3 = 0x01
SIGNATURE_LENGTH = 64
SUBJECT_LENGTH = 10
ISSUER_LENGTH = 8
_TBS_LENGTH = CERTIFICATE_LENGTH - SIGNATURE_LENGTH  # 126
_RESERVED = 30

Point = tuple[int, int]


def _bcd_date(value: dt.date) -> bytes:
    return bytes.fromhex(value.strftime("%Y%m%d"))


def _parse_bcd_date(raw: bytes, label: str) -> dt.date:
    text = raw.hex()
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise CertificateError(
            f"SAM certificate {label} {text.upper()} is not a BCD YYYYMMDD date"
        ) from None


@dataclass(frozen=True)
class SamCertificate:
    """The parsed 190-byte SAM certificate (our format)."""

    subject: bytes
    issuer: bytes
    not_before: dt.date
    not_after: dt.date
    public_key: Point
    signature: bytes = field(default=bytes(SIGNATURE_LENGTH))

    def __post_init__(self) -> None:
        if len(self.subject) != SUBJECT_LENGTH:
            raise CertificateError(f"SAM certificate subject: {len(self.subject)} bytes, not 10")
        if len(self.issuer) != ISSUER_LENGTH:
            raise CertificateError(f"SAM certificate issuer: {len(self.issuer)} bytes, not 8")
        if len(self.signature) != SIGNATURE_LENGTH:
            raise CertificateError(
                f"SAM certificate signature must be 64 bytes, got {len(self.signature)}"
            )

    def tbs(self) -> bytes:
        """The signed part: bytes 0..125."""
        x, y = self.public_key
        return (
            CERTIFICATE_MAGIC
            + bytes((CERTIFICATE_VERSION, ALGORITHM_SM2_SM3))
            + self.subject
            + self.issuer
            + _bcd_date(self.not_before)
            + _bcd_date(self.not_after)
            + x.to_bytes(32, "big")
            + y.to_bytes(32, "big")
            + bytes(_RESERVED)
        )

    def to_bytes(self) -> bytes:
        return self.tbs() + self.signature

    @classmethod
    def from_bytes(cls, raw: bytes) -> SamCertificate:
        """Parse and check the layout (not the signature); CertificateError if malformed."""
        raw = bytes(raw)
        if len(raw) != CERTIFICATE_LENGTH:
            raise CertificateError(f"SAM certificate must be 190 bytes, got {len(raw)}")
        if raw[:4] != CERTIFICATE_MAGIC:
            raise CertificateError(f"SAM certificate magic is {raw[:4].hex().upper()}, not 'HCSC'")
        if raw[4] != CERTIFICATE_VERSION or raw[5] != ALGORITHM_SM2_SM3:
            raise CertificateError(
                f"SAM certificate version/algorithm {raw[4]:02X}/{raw[5]:02X} not supported"
            )
        point = (int.from_bytes(raw[32:64], "big"), int.from_bytes(raw[64:96], "big"))
        try:
            sm2_za(point)  # validates the point
        except CryptoError:
            raise CertificateError(
                "SAM certificate public key is not a point on the SM2 curve"
            ) from None
        return cls(
            subject=raw[6:16],
            issuer=raw[16:24],
            not_before=_parse_bcd_date(raw[24:28], "not-before"),
            not_after=_parse_bcd_date(raw[28:32], "not-after"),
            public_key=point,
            signature=raw[_TBS_LENGTH:],
        )

    def verify_signature(self, issuer_public: Point | None = None) -> bool:
        """Check the issuer signature; ``None`` means self-signed (the SAM's own key)."""
        return sm2_verify(issuer_public or self.public_key, self.tbs(), self.signature)

    def valid_on(self, day: dt.date) -> bool:
        return self.not_before <= day <= self.not_after


def build_certificate(
    private_key: int,
    *,
    subject: bytes,
    issuer: bytes,
    not_before: dt.date,
    not_after: dt.date,
    issuer_private: int | None = None,
) -> bytes:
    """A 190-byte certificate for the SAM key; signed by ``issuer_private`` or self-signed."""
    unsigned = SamCertificate(subject, issuer, not_before, not_after, sm2_public_key(private_key))
    signature = sm2_sign(issuer_private or private_key, unsigned.tbs())
    return SamCertificate(
        subject, issuer, not_before, not_after, unsigned.public_key, signature
    ).to_bytes()


def record_digest(data: bytes, public_key: Point) -> bytes:
    """e = SM3(Z_A || data) with the default SM2 user ID (what the SAM signs)."""
    return sm3(sm2_za(public_key, DEFAULT_SM2_USER_ID) + bytes(data))


def sign_record(module: SecurityModule, data: bytes) -> bytes:
    """Sign a record's data bytes the SAM way: SM3 in the module over Z_A || data, then SM2."""
    cert = SamCertificate.from_bytes(module.certificate())
    digest = module.sm3(sm2_za(cert.public_key, DEFAULT_SM2_USER_ID) + bytes(data))
    return module.sign_digest(digest)


def verify_record(data: bytes, signature: bytes, certificate: bytes) -> bool:
    """True if ``signature`` is the SM2 signature of ``data`` under the certificate's key.

    A malformed certificate raises :class:`CertificateError`; a wrong or malformed signature
    returns False. The certificate's own signature and validity are not checked here
    (see :meth:`SamCertificate.verify_signature`).
    """
    cert = _parsed_certificate(bytes(certificate))
    return sm2_verify(cert.public_key, bytes(data), bytes(signature), DEFAULT_SM2_USER_ID)


@lru_cache(maxsize=64)
def _parsed_certificate(raw: bytes) -> SamCertificate:
    """:meth:`SamCertificate.from_bytes`, remembered: the same SAM certificate is in every
    record it signed (a malformed one raises each time)."""
    return SamCertificate.from_bytes(raw)
