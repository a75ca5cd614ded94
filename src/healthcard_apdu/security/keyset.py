"""Master key sets in memory and in passphrase-encrypted key files.

File format (JSON, docs/keys.md): a clear header -- format, version, algorithm, KCVs, KDF
parameters, AEAD nonce -- and the AES-256-GCM ciphertext of the key material. The key is
derived from the passphrase with scrypt (default) or PBKDF2-HMAC-SHA256; the clear header is
authenticated as associated data, so any change to it (KCVs included) is detected on load.
``read_key_check_values`` reads the KCVs without the passphrase (unauthenticated).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from healthcard_apdu.crypto import (
    SM2P256V1,
    BlockCipher,
    key_check_value,
    sm2_generate_private,
    sm2_public_key,
)
from healthcard_apdu.fileio import parse_json, write_file
from healthcard_apdu.security.errors import KeyFileError, SecurityModuleError, UnknownKeyRole
from healthcard_apdu.security.keyspec import (
    DEFAULT_ROLES,
    PLATFORM_CIPHER_ROLES,
    PLATFORM_ROLES,
    SM2_KEY_ROLES,
    STANDARD_KEY_SPECS,
)
from healthcard_apdu.security.publickey import key_id
from healthcard_apdu.security.signing import build_certificate

__all__ = [
    "DEFAULT_SAM_PIN",
    "FILE_FORMAT",
    "KeySet",
    "MasterKey",
    "check_roles",
    "kcv_hex",
    "read_key_check_values",
    "set_des_parity",
    "write_private_file",
]

log = logging.getLogger(__name__)

FILE_FORMAT = "healthcard-apdu/keyset"
FILE_VERSION = 1
PLAIN_FORMAT = "healthcard-apdu/keyset-plain"
DEFAULT_SAM_PIN = "123456"
DEFAULT_SAM_SERIAL = bytes.fromhex("48430000000000000001")
DEFAULT_ISSUER_ID = b"HCAPDU01"
KEY_LENGTH = 16
DEFAULT_SCRYPT_N = 2**17
#: Bounds of a file's scrypt cost (docs/keys.md: at most ~270 MiB and ~1.5 s per load).
_SCRYPT_N_RANGE = (2**10, 2**18)
_SCRYPT_MAX_P = 2
DEFAULT_PBKDF2_ITERATIONS = 600_000
_PBKDF2_RANGE = (10_000, 10_000_000)
_HEADER_FIELDS = ("format", "version", "algorithm", "kcv", "kdf", "aead")


def set_des_parity(key: bytes) -> bytes:
    """Set odd parity on every byte (DES ignores the parity bits; HSMs set them)."""
    return bytes((b & 0xFE) | (1 - (bin(b >> 1).count("1") & 1)) for b in key)


def kcv_hex(algorithm: BlockCipher, value: bytes) -> str:
    """KCV as upper-case hex: E(K, zero block)[:3]."""
    return key_check_value(algorithm, value).hex().upper()


def sm2_check_value(private: int) -> str:
    """The check value of an SM2 key role: the first 3 bytes of its kid, upper-case hex."""
    return key_id(sm2_public_key(private))[:3].hex().upper()


def _check_platform_roles(algorithm: BlockCipher, roles: Iterable[str], source: str) -> None:
    for role in roles:
        if role in PLATFORM_CIPHER_ROLES and algorithm is not BlockCipher.SM4:
            raise KeyFileError(
                f"{source}: platform key {role} is an SM4 key (national e-card derivation); "
                "put it in an SM4 key set"
            )


@dataclass(frozen=True)
class MasterKey:
    """One master key: value (never in repr), key version, KCV."""

    value: bytes = field(repr=False)
    version: int
    kcv: str

    @classmethod
    def create(cls, algorithm: BlockCipher, value: bytes, version: int = 1) -> MasterKey:
        if len(value) != KEY_LENGTH:
            raise SecurityModuleError(f"master key must be {KEY_LENGTH} bytes, got {len(value)}")
        if not 0 <= version <= 0xFF:
            raise SecurityModuleError(f"key version {version} is not one byte")
        return cls(bytes(value), version, kcv_hex(algorithm, value))


def _parse_pin(pin: str) -> str:
    if not (4 <= len(pin) <= 12 and pin.isascii() and pin.isdigit()):
        raise SecurityModuleError("SAM PIN must be 4..12 decimal digits")
    return pin


@dataclass
class KeySet:
    """Master keys of one issuer/profile plus the SAM's PIN, SM2 key and certificate."""

    algorithm: BlockCipher
    keys: dict[str, MasterKey]
    sam_pin: str = field(default=DEFAULT_SAM_PIN, repr=False)
    sm2_private: int | None = field(default=None, repr=False)
    certificate: bytes | None = field(default=None, repr=False)
    sm2_keys: dict[str, int] = field(default_factory=dict, repr=False)
    """Role -> SM2 private key of the platform roles (``SM2_KEY_ROLES``), not the SAM key."""

    def __repr__(self) -> str:
        kcvs = ", ".join(f"{role}={key.kcv}" for role, key in self.keys.items())
        roles = "".join(f", {role}" for role in self.sm2_keys)
        return (
            f"KeySet({self.algorithm.name}, {len(self.keys)} keys: {kcvs}; "
            f"sm2={'yes' if self.sm2_private else 'no'}{roles})"
        )

    __str__ = __repr__

    # -- creation ----------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        roles: Iterable[str] = DEFAULT_ROLES,
        algorithm: BlockCipher = BlockCipher.SM4,
        *,
        version: int = 1,
        sam_pin: str = DEFAULT_SAM_PIN,
        with_sm2: bool = True,
        sam_serial: bytes = DEFAULT_SAM_SERIAL,
        issuer_id: bytes = DEFAULT_ISSUER_ID,
        not_before: dt.date | None = None,
        validity_years: int = 10,
    ) -> KeySet:
        """Fresh random master keys (``secrets``); 3DES keys get odd DES parity. Roles of
        ``SM2_KEY_ROLES`` get a fresh SM2 key; the platform data keys need SM4."""
        roles = tuple(roles)
        _check_platform_roles(algorithm, roles, "KeySet.generate")
        keys: dict[str, MasterKey] = {}
        sm2_keys: dict[str, int] = {}
        for role in roles:
            if role in SM2_KEY_ROLES:
                sm2_keys[role] = sm2_generate_private()
                continue
            value = secrets.token_bytes(KEY_LENGTH)
            if algorithm is BlockCipher.TDES:
                value = set_des_parity(value)
            keys[role] = MasterKey.create(algorithm, value, version)
        if not keys and not sm2_keys:
            raise SecurityModuleError("KeySet.generate needs at least one role")
        private = sm2_generate_private() if with_sm2 else None
        certificate = None
        if private is not None:
            start = not_before or dt.date.today()
            certificate = build_certificate(
                private,
                subject=sam_serial,
                issuer=issuer_id,
                not_before=start,
                not_after=start.replace(year=start.year + validity_years),
            )
        log.debug("generated %s key set with %d keys", algorithm.name, len(keys))
        return cls(algorithm, keys, _parse_pin(sam_pin), private, certificate, sm2_keys)

    # -- access ------------------------------------------------------------------------

    def key(self, role: str, version: int | None = None) -> MasterKey:
        """The master key of ``role``; UnknownKeyRole if absent or of another version."""
        try:
            master = self.keys[role]
        except KeyError:
            raise UnknownKeyRole(f"key set has no master key for role {role!r}") from None
        if version is not None and master.version != version:
            raise UnknownKeyRole(
                f"key {role}: version {version} requested, key set holds version {master.version}"
            )
        return master

    def sm2_key(self, role: str) -> int:
        """The SM2 private key of a platform role; UnknownKeyRole if absent."""
        try:
            return self.sm2_keys[role]
        except KeyError:
            raise UnknownKeyRole(f"key set has no SM2 key for role {role!r}") from None

    def key_check_values(self) -> dict[str, str]:
        """Role -> KCV of every master key, and of every SM2 role (the first 3 kid bytes)."""
        values = {role: key.kcv for role, key in self.keys.items()}
        values.update((role, sm2_check_value(d)) for role, d in self.sm2_keys.items())
        return values

    # -- plaintext dictionary (payload of the encrypted file; `keys import`) -----------

    def to_plain_dict(self) -> dict[str, Any]:
        """All secrets in clear as a JSON-able dict. Handle with care."""
        return {
            "format": PLAIN_FORMAT,
            "algorithm": self.algorithm.value,
            "keys": {
                role: {"value": key.value.hex().upper(), "version": key.version, "kcv": key.kcv}
                for role, key in self.keys.items()
            },
            "sam_pin": self.sam_pin,
            "sm2_private": None if self.sm2_private is None else f"{self.sm2_private:064X}",
            "certificate": None if self.certificate is None else self.certificate.hex().upper(),
            "sm2_keys": {role: f"{d:064X}" for role, d in self.sm2_keys.items()},
        }

    @classmethod
    def from_plain_dict(cls, data: Mapping[str, Any], source: str = "key data") -> KeySet:
        """Build from :meth:`to_plain_dict` output (also accepts ``{"keys": {role: hex}}``).

        A ``kcv`` given next to a key is checked. Errors name the source and the role only.
        """
        if not isinstance(data, Mapping):
            raise KeyFileError(f"{source}: expected a JSON object with 'algorithm' and 'keys'")
        try:
            algorithm = BlockCipher(str(data.get("algorithm", "sm4")).lower())
        except ValueError:
            raise KeyFileError(f"{source}: algorithm must be 'sm4' or '3des'") from None
        raw_keys = data.get("keys", {})
        sm2_keys = _sm2_keys(data.get("sm2_keys", {}), source)
        if not isinstance(raw_keys, Mapping) or not (raw_keys or sm2_keys):
            raise KeyFileError(f"{source}: 'keys' must be a non-empty object role -> key")
        _check_platform_roles(algorithm, (str(role) for role in raw_keys), source)
        keys: dict[str, MasterKey] = {}
        for role, entry in raw_keys.items():
            if isinstance(entry, str):
                entry = {"value": entry}
            if not isinstance(entry, Mapping):
                raise KeyFileError(f"{source}: key {role} must be hex or an object")
            value = _hex_field(entry.get("value"), f"{source}: key {role} value")
            try:
                master = MasterKey.create(algorithm, value, int(entry.get("version", 1)))
            except (SecurityModuleError, ValueError, TypeError):
                raise KeyFileError(
                    f"{source}: key {role} must be {KEY_LENGTH} bytes with a one-byte version"
                ) from None
            expected = entry.get("kcv")
            if expected is not None and str(expected).upper() != master.kcv:
                raise KeyFileError(
                    f"{source}: key {role} KCV {master.kcv} does not match the stated {expected}"
                )
            keys[str(role)] = master
        private = data.get("sm2_private")
        cert = data.get("certificate")
        try:
            pin = _parse_pin(str(data.get("sam_pin", DEFAULT_SAM_PIN)))
        except SecurityModuleError as exc:
            raise KeyFileError(f"{source}: {exc}") from None
        sm2_private = None
        if private is not None:
            sm2_private = int.from_bytes(_hex_field(private, f"{source}: sm2_private"), "big")
            if not 1 <= sm2_private < SM2P256V1.n - 1:
                raise KeyFileError(f"{source}: sm2_private is not a valid SM2 private key")
        certificate = None if cert is None else _hex_field(cert, f"{source}: certificate")
        return cls(algorithm, keys, pin, sm2_private, certificate, sm2_keys)

    # -- encrypted file ----------------------------------------------------------------

    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        *,
        kdf: str = "scrypt",
        scrypt_n: int = DEFAULT_SCRYPT_N,
        pbkdf2_iterations: int = DEFAULT_PBKDF2_ITERATIONS,
    ) -> None:
        """Write the encrypted key file (mode 0600, atomic replace)."""
        salt = secrets.token_bytes(16)
        if kdf == "scrypt":
            kdf_params: dict[str, Any] = {"name": "scrypt", "n": scrypt_n, "r": 8, "p": 1}
        elif kdf == "pbkdf2-sha256":
            kdf_params = {"name": "pbkdf2-sha256", "iterations": pbkdf2_iterations}
        else:
            raise KeyFileError(f"unknown KDF {kdf!r}; use 'scrypt' or 'pbkdf2-sha256'")
        kdf_params["salt"] = _b64(salt)
        _check_kdf(kdf_params, str(path))
        nonce = secrets.token_bytes(12)
        header = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "algorithm": self.algorithm.value,
            "kcv": self.key_check_values(),
            "kdf": kdf_params,
            "aead": {"name": "AES-256-GCM", "nonce": _b64(nonce)},
        }
        key = _derive_file_key(passphrase, kdf_params, salt)
        payload = json.dumps(self.to_plain_dict(), separators=(",", ":")).encode()
        ciphertext = AESGCM(key).encrypt(nonce, payload, _aad(header))
        document = dict(header, ciphertext=_b64(ciphertext))
        write_private_file(path, json.dumps(document, indent=2).encode() + b"\n")
        log.debug("wrote key file %s (%d keys)", path, len(self.keys))

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str | bytes) -> KeySet:
        """Read and decrypt a key file; KeyFileError on a wrong passphrase or any tampering."""
        source = str(path)
        document = _read_document(path)
        kdf_params = document["kdf"]
        salt = _check_kdf(kdf_params, source)
        aead = document["aead"]
        if not isinstance(aead, Mapping) or aead.get("name") != "AES-256-GCM":
            raise KeyFileError(f"key file {source}: AEAD must be AES-256-GCM")
        nonce = _b64_field(aead.get("nonce"), f"key file {source}: aead.nonce")
        ciphertext = _b64_field(document.get("ciphertext"), f"key file {source}: ciphertext")
        key = _derive_file_key(passphrase, kdf_params, salt)
        header = {name: document[name] for name in _HEADER_FIELDS}
        try:
            payload = AESGCM(key).decrypt(nonce, ciphertext, _aad(header))
        except (InvalidTag, ValueError):
            raise KeyFileError(
                f"key file {source}: wrong passphrase, or the file was modified"
            ) from None
        try:
            plain = parse_json(payload)
        except ValueError:
            raise KeyFileError(f"key file {source}: decrypted payload is not JSON") from None
        keyset = cls.from_plain_dict(plain, f"key file {source}")
        if (
            keyset.key_check_values() != document["kcv"]
            or keyset.algorithm.value != document["algorithm"]
        ):
            raise KeyFileError(f"key file {source}: clear KCVs/algorithm disagree with the keys")
        log.debug("loaded key file %s (%d keys)", source, len(keyset.keys))
        return keyset


