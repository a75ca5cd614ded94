"""Connection options -> open objects: the user-card link, the security module, a HealthCard.

This is the one place where the command line's connection options become objects; every
command (``read``, ``write``, ``personalize``, ``verify``, ``conformance run``, ``batch run``)
goes through it.

User card (:class:`CardOptions`): a PC/SC reader (``reader``: name, unique part of it or index)
or a simulated card image file (``sim_card``; in-process, writes are saved to the image).

Security module (:class:`SecurityOptions`, exactly one):

* ``keys``: an encrypted key file (software module), unlocked with ``passphrase``;
* ``pkcs11_token``: master keys in a PKCS#11 token (``pkcs11_module``, user PIN ``pkcs11_pin``);
* ``sam_reader``: a PSAM in a PC/SC reader (PIN ``sam_pin``, verified at the MF unless
  ``sam_pin_at="df01"``);
* ``sim_sam``: a simulated SAM key file, in-process (PIN ``sam_pin``).

Passphrases and PINs are :data:`Secret` values: a string, or a function called only when the
secret is needed (:func:`env_secret`: an environment variable, else an ``ask`` callback such as
a hidden prompt). They are never kept after use and never appear in messages.

Errors in the options raise :class:`ConnectOptionsError` before anything is opened; its
message names the option (``names`` spells it: ``--sim-card`` for the command line,
``sim_card`` for :func:`open_card`).

It lives in ``app`` (the composition root) because it opens the simulator too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from healthcard_apdu.card.errors import ConnectOptionsError
from healthcard_apdu.card.healthcard import HealthCard
from healthcard_apdu.card.sam import Sam
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.fileio import parse_json
from healthcard_apdu.security import SecurityModule, SoftwareSecurityModule
from healthcard_apdu.security.errors import KeyFileError, SecurityModuleError
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.inprocess import InProcessTransport
from healthcard_apdu.transport.trace import Tracer

if TYPE_CHECKING:
    from healthcard_apdu.sim import SimCard

__all__ = [
    "PASSPHRASE_ENV",
    "PKCS11_PIN_ENV",
    "SAM_PIN_ENV",
    "SECURITY_BACKENDS",
    "CardConnection",
    "CardLink",
    "CardOptions",
    "OptionNames",
    "Secret",
    "SecretUnavailable",
    "SecurityConnection",
    "SecurityOptions",
    "check_card_options",
    "connect",
    "env_secret",
    "open_card",
    "open_card_link",
    "open_security",
    "option_flag",
    "reader_target",
]

#: Default environment variables of the secrets (the command line can name others).
PASSPHRASE_ENV = "HEALTHCARD_KEYS_PASSPHRASE"
PKCS11_PIN_ENV = "HEALTHCARD_PKCS11_PIN"
SAM_PIN_ENV = "HEALTHCARD_SAM_PIN"

#: The :class:`SecurityOptions` fields that each choose a security module.
SECURITY_BACKENDS = ("keys", "pkcs11_token", "sam_reader", "sim_sam")

Secret = str | Callable[[], str] | None
"""A passphrase or PIN, or a function that asks for it only when it is needed."""

OptionNames = Callable[[str], str]
"""How an option (a field name such as ``sim_card``) is spelled in error messages."""


def option_flag(name: str) -> str:
    """The command-line spelling of an option: ``sim_card`` -> ``--sim-card``."""
    return "--" + name.replace("_", "-")


def _field_name(name: str) -> str:
    return name


def _resolve(secret: Secret) -> str | None:
    return secret() if callable(secret) else secret


class SecretUnavailable(SecurityModuleError):
    """A passphrase or PIN is needed, its variable is empty or unset, and there is nobody to
    ask (standard input is not a terminal and holds no line)."""


def env_secret(
    variable: str, prompt: str, ask: Callable[[str], str] | None = None
) -> Callable[[], str]:
    """A secret read from the environment variable ``variable`` when it is needed; when the
    variable is unset or empty, ``ask(prompt)`` (e.g. a hidden prompt) gives it, or, without
    ``ask``, :class:`ConnectOptionsError` names the variable. An ``ask`` that raises
    :class:`SecretUnavailable` gets the variable named in the message."""

    def secret() -> str:
        value = os.environ.get(variable)
        if value:
            return value
        if ask is None:
            raise ConnectOptionsError(f"{prompt}: set the environment variable {variable}")
        try:
            return ask(prompt)
        except SecretUnavailable as exc:
            raise SecretUnavailable(f"{exc}; set the environment variable {variable}") from None

    return secret


def reader_target(value: str | int | None) -> str | int | None:
    """A reader option as PC/SC takes it: all digits = an index, else a name (or part)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


