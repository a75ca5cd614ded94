"""The long run of the hostile probes (issue 11): tests/hostile at a larger scale, random.

    .venv/bin/python bench/hostile_long.py [--scale 10] [--seed N] [--pcsc]

CI runs the probes derandomized at scale 1 (about 17,000 hypothesis examples). This script
runs the same probes with ``HEALTHCARD_HOSTILE_SCALE`` (every budget times SCALE) and a random
seed, so every run explores new inputs. Scale 10 is over 150,000 examples. Prints the
examples run, the wall time, the examples per second and pytest's verdict; exits with pytest's
code. Without ``--pcsc`` the probes through pcscd are left out (they need the vpcd readers;
at scale 10 they add 6,000 command sequences through the real stack). Figures: docs/hostile.md.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (random)")
    parser.add_argument("--pcsc", action="store_true", help="include the pcscd probes")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    env = dict(os.environ, HEALTHCARD_HOSTILE_SCALE=str(args.scale))
    command = [sys.executable, "-m", "pytest", "tests/hostile", "-q", "-p", "no:cacheprovider",
               f"--hypothesis-seed={seed}", "-k", "not kill_9 and not hostile_cli"]
    if not args.pcsc:
        command[-1] += " and not pcscd and not one_byte and not malformed"
    print(f"hostile probes at scale {args.scale:g}, seed {seed}: {' '.join(command[2:])}")
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - started
    found = re.search(r"hostile probes: (\d+) hypothesis examples in (\d+) tests", done.stdout)
    examples = int(found.group(1)) if found else 0
    verdict = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "(no output)"
    print(f"examples: {examples} in {found.group(2) if found else '?'} tests")
    print(f"wall time: {seconds:.1f} s ({examples / seconds:.0f} examples/s)")
    print(f"pytest: {verdict}")
    if done.returncode:
        print(done.stdout[-6000:])
        print(done.stderr[-2000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
