"""Card-factor confirmation and INTERNAL AUTHENTICATE: never spend a try on a guess.

Which 8 ATR bytes are a card's factor depends on the card product (``security.FactorRule``).
A wrong factor makes every EXTERNAL AUTHENTICATE fail and burns a try each time (a real
reader once burnt 9 tries this way, docs/spec-choices.md). INTERNAL AUTHENTICATE has no try
counter, so it can check a candidate safely: the card answers
fold(E_SK(A || 00*8)) with SK = diversify(IRK_card, Rs), and the security module computes the
same cryptogram from its master key and the candidate factor. Only an equal answer confirms
the factor -- and proves at the same time that the card holds keys of this key set (a genuine
card; a clone or a card of another issuer does not answer right).

Public API (docs/library.md §9):

* :func:`internal_authenticate` -- one INTERNAL AUTHENTICATE in the current DF, checked by the
  security module; returns an :class:`InternalAuthentication` (``genuine`` True/False).
* :func:`confirm_card_factor` -- tries the configured rule's factor, then the other known
  rules' factors, with INTERNAL AUTHENTICATE; returns a :class:`FactorConfirmation` naming the
  candidates, each try and the confirmed one. Sends no EXTERNAL AUTHENTICATE.
* :class:`FactorNotConfirmed` -- raised (by ``FactorConfirmation.factor`` and the callers
  that need a factor) when no candidate was confirmed; before any try is spent.
* :class:`CardNotGenuine` -- raised by ``HealthCard.prove_genuine`` when the card's answer is
  not the security module's.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.card.errors import CardOperationError
from healthcard_apdu.model import DecodeError, LayoutError, decode_tlv, df, ef, item
from healthcard_apdu.model import key as model_key
from healthcard_apdu.security import (
    DEFAULT_FACTOR_RULE,
    KNOWN_FACTOR_RULES,
    STANDARD_KEY_SPECS,
    CardFactors,
    FactorCandidate,
    FactorRule,
    KeySpec,
    SecurityModule,
    city_factor_from_region,
    external_auth_cryptogram,
    factor_candidates,
)
from healthcard_apdu.security.errors import (
    SamCommandError,
    SecurityModuleError,
    UnknownKeyRole,
    UnsupportedOperation,
)
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.channel import Channel

__all__ = [
    "INTERNAL_AUTH_PLAINTEXT",
    "INTERNAL_KEY",
    "CardNotGenuine",
    "FactorConfirmation",
    "FactorNotConfirmed",
    "FactorStatus",
    "FactorTry",
    "InternalAuthentication",
    "confirm_card_factor",
    "internal_authenticate",
    "skipped_confirmation",
]

log = logging.getLogger(__name__)

INTERNAL_KEY = "IRK_DDF1"
"""The internal-authentication key (docs/reference/healthcard-layout.md §3.2, §3.7)."""
INTERNAL_AUTH_PLAINTEXT = bytes.fromhex("1122334455667788")
"""Default ``A`` of INTERNAL AUTHENTICATE (the constant HDOS uses with the RK keys)."""

_CHALLENGE_LENGTH = 8
_ISSUER_EF = "DDF1/EF05"
_CITY_ITEM = "YYCSDM"
#: SAM answers meaning "no such key in the module".
_SAM_NO_KEY = frozenset({0x6A88, 0x6A82})


class FactorStatus(enum.StrEnum):
    """Outcome of :func:`confirm_card_factor`."""

    CONFIRMED = "confirmed"
    """A candidate's INTERNAL AUTHENTICATE answer matched the security module's."""
    NOT_CONFIRMED = "not-confirmed"
    """Every candidate was tried and none matched: wrong keys, or a factor no rule gives."""
    IMPOSSIBLE = "impossible"
    """No check possible (no internal key in the module or on the card): the rule is followed."""
    OFF = "off"
    """Confirmation turned off by the caller: the rule is followed."""


@dataclass(frozen=True)
class InternalAuthentication:
    """One INTERNAL AUTHENTICATE and its check by the security module.

    ``challenge`` is Rs, ``plaintext`` A; ``response`` the card's 8 bytes (empty when ``sw``
    is not 9000). ``genuine`` is True only when the card answered exactly the cryptogram the
    security module computed for ``factor`` (and ``city_factor``).
    """

    key: str
    factor: bytes
    city_factor: bytes | None
    challenge: bytes
    plaintext: bytes
    sw: int
    response: bytes
    genuine: bool

    @property
    def answered(self) -> bool:
        return self.sw == 0x9000

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "factor": self.factor.hex().upper(),
                "challenge": self.challenge.hex().upper(), "sw": f"{self.sw:04X}",
                "genuine": self.genuine}


def _expected_cryptogram(
    security: SecurityModule, spec: KeySpec, factors: CardFactors, challenge: bytes,
    plaintext: bytes,
) -> bytes:
    session = security.session(spec, factors, challenge)
    return external_auth_cryptogram(session, plaintext)


def internal_authenticate(
    channel: Channel,
    security: SecurityModule,
    factors: CardFactors,
    *,
    key: str = INTERNAL_KEY,
    key_specs: Mapping[str, KeySpec] = STANDARD_KEY_SPECS,
    plaintext: bytes = INTERNAL_AUTH_PLAINTEXT,
    rng: Callable[[int], bytes] = os.urandom,
) -> InternalAuthentication:
    """INTERNAL AUTHENTICATE ``00 88 00 ref 11 Rs || A || version`` with ``key`` in the
    current DF (the caller selects the key's DF, DDF1 for IRK_DDF1), checked by ``security``.

    Rs is fresh from ``rng``. The security module computes its cryptogram *before* the card
    is asked, so a module without the key (:class:`UnknownKeyRole`, a PSAM answering 6A88 ...)
    raises its :class:`SecurityModuleError` and sends nothing. A card status word other than
    9000 is returned in the result (``genuine`` False), not raised. No try counter exists
    for this command: nothing on the card is spent.
    """
    try:
        spec = key_specs[key]
    except KeyError:
        raise UnknownKeyRole(f"no SAM key specification for {key}") from None
    card_key = model_key(key)
    challenge = bytes(rng(_CHALLENGE_LENGTH))
    expected = _expected_cryptogram(security, spec, factors, challenge, plaintext)
    data = challenge + bytes(plaintext) + bytes((spec.version,))
    response: ResponseApdu = channel.send(
        commands.internal_authenticate(card_key.card_key_ref, data)
    )
    genuine = response.sw == 0x9000 and response.data == expected
    return InternalAuthentication(key, factors.card, factors.city, challenge, bytes(plaintext),
                                  response.sw, response.data if response.ok else b"", genuine)


@dataclass(frozen=True)
class FactorTry:
    """One candidate tried with INTERNAL AUTHENTICATE (``matched``: the answers agreed)."""

    candidate: FactorCandidate
    matched: bool
    sw: int

    def to_json(self) -> dict[str, Any]:
        return {**self.candidate.to_json(), "matched": self.matched, "sw": f"{self.sw:04X}"}


@dataclass(frozen=True)
class FactorConfirmation:
    """What :func:`confirm_card_factor` found (no secrets: factors are public ATR bytes).

    ``rule`` is the configured rule; ``candidates`` what it and the other known rules give
    (configured first); ``tries`` the INTERNAL AUTHENTICATEs sent; ``confirmed`` the candidate
    whose answer matched. ``reason`` says why confirmation was impossible.
    """

    status: FactorStatus
    rule: FactorRule
    candidates: tuple[FactorCandidate, ...]
    tries: tuple[FactorTry, ...] = ()
    confirmed: FactorCandidate | None = None
    reason: str = ""
    key: str = INTERNAL_KEY
    city_factor: bytes | None = field(default=None, repr=False)

    @property
    def configured(self) -> FactorCandidate:
        """The candidate of the configured rule."""
        return self.candidates[0]

    @property
    def by_other_rule(self) -> bool:
        """Confirmed, but not with the configured rule's factor."""
        return self.confirmed is not None and self.confirmed is not self.candidates[0]

    @property
    def factor(self) -> bytes:
        """The factor to diversify with: the confirmed one; the configured rule's when
        confirmation was impossible or off. :class:`FactorNotConfirmed` when none matched."""
        if self.confirmed is not None:
            return self.confirmed.factor
        if self.status is FactorStatus.NOT_CONFIRMED:
            raise FactorNotConfirmed(self)
        return self.configured.factor

    @property
    def message(self) -> str:
        """One line for people (the CLI prints it; ``doctor`` too)."""
        names = ", ".join(c.label for c in self.candidates)
        if self.status is FactorStatus.CONFIRMED:
            assert self.confirmed is not None
            text = (f"card factor {self.confirmed.label} confirmed by INTERNAL AUTHENTICATE "
                    f"with {self.key}")
            if self.by_other_rule:
                configured = self.configured.factor.hex().upper()
                text += (f"; the configured rule {self.rule} ({configured}) was not confirmed: "
                         "set the card product's factor rule")
            return text
        if self.status is FactorStatus.NOT_CONFIRMED:
            return (f"card factor not confirmed: INTERNAL AUTHENTICATE with {self.key} matched "
                    f"none of the candidates {names}; no EXTERNAL AUTHENTICATE was sent, no try "
                    "spent. The key set does not belong to this card, or the card product takes "
                    "its factor from other bytes (give the factor rule or the card factor)")
        if self.status is FactorStatus.IMPOSSIBLE:
            return (f"card factor cannot be confirmed ({self.reason}); following the card "
                    f"product's rule {self.configured.label} without a check")
        return f"card-factor confirmation is off; following the rule {self.configured.label}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "rule": str(self.rule),
            "key": self.key,
            "candidates": [c.to_json() for c in self.candidates],
            "tries": [t.to_json() for t in self.tries],
            "confirmed": None if self.confirmed is None else self.confirmed.to_json(),
            "factor": None if self.status is FactorStatus.NOT_CONFIRMED
            else self.factor.hex().upper(),
            "reason": self.reason,
            "message": self.message,
        }


