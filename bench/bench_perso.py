"""Personalization benchmark: APDUs and bytes against the documented minimum, modeled card
time at 9600 and 115200 bps, and in-process personalizations per second on one core.

    .venv/bin/python bench/bench_perso.py [--profile national-32k] [--count 100] [--json]

* APDUs / bytes: counted on the link (every command and response, GET RESPONSE included)
  while personalizing the sample resident on a blank simulated card; the minimum is
  ``perso.minimum.minimum_cost`` (docs/profiles.md §5). Goal: ratio <= 1.05.
* Modeled card time: the simulator's ``LatencyModel`` (docs/sim.md: character times, T=1 block
  overhead, per-command dispatch, cipher blocks, EEPROM pages), added up without sleeping.
* Throughput: wall-clock personalizations per second in this process (pinned to one CPU
  when the OS allows). Measured twice: with an in-memory simulated card (host code plus the
  simulated COS), and with a card whose image file is rewritten atomically after every
  writing command (as ``healthcard sim serve`` cards are; fsync off). Goal: >= 50 per second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from healthcard_apdu import model
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.perso.execute import CountingTransport, personalize
from healthcard_apdu.perso.profile import Profile, load_profile
from healthcard_apdu.security import DEFAULT_ROLES, KeySet, SoftwareSecurityModule
from healthcard_apdu.sim import LatencyModel, SimCard
from healthcard_apdu.transport import InProcessTransport

CARD_FACTOR = bytes.fromhex("0081866B00001015")
GOAL_RATIO = 1.05
GOAL_RATE = 50.0


def _resident(profile: Profile) -> model.CardData:
    sample = model.sample_resident()
    if profile.file("DDF1/EF07") is None:
        sample = dataclasses.replace(sample, photo=model.Photo())
    return sample


def _blank(profile: Profile, **kwargs: Any) -> SimCard:
    cipher = BlockCipher.SM4 if profile.algorithm is BlockCipher.SM4 else BlockCipher.TDES
    return SimCard.blank(CARD_FACTOR, cipher16=cipher, **kwargs)


def measure_link(profile: Profile, security: SoftwareSecurityModule) -> dict[str, Any]:
    resident = _resident(profile)
    card = _blank(profile)
    with InProcessTransport(card) as link:
        counter = CountingTransport(link)
        result = personalize(counter, profile, resident, security)
    minimum = result.minimum  # the formula over the record as written (EE/ED signed)
    return {
        "apdus": counter.apdus,
        "bytes": counter.sent + counter.received,
        "minimum_apdus": minimum.apdus,
        "minimum_bytes": minimum.bytes,
        "apdu_ratio": counter.apdus / minimum.apdus,
        "byte_ratio": (counter.sent + counter.received) / minimum.bytes,
        "steps": result.steps,
        "parts": {k: {"apdus": a, "bytes": b} for k, (a, b) in minimum.parts.items()},
    }


def measure_card_time(profile: Profile, security: SoftwareSecurityModule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for protocol in ("T=1", "T=0"):
        for baud in (9600, 115200):
            latency = LatencyModel(baud=baud, sleep=False)
            card = _blank(profile, latency=latency, protocol=protocol)
            with InProcessTransport(card) as link:
                personalize(link, profile, _resident(profile), security)
            out[f"{protocol} {baud}"] = {"seconds": round(latency.total, 3),
                                         "apdus": latency.apdus}
    return out


def measure_rate(profile: Profile, security: SoftwareSecurityModule, count: int,
                 image: Path | None = None) -> float:
    """Personalizations per second on a fresh card each time (image file: ``image``)."""
    resident = _resident(profile)

    def blank() -> SimCard:
        if image is None:
            return _blank(profile)
        return _blank(profile, path=image, overwrite=True, durable=False)

    for _ in range(2):  # warm caches (codecs, chunk covers)
        with InProcessTransport(blank()) as link:
            personalize(link, profile, resident, security)
    start = time.perf_counter()
    for _ in range(count):
        with InProcessTransport(blank()) as link:
            personalize(link, profile, resident, security)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", help="profile(s) (default: both built-in)")
    parser.add_argument("--count", type=int, default=100, help="personalizations per rate run")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    names = args.profile or ["national-32k", "compact-8k"]
    results: dict[str, Any] = {}
    for name in names:
        profile = load_profile(name)
        keys = KeySet.generate(DEFAULT_ROLES, profile.algorithm)  # SM2 signs the EE/ED records
        security = SoftwareSecurityModule(keys)
        with tempfile.TemporaryDirectory() as scratch:
            on_disk = measure_rate(profile, security, max(10, args.count // 5),
                                   Path(scratch) / "card.json")
        results[profile.name] = {
            "link": measure_link(profile, security),
            "card_time": measure_card_time(profile, security),
            "per_second": {
                "in_memory_card": round(measure_rate(profile, security, args.count), 1),
                "card_image_file": round(on_disk, 1),
            },
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        link = r["link"]
        print(f"profile {name} (sample resident)")
        print(f"  APDUs per personalization : {link['apdus']:6d}   minimum {link['minimum_apdus']}"
              f"   ratio {link['apdu_ratio']:.3f}   (goal <= {GOAL_RATIO})")
        print(f"  bytes per personalization : {link['bytes']:6d}   minimum {link['minimum_bytes']}"
              f"   ratio {link['byte_ratio']:.3f}   (goal <= {GOAL_RATIO})")
        parts = ", ".join(f"{k} {v['apdus']}/{v['bytes']}" for k, v in link["parts"].items())
        print(f"    minimum by part (APDUs/bytes): {parts}")
        print("  modeled card time (LatencyModel, no sleeping):")
        for label, t in r["card_time"].items():
            print(f"    {label:>10} bps: {t['seconds']:7.3f} s  ({t['apdus']} APDUs)")
        rate = r["per_second"]
        print(f"  in-process personalizations per second (one core, goal >= {GOAL_RATE:.0f}):")
        print(f"    in-memory simulated card                         : "
              f"{rate['in_memory_card']:7.1f}")
        print(f"    card image file rewritten per write (as sim serve): "
              f"{rate['card_image_file']:7.1f}")


if __name__ == "__main__":
    main()
