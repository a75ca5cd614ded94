"""The options every command uses to reach the user card and the security module.

``card_options`` (``--reader``, ``--sim-card``), ``security_options`` (``--keys``,
``--passphrase-env``, ``--pkcs11-token``, ``--pkcs11-module``, ``--pkcs11-pin-env``,
``--sam-reader``, ``--sam-pin-env``, ``--sim-sam``) and ``trace_option`` (``--trace``) are the
same on ``read``, ``write``, ``personalize``, ``verify``, ``conformance run`` and (security
options) ``batch run``. ``factor_options`` (``--factor-rule``, ``--no-factor-check``) set the
card product's card-factor rule and its confirmation on every command that authenticates;
``profile_option`` (``--profile``) takes the rule from an issuance profile's ``[product]``
(:func:`product_factor_rule`).
:func:`pop_card_options` / :func:`pop_security_options` turn the parsed values into the
``app.connect`` option objects; opening them is ``app.connect``'s job.

Passphrases and PINs are never options: an option names the environment variable that holds
one, and a hidden prompt asks when the variable is unset or empty.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from healthcard_apdu.app.connect import (
    PASSPHRASE_ENV,
    PKCS11_PIN_ENV,
    SAM_PIN_ENV,
    CardOptions,
    SecretUnavailable,
    SecurityOptions,
    env_secret,
    reader_target,
)
from healthcard_apdu.security import DEFAULT_FACTOR_RULE, FactorRule, FactorRuleError

__all__ = [
    "CARD_OPTION_NAMES",
    "PASSPHRASE_ENV",
    "PKCS11_PIN_ENV",
    "SAM_PIN_ENV",
    "SECURITY_OPTION_NAMES",
    "FactorChoice",
    "card_options",
    "factor_options",
    "hidden_prompt",
    "passphrase_env_option",
    "pkcs11_options",
    "pop_card_options",
    "pop_factor_options",
    "pop_security_options",
    "product_factor_rule",
    "profile_option",
    "security_options",
    "trace_option",
]

C = TypeVar("C", bound=Callable[..., Any])

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


class _KeyFile(click.Path):
    """An existing key file; the old batch spelling ``pkcs11:LABEL`` points to the option."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.startswith("pkcs11:"):
            self.fail(f"use --pkcs11-token {value.removeprefix('pkcs11:')} for a PKCS#11 token",
                      param, ctx)
        return super().convert(value, param, ctx)

#: The command-line spellings, in help order.
CARD_OPTION_NAMES = ("--reader", "--sim-card")
SECURITY_OPTION_NAMES = (
    "--keys",
    "--passphrase-env",
    "--pkcs11-token",
    "--pkcs11-module",
    "--pkcs11-pin-env",
    "--sam-reader",
    "--sam-pin-env",
    "--sam-pin-at",
    "--sim-sam",
)


def _apply(command: C, options: list[Callable[[C], C]]) -> C:
    for option in reversed(options):
        command = option(command)
    return command


passphrase_env_option = click.option(
    "--passphrase-env",
    default=PASSPHRASE_ENV,
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the key-file passphrase (else a hidden prompt).",
)

_pkcs11_token = click.option(
    "--pkcs11-token", metavar="LABEL", help="PKCS#11 token holding the master keys (3DES)."
)
_pkcs11_module = click.option(
    "--pkcs11-module",
    metavar="PATH",
    help="PKCS#11 library (default: SoftHSM2's libsofthsm2.so).",
)
_pkcs11_pin_env = click.option(
    "--pkcs11-pin-env",
    default=PKCS11_PIN_ENV,
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the token's user PIN (else a hidden prompt).",
)


def pkcs11_options(command: C) -> C:
    """``--pkcs11-token``, ``--pkcs11-module``, ``--pkcs11-pin-env``."""
    return _apply(command, [_pkcs11_token, _pkcs11_module, _pkcs11_pin_env])


def card_options(command: C) -> C:
    """``--reader NAME`` | ``--sim-card IMAGE``: where the user card is."""
    return _apply(
        command,
        [
            click.option(
                "--reader",
                metavar="NAME",
                help="PC/SC reader of the user card: its name, a unique part of it, or its "
                "index (healthcard readers).",
            ),
            click.option(
                "--sim-card",
                type=_FILE,
                metavar="IMAGE",
                help="Simulated user-card image, driven in-process (writes are saved to it).",
            ),
        ],
    )


def security_options(command: C) -> C:
    """Exactly one of ``--keys`` / ``--pkcs11-token`` / ``--sam-reader`` / ``--sim-sam``, and
    the environment variables of their secrets."""
    return _apply(
        command,
        [
            click.option(
                "--keys",
                type=_KeyFile(exists=True, dir_okay=False, path_type=Path),
                metavar="KEYFILE",
                help="Software security module: an encrypted key file (keys generate).",
            ),
            passphrase_env_option,
            _pkcs11_token,
            _pkcs11_module,
            _pkcs11_pin_env,
            click.option(
                "--sam-reader",
                metavar="NAME",
                help="PSAM in this PC/SC reader (name, unique part of it, or index).",
            ),
            click.option(
                "--sam-pin-env",
                default=SAM_PIN_ENV,
                show_default=True,
                metavar="VAR",
                help="Environment variable holding the PSAM PIN (else a hidden prompt).",
            ),
            click.option(
                "--sam-pin-at",
                type=click.Choice(["mf", "df01"]),
                default="mf",
                show_default=True,
                help="Verify the PSAM PIN at the MF (as real PSAMs took it) or in DF01.",
            ),
            click.option(
                "--sim-sam",
                type=_FILE,
                metavar="SAMKEYFILE",
                help="Simulated PSAM key file, driven in-process (keys export).",
            ),
        ],
    )