# --- the user card ---------------------------------------------------------------------------


class _Closing:
    """``with`` support for the connection objects below: leaving the block calls ``close``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class _OpenedTogether(_Closing):
    """Objects opened together; ``close`` runs their closers in reverse order, once."""

    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False, kw_only=True)

    def close(self) -> None:
        """Close everything this opened. Idempotent."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()


@dataclass(frozen=True)
class CardOptions:
    """Where the user card is: a PC/SC reader or a simulated card image (not both)."""

    reader: str | int | None = None
    sim_card: str | os.PathLike[str] | None = None

    @property
    def given(self) -> bool:
        return self.reader is not None or self.sim_card is not None


@dataclass
class CardLink(_Closing):
    """An open link to the user card; ``sim_card`` is the in-process simulated card (for power
    faults), None for a PC/SC reader."""

    transport: Transport
    sim_card: SimCard | None = None

    def close(self) -> None:
        self.transport.close()


def check_card_options(
    options: CardOptions, *, required: bool = False, names: OptionNames = option_flag
) -> None:
    """Refuse a reader together with a card image and, when ``required``, neither of them
    (otherwise none means the first PC/SC reader that holds a card)."""
    both = options.reader is not None and options.sim_card is not None
    if both or (required and not options.given):
        choices = f"{names('reader')}, {names('sim_card')}"
        raise ConnectOptionsError(
            f"give exactly one of {choices}" + (", not both" if both else "")
        )


def _pcsc(reader: str | int | None) -> Transport:
    from healthcard_apdu.transport.pcsc import PcscTransport

    return PcscTransport(reader_target(reader))


def open_card_link(
    options: CardOptions, *, required: bool = False, names: OptionNames = option_flag
) -> CardLink:
    """Open the user card: the simulated card image in-process, else the PC/SC reader (with
    neither and not ``required``: the first reader holding a card)."""
    check_card_options(options, required=required, names=names)
    if options.sim_card is None:
        return CardLink(_pcsc(options.reader))
    from healthcard_apdu.sim import SimCard

    path = Path(options.sim_card)
    card = SimCard.open(path)
    return CardLink(InProcessTransport(card, name=f"sim:{path}"), card)


# --- the security module ---------------------------------------------------------------------


@dataclass(frozen=True)
class SecurityOptions:
    """Which security module holds the keys (exactly one of :data:`SECURITY_BACKENDS`) and
    where its secrets come from."""

    keys: str | os.PathLike[str] | None = None
    passphrase: Secret = field(default=None, repr=False)
    pkcs11_token: str | None = None
    pkcs11_module: str | None = None
    pkcs11_pin: Secret = field(default=None, repr=False)
    sam_reader: str | int | None = None
    sam_pin: Secret = field(default=None, repr=False)
    sim_sam: str | os.PathLike[str] | None = None
    sam_pin_at: str = "mf"

    def chosen(self) -> list[str]:
        """The backend options that are set."""
        return [name for name in SECURITY_BACKENDS if getattr(self, name) is not None]

    def backend(self, names: OptionNames = option_flag) -> str:
        """The one backend chosen (a :data:`SECURITY_BACKENDS` name); raises
        :class:`ConnectOptionsError` naming the options when there is not exactly one, or when
        ``pkcs11_module`` is given without ``pkcs11_token``."""
        chosen = self.chosen()
        if len(chosen) != 1:
            listed = ", ".join(names(name) for name in SECURITY_BACKENDS)
            raise ConnectOptionsError(
                f"give exactly one security module ({listed})"
                + (f" (got {', '.join(names(name) for name in chosen)})" if chosen else "")
            )
        if self.pkcs11_module is not None and chosen[0] != "pkcs11_token":
            raise ConnectOptionsError(
                f"{names('pkcs11_module')} goes with {names('pkcs11_token')}"
            )
        return chosen[0]


