"""Run a personalization plan over any transport, with progress and read-back verification.

* The card factor comes from the ATR (last 8 historical bytes); a warm reset first gives a
  clean session (current DF = MF, security states 0).
* An issued or partly personalized card is refused (:class:`CardNotBlank`) unless ``erase``
  is set; then the MF master key authenticates (FMCOS form, once, never retried) and ERASE DF
  returns the card to the blank state. A blank card needs no erase (its MF has no key: 6A88).
* Every step's status word is checked; a refused EXTERNAL AUTHENTICATE stops at once with the
  SW and the tries left (:class:`AuthenticationRefused`); each read-back must return exactly the
  bytes written (:class:`ReadBackMismatch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.response import ResponseApdu
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
from healthcard_apdu.perso.plan import Plan, Step, build_plan
from healthcard_apdu.perso.profile import Profile, access_kind, resident_from
from healthcard_apdu.security import SecurityModule, card_factor_from_atr
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
    "erase_card",
    "execute_plan",
    "personalize",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
"""``progress(done, total, step_name)`` after each step."""

#: SWs of EXTERNAL AUTHENTICATE with the MF master key that mean "the card has no such key",
#: i.e. a blank card: nothing to erase.
_NO_KEY = frozenset({0x6A88, 0x6A82})


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
        }


def card_factor_of(atr: bytes) -> bytes:
    """The card factor from an ATR: its last 8 historical bytes (docs/cos.md §1)."""
    try:
        historical = parse_atr(atr).historical_bytes
    except AtrError as exc:
        raise PersoError(f"card ATR {atr.hex().upper()}: {exc}") from None
    try:
        return card_factor_from_atr(historical)
    except SecurityModuleError as exc:
        raise PersoError(f"card ATR {atr.hex().upper()}: {exc}") from None


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
    total = len(plan.steps) + (len(plan.erase) if erase else 0)
    runner = _Runner(channel, total, progress)
    erased = False
    if erase:
        erased = _erase(runner, plan)
        if not erased:
            runner.total -= 1  # the ERASE DF step is skipped on a blank card
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
            "after the master key was not found): an issuance torn before the MF master key "
            "was written; this card cannot be erased"
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


def _erase(runner: _Runner, plan: Plan) -> bool:
    """The erase prelude; False when the card turned out blank (no MF master key)."""
    mf = plan.profile.df("MF")
    if access_kind(mf.erase) == "never" or not plan.erase:
        raise EraseRefused(
            f"profile {plan.profile.name}: the MF erase right is 0x{mf.erase:02X} (never) or "
            "there is no MF master key; this card cannot be erased"
        )
    challenge, auth, erase_step = plan.erase
    runner.run(challenge)
    response = runner.send(auth)
    if response.sw in _NO_KEY:
        log.debug("erase: %s -> %04X: no MF master key, card is blank", auth.name, response.sw)
        runner.finish(auth)
        return False
    if response.sw != 0x9000:
        raise AuthenticationRefused(auth.name, runner.done + 1, runner.total, response.sw,
                                    "the card's MF master key does not match this key set; "
                                    "not retried", ins=0x82)
    runner.finish(auth)
    runner.run(erase_step)
    return True


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
) -> PersoResult:
    """Personalize the card behind ``transport``; see the module docstring.

    Everything that can be checked without the card (profile, record, security module) is
    checked before the first APDU.
    """
    card = resident_from(resident)
    start = time.perf_counter()
    atr = transport.reset() if reset else transport.atr()
    card_factor = card_factor_of(atr)
    plan = build_plan(profile, card, card_factor, security, read_back=read_back)
    counter = CountingTransport(transport)
    runner, erased = execute_plan(counter, plan, erase=erase, progress=progress, tracer=tracer)
    seconds = time.perf_counter() - start
    log.info("personalized card %s with profile %s: %d APDUs, %d bytes, %.3f s",
             card_factor.hex().upper(), profile.name, counter.apdus,
             counter.sent + counter.received, seconds)
    return PersoResult(
        profile=profile.name,
        card_factor=card_factor.hex().upper(),
        chip_serial=card_factor.hex().upper(),
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
    )


def erase_card(
    transport: Transport,
    profile: Profile,
    security: SecurityModule,
    *,
    tracer: Tracer | None = None,
    reset: bool = True,
) -> bool:
    """Return an issued or partly personalized card to the blank state (MF master key
    authentication, FMCOS form, never retried, then ERASE DF of the MF). False when the card
    was blank already (its MF has no master key)."""
    from healthcard_apdu.perso.plan import erase_steps
    from healthcard_apdu.security import CardFactors

    atr = transport.reset() if reset else transport.atr()
    factors = CardFactors(card_factor_of(atr))
    steps = erase_steps(profile, factors, security)
    channel = Channel(CountingTransport(transport), max_command_data=profile.card.max_command_data,
                      max_response=profile.card.max_response, trace=tracer)
    runner = _Runner(channel, len(steps), None)
    plan = Plan(profile, factors.card, None, (), steps)
    return _erase(runner, plan)
