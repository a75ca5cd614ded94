"""The ``healthcard keys`` command group with key files (PKCS#11: test_security_pkcs11)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from healthcard_apdu.cli.keys import keys_group
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security import KeySet, read_key_check_values

PASSPHRASE = "cli-passphrase-42"
ENV = {"HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE}


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=ENV if env is None else env).invoke(keys_group, list(args))
    return result.exit_code, result.stdout, result.stderr


def _secret_hex(keyset: KeySet) -> list[str]:
    return [k.value.hex().upper() for k in keyset.keys.values()] + [
        k.value.hex() for k in keyset.keys.values()
    ]


def test_generate_then_list_shows_kcvs_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    code, out, _ = _run(
        "generate",
        str(path),
        "--algorithm",
        "3des",
        "--role",
        "RK1_DF03",
        "--role",
        "MK_MF",
        "--json",
    )
    assert code == 0
    rows = json.loads(out)
    keyset = KeySet.load(path, PASSPHRASE)
    assert keyset.algorithm is BlockCipher.TDES and set(keyset.keys) == {"RK1_DF03", "MK_MF"}
    assert {r["role"]: r["kcv"] for r in rows} == keyset.key_check_values()
    assert next(r for r in rows if r["role"] == "RK1_DF03")["sam_p1p2"] == "4734"
    code, listed, _ = _run("list", str(path), env={})  # no passphrase needed
    assert code == 0
    for role, kcv in keyset.key_check_values().items():
        assert role in listed and kcv in listed
    assert not any(s in out + listed for s in _secret_hex(keyset))


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{}")
    code, _, err = _run("generate", str(path), "--role", "MK_MF")
    assert code == 2 and "exists; use --force" in err
    assert path.read_text() == "{}"


def test_generate_prompts_for_passphrase_twice(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    result = CliRunner(env={}).invoke(
        keys_group,
        ["generate", str(path), "--role", "MK_MF", "--no-sm2"],
        input="typed-pass\ntyped-pass\n",
    )
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "typed-pass" not in result.stdout
    assert KeySet.load(path, "typed-pass").sm2_private is None


def test_import_plain_json_into_encrypted_file(tmp_path: Path) -> None:
    key = "0123456789ABCDEFFEDCBA9876543210"
    source = tmp_path / "plain.json"
    source.write_text(json.dumps({"algorithm": "3des", "keys": {"UK1_DDF1": key}}))
    out = tmp_path / "keys.json"
    code, stdout, _ = _run("import", str(source), str(out))
    assert code == 0 and "08D7B4" in stdout and key not in stdout
    assert KeySet.load(out, PASSPHRASE).keys["UK1_DDF1"].value.hex().upper() == key
    source.write_text(json.dumps({"keys": {"UK1_DDF1": {"value": key, "kcv": "FFFFFF"}}}))
    code, _, err = _run("import", str(source), str(tmp_path / "other.json"))
    assert code == 4 and "does not match the stated FFFFFF" in err


def test_export_needs_acknowledgement_and_a_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert _run("generate", str(path), "--role", "RK1_DF03", "--role", "STK_DDF1")[0] == 0
    keyset = KeySet.load(path, PASSPHRASE)
    out = tmp_path / "sam.json"
    code, _, err = _run("export", str(path), "--out", str(out))
    assert code == 2 and "--i-understand-this-exports-keys" in err and not out.exists()
    code, stdout, err = _run("export", str(path), "--out", "-", "--i-understand-this-exports-keys")
    assert code == 2 and "standard output" in err
    code, stdout, _ = _run(
        "export", str(path), "--out", str(out), "--i-understand-this-exports-keys"
    )
    assert code == 0 and not any(s in stdout for s in _secret_hex(keyset))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    document = json.loads(out.read_text())
    assert document["format"] == "healthcard-sim-sam/1" and document["pin"] == "123456"
    exported = {k["role"]: k for k in document["keys"]}
    assert exported["RK1_DF03"]["key"] == keyset.keys["RK1_DF03"].value.hex().upper()
    assert (exported["RK1_DF03"]["usage"], exported["RK1_DF03"]["index"]) == ("47", "34")
    assert (exported["STK_DDF1"]["usage"], exported["STK_DDF1"]["index"]) == ("28", "02")
    assert keyset.certificate is not None
    assert document["files"]["EF1C"] == keyset.certificate.hex().upper()


def test_export_plain_round_trips_through_import(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert _run("generate", str(path), "--role", "UK1_DF03")[0] == 0
    plain = tmp_path / "plain.json"
    assert (
        _run(
            "export",
            str(path),
            "--out",
            str(plain),
            "--format",
            "plain",
            "--i-understand-this-exports-keys",
        )[0]
        == 0
    )
    again = tmp_path / "again.json"
    assert _run("import", str(plain), str(again))[0] == 0
    assert read_key_check_values(again) == read_key_check_values(path)


def test_wrong_passphrase_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert _run("generate", str(path), "--role", "MK_MF")[0] == 0
    code, _, err = _run(
        "export",
        str(path),
        "--out",
        str(tmp_path / "x.json"),
        "--i-understand-this-exports-keys",
        env={"HEALTHCARD_KEYS_PASSPHRASE": "nope"},
    )
    assert code == 4 and "wrong passphrase" in err and "nope" not in err
