"""What a case works with: the channel, the security module, the card's factors and helpers.

Every helper goes through the run's :class:`~healthcard_apdu.transport.Channel`, whose tracer
records each exchange for the report and the replay transcript. Host randomness (the ``A``
of external authentication, test data) comes from :class:`HostRandom`, seeded per run and case,
so a replay sends byte-identical commands.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.conformance.case import CaseFailure, CaseInfo, NotApplicable
from healthcard_apdu.conformance.profile import ProfileInfo
from healthcard_apdu.model import DF, EF, df, ef, key
from healthcard_apdu.model import KEYS as MODEL_KEYS
from healthcard_apdu.security import STANDARD_KEY_SPECS, CardFactors, KeySpec, SecurityModule
from healthcard_apdu.security.session import SessionOps
from healthcard_apdu.transport.base import ForwardingTransport, Transport
from healthcard_apdu.transport.channel import Channel, SecretSpec

SW_OK = 0x9000
READ_CHUNK = 0x80  # READ BINARY chunk of the traces (00B0 off 80)
#: ``A`` of RK external authentication in HDOS (docs/reference/healthcard-layout.md §3.5);
#: UK keys use random A here.
RK_PLAIN = bytes.fromhex("1122334455667788")


def sw_text(sw: int | None) -> str:
    return "-" if sw is None else f"{sw:04X}"


def _expected_text(expected: int | Collection[int]) -> str:
    if isinstance(expected, int):
        return sw_text(expected)
    return " or ".join(sw_text(sw) for sw in sorted(expected))


class HostRandom:
    """Deterministic host randomness: SHA-256 in counter mode over ``seed || label``."""

    def __init__(self, seed: bytes, label: str) -> None:
        self._base = hashlib.sha256(seed + b"\x00" + label.encode()).digest()
        self._counter = 0

    def take(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._base + self._counter.to_bytes(8, "big")).digest()
        return bytes(out[:n])


class TimedTransport(ForwardingTransport):
    """The run's link: adds up the time spent in transmit (measured, or recorded on replay).

    With ``recorded_ms`` (replay) the durations are the recorded ones, in exchange order, so
    timing cases reach the verdicts of the recorded run.
    """

    def __init__(self, inner: Transport, recorded_ms: Sequence[float] | None = None) -> None:
        super().__init__(inner)
        self.elapsed_ms = 0.0
        self._recorded: Iterator[float] | None = (
            iter(recorded_ms) if recorded_ms is not None else None
        )

    def _account(self, measured_ms: float) -> None:
        if self._recorded is not None:
            measured_ms = next(self._recorded, 0.0)
        self.elapsed_ms += measured_ms

    def transmit(self, apdu: bytes) -> bytes:
        start = time.perf_counter()
        try:
            return self.inner.transmit(apdu)
        finally:
            self._account((time.perf_counter() - start) * 1000)


class PowerFaults(Protocol):
    """Power loss on demand (the simulator in-process); PC/SC readers cannot do this."""

    def arm_tear(self, *, applies: bool) -> None:
        """Cut the power while the next command runs (``applies``: its writes persist)."""
        ...

    def restore(self) -> None:
        """Put the card back so that a cold reset powers it again."""
        ...


class FaultPlanLike(Protocol):
    tear_at: int | None
    tear_applies: bool


class TearableCard(Protocol):
    """What :class:`SimPowerFaults` needs of a card: the simulator's SimCard has it."""

    @property
    def faults(self) -> FaultPlanLike: ...

    @property
    def apdu_count(self) -> int: ...

    def insert(self) -> None: ...


class SimPowerFaults:
    """Power loss for an in-process simulated card (``FaultPlan.tear_at`` the next APDU)."""

    def __init__(self, card: TearableCard) -> None:
        self._card = card

    def arm_tear(self, *, applies: bool) -> None:
        plan = self._card.faults
        plan.tear_at = self._card.apdu_count + 1
        plan.tear_applies = applies

    def restore(self) -> None:
        self._card.insert()


@dataclass(frozen=True)
class CardFacts:
    """What the run learned about the card before the cases (no personal data)."""

    atr: bytes
    historical_bytes: bytes
    factors: CardFactors
    region_code: str
    protocol: str | None


