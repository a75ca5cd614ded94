"""EHC1: the signed, offline-verifiable QR envelope (our extension, docs/ehc.md §4).

Text: ``EHC1:`` + Base45 (RFC 9285) of a COSE_Sign1 structure (RFC 9052, CBOR tag 18)::

    18([ protected = bstr .cbor {1: alg, 4: kid},
         unprotected = {},
         payload = bstr .cbor {4: exp, 6: iat, 7: jti, -65538: {1: 1, 2: ehcId, 3: type,
                                                               4: validity?, 5: issuer_code?}},
         signature = r || s ])

* ``alg`` = -65537, a COSE private-use algorithm id meaning SM2 with SM3 and the default user
  ID ``1234567812345678`` (GB/T 32918.2, GM/T 0009). COSE registers no SM2 algorithm.
* ``kid`` = 8 bytes: SM3 of the signing key's SubjectPublicKeyInfo (security.publickey).
* ``exp``/``iat`` = CWT claims (RFC 8392), seconds since the epoch (UTC); ``jti`` = CWT ``cti``,
  8 random bytes, the one-time-use handle.
* claim -65538 (CWT private use) carries the national text in binary: the 32-byte e-card ID,
  the code type, the 16-byte validity block of a dynamic code and the provincial fourth field;
  :meth:`Claims.national` rebuilds the exact national text, so a gateway can forward it.
* signature = SM2 over ``Sig_structure = ["Signature1", protected, b"", payload]``, i.e.
  ``e = SM3(Z_A || Sig_structure)``: it covers the algorithm, the kid, the times, the jti and the
  national fields together (the splice and replay weaknesses of the national code,
  docs/reference/ehealth-card.md §10).

Every structure must be in CBOR's deterministic (canonical) encoding: a decoder re-encodes what
it read and refuses any other byte string, so one envelope has exactly one text.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from healthcard_apdu.crypto import DEFAULT_SM2_USER_ID, sm2_za, sm3
from healthcard_apdu.ehc.base45 import b45decode, b45encode
from healthcard_apdu.ehc.errors import EhcInputError, QrFormatError
from healthcard_apdu.ehc.national import PlatformKeys
from healthcard_apdu.ehc.qrtext import DYNAMIC, SIGNED_PREFIX, STATIC, NationalQr

__all__ = [
    "ALG_SM2_SM3",
    "CLAIM_EHC",
    "ENVELOPE_VERSION",
    "JTI_LENGTH",
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNED_TEXT",
    "Claims",
    "Envelope",
    "parse_envelope",
    "sign_envelope",
]

COSE_SIGN1_TAG: Final = 18
ALG_SM2_SM3: Final = -65537
HEADER_ALG: Final = 1
HEADER_KID: Final = 4
CLAIM_EXP: Final = 4
CLAIM_IAT: Final = 6
CLAIM_CTI: Final = 7
CLAIM_EHC: Final = -65538
EHC_VERSION_KEY, EHC_ID_KEY, EHC_TYPE_KEY, EHC_VALIDITY_KEY, EHC_ISSUER_KEY = 1, 2, 3, 4, 5
ENVELOPE_VERSION: Final = 1
JTI_LENGTH: Final = 8
KID_LENGTH: Final = 8
SIGNATURE_LENGTH: Final = 64
MAX_ENVELOPE_BYTES: Final = 512
MAX_SIGNED_TEXT: Final = 311
"""Alphanumeric capacity of a QR code of version 10 at level M: the envelope's size budget."""
_CBOR_ERRORS = (
    cbor2.CBORError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
)


def _canonical(value: Any) -> bytes:
    return bytes(cbor2.dumps(value, canonical=True))


def _decode(data: bytes, what: str) -> Any:
    """Decode CBOR and insist on its canonical encoding (no trailing bytes, no duplicates,
    no indefinite lengths, shortest integers)."""
    try:
        value = cbor2.loads(data)
        again = _canonical(_thaw(value))
    except _CBOR_ERRORS:
        raise QrFormatError("envelope", f"{what} is not valid CBOR") from None
    if again != data:
        raise QrFormatError("envelope", f"{what} is not in canonical CBOR encoding")
    return value


def _thaw(value: Any) -> Any:
    """Decoded CBOR (tuples, frozendicts, tags) back to encodable lists and dicts."""
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, _thaw(value.value))
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _epoch(value: dt.datetime, field: str) -> int:
    if value.tzinfo is None:
        raise EhcInputError(field, "must be an aware datetime")
    return int(value.timestamp())


