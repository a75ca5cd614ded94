"""Verifying a scanned text: national static/dynamic codes and EHC1 envelopes.

=================  =====================================================================
national dynamic   decrypt the validity block with the platform's protection key, then
                   check the window: expired, or expiring further ahead than the policy
                   allows (``bad-validity`` when it is no time under this key)
national static    carries no proof: accepted only against a registry (registered and not
                   revoked), else ``unverifiable``
signed (EHC1)      kid in the trust list (``unknown-issuer``), not revoked
                   (``revoked-key``), SM2 signature (``forged``), the key's window at the issue
                   time (``key-not-valid``), iat/exp with the clock skew (``not-yet-valid``,
                   ``expired``, ``validity-too-long``), revoked e-card or code, and one-time
                   use (``replayed``): in the registry, else in an in-memory replay cache
=================  =====================================================================

With a registry, :meth:`Verifier.verify` also does the registry's part (revoked or unknown
e-card, consumed jti) and records the use, in one transaction: a refused code writes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from healthcard_apdu.crypto import sm2_verify_digest
from healthcard_apdu.ehc.errors import EhcInputError, QrRejected
from healthcard_apdu.ehc.national import CHINA_STANDARD_TIME, PlatformKeys
from healthcard_apdu.ehc.qrtext import SIGNED_PREFIX, NationalQr, parse_national
from healthcard_apdu.ehc.signed import parse_envelope
from healthcard_apdu.ehc.trust import ReplayCache, RevocationList, TrustList
from healthcard_apdu.ehc.uses import UseContext, UseRecord

if TYPE_CHECKING:
    from healthcard_apdu.ehc.registry import EcardRecord, Registry

__all__ = ["Verification", "Verifier", "VerifyPolicy"]


@dataclass(frozen=True)
class VerifyPolicy:
    """Time rules (our choices, docs/ehc.md): the clock skew tolerated both ways, the longest
    signed lifetime (exp - iat), how far ahead a national validity may expire, and whether a
    signed code is good once only."""

    clock_skew: dt.timedelta = dt.timedelta(seconds=30)
    max_signed_lifetime: dt.timedelta = dt.timedelta(minutes=10)
    max_national_validity: dt.timedelta = dt.timedelta(minutes=10)
    one_time: bool = True

    def __post_init__(self) -> None:
        for name in ("clock_skew", "max_signed_lifetime", "max_national_validity"):
            if getattr(self, name) < dt.timedelta(0):
                raise EhcInputError(name, "must not be negative")


@dataclass(frozen=True)
class Verification:
    """A code that verified: its kind (``national-static``, ``national-dynamic``,
    ``signed``), the national text it is or carries, times, signer and jti; with a
    registry, the e-card record and the recorded use."""

    kind: str
    national: NationalQr
    expires_at: dt.datetime | None = None
    issued_at: dt.datetime | None = None
    kid: str | None = None
    issuer: str | None = None
    jti: str | None = None
    card: EcardRecord | None = None
    use: UseRecord | None = None

    @property
    def ehc_id(self) -> str:
        return self.national.ehc_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": True,
            "kind": self.kind,
            "ehc_id": self.ehc_id,
            "code_type": self.national.code_type,
            "national_text": self.national.text(),
            "issued_at": None if self.issued_at is None else self.issued_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "kid": self.kid,
            "issuer": self.issuer,
            "jti": self.jti,
            "card": None if self.card is None else self.card.to_dict(),
            "use": None if self.use is None else self.use.to_dict(),
        }


class Verifier:
    """Verifies scanned texts. ``keys`` (the protection key) is needed for national dynamic
    codes, ``trust_list`` for EHC1 envelopes; ``revocations`` and ``replay_cache`` are
    optional. One verifier may serve many threads."""

    def __init__(
        self,
        *,
        keys: PlatformKeys | None = None,
        trust_list: TrustList | None = None,
        revocations: RevocationList | None = None,
        policy: VerifyPolicy | None = None,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self.keys = keys
        self.trust_list = trust_list
        self.revocations = revocations or RevocationList()
        self.policy = policy or VerifyPolicy()
        self.replay_cache = replay_cache
        self._skew = self.policy.clock_skew.total_seconds()
        self._max_lifetime = self.policy.max_signed_lifetime.total_seconds()
        self._max_ahead = self.policy.max_national_validity.total_seconds()

    def verify(
        self,
        text: str,
        *,
        now: dt.datetime | None = None,
        registry: Registry | None = None,
        use: UseContext | None = None,
    ) -> Verification:
        """Verify ``text`` at ``now`` (default: the current time). :class:`QrFormatError`
        (input) when it is none of the known forms, :class:`QrRejected` with the reason when it
        does not verify. With ``registry`` the registry checks run and ``use`` is recorded."""
        if use is not None and registry is None:
            raise EhcInputError("registry", "recording a use needs a registry")
        moment = now or dt.datetime.now(dt.UTC)
        if moment.tzinfo is None:
            raise EhcInputError("now", "must be an aware datetime")
        stamp = moment.timestamp()
        stripped = text.strip()
        if stripped.startswith(SIGNED_PREFIX):
            result = self._signed(stripped, stamp)
        else:
            result = self._national(parse_national(stripped), stamp, registry is not None)
        if result.ehc_id in self.revocations.ehc_ids:
            raise QrRejected("revoked-card", f"e-card {result.ehc_id[:16]}... is revoked")
        if registry is not None:
            card, record = registry.accept(
                result, use=use, one_time=self.policy.one_time, now=moment
            )
            return replace(result, card=card, use=record)
        if result.jti is not None and self.replay_cache is not None and self.policy.one_time:
            assert result.expires_at is not None
            if not self.replay_cache.check_and_add(
                bytes.fromhex(result.jti), result.expires_at.timestamp() + self._skew, stamp
            ):
                raise QrRejected("replayed", f"code {result.jti} was already used")
        return result

    # -- national ------------------------------------------------------------------------

    def _national(self, qr: NationalQr, stamp: float, with_registry: bool) -> Verification:
        if not qr.dynamic:
            if not with_registry:
                raise QrRejected(
                    "unverifiable",
                    "a static national code carries no proof; check it against a registry",
                )
            return Verification("national-static", qr)
        if self.keys is None:
            raise QrRejected(
                "unverifiable", "a dynamic national code is checked with the protection key"
            )
        assert qr.validity is not None
        epoch = self.keys.validity_epoch(qr.validity)
        left = epoch - stamp
        expiry = dt.datetime.fromtimestamp(epoch, CHINA_STANDARD_TIME)
        if left < -self._skew:
            raise QrRejected("expired", f"the dynamic code expired at {expiry.isoformat()}")
        if left > self._max_ahead + self._skew:
            raise QrRejected(
                "validity-too-long",
                f"the dynamic code expires at {expiry.isoformat()}, more than "
                f"{self.policy.max_national_validity} ahead",
            )
        return Verification("national-dynamic", qr, expires_at=expiry)

    # -- signed --------------------------------------------------------------------------

    def _signed(self, text: str, stamp: float) -> Verification:
        envelope = parse_envelope(text)
        kid = envelope.kid.hex().upper()
        if kid in self.revocations.kids:
            raise QrRejected("revoked-key", f"signing key {kid} is revoked")
        key = None if self.trust_list is None else self.trust_list.get(envelope.kid)
        if key is None:
            raise QrRejected("unknown-issuer", f"signing key {kid} is not in the trust list")
        digest = envelope.digest(key.za)
        if not sm2_verify_digest(key.public_key, digest, envelope.signature):
            raise QrRejected("forged", f"the SM2 signature does not verify under key {kid}")
        claims = envelope.claims()
        issued, expires = claims.issued(), claims.expires()
        if not key.valid_at(issued):
            raise QrRejected(
                "key-not-valid", f"key {kid} was not valid at the issue time {issued.isoformat()}"
            )
        if claims.issued_at > stamp + self._skew:
            raise QrRejected("not-yet-valid", f"issued in the future ({issued.isoformat()})")
        if claims.expires_at < stamp - self._skew:
            raise QrRejected("expired", f"the code expired at {expires.isoformat()}")
        if claims.expires_at - claims.issued_at > self._max_lifetime:
            raise QrRejected(
                "validity-too-long",
                f"valid {claims.expires_at - claims.issued_at} s, more than "
                f"{self.policy.max_signed_lifetime}",
            )
        jti = claims.jti.hex().upper()
        if jti in self.revocations.jtis:
            raise QrRejected("revoked-code", f"code {jti} is revoked")
        return Verification(
            "signed",
            claims.national(),
            expires_at=expires,
            issued_at=issued,
            kid=kid,
            issuer=key.issuer or None,
            jti=jti,
        )
