"""Who may sign EHC1 envelopes, what was revoked, and which codes were already seen.

* :class:`TrustList` -- issuer SM2 public keys (SubjectPublicKeyInfo PEM) keyed by their kid,
  each with an optional validity window: rotating a key = adding the new key and closing the
  old key's window (codes are checked against the key's window at their issue time).
* :class:`RevocationList` -- revoked signing keys (kid), e-cards (ehcId) and single codes (jti).
* :class:`ReplayCache` -- an in-memory one-time-use check for a verifier without a registry.

Both lists are JSON documents (docs/ehc.md §4); loading checks every entry and recomputes every
kid from its PEM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcard_apdu.crypto import DEFAULT_SM2_USER_ID, sm2_za
from healthcard_apdu.ehc.errors import EhcError, EhcInputError
from healthcard_apdu.security import PublicKeyError, key_id, public_key_from_spki, spki_pem

__all__ = [
    "REVOCATIONS_FORMAT",
    "TRUST_LIST_FORMAT",
    "ReplayCache",
    "RevocationList",
    "TrustList",
    "TrustedKey",
    "parse_time",
]

TRUST_LIST_FORMAT = "healthcard-apdu/ehc-trust-list"
REVOCATIONS_FORMAT = "healthcard-apdu/ehc-revocations"
FORMAT_VERSION = 1

Point = tuple[int, int]


def parse_time(value: object, field_name: str) -> dt.datetime | None:
    """An ISO-8601 time with a UTC offset (``None`` / missing stays None)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EhcInputError(field_name, "must be an ISO-8601 time string")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise EhcInputError(field_name, f"{value!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise EhcInputError(field_name, f"{value!r} has no UTC offset")
    return parsed


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _read_json(path: str | os.PathLike[str], expected: str) -> dict[str, Any]:
    source = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EhcInputError(source, f"cannot read ({exc.strerror})") from None
    except ValueError:
        raise EhcInputError(source, "not JSON") from None
    if not isinstance(document, dict) or document.get("format") != expected:
        raise EhcInputError(source, f"format is not {expected!r}")
    if document.get("version") != FORMAT_VERSION:
        raise EhcInputError(source, f"version {document.get('version')!r} is not supported")
    return document


def write_json_atomic(path: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    """Write a JSON document, replacing ``path`` atomically (readable: these are public)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class TrustedKey:
    """One issuer signing key: kid, SM2 public key, issuer name, validity window."""

    public_key: Point
    issuer: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    kid: bytes = field(init=False)
    za: bytes = field(init=False, repr=False, compare=False)
    """Z_A of the key with the default SM2 user ID, computed once (verification reuses it)."""

    def __post_init__(self) -> None:
        for name in ("not_before", "not_after"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise EhcInputError(name, "must be an aware datetime")
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise EhcInputError("not_after", "must be after not_before")
        object.__setattr__(self, "kid", key_id(self.public_key))
        object.__setattr__(self, "za", sm2_za(self.public_key, DEFAULT_SM2_USER_ID))

    @property
    def kid_hex(self) -> str:
        return self.kid.hex().upper()

    def valid_at(self, when: dt.datetime) -> bool:
        """True when ``when`` lies in the key's window."""
        if self.not_before is not None and when < self.not_before:
            return False
        return self.not_after is None or when <= self.not_after

    def pem(self) -> str:
        return spki_pem(self.public_key)

    def to_dict(self) -> dict[str, Any]:
        """The trust-list entry (what ``keys export-public`` prints)."""
        return {
            "kid": self.kid_hex,
            "issuer": self.issuer,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "public_key": self.pem(),
        }

    @classmethod
    def from_dict(cls, entry: object, source: str = "trust-list entry") -> TrustedKey:
        """An entry as :meth:`to_dict` writes it; a stated ``kid`` must match the PEM's."""
        if not isinstance(entry, Mapping):
            raise EhcInputError(source, "must be an object with public_key")
        pem = entry.get("public_key")
        if not isinstance(pem, str):
            raise EhcInputError(f"{source}.public_key", "must be a PEM string")
        try:
            point = public_key_from_spki(pem, f"{source}.public_key")
        except PublicKeyError as exc:
            raise EhcInputError(f"{source}.public_key", str(exc)) from None
        issuer = entry.get("issuer", "")
        if not isinstance(issuer, str):
            raise EhcInputError(f"{source}.issuer", "must be text")
        key = cls(
            point,
            issuer,
            parse_time(entry.get("not_before"), f"{source}.not_before"),
            parse_time(entry.get("not_after"), f"{source}.not_after"),
        )
        stated = entry.get("kid")
        if stated is not None and str(stated).upper() != key.kid_hex:
            raise EhcInputError(
                f"{source}.kid", f"{stated} does not match the public key's kid {key.kid_hex}"
            )
        return key


class TrustList:
    """Trusted issuer keys by kid."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[bytes, TrustedKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: TrustedKey, *, replace: bool = False) -> None:
        """Add a key; an existing kid is replaced only with ``replace`` (e.g. to close its
        window when rotating)."""
        if key.kid in self._keys and not replace:
            raise EhcInputError("kid", f"{key.kid_hex} is already in the trust list")
        self._keys[key.kid] = key

    def remove(self, kid: bytes) -> None:
        self._keys.pop(kid, None)

    def get(self, kid: bytes) -> TrustedKey | None:
        return self._keys.get(kid)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRUST_LIST_FORMAT,
            "version": FORMAT_VERSION,
            "keys": [key.to_dict() for key in self._keys.values()],
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], source: str = "trust list") -> TrustList:
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise EhcInputError(f"{source}.keys", "must be a list of entries")
        trust = cls()
        for index, entry in enumerate(entries):
            key = TrustedKey.from_dict(entry, f"{source}.keys[{index}]")
            if trust.get(key.kid) is not None:
                raise EhcInputError(f"{source}.keys[{index}]", f"kid {key.kid_hex} is listed twice")
            trust.add(key)
        return trust

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustList:
        return cls.from_dict(_read_json(path, TRUST_LIST_FORMAT), str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json_atomic(path, self.to_dict())


def _hex_set(values: object, field_name: str, length: int) -> set[str]:
    if values is None:
        return set()
    if not isinstance(values, list):
        raise EhcInputError(field_name, "must be a list of hex strings")
    out: set[str] = set()
    for value in values:
        text = str(value).upper()
        if len(text) != 2 * length or any(c not in "0123456789ABCDEF" for c in text):
            raise EhcInputError(field_name, f"{value!r} is not {2 * length} hex digits")
        out.add(text)
    return out


@dataclass
class RevocationList:
    """Revoked signing keys (kid, 16 hex), e-cards (ehcId, 64 hex), single codes (jti, 16 hex)."""

    kids: set[str] = field(default_factory=set)
    ehc_ids: set[str] = field(default_factory=set)
    jtis: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REVOCATIONS_FORMAT,
            "version": FORMAT_VERSION,
            "kids": sorted(self.kids),
            "ehc_ids": sorted(self.ehc_ids),
            "jtis": sorted(self.jtis),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], source: str = "revocations") -> RevocationList:
        return cls(
            _hex_set(document.get("kids"), f"{source}.kids", 8),
            _hex_set(document.get("ehc_ids"), f"{source}.ehc_ids", 32),
            _hex_set(document.get("jtis"), f"{source}.jtis", 8),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RevocationList:
        return cls.from_dict(_read_json(path, REVOCATIONS_FORMAT), str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json_atomic(path, self.to_dict())


class ReplayCache:
    """Codes (jti) seen by this process until they expire: the one-time-use check of a
    verifier without a registry. Thread-safe; expired entries are purged as it grows."""

    def __init__(self, *, max_entries: int = 1_000_000) -> None:
        self._seen: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, jti: bytes, expires: float, now: float) -> bool:
        """Record ``jti`` (valid until the epoch time ``expires``); False if already seen."""
        with self._lock:
            if jti in self._seen:
                return False
            if len(self._seen) >= self._max:
                self._seen = {k: v for k, v in self._seen.items() if v >= now}
                if len(self._seen) >= self._max:
                    raise EhcError(
                        "replay cache is full of unexpired codes; use a registry for one-time use"
                    )
            self._seen[jti] = expires
            return True
