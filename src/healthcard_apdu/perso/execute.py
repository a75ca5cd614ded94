"""Run a personalization plan over any transport, with progress and read-back verification.

* The card factor comes from the ATR by the profile's card-product rule (``[product]
  factor_rule``, default the first 8 historical bytes), or is given (``card_factor``); a warm
  reset first gives a clean session (current DF = MF, security states 0).
* An issued or partly personalized card is refused (:class:`CardNotBlank`) unless ``erase``
  is set; then the card factor is first **confirmed** with INTERNAL AUTHENTICATE (no try
  counter; the configured rule, then the other known rules; :func:`check_card_factor`), and
  only then the MF master key authenticates (FMCOS form, once, never retried) and ERASE DF
  returns the card to the blank state. No candidate confirmed: :class:`FactorNotConfirmed`
  before any try is spent. A blank card needs no erase (its MF has no key: 6A88).
  One recovery path serves ``personalize(erase=True)``, :func:`erase_card` and the batch
  issuer: a card torn after its MF key file was created but before the MF master key was
  written (nothing can authenticate its erase) gets that master key first (plain WRITE KEY,
  still allowed in the issuance state), then is erased with it.
* Every step's status word is checked; a refused EXTERNAL AUTHENTICATE stops at once with the
  SW and the tries left (:class:`AuthenticationRefused`); each read-back must return exactly the
  bytes written (:class:`ReadBackMismatch`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.card.factor import (
    FactorConfirmation,
    FactorStatus,
    confirm_card_factor,
    skipped_confirmation,
)
from healthcard_apdu.model import CardData
from healthcard_apdu.perso.errors import (
    AuthenticationRefused,
    CardNotBlank,
    EraseRefused,
    PersoError,
    ReadBackMismatch,
    StepFailed,
)
from healthcard_apdu.perso.minimum import Cost, minimum_cost
from healthcard_apdu.perso.plan import Plan, Step, build_plan, erase_steps
from healthcard_apdu.perso.profile import Profile, access_kind, resident_from
from healthcard_apdu.security import (
    CardFactors,
    FactorRule,
    KeySpec,
    SecurityModule,
    card_factor_from_atr,
    factor_candidates,
)
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.base import ForwardingTransport, Transport, TransportError
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.trace import Range, Tracer

__all__ = [
    "CountingTransport",
    "PersoResult",
    "Progress",
    "card_factor_of",
    "check_card_factor",
    "erase_card",
    "execute_plan",
    "factor_rule_of",
    "personalize",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
"""``progress(done, total, step_name)`` after each step."""

#: SWs of EXTERNAL AUTHENTICATE with the MF master key that mean "the card has no such key":
#: a blank card, or one torn before its MF master key was written.
_NO_KEY = frozenset({0x6A88, 0x6A82})
#: WRITE KEY answers when the MF has no key file at all: nothing was written.
_NO_KEY_FILE = frozenset({0x6A82, 0x6A88})


class CountingTransport(ForwardingTransport):
    """Counts APDUs and bytes in both directions; the wrapped transport stays the caller's."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner, owns_inner=False)
        self.apdus = 0
        self.sent = 0
        self.received = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.apdus += 1
        self.sent += len(apdu)
        response = self.inner.transmit(apdu)
        self.received += len(response)
        return response


@dataclass(frozen=True)
class PersoResult:
    """What a personalization did (no secrets)."""

    profile: str
    card_factor: str
    chip_serial: str
    erased: bool
    steps: int
    apdus: int
    bytes_sent: int
    bytes_received: int
    seconds: float
    plan_apdus: int
    plan_bytes: int
    minimum: Cost
    phases: dict[str, float] = field(default_factory=dict)
    read_back: int = 0
    factor_check: FactorConfirmation | None = None

    @property
    def bytes(self) -> int:
        return self.bytes_sent + self.bytes_received

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "card_factor": self.card_factor,
            "chip_serial": self.chip_serial,
            "erased": self.erased,
            "steps": self.steps,
            "apdus": self.apdus,
            "bytes": self.bytes,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "read_back_steps": self.read_back,
            "seconds": round(self.seconds, 4),
            "phases": {k: round(v, 4) for k, v in self.phases.items()},
            "plan": {"apdus": self.plan_apdus, "bytes": self.plan_bytes},
            "minimum": {"apdus": self.minimum.apdus, "bytes": self.minimum.bytes},
            "factor_check": None if self.factor_check is None else self.factor_check.to_json(),
        }