@dataclass(frozen=True)
class TimingLimits:
    """Upper limits in milliseconds for one command of each class (median of the samples)."""

    limits_ms: dict[str, float] = field(
        default_factory=lambda: {
            "select": 300.0,
            "read_record": 300.0,
            "read_binary": 300.0,
            "get_challenge": 300.0,
            "external_authenticate": 500.0,
            "internal_authenticate": 500.0,
            "update_record_sm": 500.0,
            "update_binary": 500.0,
        }
    )
    samples: int = 3

    def limit(self, name: str) -> float:
        return self.limits_ms[name]


@dataclass
class Check:
    """One comparison a case made."""

    what: str
    expected: str
    actual: str
    ok: bool


class CaseContext:
    """Everything one case may use; see the module documentation."""

    def __init__(
        self,
        info: CaseInfo,
        channel: Channel,
        transport: TimedTransport,
        security: SecurityModule,
        facts: CardFacts,
        random: HostRandom,
        *,
        faults: PowerFaults | None = None,
        timing: TimingLimits | None = None,
        profile: ProfileInfo | None = None,
    ) -> None:
        self.info = info
        self.channel = channel
        self.transport = transport
        self.security = security
        self.facts = facts
        self.random = random
        self.faults = faults
        self.timing = timing or TimingLimits()
        self.profile = profile
        self.checks: list[Check] = []
        self.notes: list[str] = []

    # --- verdict helpers -----------------------------------------------------------------

    @property
    def failed(self) -> bool:
        return any(not c.ok for c in self.checks)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def check(self, what: str, expected: object, actual: object, ok: bool | None = None) -> bool:
        """Record a comparison (``ok`` defaults to ``expected == actual``); returns ok."""
        passed = (expected == actual) if ok is None else ok
        self.checks.append(Check(what, str(expected), str(actual), passed))
        return passed

    def expect_sw(
        self, what: str, response: ResponseApdu, expected: int | Collection[int]
    ) -> bool:
        wanted = {expected} if isinstance(expected, int) else set(expected)
        return self.check(
            what, _expected_text(expected), sw_text(response.sw), response.sw in wanted
        )

    def require(self, what: str, expected: object, actual: object, ok: bool | None = None) -> None:
        """Like :meth:`check`, but a mismatch ends the case."""
        if not self.check(what, expected, actual, ok):
            raise CaseFailure(f"{what}: expected {expected}, got {actual}")

    def not_applicable(self, reason: str) -> None:
        raise NotApplicable(reason)

    def need_files(self, *paths: str) -> None:
        """Not applicable when the profile does not create one of these EFs."""
        for path in paths:
            if self.profile is not None and not self.profile.has_file(path):
                raise NotApplicable(f"profile {self.profile.name} has no {path}")

    def file_size(self, target: EF) -> int:
        """Size of a transparent EF: the profile's when it sets one, else the layout's."""
        facts = self.profile.file(target.path) if self.profile is not None else None
        if facts is not None and facts.size:
            return facts.size
        if target.size is None:
            raise ValueError(f"{target.path} is not a transparent file")
        return target.size

    # --- sending ---------------------------------------------------------------------------

    def send(self, cmd: CommandApdu, *, secret: SecretSpec = ()) -> ResponseApdu:
        return self.channel.send(cmd, secret=secret)

    def timed(self, cmd: CommandApdu) -> tuple[ResponseApdu, float]:
        """Send and return the response with the link time in ms (GET RESPONSE included)."""
        before = self.transport.elapsed_ms
        response = self.channel.send(cmd)
        return response, self.transport.elapsed_ms - before

    def call(self, cmd: CommandApdu, what: str = "") -> ResponseApdu:
        """Send; anything but 9000 ends the case as a failure (a step the case relies on)."""
        response = self.channel.send(cmd)
        if response.sw != SW_OK:
            step = what or cmd.label
            raise CaseFailure(
                f"{step}: {cmd.label} answered {sw_text(response.sw)}",
                expected="9000",
                actual=sw_text(response.sw),
            )
        return response

    def reset(self, *, cold: bool = False) -> bytes:
        return self.channel.reset(cold)

    # --- files -----------------------------------------------------------------------------

    @staticmethod
    def df_path(name: str) -> list[DF]:
        """DFs from the MF down to ``name``."""
        path = [df(name)]
        while path[0].parent is not None:
            path.insert(0, df(path[0].parent))
        return path

    def select_df(self, name: str) -> None:
        """Select the DF from the MF down (clears the security state of every DF on the way)."""
        for node in self.df_path(name):
            self.call(commands.select_fid(node.fid), f"select {node.name}")

    def select_ef(self, target: EF | str, *, from_mf: bool = True) -> EF:
        """Select an EF; with ``from_mf`` its DF path first (security state cleared)."""
        target = ef(target) if isinstance(target, str) else target
        if from_mf:
            self.select_df(target.df)
        self.call(commands.select_fid(target.fid), f"select {target.path}")
        return target

    # --- keys and authentication -----------------------------------------------------------

    @staticmethod
    def key_spec(role: str) -> KeySpec:
        return STANDARD_KEY_SPECS[role]

    @staticmethod
    def df_key(df_name: str, role: str) -> str:
        """The key of a DF with a model role (``read``, ``update``, ``secure_messaging``...)."""
        for k in MODEL_KEYS:
            if k.df == df_name and k.role == role:
                return k.name
        raise NotApplicable(f"the layout has no {role} key in {df_name}")

    def challenge(self) -> bytes:
        data = self.call(commands.get_challenge(8), "GET CHALLENGE").data
        if len(data) != 8:
            raise CaseFailure(
                f"GET CHALLENGE returned {len(data)} bytes", expected="8", actual=str(len(data))
            )
        return data

    def auth_plain(self, role: str) -> bytes:
        """The ``A`` sent with a key: HDOS's constant for RK keys, random bytes otherwise."""
        return RK_PLAIN if role.startswith("RK") else self.random.take(8)

    def auth_data(self, role: str, challenge: bytes, plain: bytes | None = None) -> bytes:
        a = self.auth_plain(role) if plain is None else plain
        return self.security.external_auth_data(
            self.key_spec(role), self.facts.factors, challenge, a
        )

    def auth_command(self, role: str, challenge: bytes) -> CommandApdu:
        data = self.auth_data(role, challenge)
        return commands.external_authenticate(key(role).card_key_ref, data)

    def authenticate(self, role: str) -> ResponseApdu:
        """GET CHALLENGE + EXTERNAL AUTHENTICATE with ``role`` in the current DF (any SW)."""
        return self.send(self.auth_command(role, self.challenge()))

    def login(self, role: str) -> None:
        """Authenticate; anything but 9000 ends the case."""
        response = self.authenticate(role)
        if response.sw != SW_OK:
            raise CaseFailure(
                f"external authentication with {role} answered {sw_text(response.sw)}",
                expected="9000",
                actual=sw_text(response.sw),
            )

    def enter(self, df_name: str, role: str | None) -> None:
        """Select the DF (state 0) and, with ``role``, authenticate into its follow-up state."""
        self.select_df(df_name)
        if role is not None:
            self.login(role)

    def session(self, role: str) -> SessionOps:
        """GET CHALLENGE and the session keyed by SK = diversify(role, factors, challenge)."""
        return self.security.session(self.key_spec(role), self.facts.factors, self.challenge())

    # --- reading -----------------------------------------------------------------------------

    def read_record(self, number: int) -> ResponseApdu:
        return self.send(commands.read_record(number))

    def read_records(self, count: int, what: str = "") -> list[bytes]:
        """Records 1..count of the current EF; each must answer 9000."""
        return [
            self.call(commands.read_record(n), what or f"read record {n}").data
            for n in range(1, count + 1)
        ]

    def read_binary(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` of the current EF in trace-sized chunks."""
        out = bytearray()
        while len(out) < length:
            size = min(READ_CHUNK, length - len(out))
            data = self.call(commands.read_binary(offset + len(out), size)).data
            if len(data) != size:
                raise CaseFailure(
                    f"READ BINARY at {offset + len(out)} returned {len(data)} bytes",
                    expected=str(size),
                    actual=str(len(data)),
                )
            out += data
        return bytes(out)
