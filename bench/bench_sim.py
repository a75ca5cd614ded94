"""APDUs per second of the simulated user card: SELECT + READ BINARY loop.

    .venv/bin/python bench/bench_sim.py [--iterations N] [--naive-iterations M]

Prints, in one run:
* the card alone (``SimCard.process`` called directly),
* in-process through the transport layer,
* through pcscd + vpcd with TCP_QUICKACK, and with a naive socket (no QUICKACK), and their ratio
  (these reuse bench_transport.py with a simulator card; skipped without pcscd + vpcd),
* the modeled ISO 7816-3 rate of the same loop at a few baud rates (``LatencyModel``).

Goal on this class of machine: >= 5,000 APDU/s through pcscd.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_transport

from healthcard_apdu.sim import LatencyModel, SimCard

PCSC_GOAL = 5000.0
SERIAL = bytes.fromhex("0102030405060708")
SELECT = bytes.fromhex("00A40000020001")
READ = bytes.fromhex("00B0000020")


def sim_card(latency: LatencyModel | None = None) -> SimCard:
    """A blank simulated card with a free-read 32-byte binary EF 0001 (powered off)."""
    card = SimCard.blank(SERIAL, latency=latency)
    card.power_on()
    for apdu in ("80E00001072800 20F0F0FFFF", "00A40000020001", "00D6000020" + "A5" * 32):
        reply = card.process(bytes.fromhex(apdu.replace(" ", "")))
        if reply[-2:] != b"\x90\x00":
            raise RuntimeError(f"setting up the bench card: {apdu} -> {reply.hex()}")
    card.power_off()
    return card


def card_alone(iterations: int) -> bench_transport.Figure:
    card = sim_card()
    card.power_on()
    process = card.process
    start = time.perf_counter()
    for _ in range(iterations):
        process(SELECT)
        process(READ)
    return bench_transport.Figure("card alone (process)", 2 * iterations,
                                  time.perf_counter() - start)


def modeled(baud: int, iterations: int = 100) -> float:
    """Modeled APDU/s of the loop at ``baud`` (no sleeping; the model's arithmetic)."""
    model = LatencyModel(baud=baud)
    card = sim_card(model)
    card.power_on()
    before_total, before_apdus = model.total, model.apdus
    for _ in range(iterations):
        card.process(SELECT)
        card.process(READ)
    return (model.apdus - before_apdus) / (model.total - before_total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="loops with TCP_QUICKACK")
    parser.add_argument("--naive-iterations", type=int, default=20, help="loops, naive socket")
    parser.add_argument("--inprocess-iterations", type=int, default=20000)
    parser.add_argument("--slot", type=int, choices=(0, 1), default=0)
    args = parser.parse_args(argv)
    print(card_alone(args.inprocess_iterations))
    figures = bench_transport.run(
        sim_card,
        iterations=args.iterations,
        naive_iterations=args.naive_iterations,
        inprocess_iterations=args.inprocess_iterations,
        slot=args.slot,
    )
    for baud in (9600, 115200, 423000):
        print(f"{'modeled at ' + str(baud) + ' bps':<26} {modeled(baud):>22.0f} APDU/s "
              "(ISO 7816-3 T=1 timing + card work)")
    pcsc = [f for f in figures if "QUICKACK" in f.label]
    if pcsc:
        verdict = "met" if pcsc[0].per_second >= PCSC_GOAL else "NOT met"
        print(f"goal >= {PCSC_GOAL:.0f} APDU/s through pcscd: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
