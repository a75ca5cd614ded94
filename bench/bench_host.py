"""Host cost of the library: reading a whole card through pcscd against raw pyscard sending the
same APDUs, SM2 signatures and verifications per second, and the library's cost per APDU.

    .venv/bin/python bench/bench_host.py [--rounds 30] [--runs 1] [--sm2-seconds 1.5]
                                         [--profile N] [--no-sm2] [--no-read]

Read (needs pcscd with vsmartcard-vpcd; skipped with the reason otherwise): a simulated card
personalized with the sample resident and a simulated PSAM are served on the vpcd readers by a
separate process (``python -m healthcard_apdu sim serve``), so this process does host work only.
Each round, in rotating order:

* ``library``: ``open_card(reader=..., sam_reader=..., sam_pin=...)``, then the timed
  ``conn.card.read_card()`` (the two signed DF03 records' SM2 signatures verified), then close;
* ``library, no verify``: the same with ``read_card(verify=False)``;
* ``raw pyscard``: ``smartcard.scard`` connects to both readers, then the timed loop of
  ``SCardTransmit`` over exactly the APDUs the library sent, then disconnects.

Two more raw variants show what host work costs on this link: a busy wait of the library's CPU
per APDU after each exchange, and as much library-like Python work (lenient decoding of record
items, timed in a hot loop). Each variant is reported by median, lower quartile, minimum and
maximum, with the load average before and after; ``--runs N`` repeats the whole set.

The raw sequence is derived from the library's own trace (a :class:`Tracer` on each channel),
recorded twice: a command byte that differs between the two recordings must come from an earlier
response (a GET CHALLENGE, a SAM cryptogram), directly or through the XOR fold of the health-card
EXTERNAL AUTHENTICATE; the raw loop recomputes those from the responses it gets, as a terminal
must, with the library's ``xor_fold``. Masked trace bytes (the SAM PIN) are filled in with the
PIN, as a terminal would. So the bench follows the library's APDU sequence whatever it is.
Every raw response must have the library's status word, and every response that was the same in
both recordings must be identical.

``--profile N`` adds a cProfile of N library reads through pcscd, summed per layer.
"""

from __future__ import annotations

import argparse
import cProfile
import fcntl
import io
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcard_apdu import model
from healthcard_apdu.app.connect import CardConnection, open_card
from healthcard_apdu.card import HealthCard
from healthcard_apdu.crypto import (
    BlockCipher,
    sm2_backend,
    sm2_generate_private,
    sm2_openssl,
    sm2_public_key,
    sm2_sign,
    sm2_sign_digest,
    sm2_verify,
    sm2_verify_digest,
    sm3,
    xor_fold,
)
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.profile import DEFAULT_PROFILE, load_profile
from healthcard_apdu.security import KeySet, SoftwareSecurityModule
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.keyset import write_private_file
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim import SimCard
from healthcard_apdu.transport import Channel, InProcessTransport, Transport, TransportError
from healthcard_apdu.transport.base import ForwardingTransport
from healthcard_apdu.transport.trace import Range, Tracer, mask_hex

READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
CARD_SERIAL = bytes.fromhex("0081866B00001015")
GOAL_RATIO_VERIFY = 1.05
GOAL_RATIO_NO_VERIFY = 1.02
GOAL_SIGN = 5000.0
GOAL_VERIFY = 2000.0
MIN_SPLICE = 8  # shortest response-derived run of command bytes looked for


# -- SM2 ----------------------------------------------------------------------------------------