@dataclass(frozen=True)
class Claims:
    """The signed payload: times (epoch seconds), the one-time jti and the national fields."""

    issued_at: int
    expires_at: int
    jti: bytes
    ehc_id: bytes
    code_type: int
    validity: bytes | None = None
    issuer_code: str | None = None

    def national(self) -> NationalQr:
        """The national QR text this envelope carries (rebuilt exactly)."""
        return NationalQr(
            self.ehc_id.hex().upper(),
            DYNAMIC if self.code_type == DYNAMIC else STATIC,
            None if self.validity is None else self.validity.hex().upper(),
            self.issuer_code,
        )

    def issued(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.issued_at, dt.UTC)

    def expires(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.expires_at, dt.UTC)

    def encode(self) -> bytes:
        ehc: dict[int, Any] = {
            EHC_VERSION_KEY: ENVELOPE_VERSION,
            EHC_ID_KEY: self.ehc_id,
            EHC_TYPE_KEY: self.code_type,
        }
        if self.validity is not None:
            ehc[EHC_VALIDITY_KEY] = self.validity
        if self.issuer_code is not None:
            ehc[EHC_ISSUER_KEY] = self.issuer_code
        return _canonical(
            {
                CLAIM_EXP: self.expires_at,
                CLAIM_IAT: self.issued_at,
                CLAIM_CTI: self.jti,
                CLAIM_EHC: ehc,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> Claims:
        """The claims of a payload; :class:`QrFormatError` naming the claim when malformed."""
        claims = _decode(payload, "payload")
        if not isinstance(claims, Mapping) or set(claims) != {
            CLAIM_EXP,
            CLAIM_IAT,
            CLAIM_CTI,
            CLAIM_EHC,
        }:
            raise QrFormatError("envelope", "payload must hold exactly exp, iat, jti and ehc")
        exp, iat, jti, ehc = (claims[k] for k in (CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_EHC))
        for name, value in (("exp", exp), ("iat", iat)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise QrFormatError(name, "must be a non-negative integer (epoch seconds)")
        if not isinstance(jti, bytes) or len(jti) != JTI_LENGTH:
            raise QrFormatError("jti", f"must be {JTI_LENGTH} bytes")
        if not isinstance(ehc, Mapping) or not {1, 2, 3} <= set(ehc) <= {1, 2, 3, 4, 5}:
            raise QrFormatError("ehc", "claim must hold version, ehc_id, code type")
        version = ehc[EHC_VERSION_KEY]
        if type(version) is not int or version != ENVELOPE_VERSION:
            raise QrFormatError("ehc", f"version {version!r} is not supported")
        ehc_id, code_type = ehc[EHC_ID_KEY], ehc[EHC_TYPE_KEY]
        validity, issuer = ehc.get(EHC_VALIDITY_KEY), ehc.get(EHC_ISSUER_KEY)
        if not isinstance(ehc_id, bytes) or len(ehc_id) != 32:
            raise QrFormatError("ehc_id", "must be 32 bytes")
        if type(code_type) is not int or code_type not in (DYNAMIC, STATIC):
            raise QrFormatError("code_type", "must be 0 (dynamic) or 1 (static)")
        if (code_type == DYNAMIC) != (validity is not None):
            raise QrFormatError("validity", "a dynamic code has a validity block, a static none")
        if validity is not None and (not isinstance(validity, bytes) or len(validity) != 16):
            raise QrFormatError("validity", "must be 16 bytes")
        if issuer is not None and not isinstance(issuer, str):
            raise QrFormatError("issuer_code", "must be text")
        decoded = cls(iat, exp, jti, ehc_id, code_type, validity, issuer)
        decoded.national()  # the national field checks (issuer code shape)
        return decoded


@dataclass(frozen=True)
class Envelope:
    """A parsed, not yet verified EHC1 envelope."""

    protected: bytes
    payload: bytes
    signature: bytes
    kid: bytes

    def to_be_signed(self) -> bytes:
        """The COSE ``Sig_structure`` the signature covers."""
        return _canonical(["Signature1", self.protected, b"", self.payload])

    def digest(self, za: bytes) -> bytes:
        """``e = SM3(Z_A || Sig_structure)`` for the signer's Z_A."""
        return sm3(za + self.to_be_signed())

    def claims(self) -> Claims:
        return Claims.decode(self.payload)

    def encode(self) -> bytes:
        return _canonical(
            cbor2.CBORTag(COSE_SIGN1_TAG, [self.protected, {}, self.payload, self.signature])
        )

    def text(self) -> str:
        return SIGNED_PREFIX + b45encode(self.encode())


def _protected(kid: bytes) -> bytes:
    return _canonical({HEADER_ALG: ALG_SM2_SM3, HEADER_KID: kid})


def sign_envelope(
    keys: PlatformKeys,
    national: NationalQr,
    *,
    issued_at: dt.datetime,
    expires_at: dt.datetime,
    jti: bytes | None = None,
) -> str:
    """The EHC1 text carrying ``national``, valid from ``issued_at`` to ``expires_at``,
    signed with the platform's SM2 signing key. ``jti`` defaults to 8 random bytes."""
    iat, exp = _epoch(issued_at, "issued_at"), _epoch(expires_at, "expires_at")
    if exp <= iat:
        raise EhcInputError("expires_at", "must be after issued_at")
    jti = secrets.token_bytes(JTI_LENGTH) if jti is None else bytes(jti)
    if len(jti) != JTI_LENGTH:
        raise EhcInputError("jti", f"must be {JTI_LENGTH} bytes")
    claims = Claims(
        iat,
        exp,
        jti,
        bytes.fromhex(national.ehc_id),
        national.code_type,
        None if national.validity is None else bytes.fromhex(national.validity),
        national.issuer_code,
    )
    unsigned = Envelope(_protected(keys.key_id()), claims.encode(), b"", keys.key_id())
    za = sm2_za(keys.public_key(), DEFAULT_SM2_USER_ID)
    signature = keys.sign_digest(unsigned.digest(za))
    text = Envelope(unsigned.protected, unsigned.payload, signature, unsigned.kid).text()
    if len(text) > MAX_SIGNED_TEXT:
        raise EhcInputError(
            "issuer_code",
            f"the envelope would be {len(text)} characters, more than a version-10 QR code "
            f"holds at level M ({MAX_SIGNED_TEXT}); shorten the provincial field",
        )
    return text


def parse_envelope(text: str) -> Envelope:
    """Decode an EHC1 text (no signature check); :class:`QrFormatError` when malformed."""
    stripped = text.strip()
    if not stripped.startswith(SIGNED_PREFIX):
        raise QrFormatError("qr_text", f"does not start with {SIGNED_PREFIX!r}")
    body = stripped[len(SIGNED_PREFIX) :]
    if len(body) > MAX_ENVELOPE_BYTES * 3 // 2 + 2:
        raise QrFormatError("envelope", f"{len(body)} characters, too long for an EHC1 envelope")
    try:
        raw = b45decode(body)
    except ValueError as exc:
        raise QrFormatError("envelope", f"not Base45: {exc}") from None
    outer = _decode(raw, "envelope")
    if not (
        isinstance(outer, cbor2.CBORTag)
        and outer.tag == COSE_SIGN1_TAG
        and isinstance(outer.value, Sequence)
        and len(outer.value) == 4
    ):
        raise QrFormatError("envelope", "is not a tagged COSE_Sign1 array of four items")
    protected, unprotected, payload, signature = outer.value
    if not (isinstance(protected, bytes) and isinstance(payload, bytes)):
        raise QrFormatError("envelope", "protected header and payload must be byte strings")
    if not isinstance(unprotected, Mapping) or unprotected:
        raise QrFormatError("envelope", "the unprotected header must be empty")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LENGTH:
        raise QrFormatError("signature", f"must be {SIGNATURE_LENGTH} bytes (r || s)")
    header = _decode(protected, "protected header")
    if not isinstance(header, Mapping) or set(header) != {HEADER_ALG, HEADER_KID}:
        raise QrFormatError("envelope", "protected header must hold exactly alg and kid")
    if header[HEADER_ALG] != ALG_SM2_SM3:
        raise QrFormatError("alg", f"{header[HEADER_ALG]!r} is not SM2-SM3 ({ALG_SM2_SM3})")
    kid = header[HEADER_KID]
    if not isinstance(kid, bytes) or len(kid) != KID_LENGTH:
        raise QrFormatError("kid", f"must be {KID_LENGTH} bytes")
    return Envelope(protected, payload, signature, kid)
