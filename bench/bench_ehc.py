"""E-card verification speed on one core, with the baselines measured side by side in one run.

    .venv/bin/python bench/bench_ehc.py [--seconds S] [--cpu N]

* national dynamic QR verifications/s (parse, SM4-decrypt the validity block with the
  protection key, check the window) beside bare SM4 of one block (``crypto.ecb_decrypt``, a
  fresh cipher context per call, as the crypto layer does) -- goal >= 20,000/s, ratio <= 3x;
  SM4 with a reused context is printed too, as the floor;
* signed EHC1 verifications/s offline (Base45, CBOR, trust list, SM2 with SM3/Z, window) beside
  the bare SM2 verification of one digest (``crypto.sm2_verify_digest``) -- goal >= 1,000/s;
  also with the in-memory replay cache over distinct codes, and with an SQLite registry
  (one-time use and a use record, committed to disk: FULL synchronous).

The process is pinned to one CPU (``--cpu``, default the first allowed one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from healthcard_apdu.crypto import BlockCipher, ecb_decrypt, sm2_verify_digest, sm3
from healthcard_apdu.ehc import (
    EhcPlatform,
    Person,
    Registry,
    ReplayCache,
    TrustList,
    UseContext,
    Verifier,
    VerifyPolicy,
    issue_from_identity,
)
from healthcard_apdu.security import KeySet, SoftwareSecurityModule

PERSON = Person(id_type="01", id_number="110101199211140619", name="贵服通")
USE = UseContext(org_code="H110105001", terminal="BENCH", channel="02", medstep="010101")


def per_second(action: Callable[[], object], seconds: float, *, batch: int = 100) -> float:
    """Calls per second of ``action`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(min(batch, 20)):
        action()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            action()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def line(label: str, rate: float, note: str = "") -> None:
    print(f"{label:<58} {rate:>11,.0f} /s  {1e6 / rate:>9.1f} us  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to")
    args = parser.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(f"bench_ehc: one core (cpu {cpu}), {args.seconds:g} s per figure, Python "
          f"{sys.version.split()[0]}")

    keyset = KeySet.generate(["EHC_SECURITY", "EHC_PROTECTION", "EHC_SIGNING"], with_sm2=False)
    platform = EhcPlatform.from_module(SoftwareSecurityModule(keyset))
    ehc_id = platform.ecard_id(PERSON)
    now = dt.datetime.now(dt.UTC)
    trust = TrustList([platform.trust_entry(issuer="bench")])
    reusable = VerifyPolicy(one_time=False)

    # -- national dynamic ----------------------------------------------------------------
    key, block = keyset.keys["EHC_PROTECTION"].value, bytes(16)
    sm4_bare = per_second(lambda: ecb_decrypt(BlockCipher.SM4, key, block), args.seconds)
    context = Cipher(algorithms.SM4(key), modes.ECB()).decryptor()
    sm4_reused = per_second(lambda: context.update(block), args.seconds)
    dynamic = platform.dynamic_qr(ehc_id, now=now).text()
    national = Verifier(keys=platform.keys, policy=reusable)
    assert national.verify(dynamic, now=now).kind == "national-dynamic"
    national_rate = per_second(lambda: national.verify(dynamic, now=now), args.seconds)
    ratio = sm4_bare / national_rate
    print("\nnational dynamic QR")
    line("SM4 one block, crypto.ecb_decrypt (baseline)", sm4_bare)
    line("SM4 one block, reused cipher context (floor)", sm4_reused)
    line("verify national dynamic QR", national_rate,
         f"goal >= 20,000/s: {'met' if national_rate >= 20_000 else 'NOT met'}")
    print(f"{'ratio verify / bare SM4 (time per operation)':<58} {ratio:>11.2f} x"
          f"{'':13}goal <= 3x: {'met' if ratio <= 3 else 'NOT met'}")

    # -- signed --------------------------------------------------------------------------
    signed = platform.signed_qr(ehc_id, now=now)
    offline = Verifier(trust_list=trust, policy=reusable)
    assert offline.verify(signed, now=now).kind == "signed"
    (entry,) = list(trust)
    digest = sm3(b"bench")
    signature = platform.keys.sign_digest(digest)
    sm2_rate = per_second(lambda: sm2_verify_digest(entry.public_key, digest, signature),
                          args.seconds, batch=10)
    signed_rate = per_second(lambda: offline.verify(signed, now=now), args.seconds, batch=10)
    print("\nsigned EHC1 QR (SM2 from crypto.sm2, unchanged here)")
    line("SM2 verify of one digest, crypto.sm2_verify_digest", sm2_rate)
    line("verify signed QR offline (same code, one-time off)", signed_rate,
         f"goal >= 1,000/s: {'met' if signed_rate >= 1_000 else 'NOT met'}")
    print(f"{'ratio verify / bare SM2':<58} {sm2_rate / signed_rate:>11.2f} x")

    distinct = [platform.signed_qr(ehc_id, now=now) for _ in range(200)]
    cached = Verifier(trust_list=trust, replay_cache=ReplayCache())
    start = time.perf_counter()
    for text in distinct:
        cached.verify(text, now=now)
    line("verify signed QR offline, replay cache, 200 distinct codes",
         len(distinct) / (time.perf_counter() - start))

    with tempfile.TemporaryDirectory() as tmp, Registry.open(Path(tmp) / "b.sqlite") as registry:
        issue_from_identity(platform, PERSON, registry)
        verifier = Verifier(trust_list=trust)
        fresh = [platform.signed_qr(ehc_id, now=now) for _ in range(100)]
        start = time.perf_counter()
        for text in fresh:
            verifier.verify(text, now=now, registry=registry, use=USE)
        line("verify signed QR + SQLite registry (jti + use record)",
             len(fresh) / (time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