def check_roles(roles: Iterable[str], custom: Iterable[str] = ()) -> None:
    """Refuse role names that are neither standard (``STANDARD_KEY_SPECS``, the e-card
    platform's ``PLATFORM_ROLES``) nor in ``custom`` (the roles of a custom profile): a typo
    would otherwise give a key set that fails only at the card. :class:`UnknownKeyRole` names
    every unknown role and the closest standard name."""
    known = (*STANDARD_KEY_SPECS, *PLATFORM_ROLES)
    allowed = set(known) | set(custom)
    unknown = [str(role) for role in roles if role not in allowed]
    if not unknown:
        return
    hints = []
    for role in unknown:
        close = difflib.get_close_matches(role, sorted(known), n=1)
        shown = role if len(role) <= 40 else f"{role[:40]}..."
        hints.append(f"{shown!r}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise UnknownKeyRole(
        f"unknown key role {', '.join(hints)}; the standard roles are listed in docs/keys.md "
        "(a custom profile's own role: --custom-role NAME)"
    )


def read_key_check_values(path: str | os.PathLike[str]) -> tuple[BlockCipher, dict[str, str]]:
    """Algorithm and role -> KCV from a key file's clear header (no passphrase, unauthenticated)."""
    document = _read_document(path)
    return BlockCipher(document["algorithm"]), {str(k): str(v) for k, v in document["kcv"].items()}