class FactorNotConfirmed(CardOperationError):
    """No card-factor candidate was confirmed; raised before any authentication try is spent.
    ``confirmation`` holds the candidates and the tries."""

    def __init__(self, confirmation: FactorConfirmation) -> None:
        super().__init__(confirmation.message)
        self.confirmation = confirmation


class CardNotGenuine(CardOperationError):
    """The card's INTERNAL AUTHENTICATE answer is not the security module's (a clone, a card
    of another key set), or the card cannot prove itself at all."""

    def __init__(self, message: str, result: InternalAuthentication | None = None) -> None:
        super().__init__(message)
        self.result = result


def _select_key_df(channel: Channel, df_name: str) -> int:
    """SELECT from the MF down to ``df_name`` by FID; the SW of the first refusal, or 9000."""
    path = [df(df_name)]
    while path[0].parent is not None:
        path.insert(0, df(path[0].parent))
    for node in path:
        response = channel.send(commands.select_fid(node.fid))
        if response.sw != 0x9000:
            return response.sw
    return 0x9000


def _read_city_factor(channel: Channel) -> tuple[bytes | None, str]:
    """City factor from YYCSDM of DDF1/EF05 (a free READ RECORD by tag; DDF1 is current)."""
    target = ef(_ISSUER_EF)
    city = item(_CITY_ITEM)
    assert city.tag is not None
    selected = channel.send(commands.select_fid(target.fid))
    if selected.sw != 0x9000:
        return None, f"{_ISSUER_EF} cannot be selected (SW {selected.sw:04X})"
    response = channel.send(commands.read_record_by_tag(city.tag, city.tlv_length))
    if response.sw != 0x9000:
        return None, f"{_ISSUER_EF} item 57 YYCSDM cannot be read (SW {response.sw:04X})"
    try:
        return city_factor_from_region(str(decode_tlv(city, response.data))), ""
    except (DecodeError, SecurityModuleError) as exc:
        return None, f"{_ISSUER_EF} item 57 YYCSDM gives no city factor ({exc})"