def trace_option(command: C) -> C:
    """``--trace FILE``: a JSON Lines trace of the APDUs, secrets masked."""
    return click.option(
        "--trace",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Write a JSON Lines APDU trace (keys and PINs masked).",
    )(command)


def hidden_prompt(prompt: str, *, confirm: bool = False) -> str:
    """Ask for a secret on the terminal without echo (on stderr). Without a terminal, one
    line of standard input is the secret (two equal lines with ``confirm``); none at all is
    :class:`SecretUnavailable` (one ``error:`` line, exit 4), never a getpass warning and
    "Aborted!"."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        entered: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm,
                                    err=True)
        return entered
    first = _line(stdin) if stdin is not None else ""
    if not first:
        raise SecretUnavailable(f"{prompt}: none given and standard input is not a terminal")
    if confirm and _line(stdin) != first:
        raise SecretUnavailable(f"{prompt}: the two lines on standard input differ")
    return first


def _line(stream: TextIO) -> str:
    return stream.readline().rstrip("\r\n")


def pop_card_options(values: dict[str, Any]) -> CardOptions:
    """Take ``--reader`` / ``--sim-card`` out of a command's parsed values."""
    return CardOptions(reader_target(values.pop("reader")), values.pop("sim_card"))


def pop_security_options(
    values: dict[str, Any], ask: Callable[[str], str] | None = hidden_prompt
) -> SecurityOptions:
    """Take the security options out of a command's parsed values; the secrets become
    functions that read the named variable (else ``ask``, a hidden prompt by default) only
    when the module needs them. ``ask=None`` never prompts: an unset variable is an error
    naming it (for commands whose standard input is not the user's)."""
    return SecurityOptions(
        keys=values.pop("keys"),
        passphrase=env_secret(values.pop("passphrase_env"), "Key-file passphrase", ask),
        pkcs11_token=values.pop("pkcs11_token"),
        pkcs11_module=values.pop("pkcs11_module"),
        pkcs11_pin=env_secret(values.pop("pkcs11_pin_env"), "PKCS#11 user PIN", ask),
        sam_reader=reader_target(values.pop("sam_reader")),
        sam_pin=env_secret(values.pop("sam_pin_env"), "PSAM PIN", ask),
        sim_sam=values.pop("sim_sam"),
        sam_pin_at=values.pop("sam_pin_at"),
    )


def _factor_rule(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--factor-rule`` as a :class:`FactorRule` (None when not given)."""
    if value is None:
        return None
    try:
        return FactorRule.parse(value)
    except FactorRuleError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def factor_options(command: C) -> C:
    """``--factor-rule RULE`` and ``--no-factor-check`` (docs/cli.md, docs/spec-choices.md)."""
    return _apply(
        command,
        [
            click.option(
                "--factor-rule",
                callback=_factor_rule,
                default=None,
                metavar="RULE",
                help="Card product's card-factor rule: first-8 (default, or the profile's), "
                "last-8, offset:N or fixed:HEX (which ATR historical bytes diversify the keys).",
            ),
            click.option(
                "--no-factor-check",
                is_flag=True,
                help="Do not confirm the card factor with INTERNAL AUTHENTICATE before the first "
                "EXTERNAL AUTHENTICATE (a wrong factor then spends a try).",
            ),
        ],
    )


@dataclass(frozen=True)
class FactorChoice:
    """The parsed factor options: ``rule`` None means "the profile's, else first-8"."""

    rule: FactorRule | None
    confirm: bool

    def rule_or(self, default: FactorRule) -> FactorRule:
        return default if self.rule is None else self.rule


def pop_factor_options(values: dict[str, Any]) -> FactorChoice:
    """Take ``--factor-rule`` / ``--no-factor-check`` out of a command's parsed values."""
    return FactorChoice(values.pop("factor_rule"), not values.pop("no_factor_check"))


profile_option = click.option(
    "--profile",
    "profile_name",
    metavar="NAME|PATH",
    help="Issuance profile whose [product] settings (card-factor rule) describe the card "
    "family; default: first-8.",
)
"""``--profile NAME|PATH``: the card product's settings from an issuance profile."""


def product_factor_rule(choice: FactorChoice, profile_name: str | None) -> FactorRule:
    """``--factor-rule``, else the ``[product] factor_rule`` of ``--profile`` (loaded, so a
    broken profile is reported either way), else first-8."""
    default = DEFAULT_FACTOR_RULE
    if profile_name is not None:
        from healthcard_apdu.perso.profile import load_profile

        default = load_profile(profile_name).product.factor_rule
    return choice.rule_or(default)
