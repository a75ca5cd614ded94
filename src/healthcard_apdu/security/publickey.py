"""SM2 public keys as X.509 SubjectPublicKeyInfo (DER / PEM) and their key identifiers.

The encoding is the one OpenSSL and GmSSL write for SM2 (GB/T 35276 / RFC 5480 shape)::

    SEQUENCE { SEQUENCE { OID id-ecPublicKey 1.2.840.10045.2.1,
                          OID sm2p256v1 1.2.156.10197.1.301 },
               BIT STRING 04 || X || Y }

The key identifier (``kid``) of a public key is the first 8 bytes of SM3 over that DER
encoding (our choice, docs/ehc.md): anyone holding the PEM recomputes it.
"""

from __future__ import annotations

import binascii

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem

from healthcard_apdu.crypto import CryptoError, sm2_decode_public, sm2_encode_public, sm3
from healthcard_apdu.security.errors import SecurityModuleError

__all__ = [
    "EC_PUBLIC_KEY_OID",
    "KEY_ID_LENGTH",
    "SM2_CURVE_OID",
    "PublicKeyError",
    "key_id",
    "public_key_from_spki",
    "spki_der",
    "spki_pem",
]

Point = tuple[int, int]

EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
SM2_CURVE_OID = "1.2.156.10197.1.301"
KEY_ID_LENGTH = 8
_MAX_PEM = 4096


class PublicKeyError(SecurityModuleError, ValueError):
    """A SubjectPublicKeyInfo is not an SM2 public key on sm2p256v1."""


def spki_der(public: Point) -> bytes:
    """The DER SubjectPublicKeyInfo (91 bytes) of an SM2 public key."""
    try:
        point = sm2_encode_public(public)
    except CryptoError as exc:
        raise PublicKeyError(str(exc)) from None
    info = asn1_keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": asn1_keys.ECDomainParameters(name="named", value=SM2_CURVE_OID),
            },
            "public_key": point,
        }
    )
    return bytes(info.dump())


def spki_pem(public: Point) -> str:
    """The PEM ``PUBLIC KEY`` block of an SM2 public key."""
    return str(asn1_pem.armor("PUBLIC KEY", spki_der(public)).decode("ascii"))


def key_id(public: Point) -> bytes:
    """kid = SM3(SubjectPublicKeyInfo DER)[:8]."""
    return sm3(spki_der(public))[:KEY_ID_LENGTH]


def public_key_from_spki(data: bytes | str, source: str = "public key") -> Point:
    """Parse a PEM or DER SubjectPublicKeyInfo; :class:`PublicKeyError` naming ``source``
    unless it is an id-ecPublicKey on sm2p256v1 with an uncompressed point on the curve."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    if len(raw) > _MAX_PEM:
        raise PublicKeyError(f"{source}: {len(raw)} bytes, too long for an SM2 public key")
    if asn1_pem.detect(raw):
        try:
            kind, _headers, raw = asn1_pem.unarmor(raw)
        except (ValueError, binascii.Error):
            raise PublicKeyError(f"{source}: PEM armor is malformed") from None
        if kind != "PUBLIC KEY":
            raise PublicKeyError(f"{source}: PEM block is {kind!r}, expected 'PUBLIC KEY'")
    try:
        info = asn1_keys.PublicKeyInfo.load(raw, strict=True)
        algorithm = info["algorithm"]["algorithm"].dotted
        parameters = info["algorithm"]["parameters"]
        curve = parameters.chosen.dotted if parameters.name == "named" else None
        point = bytes(info["public_key"].native)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise PublicKeyError(f"{source}: not a DER SubjectPublicKeyInfo") from None
    if algorithm != EC_PUBLIC_KEY_OID or curve != SM2_CURVE_OID:
        raise PublicKeyError(
            f"{source}: algorithm {algorithm} curve {curve} is not id-ecPublicKey on sm2p256v1"
        )
    try:
        return sm2_decode_public(point)
    except CryptoError as exc:
        raise PublicKeyError(f"{source}: {exc}") from None
