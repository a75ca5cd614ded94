"""Adapter from the personalizer to the batch runner's :class:`CardIssuer` protocol.

``make_card_issuer(profile, keys)`` is the default factory of ``healthcard batch``:
``profile`` is a built-in profile name or a TOML path (None: the national profile); ``keys`` is
an encrypted key file (passphrase from ``HEALTHCARD_KEYS_PASSPHRASE``) or ``pkcs11:LABEL``
(user PIN from ``HEALTHCARD_PKCS11_PIN``).
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
from healthcard_apdu.model import DecodeError, decode_tlv, item
from healthcard_apdu.perso.errors import PersoError, SecurityModuleUnsuitable
from healthcard_apdu.perso.execute import card_factor_of, erase_card, personalize
from healthcard_apdu.perso.profile import DEFAULT_PROFILE, Profile, load_profile
from healthcard_apdu.security import SecurityModule
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.channel import Channel

__all__ = ["PersoCardIssuer", "make_card_issuer"]

PASSPHRASE_ENV = "HEALTHCARD_KEYS_PASSPHRASE"
PKCS11_PIN_ENV = "HEALTHCARD_PKCS11_PIN"
#: CREATE FILE with an invalid type byte: refused in every state, with 6985 only after END
#: ISSUANCE (docs/cos.md §7), so it tells an issued card without changing anything.
ISSUED_PROBE = CommandApdu(0x80, 0xE0, 0x00, 0x00, b"\x00", name="CREATE FILE probe (issued?)")


class PersoCardIssuer:
    """Issues cards with one profile and one security module (one call at a time per
    transport; the security module is shared under a lock)."""

    def __init__(self, profile: Profile, security: SecurityModule) -> None:
        if security.algorithm is not profile.algorithm:
            raise SecurityModuleUnsuitable(
                f"profile {profile.name} needs {profile.algorithm.name} keys, the key set "
                f"holds {security.algorithm.name} keys")
        self.profile = profile
        self.security = security
        self._lock = threading.Lock()
        kcvs = sorted(security.key_check_values().items())
        digest = hashlib.sha256(repr(kcvs).encode()).hexdigest()[:12].upper()
        self.keys_version = f"{security.algorithm.name}:{digest}"

    def inspect(self, transport: Transport) -> CardIdentity:
        atr = transport.reset()
        factor = card_factor_of(atr).hex().upper()
        channel = Channel(transport)
        ddf1 = self.profile.df("DDF1") if any(d.name == "DDF1" for d in self.profile.dfs) else None
        if ddf1 is None or not channel.send(commands.select_fid(ddf1.fid)).ok:
            return CardIdentity(factor, factor, issued=False)
        channel.send(commands.select_fid(0x3F00))
        issued = channel.send(ISSUED_PROBE).sw == 0x6985
        return CardIdentity(factor, factor, issued=issued,
                            card_number=self._card_number(channel, ddf1.fid) if issued else None)

    def _card_number(self, channel: Channel, ddf1: int) -> str | None:
        kh = item("KH")
        f = self.profile.file("DDF1/EF05")
        if f is None:
            return None
        channel.send(commands.select_fid(ddf1))
        read = CommandApdu(0x00, 0xB2, kh.tag or 0, (f.sfi << 3), le=256,
                           name="READ RECORD KH by tag")
        response = channel.send(read)
        if not response.ok:
            return None
        try:
            value = decode_tlv(kh, response.data)
        except DecodeError:
            return None
        return str(value) or None

    def issue(self, transport: Transport, resident: Mapping[str, Any]) -> IssueOutcome:
        with self._lock:
            personalize(transport, self.profile, resident, self.security)
        return IssueOutcome(self.profile.name, self.keys_version)

    def erase(self, transport: Transport) -> None:
        with self._lock:
            erase_card(transport, self.profile, self.security)


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