def historical_of(atr: bytes) -> bytes:
    """The ATR's historical bytes; :class:`PersoError` for an ATR that does not parse."""
    try:
        return parse_atr(atr).historical_bytes
    except AtrError as exc:
        raise PersoError(f"card ATR {atr.hex().upper()}: {exc}") from None


def card_factor_of(atr: bytes, rule: FactorRule | str | None = None) -> bytes:
    """The card factor from an ATR by the card product's ``rule`` (default: the first 8
    historical bytes, docs/spec-choices.md)."""
    historical = b"" if rule is not None and not FactorRule.parse(rule).needs_atr \
        else historical_of(atr)
    try:
        return card_factor_from_atr(historical, *(() if rule is None else (rule,)))
    except SecurityModuleError as exc:
        raise PersoError(f"card ATR {atr.hex().upper()}: {exc}") from None


def factor_rule_of(profile: Profile, card_factor: bytes | None = None) -> FactorRule:
    """The rule to follow: ``fixed`` for a given factor, else the profile's product rule."""
    if card_factor is not None:
        return FactorRule("fixed", value=bytes(card_factor))
    return profile.product.factor_rule


def profile_key_specs(profile: Profile) -> dict[str, KeySpec]:
    """Role -> KeySpec of the profile's keys (its SAM addressing)."""
    return {k.role: k.spec for k in profile.keys}


def internal_key_of(profile: Profile) -> str | None:
    """The role of the profile's internal-authentication key in DDF1 (None: none)."""
    return next((k.role for k in profile.keys if k.type == "internal" and k.df == "DDF1"), None)


def check_card_factor(
    transport: Transport,
    profile: Profile,
    security: SecurityModule,
    *,
    rule: FactorRule,
    confirm: bool = True,
    city_factor: bytes | None = None,
    tracer: Tracer | None = None,
) -> FactorConfirmation:
    """Confirm the card factor of an issued card with the profile's internal key (INTERNAL
    AUTHENTICATE, no try counter) before anything spends a try (erase, verify, batch); see
    :func:`healthcard_apdu.card.factor.confirm_card_factor`. Leaves the MF selected."""
    historical = historical_of(transport.atr()) if rule.needs_atr else b""
    key = internal_key_of(profile)
    if not confirm:
        return skipped_confirmation(rule, historical)
    if key is None:
        return FactorConfirmation(
            FactorStatus.IMPOSSIBLE, rule, factor_candidates(historical, rule),
            reason=f"profile {profile.name} has no internal-authentication key in DDF1")
    channel = Channel(transport, max_command_data=profile.card.max_command_data,
                      max_response=profile.card.max_response, trace=tracer)
    result = confirm_card_factor(channel, security, rule=rule, historical=historical,
                                 city_factor=city_factor, key=key,
                                 key_specs=profile_key_specs(profile))
    channel.send(CommandApdu(0x00, 0xA4, 0x00, 0x00, b"\x3f\x00", name="SELECT 3F00"))
    log.info("card factor: %s", result.message)
    return result