def confirm_card_factor(
    channel: Channel,
    security: SecurityModule,
    *,
    rule: FactorRule | str = DEFAULT_FACTOR_RULE,
    historical: bytes | None = None,
    city_factor: bytes | None = None,
    key: str = INTERNAL_KEY,
    key_specs: Mapping[str, KeySpec] = STANDARD_KEY_SPECS,
    other_rules: tuple[FactorRule, ...] = KNOWN_FACTOR_RULES,
    rng: Callable[[int], bytes] = os.urandom,
) -> FactorConfirmation:
    """Confirm the card factor with INTERNAL AUTHENTICATE before any try is spent.

    The candidates are what ``rule`` gives for the ATR's historical bytes (``historical``, or
    parsed from ``channel.atr()``), then what the ``other_rules`` give. The key's DF is selected
    from the MF (DDF1 stays current afterwards: the caller's selection is gone), the city
    factor is read from YYCSDM in DDF1/EF05 when the key needs it and ``city_factor`` is not
    given, then each candidate is tried until one matches. Only INTERNAL AUTHENTICATE (no try
    counter) is sent -- never EXTERNAL AUTHENTICATE.

    Returns ``CONFIRMED`` (the matching candidate), ``NOT_CONFIRMED`` (none matched: the
    caller must not authenticate; ``.factor`` raises :class:`FactorNotConfirmed`) or
    ``IMPOSSIBLE`` (the module or the card has no internal key, the card has no DDF1, the city
    code is unreadable ...; ``.factor`` is the configured rule's). Raises
    :class:`~healthcard_apdu.security.FactorRuleError` when the configured rule does not apply
    to the ATR, transport errors as they are.
    """
    rule = FactorRule.parse(rule)
    if historical is None:
        try:
            historical = parse_atr(channel.atr()).historical_bytes
        except AtrError:
            if rule.needs_atr:
                raise
            historical = b""
    candidates = factor_candidates(historical, rule, other_rules)

    def impossible(reason: str, tries: tuple[FactorTry, ...] = ()) -> FactorConfirmation:
        result = FactorConfirmation(FactorStatus.IMPOSSIBLE, rule, candidates, tries,
                                    reason=reason, key=key, city_factor=city_factor)
        log.info("%s", result.message)
        return result

    spec = key_specs.get(key)
    if spec is None:
        return impossible(f"no SAM key specification for {key}")
    try:
        key_df = model_key(key).df
    except LayoutError:
        return impossible(f"the layout has no key {key}")
    sw = _select_key_df(channel, key_df)
    if sw != 0x9000:
        return impossible(f"{key_df} cannot be selected (SW {sw:04X}); a blank card?")
    if spec.levels == 2 and city_factor is None:
        city_factor, why = _read_city_factor(channel)
        if city_factor is None:
            return impossible(why)
        # back to the key's DF as the current file context (the EF selection is harmless)
    tries: list[FactorTry] = []
    for candidate in candidates:
        try:
            result = internal_authenticate(
                channel, security, CardFactors(candidate.factor, city_factor if spec.levels == 2
                                               else None),
                key=key, key_specs=key_specs, rng=rng)
        except (UnknownKeyRole, UnsupportedOperation) as exc:
            return impossible(f"the security module has no {key}: {exc}", tuple(tries))
        except SamCommandError as exc:
            if exc.sw not in _SAM_NO_KEY:
                raise
            return impossible(f"the security module has no {key} (SAM SW {exc.sw:04X})",
                              tuple(tries))
        if not result.answered:
            return impossible(f"the card has no usable internal key: INTERNAL AUTHENTICATE "
                              f"answered {result.sw:04X}", tuple(tries))
        tries.append(FactorTry(candidate, result.genuine, result.sw))
        if result.genuine:
            confirmation = FactorConfirmation(FactorStatus.CONFIRMED, rule, candidates,
                                              tuple(tries), candidate, key=key,
                                              city_factor=city_factor)
            if confirmation.by_other_rule:
                log.info("%s", confirmation.message)
            return confirmation
    confirmation = FactorConfirmation(FactorStatus.NOT_CONFIRMED, rule, candidates,
                                      tuple(tries), key=key, city_factor=city_factor)
    log.info("%s", confirmation.message)
    return confirmation


def skipped_confirmation(
    rule: FactorRule | str, historical: bytes, key: str = INTERNAL_KEY
) -> FactorConfirmation:
    """The result when confirmation is off: the configured rule's factor, no check."""
    parsed = FactorRule.parse(rule)
    return FactorConfirmation(FactorStatus.OFF, parsed, factor_candidates(historical, parsed, ()),
                              key=key)