def _rate(action: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``action`` over about ``seconds`` (best of three slices)."""
    action()
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            action()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def sm2_figures(seconds: float, out: Callable[[str], None] = print) -> dict[str, float]:
    """SM2 operations per second in this thread (one core): signing (always pure Python),
    verification in pure Python (``backend="python"``) and, where it is usable, in libcrypto
    (what ``sm2_verify`` uses by default then)."""
    d = sm2_generate_private()
    public = sm2_public_key(d)
    digest = sm3(b"bench")
    signature = sm2_sign_digest(d, digest)
    record = bytes(range(256)) * 12  # about the signed part of an ED record (3013 bytes)
    record_signature = sm2_sign(d, record)
    backends = ["python", *(["openssl"] if sm2_backend() == "openssl" else [])]
    out(f"SM2 verification backend in use: {sm2_backend()}"
        + ("" if sm2_backend() == "openssl" else f" (libcrypto: {sm2_openssl.problem()})"))

    def first_use(backend: str) -> float:  # every call a key never seen before
        fresh_keys = [sm2_generate_private() for _ in range(240)]
        fresh_signed = [(sm2_public_key(k), sm2_sign_digest(k, digest)) for k in fresh_keys]
        start = time.perf_counter()
        for pub, sig in fresh_signed:
            sm2_verify_digest(pub, digest, sig, backend=backend)
        return len(fresh_signed) / (time.perf_counter() - start)

    figures = {
        "sign (digest, RFC 6979 nonce)": _rate(
            lambda: sm2_sign_digest(d, digest, deterministic=True), seconds
        ),
        "sign (digest, random nonce)": _rate(lambda: sm2_sign_digest(d, digest), seconds),
    }
    for backend in backends:
        figures[f"verify, {backend} (digest, key seen before)"] = _rate(
            lambda b=backend: sm2_verify_digest(public, digest, signature, backend=b), seconds
        )
        figures[f"verify, {backend} (3 KB record, key seen before)"] = _rate(
            lambda b=backend: sm2_verify(public, record, record_signature, backend=b), seconds
        )
        figures[f"verify, {backend} (digest, first use of a key)"] = first_use(backend)
    for name, value in figures.items():
        goal = GOAL_SIGN if name.startswith("sign") else GOAL_VERIFY
        mark = "" if "first use" in name or "record" in name else f"  (goal >= {goal:,.0f}/s)"
        out(f"SM2 {name:<48} {value:>8,.0f}/s{mark}")
    sign_ms = 1000 / figures["sign (digest, RFC 6979 nonce)"]
    out(f"SM2 one signature (RFC 6979) takes {sign_ms:.3f} ms (once a test asserted < 20 ms)")
    return figures


# -- the test card and the simulator process ------------------------------------------------------


@dataclass
class Setup:
    """A personalized card image and its SAM key file, served by a separate process."""

    workdir: Path
    sam_pin: str
    card_image: Path = field(init=False)
    sam_keys: Path = field(init=False)

    def __post_init__(self) -> None:
        self.card_image = self.workdir / "card.json"
        self.sam_keys = self.workdir / "sam.json"


def make_card(workdir: Path) -> Setup:
    profile = load_profile(DEFAULT_PROFILE)
    keyset = KeySet.generate(algorithm=profile.algorithm)
    setup = Setup(workdir, keyset.sam_pin)
    write_private_file(setup.sam_keys, json.dumps(simulator_sam_document(keyset)).encode())
    card = SimCard.blank(CARD_SERIAL, path=setup.card_image, overwrite=True)
    with SoftwareSecurityModule(keyset) as keys, InProcessTransport(card) as link:
        personalize(link, profile, model.sample_resident(), keys)
    return setup


@contextmanager
def slots_locked() -> Iterator[None]:
    """The vpcd slot locks the tests take (tests/conftest.py), slot 0 then 1."""
    with ExitStack() as stack:
        for slot in (0, 1):
            handle = stack.enter_context(
                open(f"/tmp/healthcard-vpcd-{slot}.lock", "a", encoding="utf-8")
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, handle, fcntl.LOCK_UN)
        yield


@contextmanager
def served(setup: Setup) -> Iterator[None]:
    """``healthcard sim serve`` in another process, the cards in both readers."""
    from healthcard_apdu.transport.pcsc import wait_for_card

    for reader in READERS:
        wait_for_card(reader, present=False, timeout=20)
    server = subprocess.Popen(
        [sys.executable, "-m", "healthcard_apdu", "sim", "serve", "--card",
         str(setup.card_image), "--sam", str(setup.sam_keys)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        for reader in READERS:
            wait_for_card(reader, timeout=20)
        yield
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for reader in READERS:
            wait_for_card(reader, present=False, timeout=20)


# -- recording the library's exchange -------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    link: int  # 0 card, 1 SAM
    name: str
    traced: str  # the command as the trace file has it (secret bytes masked)
    command: bytes  # the bytes sent: the terminal's own secrets (PIN, SAM input) included
    response: bytes


class LinkTracer(Tracer):
    """A :class:`Tracer` (in memory) that also keeps the exchanges of its link in one list."""

    def __init__(self, link: int, log: list[Exchange]) -> None:
        super().__init__(io.StringIO())
        self.link = link
        self.log = log

    def exchange(
        self,
        *,
        name: str,
        command: bytes,
        response: bytes | None,
        ms: float,
        secret: Sequence[Range] = (),
        error: BaseException | None = None,
    ) -> None:
        super().exchange(
            name=name, command=command, response=response, ms=ms, secret=secret, error=error
        )
        if response is None:
            raise TransportError(f"{name}: the link failed while recording ({error})")
        self.log.append(
            Exchange(self.link, name, mask_hex(command, secret), bytes(command), bytes(response))
        )


def connect(setup: Setup) -> CardConnection:
    return open_card(reader=READERS[0], sam_reader=READERS[1], sam_pin=setup.sam_pin)


def record(setup: Setup) -> tuple[list[Exchange], list[str | None]]:
    """The library's exchanges during one ``read_card()`` (both links, in order)."""
    log: list[Exchange] = []
    with connect(setup) as conn:
        assert conn.sam is not None
        conn.card.channel.trace = LinkTracer(0, log)
        conn.sam.channel.trace = LinkTracer(1, log)
        conn.card.read_card()
        protocols = [conn.card.channel.transport.protocol, conn.sam.channel.transport.protocol]
    return log, protocols


# -- the raw sequence -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Splice:
    """Command bytes [at, at+length) = transform(response data of step ``source``)[start:]."""

    at: int
    source: int
    start: int
    length: int
    fold: bool


@dataclass
class RawStep:
    link: int
    name: str
    template: bytes
    splices: list[Splice]
    sw: bytes
    response: bytes | None  # the expected response when it is static, else None


def _candidates(log: Sequence[Exchange], index: int) -> Iterator[tuple[int, bool, bytes]]:
    for source in range(index - 1, -1, -1):
        data = log[source].response[:-2]
        if len(data) >= MIN_SPLICE:
            yield source, False, data
            if len(data) % 2 == 0 and len(data) // 2 >= MIN_SPLICE:
                yield source, True, xor_fold(data)


def _find_splices(log: Sequence[Exchange], index: int, command: bytes,
                  varying: set[int]) -> list[Splice]:
    """Runs of command bytes covering the ``varying`` positions that equal (a transform of)
    an earlier response: the longest run, from the latest response on a tie."""
    splices: list[Splice] = []
    covered: set[int] = set()
    for position in sorted(varying):
        if position in covered:
            continue
        best: Splice | None = None
        for source, fold, data in _candidates(log, index):
            start = data.find(command[position])
            while start >= 0:
                lo, lo_data = position, start
                while lo > 0 and lo_data > 0 and command[lo - 1] == data[lo_data - 1]:
                    lo, lo_data = lo - 1, lo_data - 1
                hi, hi_data = position + 1, start + 1
                while hi < len(command) and hi_data < len(data) and command[hi] == data[hi_data]:
                    hi, hi_data = hi + 1, hi_data + 1
                if hi - lo >= MIN_SPLICE and (best is None or hi - lo > best.length):
                    best = Splice(lo, source, lo_data, hi - lo, fold)
                start = data.find(command[position], start + 1)
        if best is not None:
            splices.append(best)
            covered.update(range(best.at, best.at + best.length))
    return splices


def derive(first: list[Exchange], second: list[Exchange],
           out: Callable[[str], None] = print) -> list[RawStep]:
    """The raw APDU script from two recordings of the same read (see the module docstring)."""
    if [(e.link, e.name) for e in first] != [(e.link, e.name) for e in second]:
        raise RuntimeError("the library sent different command sequences in two recordings")
    steps: list[RawStep] = []
    host_chosen = 0
    for index, (one, two) in enumerate(zip(first, second, strict=True)):
        template, other = one.command, two.command
        if len(template) != len(other):
            raise RuntimeError(f"step {index + 1} {one.name}: the command length changed")
        varying = {i for i in range(len(template)) if template[i] != other[i]}
        splices = _find_splices(first, index, template, varying) if varying else []
        rebuilt = bytearray(other)
        for splice in splices:
            data = second[splice.source].response[:-2]
            data = xor_fold(data) if splice.fold else data
            rebuilt[splice.at:splice.at + splice.length] = data[splice.start:][:splice.length]
        explained = {i for s in splices for i in range(s.at, s.at + s.length)}
        host_chosen += len(varying - explained)
        if any(rebuilt[i] != other[i] for i in explained):
            raise RuntimeError(f"step {index + 1} {one.name}: cannot derive its varying bytes")
        static = one.response == two.response
        steps.append(RawStep(one.link, one.name, template, splices, one.response[-2:],
                             one.response if static else None))
    derived = sum(1 for s in steps if s.splices)
    out(f"raw sequence: {len(steps)} APDUs ({sum(s.link == 0 for s in steps)} card, "
        f"{sum(s.link == 1 for s in steps)} SAM) from the library's trace; {derived} recomputed "
        f"from earlier responses; {host_chosen} host-chosen bytes replayed as recorded")
    return steps


class RawTerminal:
    """Raw pyscard (``smartcard.scard``): both readers connected, the script sent as is."""

    def __init__(self, protocols: Sequence[str | None]) -> None:
        from smartcard import scard

        self.scard = scard
        hr, self.context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hr != scard.SCARD_S_SUCCESS:
            raise TransportError("SCardEstablishContext failed")
        self.handles: list[tuple[Any, int]] = []
        for reader, protocol in zip(READERS, protocols, strict=True):
            wanted = {"T=0": scard.SCARD_PROTOCOL_T0, "T=1": scard.SCARD_PROTOCOL_T1}.get(
                protocol or "", scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            )
            hr, handle, active = scard.SCardConnect(
                self.context, reader, scard.SCARD_SHARE_EXCLUSIVE, wanted
            )
            if hr != scard.SCARD_S_SUCCESS:
                raise TransportError(f"SCardConnect {reader}: {scard.SCardGetErrorMessage(hr)}")
            self.handles.append((handle, active))

    def run(
        self,
        steps: Sequence[RawStep],
        work: float = 0.0,
        marks: list[tuple[float, float]] | None = None,
        python_work: Callable[[], object] | None = None,
    ) -> tuple[float, list[bytes]]:
        """Send the script, with ``work`` seconds of busy CPU after each APDU; (seconds,
        responses). ``marks`` receives (start, end) of every SCardTransmit."""
        transmit = self.scard.SCardTransmit
        clock = time.perf_counter
        handles = self.handles
        responses: list[bytes] = []
        start = time.perf_counter()
        for step in steps:
            command = step.template
            if step.splices:
                buffer = bytearray(command)
                for splice in step.splices:
                    data = responses[splice.source][:-2]
                    if splice.fold:
                        data = xor_fold(data)
                    buffer[splice.at:splice.at + splice.length] = (
                        data[splice.start:splice.start + splice.length]
                    )
                command = bytes(buffer)
            handle, protocol = handles[step.link]
            if marks is None:
                hr, response = transmit(handle, protocol, list(command))
            else:
                sent = clock()
                hr, response = transmit(handle, protocol, list(command))
                marks.append((sent, clock()))
            if hr:
                raise TransportError(f"SCardTransmit {step.name}: 0x{hr & 0xFFFFFFFF:08X}")
            responses.append(bytes(response))
            if python_work is not None:
                python_work()
            elif work:
                until = clock() + work
                while clock() < until:
                    pass
        return time.perf_counter() - start, responses

    def close(self) -> None:
        for handle, _ in self.handles:
            self.scard.SCardDisconnect(handle, self.scard.SCARD_RESET_CARD)
        self.scard.SCardReleaseContext(self.context)


def check_raw(steps: Sequence[RawStep], responses: Sequence[bytes]) -> None:
    for number, (step, response) in enumerate(zip(steps, responses, strict=True), 1):
        if response[-2:] != step.sw or (step.response is not None and response != step.response):
            raise RuntimeError(
                f"raw step {number} {step.name}: got {response.hex().upper()}, the library got "
                f"{(step.response or step.sw).hex().upper()}"
            )


# -- the rounds ----------------------------------------------------------------------------------


def library_read(setup: Setup, verify: bool) -> float:
    with connect(setup) as conn:
        start = time.perf_counter()
        conn.card.read_card(verify=verify)
        return time.perf_counter() - start


def raw_read(steps: Sequence[RawStep], protocols: Sequence[str | None], work: float = 0.0,
             python_work: Callable[[], object] | None = None) -> float:
    terminal = RawTerminal(protocols)
    try:
        seconds, responses = terminal.run(steps, work, python_work=python_work)
    finally:
        terminal.close()
    check_raw(steps, responses)
    return seconds


class _Script(Transport):
    """Answers recorded responses in order (zero latency): the library's own CPU cost."""

    def __init__(self, responses: list[bytes], atr: bytes) -> None:
        self.responses = responses
        self.position = 0
        self._atr = atr

    @property
    def name(self) -> str:
        return "script"

    def transmit(self, apdu: bytes) -> bytes:
        response = self.responses[self.position]
        self.position += 1
        return response

    def atr(self) -> bytes:
        return self._atr

    def reset(self, cold: bool = False) -> bytes:
        return self._atr

    def close(self) -> None:
        pass


def in_process_cost(
    log: Sequence[Exchange], atr: bytes, pin: str, verify: bool, repeat: int = 60
) -> float:
    """Seconds of library CPU for one read_card() over a zero-latency link (best of ``repeat``).

    The same read replayed from the recording; the PSAM module is built as ``open_card``
    builds it (its MF reads at open are not part of the read).
    """
    best = float("inf")
    for _ in range(repeat):
        card = _Script([e.response for e in log if e.link == 0], atr)
        sam = _Script([e.response for e in log if e.link == 1], b"")
        module = PsamSecurityModule(Channel(sam), pin=pin, algorithm=BlockCipher.SM4)
        health_card = HealthCard(Channel(card), module)
        start = time.process_time()  # all threads: a record may be decoded in a worker
        health_card.read_card(verify=verify)
        best = min(best, time.process_time() - start)
    return best


@dataclass
class ReadFigures:
    apdus: int
    times: dict[str, list[float]]

    def median(self, key: str) -> float:
        return statistics.median(self.times[key])


def python_work_like(seconds: float) -> tuple[Callable[[], object], float]:
    """Library-like Python work (lenient decoding of the sample ED record's items, a few per
    call, walking on) taking about ``seconds`` per call in a hot loop; (work, its hot time)."""
    record = model.sample_resident().outpatient[0]
    assert record is not None
    raw = record.to_bytes()
    items = [
        (s.item, raw[s.item.offset or 0 : (s.item.offset or 0) + s.item.length])
        for s in type(record).slots()
    ]
    position = [0]

    def one() -> None:
        item, part = items[position[0] % len(items)]
        position[0] += 1
        model.decode_item_lenient(item, part)

    start = time.perf_counter()
    for _ in range(20000):
        one()
    each = (time.perf_counter() - start) / 20000
    count = max(1, round(seconds / each))

    def work() -> None:
        for _ in range(count):
            one()

    return work, count * each


def _quartile(values: Sequence[float]) -> float:
    """The lower quartile: what a round costs when the shared machine leaves it alone."""
    return statistics.quantiles(values, n=4, method="inclusive")[0]


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def read_figures(setup: Setup, rounds: int, profile_reads: int, runs: int = 1,
                 out: Callable[[str], None] = print) -> list[ReadFigures]:
    """``runs`` sets of ``rounds`` alternating rounds, each set reported on its own."""
    first, protocols = record(setup)
    second, _ = record(setup)
    steps = derive(first, second, out)
    raw_read(steps, protocols)  # warm-up and check
    library_read(setup, True)
    with connect(setup) as conn:
        card_atr = conn.card.channel.atr()
    cpu = {v: in_process_cost(first, card_atr, setup.sam_pin, v) for v in (True, False)}
    work = cpu[False] / len(steps)
    calibrated = f"raw + {work * 1e6:.1f} us work"
    python_work, python_each = python_work_like(work)
    pythonic = f"raw + {python_each * 1e6:.1f} us Python"
    results = []
    for run in range(1, runs + 1):
        load_before = _load()
        times: dict[str, list[float]] = {
            "raw pyscard": [], "library": [], "library, no verify": [], calibrated: [], pythonic: []
        }
        order = list(times)
        for number in range(rounds):
            for key in order[number % len(order):] + order[:number % len(order)]:
                if key == "raw pyscard":
                    times[key].append(raw_read(steps, protocols))
                elif key == calibrated:
                    times[key].append(raw_read(steps, protocols, work))
                elif key == pythonic:
                    times[key].append(raw_read(steps, protocols, python_work=python_work))
                else:
                    times[key].append(library_read(setup, key == "library"))
        figures = ReadFigures(len(steps), times)
        results.append(figures)
        _report(figures, calibrated, pythonic, cpu, f"run {run}/{runs}: " if runs > 1 else "",
                f"load average {load_before} before, {_load()} after", out)
    if profile_reads:
        profile_layers(setup, profile_reads, out)
        gaps(setup, steps, protocols, profile_reads, out)
    return results


def _report(figures: ReadFigures, calibrated: str, pythonic: str, cpu: dict[bool, float],
            title: str, load: str, out: Callable[[str], None]) -> None:
    times, apdus = figures.times, figures.apdus
    rounds = len(times["raw pyscard"])
    raw, raw_q = figures.median("raw pyscard"), _quartile(times["raw pyscard"])
    out(f"{title}read_card through pcscd + vpcd: {rounds} alternating rounds of {apdus} APDUs "
        f"({load}):")
    out(f"  {'':<20} {'median':>9} {'lower q.':>9} {'min':>9} {'max':>9}")
    for key, values in times.items():
        out(f"  {key:<20} {1000 * figures.median(key):6.2f} ms {1000 * _quartile(values):6.2f} ms "
            f"{1000 * min(values):6.2f} ms {1000 * max(values):6.2f} ms")
    for key, goal in (("library", GOAL_RATIO_VERIFY), ("library, no verify", GOAL_RATIO_NO_VERIFY)):
        paired = statistics.median(
            lib / base for lib, base in zip(times[key], times["raw pyscard"], strict=True)
        )
        of_medians = figures.median(key) / raw
        of_quartiles = _quartile(times[key]) / raw_q
        of_minima = min(times[key]) / min(times["raw pyscard"])
        verdict = "met" if paired <= goal else "NOT met"
        out(f"  ratio {key + ' / raw':<26} {paired:.3f} (median of per-round ratios; of medians "
            f"{of_medians:.3f}, of lower quartiles {of_quartiles:.3f}, of minima "
            f"{of_minima:.3f}); goal <= {goal}: {verdict}")
        out(f"  {'':<34} {(figures.median(key) - raw) / apdus * 1e6:+.1f} us per APDU over raw "
            f"pyscard (medians; {(_quartile(times[key]) - raw_q) / apdus * 1e6:+.1f} between "
            "lower quartiles)")
    for verify in (True, False):
        label = "library CPU per read" + ("" if verify else ", no verify")
        out(f"  {label:<34} {1000 * cpu[verify]:6.3f} ms = "
            f"{cpu[verify] / apdus * 1e6:5.1f} us per APDU (zero-latency link, process time)")
    out(f"  ratio {calibrated + ' / raw':<26} "
        f"{figures.median(calibrated) / raw:.3f}: the same APDUs with a busy wait of the "
        "library's CPU per APDU (no verify) after each, i.e. what that much host work costs here")
    out(f"  ratio {pythonic + ' / raw':<26} "
        f"{figures.median(pythonic) / raw:.3f}: the same, with as much library-like Python work "
        "(hot-loop time) instead of the busy wait: Python between blocking calls runs slower")


_LAYERS = ("apdu", "transport", "crypto", "security", "model", "card", "app")


def profile_layers(setup: Setup, reads: int, out: Callable[[str], None] = print) -> None:
    """cProfile of ``reads`` library reads (verify on) through pcscd, own time per layer."""
    profiler = cProfile.Profile()
    for _ in range(reads):
        with connect(setup) as conn:
            profiler.enable()
            conn.card.read_card()
            profiler.disable()
    stats = pstats.Stats(profiler)
    per_layer: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own = row[2]
        if "SCardTransmit" in function:
            layer = "SCardTransmit (pcscd + vpcd + card)"
        elif "healthcard_apdu" in filename:
            parts = Path(filename).parts
            package = parts[parts.index("healthcard_apdu") + 1]
            layer = f"healthcard_apdu.{package}" if package in _LAYERS else "healthcard_apdu"
        elif "smartcard" in filename:
            layer = "pyscard (Python part)"
        else:
            layer = "other (builtins, stdlib)"
        per_layer[layer] = per_layer.get(layer, 0.0) + own
    out(f"profile of {reads} library reads through pcscd (own time per read, under cProfile):")
    for layer, seconds in sorted(per_layer.items(), key=lambda item: -item[1]):
        out(f"  {layer:<38} {1000 * seconds / reads:7.3f} ms")


class _Stamped(ForwardingTransport):
    """Records (start, end) of every transmit of the wrapped link."""

    def __init__(self, inner: Transport, marks: list[tuple[float, float]]) -> None:
        super().__init__(inner)
        self.marks = marks

    def transmit(self, apdu: bytes) -> bytes:
        sent = time.perf_counter()
        response = self.inner.transmit(apdu)
        self.marks.append((sent, time.perf_counter()))
        return response


def gaps(setup: Setup, steps: Sequence[RawStep], protocols: Sequence[str | None], reads: int,
         out: Callable[[str], None] = print) -> None:
    """Where the wall time of a read goes: link round trips (SCardTransmit) and host gaps
    between them (median over ``reads`` reads of each kind)."""
    found: dict[str, list[tuple[float, float, float, float]]] = {}

    def summary(marks: list[tuple[float, float]]) -> tuple[float, float, float, float]:
        trips = [end - start for start, end in marks]
        between = [marks[i + 1][0] - marks[i][1] for i in range(len(marks) - 1)]
        return sum(trips), sum(between), statistics.median(trips), statistics.median(between)

    for _ in range(reads):
        for key in ("raw pyscard", "library", "library, no verify"):
            marks: list[tuple[float, float]] = []
            if key == "raw pyscard":
                terminal = RawTerminal(protocols)
                try:
                    terminal.run(steps, marks=marks)
                finally:
                    terminal.close()
            else:
                with connect(setup) as conn:
                    assert conn.sam is not None
                    for channel in (conn.card.channel, conn.sam.channel):
                        channel.transport = _Stamped(channel.transport, marks)
                    conn.card.read_card(verify=key == "library")
            found.setdefault(key, []).append(summary(marks))
    out(f"round trips and host gaps between them ({reads} reads each, medians; the library's "
        "gaps include the timing wrapper):")
    for key, rows in found.items():
        columns = zip(*rows, strict=True)
        trips, between, trip, gap = (statistics.median(column) for column in columns)
        out(f"  {key:<20} round trips {1000 * trips:6.2f} ms ({1e6 * trip:5.1f} us each), "
            f"host gaps {1000 * between:5.2f} ms ({1e6 * gap:4.1f} us each)")


def pcsc_problem() -> str | None:
    try:
        from healthcard_apdu.transport.pcsc import list_readers

        readers = list_readers()
    except TransportError as exc:
        return str(exc)
    missing = [r for r in READERS if r not in readers]
    return f"vpcd readers {missing} not listed" if missing else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="alternating read rounds")
    parser.add_argument("--runs", type=int, default=1,
                        help="sets of rounds, each reported on its own (default 1)")
    parser.add_argument("--sm2-seconds", type=float, default=1.5, help="per SM2 figure")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N library reads through pcscd: own time per layer "
                        "(cProfile), link round trips and host gaps")
    parser.add_argument("--no-sm2", action="store_true")
    parser.add_argument("--no-read", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_sm2:
        sm2_figures(args.sm2_seconds)
    if args.no_read:
        return 0
    problem = pcsc_problem()
    if problem:
        print(f"read figures skipped: {problem}")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        setup = make_card(Path(tmp))
        with slots_locked(), served(setup):
            read_figures(setup, args.rounds, args.profile, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