class _Runner:
    """Sends steps over a channel and checks their answers."""

    def __init__(self, channel: Channel, total: int, progress: Progress | None) -> None:
        self.channel = channel
        self.total = total
        self.progress = progress
        self.done = 0
        self.challenge: bytes | None = None
        self.phases: dict[str, float] = {}
        self.read_back = 0

    def send(self, step: Step) -> ResponseApdu:
        """Send one step and return the response (any SW); transport errors name the step."""
        command: CommandApdu | None = step.command
        secret: tuple[Range, ...] = step.secret
        if step.build is not None:
            if self.challenge is None:
                raise StepFailed(step.name, self.done + 1, self.total, None,
                                 "no challenge from the preceding GET CHALLENGE")
            command, secret = step.build(self.challenge)
        assert command is not None
        self.challenge = None
        start = time.perf_counter()
        try:
            response = self.channel.send(command, secret=list(secret))
        except (TransportError, OSError) as exc:  # OSError: e.g. a simulator card pulled out
            raise StepFailed(step.name, self.done + 1, self.total, None,
                             f"{type(exc).__name__}: {exc}") from exc
        finally:
            elapsed = time.perf_counter() - start
            self.phases[step.kind] = self.phases.get(step.kind, 0.0) + elapsed
        log.debug("step %d/%d %s -> %04X", self.done + 1, self.total, step.name, response.sw)
        return response

    def run(self, step: Step) -> ResponseApdu:
        """Send and check a step (SW, read-back data, challenge)."""
        response = self.send(step)
        index = self.done + 1
        ins = step.command.ins if step.command is not None else 0x82
        if step.kind == "authenticate" and response.sw != step.expect_sw:
            raise AuthenticationRefused(step.name, index, self.total, response.sw,
                                        "not retried", ins=ins)
        if response.sw != step.expect_sw:
            raise StepFailed(step.name, index, self.total, response.sw, ins=ins)
        if step.kind == "challenge":
            self.challenge = response.data
        if step.expect_data is not None:
            self.read_back += 1
            if response.data != step.expect_data:
                raise ReadBackMismatch(step.name, index, self.total, response.sw,
                                       _difference(step, response.data), ins=ins)
        self.finish(step)
        return response

    def finish(self, step: Step) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, step.name)


def _difference(step: Step, got: bytes) -> str:
    expected = step.expect_data or b""
    if len(got) != len(expected):
        return f"{step.file}: read {len(got)} bytes, wrote {len(expected)}"
    first = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
    return f"{step.file}: first difference at byte {first} of this read"


def execute_plan(
    transport: Transport,
    plan: Plan,
    *,
    erase: bool = False,
    progress: Progress | None = None,
    tracer: Tracer | None = None,
) -> tuple[_Runner, bool]:
    """Run ``plan`` (and its erase steps first when ``erase``); returns the runner and whether
    an erase happened. Raises on the first failing step."""
    profile = plan.profile
    channel = Channel(transport, max_command_data=profile.card.max_command_data,
                      max_response=profile.card.max_response, trace=tracer)
    total = len(plan.steps) + (len(plan.erase[:3]) if erase else 0)
    runner = _Runner(channel, total, progress)
    erased = False
    if erase:
        erased = _erase(runner, plan)
    first, *rest = plan.steps
    response = runner.send(first)
    if response.sw == 0x6985:
        raise CardNotBlank(
            f"the card is already issued ({first.name} -> 6985); use erase (--erase) to "
            "erase it with the MF master key first"
        )
    if response.sw == 0x6A86 and erase:
        raise CardNotBlank(
            f"the card's MF has files or a key file but no master key ({first.name} -> 6A86 "
            f"after the master key was not found), and profile {profile.name} cannot write "
            "that master key (it is not diversified with the card factor alone, or the "
            "security module cannot give it); this card cannot be erased"
        )
    if response.sw == 0x6A86:
        raise CardNotBlank(
            f"the card is partly personalized: its MF already has files or a key file "
            f"({first.name} -> 6A86); use erase (--erase)"
        )
    if response.sw != first.expect_sw:
        raise StepFailed(first.name, runner.done + 1, runner.total, response.sw, ins=0xE0)
    runner.finish(first)
    for step in rest:
        runner.run(step)
    return runner, erased


