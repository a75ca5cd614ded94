"""The e-card platform's operations: derive, issue into a registry, make QR codes.

:class:`EhcPlatform` is what a card-management platform, a hospital window or a self-service
terminal holds: the platform keys behind a security module. :func:`issue_from_identity` is the
one issuance step every flow ends in -- a window that checked an ID card, or the self-service
terminal that read (and authenticated) the holder's Resident Health Card and passes its card
number: derive the master index and e-card ID, record the e-card (linked to the physical card)
in the registry, and return it with its static QR.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from healthcard_apdu.ehc.errors import EhcInputError
from healthcard_apdu.ehc.national import PlatformKeys, master_index, normalize_ehc_id
from healthcard_apdu.ehc.person import Person
from healthcard_apdu.ehc.qrtext import DYNAMIC, STATIC, NationalQr
from healthcard_apdu.ehc.registry import EcardRecord, Registry
from healthcard_apdu.ehc.signed import sign_envelope
from healthcard_apdu.ehc.trust import TrustedKey
from healthcard_apdu.security import SecurityModule, SecurityModuleError

__all__ = [
    "DEFAULT_VALIDITY",
    "EhcPlatform",
    "IssuedCard",
    "issue_from_identity",
]

DEFAULT_VALIDITY = dt.timedelta(seconds=120)
"""Default life of a dynamic or signed code (our choice; the national window is unknown)."""


@dataclass(frozen=True)
class IssuedCard:
    """The result of an issuance: the person, both identifiers, the registry row (None
    without a registry) and whether this call created it."""

    person: Person
    master_index: str
    ehc_id: str
    record: EcardRecord | None
    created: bool

    def static_qr(self) -> NationalQr:
        return NationalQr(self.ehc_id, STATIC)

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person.to_dict(),
            "master_index": self.master_index,
            "ehc_id": self.ehc_id,
            "static_qr": self.static_qr().text(),
            "created": self.created,
            "registry": None if self.record is None else self.record.to_dict(),
        }


class EhcPlatform:
    """Derivation and QR making with the platform keys of one security module."""

    def __init__(
        self,
        keys: PlatformKeys,
        *,
        issuer_code: str | None = None,
        validity: dt.timedelta = DEFAULT_VALIDITY,
    ) -> None:
        if validity <= dt.timedelta(0):
            raise EhcInputError("validity", "must be positive")
        self.keys = keys
        self.issuer_code = issuer_code
        self.validity = validity

    @classmethod
    def from_module(cls, module: SecurityModule, **options: Any) -> EhcPlatform:
        """A platform on the default roles (EHC_SECURITY, EHC_PROTECTION, EHC_SIGNING)."""
        return cls(PlatformKeys(module), **options)

    def __repr__(self) -> str:
        return f"EhcPlatform({self.keys.module.name})"

    # -- identifiers ---------------------------------------------------------------------

    def master_index(self, person: Person) -> str:
        return master_index(person.id_type, person.id_number, person.name).hex().upper()

    def ecard_id(self, person: Person) -> str:
        return self.keys.ecard_id(person)

    def identity_of(self, ehc_id: str, master_index_hex: str) -> tuple[str, str]:
        """ID type and number of an e-card ID, given its master index (the inverse)."""
        if len(master_index_hex) != 64:
            raise EhcInputError("master_index", "must be 64 hex digits")
        try:
            mindex = bytes.fromhex(master_index_hex)
        except ValueError:
            raise EhcInputError("master_index", "must be 64 hex digits") from None
        return self.keys.identity_of(ehc_id, mindex)

    def keys_version(self) -> str | None:
        """``role:KCV`` of the security key (recorded with each issued e-card), if known."""
        try:
            kcv = self.keys.module.key_check_values().get(self.keys.security_role)
        except SecurityModuleError:
            return None
        return None if kcv is None else f"{self.keys.security_role}:{kcv}"

    # -- QR texts ------------------------------------------------------------------------

    def static_qr(self, ehc_id: str) -> NationalQr:
        return NationalQr(normalize_ehc_id(ehc_id), STATIC, None, self.issuer_code)

    def dynamic_qr(
        self,
        ehc_id: str,
        *,
        now: dt.datetime | None = None,
        valid_for: dt.timedelta | None = None,
    ) -> NationalQr:
        """A dynamic code expiring ``valid_for`` (default :attr:`validity`) after ``now``."""
        expiry = (now or dt.datetime.now(dt.UTC)) + (valid_for or self.validity)
        block = self.keys.validity_block(expiry)
        return NationalQr(normalize_ehc_id(ehc_id), DYNAMIC, block, self.issuer_code)

    def signed_qr(
        self,
        ehc_id: str,
        *,
        carry: Literal["dynamic", "static"] = "dynamic",
        now: dt.datetime | None = None,
        valid_for: dt.timedelta | None = None,
        jti: bytes | None = None,
    ) -> str:
        """An EHC1 text carrying the national dynamic (or static) code of ``ehc_id``, valid
        from ``now`` for ``valid_for``, signed with the signing key."""
        moment = now or dt.datetime.now(dt.UTC)
        life = valid_for or self.validity
        if carry == "dynamic":
            national = self.dynamic_qr(ehc_id, now=moment, valid_for=life)
        elif carry == "static":
            national = self.static_qr(ehc_id)
        else:
            raise EhcInputError("carry", f"{carry!r} is not 'dynamic' or 'static'")
        moment = moment.replace(microsecond=0)
        return sign_envelope(
            self.keys, national, issued_at=moment, expires_at=moment + life, jti=jti
        )

    def trust_entry(
        self,
        *,
        issuer: str = "",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> TrustedKey:
        """The trust-list entry of the signing key."""
        return TrustedKey(self.keys.public_key(), issuer, not_before, not_after)


def issue_from_identity(
    platform: EhcPlatform,
    person: Person,
    registry: Registry | None = None,
    *,
    card_number: str | None = None,
    chip_serial: str | None = None,
    terminal: str | None = None,
    now: dt.datetime | None = None,
) -> IssuedCard:
    """Issue the e-card of a verified identity: derive its master index and e-card ID and,
    with a registry, record it linked to the physical card (``card_number`` = KH,
    ``chip_serial``) it was issued from. Issuing the same person again is idempotent.

    The caller has proved who ``person`` is (ID card at a window, or the Resident Health Card
    read and authenticated at a terminal); this function trusts it."""
    if card_number is not None and not card_number.strip():
        raise EhcInputError("card_number", "must not be empty")
    mindex = platform.master_index(person)
    ehc_id = platform.ecard_id(person)
    if registry is None:
        return IssuedCard(person, mindex, ehc_id, None, True)
    record, created = registry.register(
        person,
        mindex,
        ehc_id,
        card_number=card_number,
        chip_serial=chip_serial,
        terminal=terminal,
        keys_version=platform.keys_version(),
        now=now,
    )
    return IssuedCard(person, mindex, ehc_id, record, created)
