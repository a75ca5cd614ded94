"""Shared set-up of the conformance tests: a personalized simulated card, its keys and a runner.

The card is personalized by ``perso`` with the national-32k profile and the model's sample
resident, completed so that every case has something to check: both cyclic files full of
distinct entries, and the inpatient/outpatient records signed by the key set's SAM key. The
image is made once per test session and copied for every card.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from healthcard_apdu.conformance import ProfileInfo, RunOptions, SimPowerFaults, SuiteRun, run_suite
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import CardData, sample_resident
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.profile import builtin_profile_path, load_profile
from healthcard_apdu.security import KeySet, SecurityModule, SoftwareSecurityModule, sign_record
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import CardImage, decode_image, encode_image
from healthcard_apdu.transport import InProcessTransport

CARD_FACTOR = bytes.fromhex("0081866B00001015")
PROFILE = "national-32k"


def seeded_rng(seed: int = 1) -> Any:
    """Deterministic card challenges (the card side of a reproducible run)."""
    import random

    generator = random.Random(seed)
    return lambda n: generator.randbytes(n)


def _vary(entry: Any, number: int) -> Any:
    first = dataclasses.fields(entry)[0].name  # a text item (allergen / vaccine name)
    return entry.replace(**{first: f"{getattr(entry, first)}{number}"})


def _signed(record: Any, module: SecurityModule) -> Any:
    signature = sign_record(module, record.data_bytes())
    names = [f.name for f in dataclasses.fields(record)]
    sig_name = next(n for n in names if n.endswith("signature"))
    cert_name = next(n for n in names if n.endswith("certificate"))
    return record.replace(**{sig_name: signature, cert_name: module.certificate()})


def resident(module: SecurityModule) -> CardData:
    """The sample resident with full cyclic files and signed EE/ED records."""
    data = sample_resident()
    allergy = data.allergies.entries[0]
    shot = data.immunizations.entries[0]
    allergies = type(data.allergies)(
        tuple(_vary(allergy, n) for n in range(type(data.allergies).capacity()))
    )
    shots = type(data.immunizations)(
        tuple(_vary(shot, n) for n in range(type(data.immunizations).capacity()))
    )
    inpatient = tuple(None if r is None else _signed(r, module) for r in data.inpatient)
    outpatient = tuple(None if r is None else _signed(r, module) for r in data.outpatient)
    return dataclasses.replace(
        data, allergies=allergies, immunizations=shots, inpatient=inpatient, outpatient=outpatient
    )


def keyset(algorithm: BlockCipher = BlockCipher.SM4) -> KeySet:
    return _keyset(algorithm)


@functools.cache
def _keyset(algorithm: BlockCipher) -> KeySet:
    return KeySet.generate(algorithm=algorithm)


def issued_image(algorithm: BlockCipher = BlockCipher.SM4) -> bytes:
    return _issued_image(algorithm)


@functools.cache
def _issued_image(algorithm: BlockCipher) -> bytes:
    keys = keyset(algorithm)
    module = SoftwareSecurityModule(keys)
    card = SimCard.blank(CARD_FACTOR, cipher16=algorithm)
    with InProcessTransport(card) as transport:
        personalize(transport, load_profile(PROFILE), resident(module), module)
    return encode_image(card.image)


def fresh_image(algorithm: BlockCipher = BlockCipher.SM4) -> CardImage:
    return decode_image(issued_image(algorithm))


def fresh_card(**kwargs: Any) -> SimCard:
    return SimCard(fresh_image(), rng=kwargs.pop("rng", seeded_rng()), **kwargs)


def profile_info() -> ProfileInfo:
    return ProfileInfo.load(PROFILE)


def run_on(
    card: SimCard,
    *,
    patterns: Sequence[str] = (),
    groups: Sequence[str] = (),
    destructive: bool = False,
    trace: Path | None = None,
    seed: bytes = b"seed",
) -> SuiteRun:
    """Run the suite in-process against ``card`` (power faults available)."""
    transport = InProcessTransport(card)
    try:
        return run_suite(
            transport,
            SoftwareSecurityModule(keyset()),
            profile=profile_info(),
            options=RunOptions(
                patterns=patterns, groups=groups, destructive=destructive, seed=seed
            ),
            faults=SimPowerFaults(card),
            trace=trace,
        )
    finally:
        transport.close()


def failing_ids(run: SuiteRun) -> set[str]:
    return {r.info.id for r in run.results if r.status.is_problem}


# --- the fixture itself ----------------------------------------------------------------------


def test_fixture_card_holds_full_cyclic_files_and_signed_records() -> None:
    image = fresh_image()
    df02 = image.mf.children[0xDDF1].children[0xDF02]  # type: ignore[union-attr]
    assert [len(df02.children[fid].records) for fid in (0xEF07, 0xEF08)] == [3, 10]  # type: ignore[union-attr]
    assert builtin_profile_path(PROFILE).exists()
    assert image.issued