def _check_erasable(profile: Profile) -> None:
    """:class:`EraseRefused` when the profile's MF cannot be erased (checked before any APDU)."""
    mf = profile.df("MF")
    if access_kind(mf.erase) == "never" or profile.master_key("MF") is None:
        raise EraseRefused(
            f"profile {profile.name}: the MF erase right is 0x{mf.erase:02X} (never) or "
            "there is no MF master key; this card cannot be erased"
        )


def _erase(runner: _Runner, plan: Plan) -> bool:
    """The erase prelude; False when the card turned out blank (no MF master key)."""
    _check_erasable(plan.profile)
    if not plan.erase:
        raise EraseRefused(f"profile {plan.profile.name}: no erase steps")
    challenge, auth, erase_step, *recovery = plan.erase
    runner.run(challenge)
    response = runner.send(auth)
    if response.sw in _NO_KEY:
        log.debug("erase: %s -> %04X: no MF master key", auth.name, response.sw)
        runner.finish(auth)
        runner.total -= 1  # no ERASE DF with the master key (unless recovered below)
        return _erase_without_master_key(runner, plan, recovery[0] if recovery else None)
    _authenticated_erase(runner, auth, response, erase_step)
    return True


def _authenticated_erase(runner: _Runner, auth: Step, response: ResponseApdu,
                         erase_step: Step) -> None:
    if response.sw != 0x9000:
        raise AuthenticationRefused(auth.name, runner.done + 1, runner.total, response.sw,
                                    "the card's MF master key does not match this key set; "
                                    "not retried", ins=0x82)
    runner.finish(auth)
    runner.run(erase_step)


def _erase_without_master_key(runner: _Runner, plan: Plan, write_master: Step | None) -> bool:
    """The MF has no master key: the card is blank, or an issuance was torn between the MF key
    file and the MF master key, or another issuer left DFs without an MF key file. With a key
    file the master key is written, then the card is erased with it (True); without one, DFs
    of the profile under the MF are erased only if the MF's erase right allows it without a
    key. False when the card is blank; :class:`EraseRefused` when it cannot be made blank."""
    profile = plan.profile
    factor = plan.card_factor.hex().upper()
    select_mf = Step("MF: SELECT 3F00 (erase)", "select", commands.select_fid(0x3F00), df="MF")
    runner.total += 1 + (write_master is not None)
    runner.run(select_mf)
    if write_master is not None:
        response = runner.send(write_master)
        if response.sw == 0x9000:
            runner.finish(write_master)
            challenge, auth, erase_step = plan.erase[:3]
            runner.total += 3
            runner.run(challenge)
            _authenticated_erase(runner, auth, runner.send(auth), erase_step)
            log.info("card %s: torn between the MF key file and master key; recovered", factor)
            return True
        if response.sw not in _NO_KEY_FILE:
            raise EraseRefused(f"card {factor}: the MF has no master key and {write_master.name} "
                               f"was refused with SW {response.sw:04X}; it cannot be erased")
        runner.finish(write_master)
    present = _dfs_under_mf(runner, profile)
    if not present:
        return False  # blank
    # DFs but no MF key file: not this profile's work; erasable only if the MF allows it
    erase = Step("MF: ERASE DF (no MF key file)", "erase", commands.erase_df(), df="MF")
    runner.total += 2
    runner.run(select_mf)
    sw = runner.send(erase).sw
    runner.finish(erase)
    if sw != 0x9000 or _dfs_under_mf(runner, profile):
        raise EraseRefused(f"card {factor}: {', '.join(present)} exist(s) but the MF has no "
                           f"key file, and ERASE DF answered {sw:04X}; the card cannot be "
                           "erased")
    return True


def _dfs_under_mf(runner: _Runner, profile: Profile) -> list[str]:
    """The profile's DFs under the MF that the card has (SELECT by FID from the MF)."""
    present = []
    for df in profile.dfs:
        if df.parent != "MF":
            continue
        step = Step(f"{df.name}: SELECT {df.fid:04X} (is it there?)", "select",
                    commands.select_fid(df.fid), df=df.name)
        runner.total += 1
        if runner.send(step).ok:  # from a DF, its siblings are found by FID too
            present.append(df.name)
        runner.finish(step)
    return present


