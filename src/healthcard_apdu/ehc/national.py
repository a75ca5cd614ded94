"""The national derivation of the e-card identifiers (电子健康卡管理信息系统, docs/ehc.md §2).

1. master index   ``mindex = SM3(idType || idNo || name)`` (UTF-8), 64 hex;
2. factor         ``D = mindex[0:8] ^ mindex[8:16] ^ mindex[16:24] ^ mindex[24:32]``;
3. user key       ``UK = SM4(securityKey, D || ~D)`` -- the physical card's diversification;
4. e-card ID      ``ehcId = SM4-ECB(UK, ASCII(idType || idNo) zero-padded to 32 bytes)``, 64 hex;
   reversible with UK;
5. validity       ``SM4-ECB(protectionKey, BCD(YYYYMMDDHHMMSS) zero-padded to 16 bytes)``, 32 hex,
   the expiry time of a dynamic QR in China Standard Time (UTC+8).

The platform keys are roles of a :class:`~healthcard_apdu.security.SecurityModule`
(``EHC_SECURITY``, ``EHC_PROTECTION``, ``EHC_SIGNING``): :class:`PlatformKeys` never sees
their values.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import reduce

from healthcard_apdu.crypto import sm3
from healthcard_apdu.ehc.errors import EhcInputError, QrRejected
from healthcard_apdu.ehc.person import ID_TYPES, MAX_ID_NUMBER_LENGTH, Person
from healthcard_apdu.security import (
    EHC_PROTECTION_KEY,
    EHC_SECURITY_KEY,
    EHC_SIGNING_KEY,
    DataCipher,
    SecurityModule,
    key_id,
)

__all__ = [
    "CHINA_STANDARD_TIME",
    "ID_BLOCK_LENGTH",
    "PlatformKeys",
    "decode_id_block",
    "decode_validity_time",
    "diversification_factor",
    "encode_validity_time",
    "id_block",
    "master_index",
    "normalize_ehc_id",
    "validity_epoch",
]

CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
ID_BLOCK_LENGTH = 32
VALIDITY_LENGTH = 16
_BCD_LENGTH = 7
_HEX = frozenset("0123456789ABCDEFabcdef")

Point = tuple[int, int]


def master_index(id_type: str, id_number: str, name: str) -> bytes:
    """``SM3(idType || idNo || name)`` over UTF-8 (32 bytes)."""
    return sm3((id_type + id_number + name).encode("utf-8"))


def diversification_factor(mindex: bytes) -> bytes:
    """XOR of the four 8-byte groups of the master index (the D of ``D || ~D``)."""
    if len(mindex) != 32:
        raise EhcInputError("master_index", f"must be 32 bytes, got {len(mindex)}")
    groups = (mindex[i : i + 8] for i in range(0, 32, 8))
    return reduce(lambda a, b: bytes(x ^ y for x, y in zip(a, b, strict=True)), groups)


def id_block(id_type: str, id_number: str) -> bytes:
    """``ASCII(idType || idNo)`` zero-padded to 32 bytes (the e-card ID plaintext)."""
    if id_type not in ID_TYPES:
        raise EhcInputError("id_type", f"{id_type!r} is not a CV02.01.101 code")
    if not (id_number.isascii() and id_number.isalnum()) or len(id_number) > MAX_ID_NUMBER_LENGTH:
        raise EhcInputError(
            "id_number", f"must be 1..{MAX_ID_NUMBER_LENGTH} ASCII letters and digits"
        )
    return (id_type + id_number).encode("ascii").ljust(ID_BLOCK_LENGTH, b"\x00")


def decode_id_block(block: bytes) -> tuple[str, str]:
    """Inverse of :func:`id_block`; ``ValueError`` unless it is a type, a number and zeros."""
    text = block.rstrip(b"\x00")
    if len(block) != ID_BLOCK_LENGTH or b"\x00" in text or len(text) < 3:
        raise ValueError("not a zero-padded idType || idNo block")
    try:
        plain = text.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII") from None
    id_type, id_number = plain[:2], plain[2:]
    if id_type not in ID_TYPES or not id_number.isalnum():
        raise ValueError("not an ID type and number")
    return id_type, id_number


def normalize_ehc_id(value: str, field: str = "ehc_id") -> str:
    """A 64-hex e-card ID in upper case; :class:`EhcInputError` naming ``field`` otherwise."""
    if len(value) != 64 or not _HEX.issuperset(value):
        raise EhcInputError(field, f"must be 64 hex digits, got {len(value)} characters")
    return value.upper()


def encode_validity_time(expiry: dt.datetime) -> bytes:
    """The 16-byte validity plaintext: BCD ``YYYYMMDDHHMMSS`` in UTC+8, then zeros."""
    if expiry.tzinfo is None:
        raise EhcInputError("expiry", "must be an aware datetime (with a time zone)")
    local = expiry.astimezone(CHINA_STANDARD_TIME)
    return bytes.fromhex(local.strftime("%Y%m%d%H%M%S")).ljust(VALIDITY_LENGTH, b"\x00")


_BCD = tuple(
    (b >> 4) * 10 + (b & 0x0F) if b >> 4 < 10 and b & 0x0F < 10 else -1 for b in range(256)
)
_ZERO_TAIL = bytes(VALIDITY_LENGTH - _BCD_LENGTH)
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CST_OFFSET = 8 * 3600


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def validity_epoch(plain: bytes) -> int:
    """The expiry in a decrypted validity block as seconds since the epoch; ``ValueError``
    unless it is 7 BCD bytes of a real UTC+8 time followed by 9 zero bytes."""
    if len(plain) != VALIDITY_LENGTH or plain[_BCD_LENGTH:] != _ZERO_TAIL:
        raise ValueError("validity block is not 7 BCD bytes and 9 zero bytes")
    c, y, mo, d, h, mi, s = (_BCD[b] for b in plain[:_BCD_LENGTH])
    if min(c, y, mo, d, h, mi, s) < 0:
        raise ValueError("validity block is not BCD")
    year = c * 100 + y
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (
        1 <= mo <= 12
        and 1 <= d <= _MONTH_DAYS[mo] + (mo == 2 and leap)
        and h < 24
        and mi < 60
        and s < 60
        and year >= 1970
    ):
        raise ValueError("validity block is not a calendar time")
    return _days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + s - _CST_OFFSET


def decode_validity_time(plain: bytes) -> dt.datetime:
    """Inverse of :func:`encode_validity_time` (an aware datetime in UTC+8); ``ValueError``
    unless BCD time and zeros."""
    return dt.datetime.fromtimestamp(validity_epoch(plain), CHINA_STANDARD_TIME)


class PlatformKeys:
    """The e-card platform's keys behind a security module, by role.

    ``security_role`` derives the e-card IDs, ``protection_role`` makes and checks the
    dynamic-QR validity blocks, ``signing_role`` signs the EHC1 envelope. A role the module
    does not hold raises only when it is used (``UnknownKeyRole`` / ``UnsupportedOperation``,
    exit 4 on the command line).
    """

    def __init__(
        self,
        module: SecurityModule,
        *,
        security_role: str = EHC_SECURITY_KEY,
        protection_role: str = EHC_PROTECTION_KEY,
        signing_role: str = EHC_SIGNING_KEY,
    ) -> None:
        self.module = module
        self.security_role = security_role
        self.protection_role = protection_role
        self.signing_role = signing_role
        self._protection: DataCipher | None = None
        self._public: Point | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PlatformKeys({self.module.name})"

    # -- identifiers ---------------------------------------------------------------------

    def user_key(self, mindex: bytes) -> DataCipher:
        """The user key UK = SM4(securityKey, D || ~D) of a master index, inside the module."""
        return self.module.data_cipher(self.security_role, factor=diversification_factor(mindex))

    def ecard_id(self, person: Person) -> str:
        """The 64-hex e-card ID of ``person``."""
        mindex = master_index(person.id_type, person.id_number, person.name)
        block = id_block(person.id_type, person.id_number)
        return self.user_key(mindex).encrypt(block).hex().upper()

    def identity_of(self, ehc_id: str, mindex: bytes) -> tuple[str, str]:
        """The ID type and number an e-card ID encrypts, given its master index;
        :class:`QrRejected` (``identity-mismatch``) when it does not decrypt to one."""
        raw = bytes.fromhex(normalize_ehc_id(ehc_id))
        try:
            return decode_id_block(self.user_key(mindex).decrypt(raw))
        except ValueError:
            raise QrRejected(
                "identity-mismatch",
                f"e-card ID {ehc_id[:8]}... does not decrypt to an ID under this security key "
                "and master index",
            ) from None

    # -- dynamic QR validity -------------------------------------------------------------

    def protection(self) -> DataCipher:
        """The protection key's cipher (opened once, then reused)."""
        cipher = self._protection
        if cipher is None:
            with self._lock:
                if self._protection is None:
                    self._protection = self.module.data_cipher(self.protection_role)
                cipher = self._protection
        return cipher

    def validity_block(self, expiry: dt.datetime) -> str:
        """The 32-hex validity block of a dynamic QR that expires at ``expiry``."""
        return self.protection().encrypt(encode_validity_time(expiry)).hex().upper()

    def validity_expiry(self, block: str | bytes) -> dt.datetime:
        """The expiry time in a validity block; :class:`QrRejected` (``bad-validity``) when it
        does not decrypt to a time under this protection key (forged, or another platform's)."""
        return dt.datetime.fromtimestamp(self.validity_epoch(block), CHINA_STANDARD_TIME)

    def validity_epoch(self, block: str | bytes) -> int:
        """:meth:`validity_expiry` as seconds since the epoch (the verifier's fast path)."""
        raw = bytes.fromhex(block) if isinstance(block, str) else block
        try:
            return validity_epoch(self.protection().decrypt(raw))
        except ValueError:
            raise QrRejected(
                "bad-validity",
                "the validity block does not decrypt to a time under this protection key",
            ) from None

    # -- signing key ---------------------------------------------------------------------

    def public_key(self) -> Point:
        """The SM2 public key of the signing role."""
        if self._public is None:
            self._public = self.module.public_key_of(self.signing_role)
        return self._public

    def key_id(self) -> bytes:
        """kid of the signing key (SM3 of its SubjectPublicKeyInfo, first 8 bytes)."""
        return key_id(self.public_key())

    def sign_digest(self, digest: bytes) -> bytes:
        """SM2 r||s over a 32-byte digest with the signing role."""
        return self.module.sign_digest_as(self.signing_role, digest)
