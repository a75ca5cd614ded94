"""Running the suite against a live transport, or again from a recorded transcript.

Live run: one JSONL trace (masked by the tracer) holds everything: a ``conformance`` event with
what was selected, the host-randomness seed and the capabilities, then per case a ``case``
event, the warm reset that starts every case, and its exchanges. Replay: the trace is cut at
the ``case`` events and each case runs against its own :class:`ReplayTransport` segment with
the same seed, so it sends the same commands and gets the recorded answers (and recorded
durations); a divergence is an error of that case only.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from healthcard_apdu import __version__
from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.errors import CardError
from healthcard_apdu.card.factor import (
    FactorNotConfirmed,
    confirm_card_factor,
    skipped_confirmation,
)
from healthcard_apdu.conformance.case import (
    CaseFailure,
    CaseInfo,
    ConformanceError,
    NotApplicable,
    Status,
    get_case,
    select_cases,
)
from healthcard_apdu.conformance.context import (
    SW_OK,
    CardFacts,
    CaseContext,
    Check,
    HostRandom,
    PowerFaults,
    TimedTransport,
    TimingLimits,
    sw_text,
)
from healthcard_apdu.conformance.profile import ProfileInfo
from healthcard_apdu.fileio import open_private, parse_json
from healthcard_apdu.model import ModelError, decode_tlv, item
from healthcard_apdu.security import (
    DEFAULT_FACTOR_RULE,
    CardFactors,
    FactorRule,
    FactorRuleError,
    SecurityModule,
    city_factor_from_region,
)
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.base import ReplayMismatch, Transport, TransportError
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.replay import ReplayTransport, read_trace
from healthcard_apdu.transport.trace import Tracer

Record = dict[str, Any]
META_EVENT = "conformance"
CASE_EVENT = "case"
SETUP_ID = "setup"
REGION_ITEM = "YYCSDM"  # item 57, DDF1/EF05 (free read): its province digits make the city factor


@dataclass
class RunOptions:
    """What to run: ID patterns / groups (empty: all), destructive cases, seed, limits."""

    patterns: Sequence[str] = ()
    groups: Sequence[str] = ()
    destructive: bool = False
    seed: bytes | None = None
    timing: TimingLimits = field(default_factory=TimingLimits)
    factor_rule: FactorRule | None = None
    """The card-factor rule (None: the profile's product rule, else first-8)."""
    confirm_factor: bool = True
    """Confirm the card factor with INTERNAL AUTHENTICATE before any case (no try counter)."""

    def rule(self, profile: ProfileInfo | None) -> FactorRule:
        if self.factor_rule is not None:
            return self.factor_rule
        return profile.factor_rule if profile is not None else DEFAULT_FACTOR_RULE


@dataclass
class CaseResult:
    """The verdict of one case with everything the report shows."""

    info: CaseInfo
    status: Status
    message: str = ""
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exchanges: list[Record] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class SuiteRun:
    """A finished run: identity of card, tool and profile, and the verdicts in run order."""

    mode: str
    tool_version: str
    started: str
    finished: str
    transport: str
    security: str
    algorithm: str
    profile: ProfileInfo | None
    destructive: bool
    seed: str
    atr: str = ""
    card_factor: str = ""
    factor_check: dict[str, Any] | None = None
    region_code: str = ""
    protocol: str = ""
    setup_error: str = ""
    trace_path: str = ""
    setup_exchanges: list[Record] = field(default_factory=list)
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no selected case failed or erred (skipped / not applicable are fine)."""
        return not self.setup_error and not any(r.status.is_problem for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for result in self.results:
            out[result.status.value] += 1
        out["total"] = len(self.results)
        return out

    def verdicts(self) -> dict[str, str]:
        return {r.info.id: r.status.value for r in self.results}


class _TraceSink(io.StringIO):
    """Tracer sink: passes lines on to ``out`` and keeps the records of the current bucket."""

    def __init__(self, out: TextIO | None) -> None:
        super().__init__()
        self._out = out
        self.bucket: list[Record] | None = None

    def write(self, text: str, /) -> int:
        if self._out is not None:
            self._out.write(text)
        if self.bucket is not None:
            self.bucket.extend(json.loads(line) for line in text.splitlines() if line.strip())
        return len(text)

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _setup(channel: Channel, security: SecurityModule, rule: FactorRule, confirm: bool,
           seed: bytes) -> CardFacts:
    """Warm reset, city factor from YYCSDM in DDF1/EF05, then the card factor by the product
    rule, confirmed with INTERNAL AUTHENTICATE (no try counter) before any case can spend a
    try: no candidate confirmed is a setup error and no case runs."""
    atr = channel.reset()
    try:
        historical = parse_atr(atr).historical_bytes
    except AtrError as exc:
        raise ConformanceError(f"the ATR {atr.hex().upper()} does not parse: {exc}") from None
    try:
        rule.factor(historical)
    except SecurityModuleError as exc:
        raise ConformanceError(str(exc)) from None
    region_item = item(REGION_ITEM)
    assert region_item.tag is not None
    for fid in (0x3F00, 0xDDF1, 0xEF05):
        response = channel.send(commands.select_fid(fid))
        if response.sw != SW_OK:
            raise ConformanceError(f"SELECT {fid:04X} answered {sw_text(response.sw)}")
    response = channel.send(commands.read_record_by_tag(region_item.tag, region_item.tlv_length))
    if response.sw != SW_OK:
        raise ConformanceError(
            f"READ RECORD of YYCSDM (tag {region_item.tag:02X}) in DDF1/EF05 answered "
            f"{sw_text(response.sw)}"
        )
    try:
        region = str(decode_tlv(region_item, response.data))
        city = city_factor_from_region(region)
    except (ModelError, SecurityModuleError) as exc:
        raise ConformanceError(f"YYCSDM in DDF1/EF05 is unusable: {exc}") from None
    if confirm:
        check = confirm_card_factor(channel, security, rule=rule, historical=historical,
                                    city_factor=city, rng=HostRandom(seed, SETUP_ID).take)
    else:
        check = skipped_confirmation(rule, historical)
    try:
        card_factor = check.factor
    except FactorNotConfirmed as exc:
        raise ConformanceError(str(exc)) from None
    factors = CardFactors(card_factor, city)
    protocol = channel.transport.protocol or f"T={parse_atr(atr).preferred_protocol}"
    return CardFacts(atr, historical, factors, region, protocol, rule, check)


def _failure_message(checks: Sequence[Check]) -> str:
    for check in checks:
        if not check.ok:
            return f"{check.what}: expected {check.expected}, got {check.actual}"
    return ""


def _verdict(ctx: CaseContext, func: Callable[[CaseContext], None]) -> tuple[Status, str]:
    try:
        func(ctx)
    except CaseFailure as exc:
        if exc.expected or exc.actual:
            ctx.checks.append(Check(str(exc), exc.expected, exc.actual, False))
        return Status.FAILED, str(exc)
    except NotApplicable as exc:
        return Status.NOT_APPLICABLE, str(exc)
    except CardError as exc:
        return Status.FAILED, f"{type(exc).__name__}: {exc}"
    except (TransportError, SecurityModuleError, ModelError, ConformanceError) as exc:
        return Status.ERROR, f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        return Status.ERROR, f"unexpected {type(exc).__name__}: {exc}"
    if ctx.failed:
        return Status.FAILED, _failure_message(ctx.checks)
    return Status.PASSED, ""


def _not_in_profile(info: CaseInfo, profile: ProfileInfo | None) -> str:
    path = info.params.get("file")
    if profile is not None and path is not None and not profile.has_file(path):
        return f"profile {profile.name} has no {path}"
    return ""


@dataclass
class _Engine:
    """Shared per-run state of a live run or a replay."""

    security: SecurityModule
    profile: ProfileInfo | None
    options: RunOptions
    seed: bytes
    tracer: Tracer
    sink: _TraceSink
    faults: PowerFaults | None

    def run_case(self, info: CaseInfo, channel: Channel, timed: TimedTransport,
                 facts: CardFacts) -> CaseResult:
        bucket: list[Record] = []
        self.sink.bucket = bucket
        self.tracer.event(CASE_EVENT, id=info.id)
        start = time.perf_counter()
        ctx = CaseContext(info, channel, timed, self.security, facts,
                          HostRandom(self.seed, info.id), faults=self.faults,
                          timing=self.options.timing, profile=self.profile)
        try:
            self._fresh_session(channel)
        except TransportError as exc:
            status, message = Status.ERROR, f"reset before the case: {exc}"
        else:
            status, message = _verdict(ctx, info.func)
        self.sink.bucket = None
        return CaseResult(info, status, message, ctx.checks, ctx.notes, bucket,
                          time.perf_counter() - start)

    def _fresh_session(self, channel: Channel) -> None:
        """Warm reset; a card that lost its power in the previous case is powered again."""
        try:
            channel.reset()
        except TransportError:
            if self.faults is None:
                raise
            self.faults.restore()
            channel.reset(cold=True)

    def skipped(self, info: CaseInfo, reason: str, status: Status = Status.SKIPPED) -> CaseResult:
        return CaseResult(info, status, reason)


def _plan(cases: Sequence[CaseInfo], destructive: bool) -> list[tuple[CaseInfo, str]]:
    """Each case with the reason it is skipped ("" = run it)."""
    return [
        (c, "" if destructive or not c.destructive else "destructive: run with --destructive")
        for c in cases
    ]


def _guard(profile: ProfileInfo | None, destructive: bool) -> None:
    if destructive and profile is not None and profile.production:
        raise ConformanceError(
            f"refusing destructive cases: profile {profile.name} is marked production"
        )


def run_suite(
    transport: Transport,
    security: SecurityModule,
    *,
    profile: ProfileInfo | None,
    options: RunOptions | None = None,
    faults: PowerFaults | None = None,
    trace: str | Path | TextIO | None = None,
) -> SuiteRun:
    """Run the selected cases against ``transport``; the whole exchange goes to ``trace``.

    Raises :class:`ConformanceError` before sending anything when destructive cases are asked
    for on a production profile, or the selection matches nothing.
    """
    options = options or RunOptions()
    _guard(profile, options.destructive)
    cases = select_cases(options.patterns, options.groups)
    seed = options.seed or secrets.token_bytes(16)
    stream: TextIO | None
    owned = isinstance(trace, str | Path)
    stream = open_private(trace) if isinstance(trace, str | Path) else trace
    try:
        return _run_live(transport, security, profile, options, faults, seed, cases, stream,
                         str(trace) if owned else "")
    finally:
        if owned and stream is not None:
            stream.close()


def _meta(run: SuiteRun, cases: Sequence[CaseInfo], options: RunOptions,
          faults: bool) -> dict[str, str | bool]:
    return {
        "tool": "healthcard-apdu",
        "version": __version__,
        "seed": run.seed,
        "cases": ",".join(c.id for c in cases),
        "destructive": options.destructive,
        "power_faults": faults,
        "profile": run.profile.name if run.profile else "",
        "profile_sha256": run.profile.sha256 if run.profile else "",
        "timing": json.dumps(options.timing.limits_ms, sort_keys=True),
        "samples": str(options.timing.samples),
        "factor_rule": str(options.rule(run.profile)),
        "confirm_factor": options.confirm_factor,
        "transport": run.transport,
        "security": run.security,
        "algorithm": run.algorithm,
        "started": run.started,
    }


def _new_run(mode: str, transport: str, security: SecurityModule, profile: ProfileInfo | None,
             destructive: bool, seed: bytes, trace_path: str) -> SuiteRun:
    return SuiteRun(mode, __version__, _now(), "", transport, security.name,
                    security.algorithm.name, profile, destructive, seed.hex().upper(),
                    trace_path=trace_path)


def _identify(run: SuiteRun, facts: CardFacts) -> None:
    run.atr = facts.atr.hex().upper()
    run.card_factor = facts.factors.card.hex().upper()
    run.factor_check = None if facts.factor_check is None else facts.factor_check.to_json()
    run.region_code = facts.region_code
    run.protocol = facts.protocol or ""


def _run_live(transport: Transport, security: SecurityModule, profile: ProfileInfo | None,
              options: RunOptions, faults: PowerFaults | None, seed: bytes,
              cases: Sequence[CaseInfo], stream: TextIO | None, trace_path: str) -> SuiteRun:
    timed = TimedTransport(transport)
    run = _new_run("live", transport.name, security, profile, options.destructive, seed,
                   trace_path)
    sink = _TraceSink(stream)
    tracer = Tracer(sink)
    tracer.event(META_EVENT, **_meta(run, cases, options, faults is not None))
    engine = _Engine(security, profile, options, seed, tracer, sink, faults)
    channel = Channel(timed, trace=tracer)
    sink.bucket = run.setup_exchanges
    tracer.event(CASE_EVENT, id=SETUP_ID)
    facts: CardFacts | None = None
    try:
        facts = _setup(channel, security, options.rule(profile), options.confirm_factor, seed)
    except (ConformanceError, TransportError) as exc:
        run.setup_error = str(exc)
    sink.bucket = None
    for info, skip in _plan(cases, options.destructive):
        if facts is None:
            run.results.append(engine.skipped(info, f"setup failed: {run.setup_error}",
                                              Status.ERROR))
        elif skip:
            run.results.append(engine.skipped(info, skip))
        elif reason := _not_in_profile(info, profile):
            run.results.append(engine.skipped(info, reason, Status.NOT_APPLICABLE))
        else:
            run.results.append(engine.run_case(info, channel, timed, facts))
    if facts is not None:
        _identify(run, facts)
    run.finished = _now()
    return run


# --- replay ----------------------------------------------------------------------------------


def _segments(records: Sequence[Record]) -> tuple[Record, dict[str, list[Record]]]:
    meta: Record | None = None
    segments: dict[str, list[Record]] = {}
    current: list[Record] | None = None
    for record in records:
        event = record.get("event")
        if event == META_EVENT and meta is None:
            meta = record
        elif event == CASE_EVENT:
            current = segments.setdefault(str(record.get("id", "")), [])
        elif current is not None:
            current.append(record)
    if meta is None:
        raise ConformanceError("the trace has no conformance run header; not a suite transcript")
    return meta, segments


def _meta_options(meta: Mapping[str, Any]) -> RunOptions:
    try:
        limits = {str(k): float(v) for k, v in parse_json(str(meta.get("timing", "{}"))).items()}
        samples = int(str(meta.get("samples", "3")))
        seed = bytes.fromhex(str(meta["seed"]))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConformanceError(f"the trace's run header is malformed: {exc}") from None
    timing = TimingLimits(limits or TimingLimits().limits_ms, samples)
    try:
        rule = FactorRule.parse(str(meta.get("factor_rule", "last-8")))
    except FactorRuleError as exc:
        raise ConformanceError(f"the trace's run header is malformed: {exc}") from None
    return RunOptions(destructive=meta.get("destructive") is True, seed=seed, timing=timing,
                      factor_rule=rule, confirm_factor=meta.get("confirm_factor") is True)


class _ReplayFaults:
    """Power cuts in a replay: the transcript already holds the lost exchange and the reset."""

    def arm_tear(self, *, applies: bool) -> None:
        del applies

    def restore(self) -> None:
        pass


def _replay_channel(segment: Sequence[Record], atr: bytes, tracer: Tracer,
                    name: str) -> tuple[ReplayTransport, TimedTransport, Channel]:
    replay = ReplayTransport.from_records(segment, atr=atr, name=name)
    recorded = [float(r.get("ms", 0.0)) for r in segment if "command" in r]
    timed = TimedTransport(replay, recorded)
    return replay, timed, Channel(timed, trace=tracer)


def replay_suite(
    trace_path: str | Path,
    security: SecurityModule,
    *,
    profile: ProfileInfo | None = None,
    trace: str | Path | TextIO | None = None,
) -> SuiteRun:
    """Run the cases of a recorded run again against its transcript (same seed and limits).

    ``profile``, when given, must be the recorded one (same SHA-256). The new run's exchanges
    go to ``trace``.
    """
    try:
        records = read_trace(trace_path)
    except (OSError, TransportError) as exc:
        raise ConformanceError(f"cannot read the transcript {trace_path}: {exc}") from None
    meta, segments = _segments(records)
    recorded_hash = str(meta.get("profile_sha256", ""))
    if profile is not None and recorded_hash and profile.sha256 != recorded_hash:
        raise ConformanceError(
            f"profile {profile.name} (SHA-256 {profile.sha256[:16]}...) is not the recorded "
            f"profile (SHA-256 {recorded_hash[:16]}...)"
        )
    options = _meta_options(meta)
    ids = [i for i in str(meta.get("cases", "")).split(",") if i]
    cases = [get_case(i) for i in ids]
    owned = isinstance(trace, str | Path)
    stream = open_private(trace) if isinstance(trace, str | Path) else trace
    try:
        return _run_replay(Path(trace_path), security, profile, options, meta, segments, cases,
                           stream, str(trace) if owned else "")
    finally:
        if owned and stream is not None:
            stream.close()


def _recorded_profile(meta: Mapping[str, Any], profile: ProfileInfo | None) -> ProfileInfo | None:
    if profile is not None:
        return profile
    name = str(meta.get("profile", ""))
    if not name:
        return None
    return ProfileInfo(name, "(recorded)", str(meta.get("profile_sha256", "")), False)


def _run_replay(path: Path, security: SecurityModule, profile: ProfileInfo | None,
                options: RunOptions, meta: Mapping[str, Any], segments: Mapping[str, list[Record]],
                cases: Sequence[CaseInfo], stream: TextIO | None, trace_path: str) -> SuiteRun:
    seed = options.seed or b""
    profile = _recorded_profile(meta, profile)
    run = _new_run("replay", f"replay:{path.name}", security, profile, options.destructive, seed,
                   trace_path)
    run.started = str(meta.get("started", run.started))
    sink = _TraceSink(stream)
    tracer = Tracer(sink)
    tracer.event(META_EVENT, **_meta(run, cases, options, meta.get("power_faults") is True))
    faults = _ReplayFaults() if meta.get("power_faults") is True else None
    engine = _Engine(security, profile, options, seed, tracer, sink, faults)
    setup_records = segments.get(SETUP_ID, [])
    atr = next((bytes.fromhex(str(r["atr"])) for r in setup_records if r.get("atr")), b"")
    sink.bucket = run.setup_exchanges
    tracer.event(CASE_EVENT, id=SETUP_ID)
    facts: CardFacts | None = None
    try:
        _, _, channel = _replay_channel(setup_records, atr, tracer, run.transport)
        facts = _setup(channel, security, options.rule(profile), options.confirm_factor, seed)
    except (ConformanceError, TransportError) as exc:
        run.setup_error = str(exc)
    sink.bucket = None
    for info, skip in _plan(cases, options.destructive):
        if facts is None:
            run.results.append(engine.skipped(info, f"setup failed: {run.setup_error}",
                                              Status.ERROR))
        elif skip:
            run.results.append(engine.skipped(info, skip))
        elif info.id not in segments:
            run.results.append(engine.skipped(info, _not_in_profile(info, profile)
                                              or "not in the transcript", Status.NOT_APPLICABLE))
        else:
            replay, timed, channel = _replay_channel(segments[info.id], atr, tracer,
                                                     run.transport)
            result = engine.run_case(info, channel, timed, facts)
            if result.status is not Status.ERROR:
                try:
                    replay.assert_done()
                except ReplayMismatch as exc:
                    result.status, result.message = Status.ERROR, f"replay diverged: {exc}"
            run.results.append(result)
    if facts is not None:
        _identify(run, facts)
    run.finished = _now()
    return run