def personalize(
    transport: Transport,
    profile: Profile,
    resident: CardData | Mapping[str, Any],
    security: SecurityModule,
    *,
    erase: bool = False,
    progress: Progress | None = None,
    tracer: Tracer | None = None,
    read_back: bool = True,
    reset: bool = True,
    card_factor: bytes | None = None,
    confirm_factor: bool = True,
) -> PersoResult:
    """Personalize the card behind ``transport``; see the module docstring.

    ``card_factor`` gives the factor instead of the profile's rule (the rule ``fixed``);
    ``confirm_factor=False`` skips the INTERNAL AUTHENTICATE check before an erase.
    Everything that can be checked without the card (profile, record, security module) is
    checked before the first APDU.
    """
    card = resident_from(resident)
    start = time.perf_counter()
    rule = factor_rule_of(profile, card_factor)
    atr = transport.reset() if reset else transport.atr()
    issue_factor = card_factor_of(atr, rule)
    plan = build_plan(profile, card, issue_factor, security, read_back=read_back)
    counter = CountingTransport(transport)
    factor_check: FactorConfirmation | None = None
    if erase:
        _check_erasable(profile)
        factor_check = check_card_factor(counter, profile, security, rule=rule,
                                         confirm=confirm_factor, tracer=tracer)
        erase_factor = factor_check.factor  # FactorNotConfirmed: nothing was spent
        if erase_factor != issue_factor:
            plan = dataclasses.replace(
                plan, erase=erase_steps(profile, CardFactors(erase_factor), security))
    runner, erased = execute_plan(counter, plan, erase=erase, progress=progress, tracer=tracer)
    seconds = time.perf_counter() - start
    log.info("personalized card %s with profile %s: %d APDUs, %d bytes, %.3f s",
             issue_factor.hex().upper(), profile.name, counter.apdus,
             counter.sent + counter.received, seconds)
    return PersoResult(
        profile=profile.name,
        card_factor=issue_factor.hex().upper(),
        chip_serial=issue_factor.hex().upper(),
        erased=erased,
        steps=runner.done,
        apdus=counter.apdus,
        bytes_sent=counter.sent,
        bytes_received=counter.received,
        seconds=seconds,
        plan_apdus=plan.apdus,
        plan_bytes=plan.bytes,
        minimum=minimum_cost(profile, plan.record or card, read_back=read_back),
        phases=dict(runner.phases),
        read_back=runner.read_back,
        factor_check=factor_check,
    )


def erase_card(
    transport: Transport,
    profile: Profile,
    security: SecurityModule,
    *,
    tracer: Tracer | None = None,
    reset: bool = True,
    card_factor: bytes | None = None,
    confirm_factor: bool = True,
) -> bool:
    """Return an issued or partly personalized card to the blank state: the card factor is
    confirmed with INTERNAL AUTHENTICATE first (:func:`check_card_factor`; nothing confirmed:
    :class:`FactorNotConfirmed`, no try spent), then the MF master key authenticates (FMCOS
    form, never retried) and ERASE DF of the MF follows. False when the card was blank
    already (its MF has no master key)."""
    rule = factor_rule_of(profile, card_factor)
    _check_erasable(profile)
    if reset:
        transport.reset()
    check = check_card_factor(transport, profile, security, rule=rule, confirm=confirm_factor,
                              tracer=tracer)
    factors = CardFactors(check.factor)
    steps = erase_steps(profile, factors, security)
    channel = Channel(CountingTransport(transport), max_command_data=profile.card.max_command_data,
                      max_response=profile.card.max_response, trace=tracer)
    runner = _Runner(channel, len(steps), None)
    plan = Plan(profile, factors.card, None, (), steps)
    return _erase(runner, plan)
