"""Batch issuance wiring for ``healthcard batch run``: the card issuer (from ``--issuer`` and the
shared security options) and the reader slots (PC/SC readers, or simulated readers fed from a
pool of card images).

The default issuer is the personalizer (:class:`~healthcard_apdu.perso.batch_issuer.
PersoCardIssuer`) with the security module that :func:`~healthcard_apdu.app.connect.
open_security` opens from the options. Any other ``MODULE:FACTORY`` is called as
``factory(profile, keys)`` (docs/batch.md), where ``keys`` is the key file's path or
``pkcs11:LABEL``.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from healthcard_apdu.app.connect import (
    OptionNames,
    SecurityConnection,
    SecurityOptions,
    open_security,
    option_flag,
)
from healthcard_apdu.batch.issuer import CardIssuer
from healthcard_apdu.batch.journal import is_postgres_target
from healthcard_apdu.batch.slots import (
    CardPool,
    Insertion,
    PcscReaderSlot,
    ReaderSlot,
    SimReaderSlot,
)
from healthcard_apdu.batch.validate import RecordChecker
from healthcard_apdu.card.errors import ConnectOptionsError
from healthcard_apdu.security import FactorRule
from healthcard_apdu.transport.inprocess import CardLike

__all__ = [
    "DEFAULT_ISSUER",
    "OpenIssuer",
    "SimCardStore",
    "default_sim_pool",
    "load_issuer",
    "open_issuer",
    "reader_slots",
    "tear_faults",
]

#: The personalizer, used when ``--issuer`` is not given.
DEFAULT_ISSUER = "healthcard_apdu.perso.batch_issuer:make_card_issuer"
#: Options a custom issuer factory cannot receive (it gets the profile and ``keys`` only).
_NOT_FOR_CUSTOM = ("pkcs11_module", "sam_reader", "sim_sam")


class SimCardStore:
    """Adapts the simulator's SimCard image files to the batch :class:`CardStore`."""

    def __init__(self, baud: int = 0) -> None:
        self.baud = baud

    def _latency(self) -> Any:
        if not self.baud:
            return None
        from healthcard_apdu.sim.faults import LatencyModel

        return LatencyModel(baud=self.baud, sleep=True)

    def create(self, path: Path, number: int) -> CardLike:
        from healthcard_apdu.sim.card import SimCard

        return SimCard.blank(os.urandom(8), path=path, durable=False)

    def load(self, path: Path) -> CardLike:
        from healthcard_apdu.sim.card import SimCard

        return SimCard.open(path, durable=False, latency=self._latency())

    def save(self, card: CardLike, path: Path) -> None:
        """A SimCard with a path writes its image after every writing command."""


def tear_faults(
    rate: float, seed: int, first: int = 5, last: int = 40
) -> Callable[[CardLike, Insertion], None]:
    """Fault hook: a power loss at a random APDU on ``rate`` of the cards' first insertion."""

    def hook(card: CardLike, insertion: Insertion) -> None:
        from healthcard_apdu.sim.faults import FaultPlan

        if insertion.count != 1:
            return
        rng = random.Random(seed * 1_000_003 + insertion.number)
        if rng.random() < rate and hasattr(card, "faults"):
            card.faults = FaultPlan(tear_at=rng.randint(first, last))

    return hook


def default_sim_pool(target: str, residents: str, batch_name: str) -> Path:
    """The simulated card stock next to the journal (next to the resident file for
    PostgreSQL)."""
    if is_postgres_target(target):
        return Path(residents).with_name(f"{batch_name}.simcards")
    return Path(target).with_name(f"{batch_name}.simcards")


def reader_slots(
    readers: Sequence[str],
    sim_readers: int,
    *,
    pool_dir: Path | None = None,
    sim_latency: int = 0,
    tear_rate: float = 0.0,
    seed: int = 1,
) -> list[ReaderSlot]:
    """PC/SC reader slots, or ``sim_readers`` simulated readers sharing a card pool in
    ``pool_dir`` (optionally at a modeled baud rate and with torn first insertions)."""
    if sim_readers:
        if pool_dir is None:
            raise ConnectOptionsError("simulated readers need a card pool directory")
        hook = tear_faults(tear_rate, seed) if tear_rate else None
        pool = CardPool(pool_dir, SimCardStore(sim_latency), fault_hook=hook)
        return [SimReaderSlot(f"sim{i + 1}", pool) for i in range(sim_readers)]
    return [PcscReaderSlot(reader) for reader in readers]


