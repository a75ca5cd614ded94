"""``healthcard keys``: generate, import, list (KCVs only) and export master keys; the public
key of an e-card signing key as a trust-list entry (``export-public``).

Key values are never printed. Passphrases and PINs come from an environment variable or a
hidden prompt, never from the command line. ``export`` writes plaintext keys for the
simulated SAM only to a file (mode 0600) and only with an explicit acknowledgement flag.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from healthcard_apdu.app.connect import env_secret
from healthcard_apdu.cli.common import EXIT_USAGE, die, emit, exit_on_errors
from healthcard_apdu.cli.options import hidden_prompt, passphrase_env_option, pkcs11_options
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.fileio import parse_json, write_file
from healthcard_apdu.security.keyset import (
    FILE_FORMAT,
    KeySet,
    check_roles,
    read_key_check_values,
)
from healthcard_apdu.security.keyspec import (
    DEFAULT_ROLES,
    EHC_SIGNING_KEY,
    PLATFORM_ROLES,
    SM2_KEY_ROLES,
    STANDARD_KEY_SPECS,
)

_ALGORITHMS = {"sm4": BlockCipher.SM4, "3des": BlockCipher.TDES}


def _passphrase(env: str, *, confirm: bool) -> str:
    """From the variable ``env``, else the terminal (asked twice with ``confirm``)."""
    return env_secret(env, "Key-file passphrase",
                      lambda prompt: hidden_prompt(prompt, confirm=confirm))()


def _kcv_rows(algorithm: BlockCipher, kcvs: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for role, kcv in kcvs.items():
        spec = STANDARD_KEY_SPECS.get(role)
        rows.append(
            {
                "role": role,
                "algorithm": "SM2" if role in SM2_KEY_ROLES else algorithm.name,
                "kcv": kcv,
                "sam_p1p2": f"{spec.sam_p1:02X}{spec.sam_p2:02X}" if spec else "",
            }
        )
    return rows


def _check_new(path: Path, force: bool) -> None:
    if path.exists() and not force:
        die(f"{path} exists; use --force to replace it", EXIT_USAGE)


def _load_source(source: Path, passphrase_env: str) -> KeySet:
    """An encrypted key file (asks for its passphrase) or a plaintext key JSON."""
    try:
        document = parse_json(source.read_bytes())
    except OSError as exc:
        die(f"{source}: cannot read ({exc.strerror})", EXIT_USAGE)
    except ValueError as exc:
        die(f"{source}: not a readable JSON key file ({exc})", EXIT_USAGE)
    if isinstance(document, dict) and document.get("format") == FILE_FORMAT:
        return KeySet.load(source, _passphrase(passphrase_env, confirm=False))
    if not isinstance(document, dict):
        die(f"{source}: expected a JSON object", EXIT_USAGE)
    return KeySet.from_plain_dict(document, str(source))


passphrase_option = passphrase_env_option
_with_pkcs11 = pkcs11_options


def _open_token(label: str, module_path: str | None, pin_env: str) -> Any:
    from healthcard_apdu.security.pkcs11 import DEFAULT_PKCS11_MODULE, Pkcs11SecurityModule

    return Pkcs11SecurityModule(
        label,
        env_secret(pin_env, "PKCS#11 user PIN", hidden_prompt)(),
        module_path=module_path or DEFAULT_PKCS11_MODULE,
    )


def _saved(keyset: KeySet, path: Path, passphrase_env: str, kdf: str | None) -> KeySet:
    """Write ``keyset`` encrypted to ``path`` (passphrase asked twice unless in the env)."""
    passphrase = _passphrase(passphrase_env, confirm=True)
    if kdf is None:
        keyset.save(path, passphrase)
    else:
        keyset.save(path, passphrase, kdf=kdf)
    return keyset


def _store(
    out: Path | None,
    force: bool,
    as_json: bool,
    token: tuple[str | None, str | None, str],
    *,
    to_token: Callable[[Any], tuple[BlockCipher, dict[str, str]]],
    to_file: Callable[[Path], KeySet],
) -> None:
    """Put keys into a PKCS#11 token (``token`` = label, module, PIN env) or a new key file
    ``out`` (exactly one), then print the KCVs."""
    label, module_path, pin_env = token
    if label:
        if out is not None:
            die("give either OUT or --pkcs11-token, not both", EXIT_USAGE)
        module = _open_token(label, module_path, pin_env)
        try:
            algorithm, kcvs = to_token(module)
        finally:
            module.close()
        emit(_kcv_rows(algorithm, kcvs), as_json)
        return
    if out is None:
        die("give OUT (key file) or --pkcs11-token", EXIT_USAGE)
    _check_new(out, force)
    keyset = to_file(out)
    emit(_kcv_rows(keyset.algorithm, keyset.key_check_values()), as_json)


@click.group("keys")
def keys_group() -> None:
    """Master keys: generate, import, list KCVs, export for the simulated SAM."""


@keys_group.command("generate")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option(
    "--algorithm",
    type=click.Choice(sorted(_ALGORITHMS)),
    default="sm4",
    show_default=True,
    help="Block cipher of the key set.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE",
    help="Key role to generate (repeatable; default: all standard roles).",
)
@click.option("--no-sm2", is_flag=True, help="Do not generate the SAM's SM2 key and certificate.")
@click.option("--custom-role", "custom_roles", multiple=True, metavar="ROLE",
              help="Accept ROLE though it is not a standard role (a custom profile's key).")
@click.option(
    "--platform",
    is_flag=True,
    help="E-card platform keys: EHC_SECURITY, EHC_PROTECTION (SM4) and EHC_SIGNING (SM2); "
    "no SAM key. Add --role to pick some of them.",
)
@click.option(
    "--kdf", type=click.Choice(["scrypt", "pbkdf2-sha256"]), default="scrypt", show_default=True
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@passphrase_option
@_with_pkcs11
def generate_command(
    out: Path | None,
    algorithm: str,
    roles: tuple[str, ...],
    no_sm2: bool,
    custom_roles: tuple[str, ...],
    platform: bool,
    kdf: str,
    force: bool,
    as_json: bool,
    passphrase_env: str,
    pkcs11_token: str | None,
    pkcs11_module: str | None,
    pkcs11_pin_env: str,
) -> None:
    """Generate random master keys into an encrypted key file OUT, or inside a PKCS#11 token.

    The SAM PIN of a new key set is 123456 (the test PIN of the simulated SAM). With
    --platform: the e-card platform keys (docs/ehc.md), SM4 only, never in a PKCS#11 token.
    """
    if platform:
        outside = [role for role in roles if role not in PLATFORM_ROLES]
        if outside:
            die(f"--platform takes only platform roles ({', '.join(PLATFORM_ROLES)}), "
                f"not {', '.join(outside)}", EXIT_USAGE)
        no_sm2 = True
    selected = roles or (PLATFORM_ROLES if platform else DEFAULT_ROLES)
    with exit_on_errors():
        check_roles(selected, custom_roles)
        _store(
            out, force, as_json, (pkcs11_token, pkcs11_module, pkcs11_pin_env),
            to_token=lambda module: (
                BlockCipher.TDES, module.generate_keys(selected, replace=force)
            ),
            to_file=lambda path: _saved(
                KeySet.generate(selected, _ALGORITHMS[algorithm], with_sm2=not no_sm2),
                path, passphrase_env, kdf,
            ),
        )


@keys_group.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Replace an existing file / token keys.")
@click.option("--custom-role", "custom_roles", multiple=True, metavar="ROLE",
              help="Accept ROLE though it is not a standard role (a custom profile's key).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@passphrase_option
@_with_pkcs11
def import_command(
    source: Path,
    out: Path | None,
    force: bool,
    custom_roles: tuple[str, ...],
    as_json: bool,
    passphrase_env: str,
    pkcs11_token: str | None,
    pkcs11_module: str | None,
    pkcs11_pin_env: str,
) -> None:
    """Import master keys from SOURCE into an encrypted key file OUT or a PKCS#11 token.

    SOURCE is a plaintext key JSON ({"algorithm": "sm4"|"3des", "keys": {ROLE: HEX}}, optional
    "kcv" per key is checked) or an encrypted key file (for loading a 3DES set into a token).
    """
    with exit_on_errors():
        keyset = _load_source(source, passphrase_env)
        check_roles(keyset.keys, custom_roles)
        _store(
            out, force, as_json, (pkcs11_token, pkcs11_module, pkcs11_pin_env),
            to_token=lambda module: (
                keyset.algorithm, module.import_keyset(keyset, replace=force)
            ),
            to_file=lambda path: _saved(keyset, path, passphrase_env, None),
        )


@keys_group.command("list")
@click.argument(
    "keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_with_pkcs11
def list_command(
    keyfile: Path | None,
    as_json: bool,
    pkcs11_token: str | None,
    pkcs11_module: str | None,
    pkcs11_pin_env: str,
) -> None:
    """List roles and key check values (no passphrase needed for a key file)."""
    with exit_on_errors():
        if pkcs11_token:
            module = _open_token(pkcs11_token, pkcs11_module, pkcs11_pin_env)
            try:
                emit(_kcv_rows(BlockCipher.TDES, module.key_check_values()), as_json)
            finally:
                module.close()
            return
        if keyfile is None:
            die("give KEYFILE or --pkcs11-token", EXIT_USAGE)
        algorithm, kcvs = read_key_check_values(keyfile)
        emit(_kcv_rows(algorithm, kcvs), as_json)


@keys_group.command("export")
@click.argument("keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (created with mode 0600). Standard output is refused.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["simulator", "plain"]),
    default="simulator",
    show_default=True,
    help="simulator: key file of the simulated SAM; plain: plaintext key JSON.",
)
@click.option(
    "--i-understand-this-exports-keys",
    "acknowledged",
    is_flag=True,
    help="Required: the output holds every master key in clear.",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@passphrase_option
def export_command(
    keyfile: Path, out: Path, fmt: str, acknowledged: bool, force: bool, passphrase_env: str
) -> None:
    """Export master keys IN CLEAR to a file, for the simulated SAM (tests, development)."""
    if not acknowledged:
        die(
            "export writes every master key in clear; add --i-understand-this-exports-keys",
            EXIT_USAGE,
        )
    if str(out) == "-":
        die("export never writes keys to standard output; give a file with --out", EXIT_USAGE)
    _check_new(out, force)
    with exit_on_errors():
        keyset = KeySet.load(keyfile, _passphrase(passphrase_env, confirm=False))
        from healthcard_apdu.security.export import simulator_sam_document

        document = simulator_sam_document(keyset) if fmt == "simulator" else keyset.to_plain_dict()
        write_file(out, json.dumps(document, indent=2) + "\n")
    click.echo(f"wrote {len(keyset.keys)} keys in clear to {out} (mode 0600)")


@keys_group.command("export-public")
@click.argument("keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--role", default=EHC_SIGNING_KEY, show_default=True, help="SM2 key role.")
@click.option("--issuer", default="", help="Issuer name recorded in the entry.")
@click.option("--not-before", metavar="ISO-TIME", help="Start of the key's validity window.")
@click.option("--not-after", metavar="ISO-TIME", help="End of the window (key rotation).")
@click.option(
    "--trust-list",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Add the entry to this trust list (created if missing; an entry with the same kid "
    "is replaced, e.g. to close its window).",
)
@click.option("--pem", "pem_only", is_flag=True, help="Print only the PEM public key.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the default output).")
@passphrase_option
def export_public_command(
    keyfile: Path,
    role: str,
    issuer: str,
    not_before: str | None,
    not_after: str | None,
    trust_list: Path | None,
    pem_only: bool,
    as_json: bool,
    passphrase_env: str,
) -> None:
    """Print the trust-list entry (kid, issuer, window, SubjectPublicKeyInfo PEM) of an SM2
    signing key; with --trust-list also add it there. Nothing secret is printed."""
    from healthcard_apdu.ehc.trust import TrustedKey, TrustList, parse_time
    from healthcard_apdu.security.software import SoftwareSecurityModule

    with exit_on_errors():
        keyset = KeySet.load(keyfile, _passphrase(passphrase_env, confirm=False))
        public = SoftwareSecurityModule(keyset).public_key_of(role)
        entry = TrustedKey(
            public,
            issuer,
            parse_time(not_before, "--not-before") if not_before else None,
            parse_time(not_after, "--not-after") if not_after else None,
        )
        if trust_list is not None:
            listed = TrustList.load(trust_list) if trust_list.exists() else TrustList()
            listed.add(entry, replace=True)
            listed.save(trust_list)
    if pem_only:
        click.echo(entry.pem(), nl=False)
        return
    emit(entry.to_dict(), True)