def write_private_file(path: str | os.PathLike[str], content: bytes) -> None:
    """Write ``content`` to ``path`` readable by the owner only (0600), replacing atomically
    and durably (:func:`healthcard_apdu.fileio.write_file`)."""
    write_file(path, content)


# -- helpers ---------------------------------------------------------------------------


def _sm2_keys(raw: object, source: str) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise KeyFileError(f"{source}: 'sm2_keys' must be an object role -> hex private key")
    out: dict[str, int] = {}
    for role, value in raw.items():
        if role not in SM2_KEY_ROLES:
            raise KeyFileError(f"{source}: sm2_keys role {role!r} is not one of {SM2_KEY_ROLES}")
        private = int.from_bytes(_hex_field(value, f"{source}: sm2_keys {role}"), "big")
        if not 1 <= private < SM2P256V1.n - 1:
            raise KeyFileError(f"{source}: sm2_keys {role} is not a valid SM2 private key")
        out[str(role)] = private
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_field(value: object, label: str) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{label} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{label} is not base64") from None


def _hex_field(value: object, label: str) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{label} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{label} is not hex") from None


def _aad(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"key file {source}: cannot read ({exc.strerror})") from None
    try:
        document = parse_json(raw)  # binary, UTF-16, too deep...: all ValueError
    except ValueError as exc:
        raise KeyFileError(f"key file {source}: not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise KeyFileError(f"key file {source}: format is not {FILE_FORMAT!r}")
    if document.get("version") != FILE_VERSION:
        raise KeyFileError(
            f"key file {source}: version {repr(document.get('version'))[:20]} unsupported")
    missing = [name for name in (*_HEADER_FIELDS, "ciphertext") if name not in document]
    if missing:
        raise KeyFileError(f"key file {source}: missing {', '.join(missing)}")
    algorithm = document["algorithm"]
    if not isinstance(algorithm, str) or algorithm not in {c.value for c in BlockCipher}:
        raise KeyFileError(f"key file {source}: unknown algorithm {str(algorithm)[:20]!r}")
    kcv = document["kcv"]
    if not isinstance(kcv, dict) or not all(isinstance(v, str) for v in kcv.values()):
        raise KeyFileError(f"key file {source}: kcv must be an object of role -> hex")
    return document


def _check_kdf(params: object, source: str) -> bytes:
    """Validate KDF parameters (bounded, so a crafted file cannot exhaust memory); the salt."""
    if not isinstance(params, Mapping):
        raise KeyFileError(f"key file {source}: kdf must be an object")
    salt = _b64_field(params.get("salt"), f"key file {source}: kdf.salt")
    if len(salt) < 16:
        raise KeyFileError(f"key file {source}: kdf.salt must be at least 16 bytes")
    name = params.get("name")
    if name == "scrypt":
        n, r, p = params.get("n"), params.get("r"), params.get("p")
        ok = (
            isinstance(n, int)
            and _SCRYPT_N_RANGE[0] <= n <= _SCRYPT_N_RANGE[1]
            and n & (n - 1) == 0
            and r == 8
            and isinstance(p, int)
            and 1 <= p <= _SCRYPT_MAX_P
        )
        if not ok:
            raise KeyFileError(
                f"key file {source}: scrypt parameters n={str(n)[:20]} r={str(r)[:20]} "
                f"p={str(p)[:20]} out of range (n power of two in 2^10..2^18, r=8, p 1..2)"
            )
    elif name == "pbkdf2-sha256":
        iterations = params.get("iterations")
        if not (isinstance(iterations, int) and _PBKDF2_RANGE[0] <= iterations <= _PBKDF2_RANGE[1]):
            raise KeyFileError(
                f"key file {source}: pbkdf2 iterations {str(iterations)[:20]} out of range "
                "(10^4..10^7)")
    else:
        raise KeyFileError(f"key file {source}: unknown KDF {name!r}")
    return salt


def _derive_file_key(passphrase: str | bytes, params: Mapping[str, Any], salt: bytes) -> bytes:
    try:
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    except UnicodeEncodeError:  # e.g. non-UTF-8 bytes in the environment variable
        raise KeyFileError("the key-file passphrase is not valid UTF-8 text") from None
    if not secret:
        raise KeyFileError("the key-file passphrase must not be empty")
    if params["name"] == "scrypt":
        return Scrypt(salt=salt, length=32, n=params["n"], r=params["r"], p=params["p"]).derive(
            secret
        )
    return PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=salt, iterations=params["iterations"]
    ).derive(secret)