def _factory(spec: str, names: OptionNames) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConnectOptionsError(f"{names('issuer')}: {spec!r} is not MODULE:FACTORY")
    try:
        factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConnectOptionsError(
            f"{names('issuer')}: cannot load issuer factory {spec!r}: {exc}"
        ) from exc
    return factory


def profile_checker(profile: str | None) -> RecordChecker:
    """A row checker that also applies the issuance profile's rules (``--validate-only``
    has no issuer, but must reject what the profile cannot issue)."""
    from healthcard_apdu.perso.batch_issuer import profile_record_problems
    from healthcard_apdu.perso.profile import DEFAULT_PROFILE, load_profile

    chosen = load_profile(profile or DEFAULT_PROFILE)
    return RecordChecker(lambda record: profile_record_problems(chosen, record))


def load_issuer(
    spec: str, profile: str | None, keys: str | None, *, names: OptionNames = option_flag
) -> CardIssuer:
    """Import ``MODULE:FACTORY`` and call it with the profile and the keys string."""
    issuer = _factory(spec, names)(profile, keys)
    if not isinstance(issuer, CardIssuer):
        raise ConnectOptionsError(f"{names('issuer')}: {spec!r} did not return a CardIssuer")
    return issuer


class OpenIssuer:
    """A card issuer and what it opened (its security module); a context manager."""

    def __init__(self, issuer: CardIssuer, security: SecurityConnection | None = None) -> None:
        self.issuer = issuer
        self.security = security

    def close(self) -> None:
        if self.security is not None:
            self.security.close()

    def __enter__(self) -> OpenIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_issuer(
    spec: str,
    profile: str | None,
    security: SecurityOptions,
    *,
    names: OptionNames = option_flag,
    factor_rule: FactorRule | None = None,
    confirm_factor: bool = True,
) -> OpenIssuer:
    """The issuer ``spec`` names. The default (:data:`DEFAULT_ISSUER`) personalizes with the
    profile and the security module the options choose (a PSAM is refused: it cannot give the
    card keys); ``factor_rule`` overrides the profile's card-factor rule and
    ``confirm_factor=False`` skips the INTERNAL AUTHENTICATE check before an erase. Another
    factory gets ``(profile, keys)`` with ``keys`` = the key file or ``pkcs11:LABEL`` (and
    neither of those two options)."""
    if spec != DEFAULT_ISSUER:
        if factor_rule is not None or not confirm_factor:
            raise ConnectOptionsError(
                f"{names('factor_rule')} / {names('no_factor_check')} go with the default "
                f"issuer; the factory {spec!r} reads the profile itself"
            )
        if len(security.chosen()) > 1:
            security.backend(names)  # raises, naming the options
        for name in _NOT_FOR_CUSTOM:
            if getattr(security, name) is not None:
                raise ConnectOptionsError(
                    f"{names(name)} cannot be passed to the issuer factory {spec!r}: it "
                    f"receives the profile and {names('keys')} (or {names('pkcs11_token')}) only"
                )
        keys = (
            str(security.keys) if security.keys is not None
            else f"pkcs11:{security.pkcs11_token}" if security.pkcs11_token is not None
            else None
        )
        return OpenIssuer(load_issuer(spec, profile, keys, names=names))
    from healthcard_apdu.perso.batch_issuer import PersoCardIssuer
    from healthcard_apdu.perso.profile import DEFAULT_PROFILE, load_profile

    chosen = load_profile(profile or DEFAULT_PROFILE)
    if factor_rule is not None:
        chosen = chosen.with_factor_rule(factor_rule)
    opened = open_security(security, algorithm=chosen.algorithm, issuing=True, names=names)
    try:
        return OpenIssuer(PersoCardIssuer(chosen, opened.module, confirm_factor=confirm_factor),
                          opened)
    except BaseException:
        opened.close()
        raise
