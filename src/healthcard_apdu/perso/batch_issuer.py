"""Adapter from the personalizer to the batch runner's :class:`CardIssuer` protocol.

``make_card_issuer(profile, keys)`` is the default factory of ``healthcard batch``:
``profile`` is a built-in profile name or a TOML path (None: the national profile); ``keys`` is
an encrypted key file (passphrase from ``HEALTHCARD_KEYS_PASSPHRASE``) or ``pkcs11:LABEL``
(user PIN from ``HEALTHCARD_PKCS11_PIN``).

Batch specifics on top of ``personalize`` / ``erase_card``:

* one issuer serves every reader: only the security module is shared under a lock, so cards in
  different readers are personalized at the same time;
* a lost link during a step (``StepFailed`` without a status word) is raised again as the
  transport error it was, so the runner keeps the half-done card bound to its row
  (needs-erase) instead of failing the row;
* ``erase`` is :func:`~healthcard_apdu.perso.execute.erase_card`, the same recovery path as
  ``personalize --erase``: it also recovers a card torn right after its MF key file was
  created (the MF master key is written first, then the MF is erased with it), and raises
  unless the card ends up blank;
* ``inspect`` of an issued card reports the profile and key-set versions only when the card's
  internal key answers for this key set -- the card-factor confirmation of
  ``perso.execute.check_card_factor`` (a card found complete after a tear is journaled with
  them); the chip serial is the factor the profile's product rule takes from the ATR;
* ``erase`` confirms the card factor with INTERNAL AUTHENTICATE before the MF master key
  spends a try (``erase_card``);
* ``check_record`` lets the batch validation refuse, before anything is issued, a row that
  the profile cannot issue (e.g. no YYCSDM with 2-level keys).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.batch.issuer import CardIdentity, IssueOutcome
from healthcard_apdu.card.factor import FactorStatus
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import DecodeError, decode_tlv, item
from healthcard_apdu.perso.errors import (
    PersoError,
    SecurityModuleUnsuitable,
    StepFailed,
)
from healthcard_apdu.perso.execute import (
    card_factor_of,
    check_card_factor,
    erase_card,
    personalize,
)
from healthcard_apdu.perso.profile import DEFAULT_PROFILE, Profile, check_record, load_profile
from healthcard_apdu.security import (
    CardFactors,
    KeySpec,
    SecurityModule,
)
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.security.session import SessionOps
from healthcard_apdu.transport.base import NoReaderError, Transport, TransportError
from healthcard_apdu.transport.channel import Channel

__all__ = ["PersoCardIssuer", "make_card_issuer"]

PASSPHRASE_ENV = "HEALTHCARD_KEYS_PASSPHRASE"
PKCS11_PIN_ENV = "HEALTHCARD_PKCS11_PIN"
#: CREATE FILE with an invalid type byte: refused in every state, with 6985 only after END
#: ISSUANCE (docs/cos.md §7), so it tells an issued card without changing anything.
ISSUED_PROBE = CommandApdu(0x80, 0xE0, 0x00, 0x00, b"\x00", name="CREATE FILE probe (issued?)")


class _LockedSession:
    """A security-module session whose operations take the module's lock."""

    def __init__(self, inner: SessionOps, lock: threading.RLock) -> None:
        self._inner = inner
        self._lock = lock

    @property
    def cipher(self) -> BlockCipher:
        return self._inner.cipher

    def encrypt(self, data: bytes) -> bytes:
        with self._lock:
            return self._inner.encrypt(data)

    def mac(self, data: bytes, iv: bytes | None = None) -> bytes:
        with self._lock:
            return self._inner.mac(data, iv)


class _SerializedSecurity(SecurityModule):
    """One security module for many reader threads: every call holds one lock, card I/O
    does not."""

    def __init__(self, inner: SecurityModule) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.RLock()

    @property
    def algorithm(self) -> BlockCipher:
        return self.inner.algorithm

    def session(self, key: KeySpec, factors: CardFactors, challenge: bytes) -> SessionOps:
        with self._lock:
            return _LockedSession(self.inner.session(key, factors, challenge), self._lock)

    def external_auth_data(self, key: KeySpec, factors: CardFactors, challenge: bytes,
                           a: bytes) -> bytes:
        with self._lock:
            return self.inner.external_auth_data(key, factors, challenge, a)

    def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
        with self._lock:
            return self.inner.derive_card_key(key, factors)

    def key_check_values(self) -> dict[str, str]:
        with self._lock:
            return self.inner.key_check_values()

    def sign_digest(self, digest: bytes) -> bytes:
        with self._lock:
            return self.inner.sign_digest(digest)

    def certificate(self) -> bytes:
        with self._lock:
            return self.inner.certificate()

    def sm3(self, data: bytes) -> bytes:
        with self._lock:
            return self.inner.sm3(data)

    def close(self) -> None:
        with self._lock:
            self.inner.close()


def _link_error(exc: PersoError) -> TransportError | None:
    """The transport error behind a step that got no answer (card pulled or torn, reader
    unplugged), as the batch runner classifies it; None for any other failure."""
    cause = exc.__cause__
    if not isinstance(exc, StepFailed) or exc.sw is not None:
        return None
    if isinstance(cause, NoReaderError):
        return NoReaderError(str(exc))
    if isinstance(cause, TransportError | OSError):
        return TransportError(str(exc))
    return None