@dataclass
class SecurityConnection(_OpenedTogether):
    """An open security module (and, for a PSAM, its :class:`Sam`); closes what it opened.

    ``backend`` is the :data:`SECURITY_BACKENDS` name that chose it.
    """

    module: SecurityModule
    backend: str
    sam: Sam | None = None


def _software(path: Path, passphrase: Secret, plain_keys: bool) -> SecurityModule:
    """The software module of an encrypted key file or, with ``plain_keys``, also of a plain
    JSON key set (test keys; docs/keys.md); the passphrase is asked only when needed."""
    from healthcard_apdu.security.keyset import FILE_FORMAT, KeySet

    if plain_keys:
        try:
            document = parse_json(path.read_bytes())
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise KeyFileError(f"{path}: not a readable JSON key file ({exc})") from None
        if not isinstance(document, dict):
            raise KeyFileError(f"{path}: expected a JSON object")
        if document.get("format") != FILE_FORMAT:
            return SoftwareSecurityModule(KeySet.from_plain_dict(document, str(path)))
    secret = _resolve(passphrase)
    if not secret:
        raise ConnectOptionsError(f"key file {path}: no passphrase given")
    return SoftwareSecurityModule.from_file(path, secret)


def _refuse_psam_for_issuance(backend: str, names: OptionNames) -> None:
    from healthcard_apdu.perso.errors import SecurityModuleUnsuitable

    raise SecurityModuleUnsuitable(
        f"a PSAM cannot derive card keys, which WRITE KEY needs ({names(backend)}); "
        f"personalize with {names('keys')} or {names('pkcs11_token')}"
    )


def open_security(
    options: SecurityOptions,
    *,
    algorithm: BlockCipher | None = None,
    issuing: bool = False,
    plain_keys: bool = False,
    trace: Tracer | None = None,
    names: OptionNames = option_flag,
) -> SecurityConnection:
    """Open the security module the options choose.

    ``algorithm`` is the profile's cipher for a PSAM (default SM4) or a PKCS#11 token
    (default 3DES); a key file carries its own. ``issuing`` refuses a PSAM (it cannot give the
    card keys WRITE KEY needs; :class:`~healthcard_apdu.perso.errors.SecurityModuleUnsuitable`)
    before anything is opened. ``plain_keys`` also accepts a plain JSON key set for ``keys``.
    ``trace`` records the SAM's APDUs (PIN masked). The PSAM PIN is verified once, before the
    SAM's first service command, and never retried.
    """
    backend = options.backend(names)
    if issuing and backend in ("sam_reader", "sim_sam"):
        _refuse_psam_for_issuance(backend, names)
    closers: list[Callable[[], None]] = []
    try:
        sam: Sam | None = None
        module: SecurityModule
        if backend == "keys":
            assert options.keys is not None
            module = _software(Path(options.keys), options.passphrase, plain_keys)
        elif backend == "pkcs11_token":
            from healthcard_apdu.security.pkcs11 import (
                DEFAULT_PKCS11_MODULE,
                Pkcs11SecurityModule,
            )

            assert options.pkcs11_token is not None
            pin = _resolve(options.pkcs11_pin)
            if not pin:
                raise ConnectOptionsError(
                    f"PKCS#11 token {options.pkcs11_token}: no user PIN given"
                )
            module = Pkcs11SecurityModule(
                options.pkcs11_token,
                pin,
                module_path=options.pkcs11_module or DEFAULT_PKCS11_MODULE,
                algorithm=algorithm or BlockCipher.TDES,
            )
        else:
            link = _pcsc(options.sam_reader) if backend == "sam_reader" else _sim_sam(options)
            closers.append(link.close)
            sam = Sam(
                Channel(link, trace=trace),
                pin=_resolve(options.sam_pin),
                algorithm=algorithm or BlockCipher.SM4,
                pin_at=options.sam_pin_at,
            )
            module = sam.security
        closers.append(module.close)
    except BaseException:
        for closer in reversed(closers):
            closer()
        raise
    return SecurityConnection(module, backend, sam, _closers=closers)


