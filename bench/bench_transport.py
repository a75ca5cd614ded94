"""APDUs per second for a SELECT + READ BINARY loop: in-process, and through real PC/SC
(pyscard -> pcscd -> vpcd -> VpcdLink) with TCP_QUICKACK and with a naive socket, in one run.

    .venv/bin/python bench/bench_transport.py [--iterations N] [--naive-iterations M] [--slot S]

Needs a running pcscd with vsmartcard-vpcd for the PC/SC figures (scripts/pcscd.sh starts one);
without it only the in-process figure is printed. ``run(card_factory=...)`` benchmarks another
card object (anything with atr/process/power_on/power_off/present, e.g. the simulator).
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from healthcard_apdu.apdu import commands as c
from healthcard_apdu.sim.vpcd import VpcdLink
from healthcard_apdu.transport import Channel, InProcessTransport, Transport, TransportError
from healthcard_apdu.transport.inprocess import CardLike
from healthcard_apdu.transport.testing import TinyCard

VPCD_BASE_PORT = 35963
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")


@dataclass(frozen=True)
class Figure:
    label: str
    apdus: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.apdus / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.label:<26} {self.apdus:>6} APDUs in {self.seconds:7.3f} s -> "
            f"{self.per_second:>9.0f} APDU/s ({1000 * self.seconds / self.apdus:.3f} ms/APDU)"
        )


def select_read_loop(
    transport: Transport, iterations: int, *, fid: int = 0x0001, length: int = 32
) -> tuple[int, float]:
    """Run SELECT fid + READ BINARY(0, length) ``iterations`` times; (APDUs, seconds)."""
    channel = Channel(transport)
    select, read = c.select_fid(fid), c.read_binary(0, length)
    channel.call(select)  # warm-up, and fail early on a card that lacks the file
    start = time.perf_counter()
    for _ in range(iterations):
        channel.call(select)
        channel.call(read)
    return 2 * iterations, time.perf_counter() - start


@contextmanager
def _slot_lock(slot: int) -> Iterator[None]:
    """The same inter-process lock the tests take (tests/conftest.py)."""
    with open(f"/tmp/healthcard-vpcd-{slot}.lock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bench_pcsc(
    card: CardLike, iterations: int, *, quickack: bool, slot: int = 0, **loop: int
) -> Figure:
    from healthcard_apdu.transport.pcsc import PcscTransport, wait_for_card

    reader = READERS[slot]
    with _slot_lock(slot):
        wait_for_card(reader, present=False, timeout=20)
        link = VpcdLink(card, port=VPCD_BASE_PORT + slot, quickack=quickack).start()
        try:
            wait_for_card(reader, timeout=20)
            with PcscTransport(reader) as transport:
                apdus, seconds = select_read_loop(transport, iterations, **loop)
        finally:
            link.stop()
            wait_for_card(reader, present=False, timeout=20)
    label = "pcscd+vpcd, TCP_QUICKACK" if quickack else "pcscd+vpcd, naive socket"
    return Figure(label, apdus, seconds)


def run(
    card_factory: Callable[[], CardLike] = TinyCard,
    *,
    iterations: int = 1000,
    naive_iterations: int = 20,
    inprocess_iterations: int = 20000,
    slot: int = 0,
    out: Callable[[str], None] = print,
    **loop: int,
) -> list[Figure]:
    """Print and return the figures; PC/SC ones are skipped (with the reason) without pcscd."""
    figures = []
    with InProcessTransport(card_factory()) as transport:
        figures.append(
            Figure("in-process", *select_read_loop(transport, inprocess_iterations, **loop))
        )
    out(str(figures[-1]))
    try:
        from healthcard_apdu.transport.pcsc import list_readers

        missing = [r for r in READERS if r not in list_readers()]
        if missing:
            raise TransportError(f"vpcd readers {missing} not listed")
    except TransportError as exc:
        out(f"PC/SC figures skipped: {exc}")
        return figures
    fast = bench_pcsc(card_factory(), iterations, quickack=True, slot=slot, **loop)
    out(str(fast))
    naive = bench_pcsc(card_factory(), naive_iterations, quickack=False, slot=slot, **loop)
    out(str(naive))
    out(f"{'ratio QUICKACK / naive':<26} {fast.per_second / naive.per_second:.0f}x")
    return [*figures, fast, naive]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000, help="loops with TCP_QUICKACK")
    parser.add_argument("--naive-iterations", type=int, default=20, help="loops, naive socket")
    parser.add_argument("--inprocess-iterations", type=int, default=20000)
    parser.add_argument("--slot", type=int, choices=(0, 1), default=0)
    args = parser.parse_args(argv)
    run(
        iterations=args.iterations,
        naive_iterations=args.naive_iterations,
        inprocess_iterations=args.inprocess_iterations,
        slot=args.slot,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