def profile_record_problems(profile: Profile, resident: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Why ``profile`` cannot issue ``resident``: ``(field, reason)`` pairs, where field is the
    item code or file key of the problem (empty when it can). Needs no keys and no card."""
    _card, problems = check_record(profile, resident)
    out = []
    for problem in problems:
        parts = problem.path.split(".")
        out.append((parts[-1] if len(parts) > 1 else problem.path, problem.message))
    return out


class PersoCardIssuer:
    """Issues cards with one profile and one security module; safe for one thread per
    reader (one call at a time per transport; the security module is shared under a lock)."""

    def __init__(self, profile: Profile, security: SecurityModule, *,
                 confirm_factor: bool = True) -> None:
        if security.algorithm is not profile.algorithm:
            raise SecurityModuleUnsuitable(
                f"profile {profile.name} needs {profile.algorithm.name} keys, the key set "
                f"holds {security.algorithm.name} keys")
        self.profile = profile
        self.confirm_factor = confirm_factor
        self.security: SecurityModule = _SerializedSecurity(security)
        kcvs = sorted(self.security.key_check_values().items())
        digest = hashlib.sha256(repr(kcvs).encode()).hexdigest()[:12].upper()
        self.keys_version = f"{security.algorithm.name}:{digest}"

    def check_record(self, resident: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Why this profile cannot issue ``resident`` (see :func:`profile_record_problems`)."""
        return profile_record_problems(self.profile, resident)

    def inspect(self, transport: Transport) -> CardIdentity:
        """Who the card is; for an issued card also its card number and, when its internal
        key answers for this key set, the profile and key-set versions (no try counter is
        touched: INTERNAL AUTHENTICATE)."""
        atr = transport.reset()
        factor = card_factor_of(atr, self.profile.product.factor_rule)
        serial = factor.hex().upper()
        channel = Channel(transport)
        ddf1 = self.profile.df("DDF1") if any(d.name == "DDF1" for d in self.profile.dfs) else None
        if ddf1 is None or not channel.send(commands.select_fid(ddf1.fid)).ok:
            return CardIdentity(serial, serial, issued=False)
        channel.send(commands.select_fid(0x3F00))
        if channel.send(ISSUED_PROBE).sw != 0x6985:
            return CardIdentity(serial, serial, issued=False)
        channel.send(commands.select_fid(ddf1.fid))
        number = self._issuer_item(channel, "KH")
        ours = number is not None and self._holds_our_keys(transport)
        return CardIdentity(serial, serial, issued=True, card_number=number,
                            profile_version=self.profile.name if ours else None,
                            keys_version=self.keys_version if ours else None)

    def _issuer_item(self, channel: Channel, code: str) -> str | None:
        """An item of DDF1/EF05 read by tag (a free read; DDF1 must be current)."""
        it = item(code)
        f = self.profile.file("DDF1/EF05")
        if f is None:
            return None
        read = CommandApdu(0x00, 0xB2, it.tag or 0, (f.sfi << 3), le=256,
                           name=f"READ RECORD {code} by tag")
        response = channel.send(read)
        if not response.ok:
            return None
        try:
            value = decode_tlv(it, response.data)
        except DecodeError:
            return None
        return str(value) or None

    def _holds_our_keys(self, transport: Transport) -> bool:
        """The card factor is confirmed by INTERNAL AUTHENTICATE with the profile's DDF1
        internal key: the card holds keys of this key set (no try counter touched)."""
        try:
            check = check_card_factor(transport, self.profile, self.security,
                                      rule=self.profile.product.factor_rule)
        except SecurityModuleError:
            return False
        return check.status is FactorStatus.CONFIRMED

    def issue(self, transport: Transport, resident: Mapping[str, Any]) -> IssueOutcome:
        try:
            personalize(transport, self.profile, resident, self.security)
        except PersoError as exc:
            lost = _link_error(exc)
            if lost is not None:
                raise lost from exc
            raise
        return IssueOutcome(self.profile.name, self.keys_version)

    def erase(self, transport: Transport) -> None:
        """Make the card blank: the one recovery path of ``personalize --erase`` and
        :func:`erase_card` (a card torn before its MF master key included)."""
        try:
            erase_card(transport, self.profile, self.security,
                       confirm_factor=self.confirm_factor)
        except PersoError as exc:
            lost = _link_error(exc)
            if lost is not None:
                raise lost from exc
            raise


def _security(keys: str | None, profile: Profile) -> SecurityModule:
    if not keys:
        raise PersoError("the batch issuer needs --keys (a key file or pkcs11:LABEL)")
    if keys.startswith("pkcs11:"):
        from healthcard_apdu.security.pkcs11 import Pkcs11SecurityModule

        pin = os.environ.get(PKCS11_PIN_ENV)
        if not pin:
            raise PersoError(f"set {PKCS11_PIN_ENV} to the token's user PIN")
        return Pkcs11SecurityModule(keys.removeprefix("pkcs11:"), pin,
                                    algorithm=profile.algorithm)
    from healthcard_apdu.security import SoftwareSecurityModule

    passphrase = os.environ.get(PASSPHRASE_ENV)
    if not passphrase:
        raise PersoError(f"set {PASSPHRASE_ENV} to the key file's passphrase")
    return SoftwareSecurityModule.from_file(keys, passphrase)


def make_card_issuer(profile: str | None, keys: str | None) -> PersoCardIssuer:
    """Factory for ``healthcard batch --issuer`` (the default)."""
    chosen = load_profile(profile or DEFAULT_PROFILE)
    return PersoCardIssuer(chosen, _security(keys, chosen))