def _sim_sam(options: SecurityOptions) -> Transport:
    from healthcard_apdu.sim import SimSam

    assert options.sim_sam is not None
    path = Path(options.sim_sam)
    return InProcessTransport(SimSam.from_key_file(path), name=f"sim-sam:{path}")


# --- a HealthCard ------------------------------------------------------------------------------


@dataclass
class CardConnection(_OpenedTogether):
    """An open user card with its security module (and SAM); closes everything it opened."""

    card: HealthCard
    security: SecurityModule
    sam: Sam | None = None


def connect(
    card: CardOptions,
    security: SecurityOptions,
    *,
    algorithm: BlockCipher | None = None,
    trace: Tracer | None = None,
    names: OptionNames = option_flag,
    **card_options: Any,
) -> CardConnection:
    """Open the security module, then the user card, as one :class:`HealthCard`.

    ``trace`` records the card's and the SAM's APDUs. ``card_options`` go to
    :class:`HealthCard`. Option errors raise :class:`ConnectOptionsError` before anything
    is opened.
    """
    check_card_options(card, names=names)
    security.backend(names)
    opened = open_security(security, algorithm=algorithm, trace=trace, names=names)
    closers: list[Callable[[], None]] = [opened.close]
    try:
        link = open_card_link(card, names=names)
        closers.append(link.close)
        health_card = HealthCard(Channel(link.transport, trace=trace), opened.module,
                                 **card_options)
    except BaseException:
        for closer in reversed(closers):
            closer()
        raise
    return CardConnection(health_card, opened.module, opened.sam, _closers=closers)


def open_card(
    *,
    reader: str | int | None = None,
    sim_card: str | os.PathLike[str] | None = None,
    sam_reader: str | int | None = None,
    keys: str | os.PathLike[str] | None = None,
    sim_sam: str | os.PathLike[str] | None = None,
    pkcs11_token: str | None = None,
    pkcs11_module: str | None = None,
    passphrase: Secret = None,
    sam_pin: Secret = None,
    pkcs11_pin: Secret = None,
    sam_algorithm: BlockCipher | None = None,
    sam_pin_at: str = "mf",
    trace: Tracer | None = None,
    **card_options: Any,
) -> CardConnection:
    """Connect to the user card and the security module (the national ``iDOpenPort``).

    ``passphrase`` unlocks ``keys``; ``sam_pin`` is verified on the PSAM before its first
    service command (reading works without it on SAMs that allow it; signing needs it);
    ``pkcs11_pin`` logs in to ``pkcs11_token``. ``sam_pin_at`` is where the PSAM PIN is
    verified (``mf``, default, or ``df01``). ``sam_algorithm`` is the cipher of a PSAM
    (default SM4) or a PKCS#11 token (default 3DES). ``card_options`` go to
    :class:`HealthCard`. Errors in the options raise :class:`ConnectOptionsError` before
    anything is opened.
    """
    return connect(
        CardOptions(reader, sim_card),
        SecurityOptions(
            keys=keys,
            passphrase=passphrase,
            pkcs11_token=pkcs11_token,
            pkcs11_module=pkcs11_module,
            pkcs11_pin=pkcs11_pin,
            sam_reader=sam_reader,
            sam_pin=sam_pin,
            sim_sam=sim_sam,
            sam_pin_at=sam_pin_at,
        ),
        algorithm=sam_algorithm,
        trace=trace,
        names=_field_name,
        **card_options,
    )
