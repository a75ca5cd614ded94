"""Batch issuance benchmark: cards per minute on 1, 2 and 4 simulated readers at modeled card
latency, the 4-to-1 scaling ratio, and peak memory of streaming a 100,000-row resident file.

    .venv/bin/python bench/bench_batch.py                 # everything, human output
    .venv/bin/python bench/bench_batch.py --json          # machine-readable
    .venv/bin/python bench/bench_batch.py --skip-memory --cards-per-reader 10

Card latency: every simulated card runs the LatencyModel of the simulator with real sleeping
(``--baud``, default 115200 bd, T=1, EEPROM page writes), so readers overlap in time the way
real readers do. The issuer is the real personalizer (``perso.batch_issuer.PersoCardIssuer``,
national profile, a fresh software SM4 key set) issuing full residents (the model's sample
resident with its photo, contacts, allergies and EE/ED records, varied per row: about 250
APDUs and 12.5 KB per card, read-back included). ``--issuer raw`` uses the raw-APDU test
issuer of tests/batch_support.py instead (``--extra`` bytes per card), ``--issuer
MODULE:FACTORY`` any factory (with ``--profile``/``--keys``). The journal is SQLite with
synchronous=FULL, as in production. The modeled card time of one issuance (LatencyModel
without sleep) is printed too: 60 / that is the ceiling of one reader.

Memory: the file is generated first; a child process that has only imported the library then
loads it into a fresh SQLite journal (scan, validation, journal inserts: the whole load path of
``batch run``) and reports its peak RSS (ru_maxrss) before and after, and with ``--trace`` the
peak of Python allocations during the load (tracemalloc; slower).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from healthcard_apdu.batch.input import scan_file  # noqa: E402
from healthcard_apdu.batch.issuer import CardIssuer  # noqa: E402
from healthcard_apdu.batch.journal import Journal  # noqa: E402
from healthcard_apdu.batch.runner import BatchRunner, load_batch  # noqa: E402
from healthcard_apdu.batch.slots import CardPool, SimReaderSlot  # noqa: E402
from healthcard_apdu.cli.batch import SimCardStore, load_issuer  # noqa: E402

# The issuers and the resident generators live with the tests.
_support: Any = importlib.import_module("batch_support")
RawIssuer = _support.RawIssuer
valid_row = _support.valid_row
write_csv = _support.write_csv
write_jsonl = _support.write_jsonl
perso_row = _support.perso_row
perso_issuer = _support.perso_issuer

COLUMNS = ("XM", "XB", "MZ", "CSRQ", "SFZH", "BRDH1")


def write_residents(directory: Path, rows: int, perso: bool) -> Path:
    if perso:
        return Path(write_jsonl(directory / "residents.jsonl", (perso_row(i)
                                                                 for i in range(rows))))
    return Path(write_csv(directory / "residents.csv", (valid_row(i) for i in range(rows))))


def modeled_card(issuer: CardIssuer, baud: int, perso: bool) -> dict[str, Any]:
    """One blank card issued in memory with the latency model accounting (no sleep)."""
    from healthcard_apdu.sim.card import SimCard
    from healthcard_apdu.sim.faults import LatencyModel
    from healthcard_apdu.transport import InProcessTransport

    latency = LatencyModel(baud=baud)
    card = SimCard.blank(os.urandom(8), latency=latency)
    resident = perso_row(0) if perso else _support_record(0)
    with InProcessTransport(card) as link:
        issuer.inspect(link)
        issuer.issue(link, resident)
    return {"apdus": latency.apdus, "seconds": round(latency.total, 3),
            "ceiling_cards_per_minute": round(60.0 / latency.total, 1)}


def _support_record(index: int) -> dict[str, Any]:
    row = valid_row(index)
    return {"DDF1EF05": {"KH": row["SFZH"]}, "DDF1EF06": {"XM": row["XM"]}}


def run_speed(readers: int, cards_per_reader: int, baud: int, issuer: CardIssuer,
              workdir: Path, perso: bool) -> dict[str, Any]:
    """Issue ``readers * cards_per_reader`` cards; returns the rate."""
    rows = readers * cards_per_reader
    directory = workdir / f"speed-{readers}"
    directory.mkdir()
    path = write_residents(directory, rows, perso)
    with Journal.open(directory / "residents.journal.sqlite") as journal:
        pool = CardPool(directory / "cards", SimCardStore(baud))
        slots = [SimReaderSlot(f"sim{i + 1}", pool) for i in range(readers)]
        with BatchRunner(journal, issuer, slots, station="bench", reader_grace=0.0) as runner:
            batch, _ = runner.load(path)
            summary = runner.run(batch)
    if summary.counts["issued"] != rows:
        raise RuntimeError(f"{readers} readers: only {summary.counts['issued']} of {rows} "
                           f"cards issued: {summary.failures[:3]}")
    return {"readers": readers, "cards": rows, "seconds": round(summary.seconds, 3),
            "cards_per_minute": round(summary.cards_per_minute, 1)}


def memory_child(rows: int, directory: Path, trace: bool) -> dict[str, Any]:
    """Runs in a child process (only imports done): load the generated file; report peaks."""
    path = directory / "big.csv"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        import tracemalloc

        tracemalloc.start()
    began = time.perf_counter()
    with Journal.open(directory / "big.journal.sqlite", synchronous="NORMAL") as journal:
        report = load_batch(journal, scan_file(path), "big")
    seconds = time.perf_counter() - began
    traced = None
    if trace:
        import tracemalloc

        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1),
        "valid": report.valid, "invalid": report.invalid, "load_seconds": round(seconds, 1),
        "rss_before_mb": round(before / 1024, 1), "peak_rss_mb": round(after / 1024, 1),
        "load_rss_growth_mb": round((after - before) / 1024, 1),
        "peak_traced_mb": None if traced is None else round(traced / 2**20, 1),
    }


def run_memory(rows: int, trace: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-batch-mem-") as tmp:
        write_csv(Path(tmp) / "big.csv", (valid_row(i) for i in range(rows)), columns=COLUMNS)
        args = [sys.executable, __file__, "--memory-child", str(rows), tmp]
        if trace:
            args.append("--trace")
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baud", type=int, default=115200, help="modeled card link speed")
    parser.add_argument("--cards-per-reader", type=int, default=8)
    parser.add_argument("--extra", type=int, default=3072, help="bytes per card (raw issuer)")
    parser.add_argument("--issuer", default="perso",
                        help="perso (default: the personalizer), raw (the test issuer) or "
                             "MODULE:FACTORY")
    parser.add_argument("--profile")
    parser.add_argument("--keys")
    parser.add_argument("--rows", type=int, default=100_000, help="rows for the memory run")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--trace", action="store_true", help="also measure with tracemalloc")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("ROWS", "DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        rows, directory = args.memory_child
        print(json.dumps(memory_child(int(rows), Path(directory), args.trace)))
        return 0

    result: dict[str, Any] = {"baud": args.baud, "python": sys.version.split()[0],
                              "cpus": os.cpu_count()}
    if not args.skip_speed:
        perso = args.issuer != "raw"
        issuer: CardIssuer
        if args.issuer == "perso":
            issuer = perso_issuer()
        elif args.issuer == "raw":
            issuer = RawIssuer(extra=args.extra)
        else:
            issuer = load_issuer(args.issuer, args.profile, args.keys)
        result["issuer"] = args.issuer
        result["card"] = modeled_card(issuer, args.baud, perso)
        if not args.json:
            card = result["card"]
            print(f"issuer {args.issuer}: {card['apdus']} APDUs per card, modeled "
                  f"{card['seconds']:.2f} s at {args.baud} bd = at most "
                  f"{card['ceiling_cards_per_minute']:.1f} cards/min per reader", flush=True)
        speed = []
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            for readers in (1, 2, 4):
                speed.append(run_speed(readers, args.cards_per_reader, args.baud, issuer,
                                       Path(tmp), perso))
                if not args.json:
                    s = speed[-1]
                    print(f"{s['readers']} reader(s): {s['cards']:4d} cards in "
                          f"{s['seconds']:7.2f} s = {s['cards_per_minute']:7.1f} cards/min",
                          flush=True)
        result["speed"] = speed
        result["scaling_4_vs_1"] = round(speed[2]["cards_per_minute"]
                                         / speed[0]["cards_per_minute"], 2)
        result["scaling_2_vs_1"] = round(speed[1]["cards_per_minute"]
                                         / speed[0]["cards_per_minute"], 2)
        if not args.json:
            print(f"scaling 2/1 = {result['scaling_2_vs_1']:.2f}, "
                  f"4/1 = {result['scaling_4_vs_1']:.2f} (goal >= 3.6)", flush=True)
    if not args.skip_memory:
        memory = run_memory(args.rows, args.trace)
        result["memory"] = memory
        if not args.json:
            traced = (f", Python allocations peak {memory['peak_traced_mb']} MiB"
                      if memory["peak_traced_mb"] is not None else "")
            print(f"memory: {memory['rows']} rows ({memory['file_mb']} MiB CSV) loaded in "
                  f"{memory['load_seconds']} s; peak RSS {memory['peak_rss_mb']} MiB "
                  f"(+{memory['load_rss_growth_mb']} MiB during the load){traced}")
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
