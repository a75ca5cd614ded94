"""``healthcard ehc`` and the platform side of ``healthcard keys``, end to end: key files,
trust lists, IDs, QR images decoded by zbarimg, verification exit codes, registry and uses."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ehc_support import (
    GUIFUTONG,
    LI_KUN,
    SPEC_PROTECTION_KEY,
    SPEC_SECURITY_KEY,
    decode_svg,
    spec_keyset,
    zbar_decode,
)
from healthcard_apdu.cli import main
from healthcard_apdu.ehc import Registry, TrustList, parse_envelope
from healthcard_apdu.security import KeySet, read_key_check_values

PASSPHRASE = "ehc-cli-passphrase"
ENV = {"HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE}
HSM_EHC_ID = "37B098FC786EE122F2A8D4A1CB4B8DEE382E7813958914F15D3426F89E2E20DD"
PERSON = ["--id-type", "01", "--id-number", GUIFUTONG.id_number, "--name", GUIFUTONG.name]
USE = ["--org-code", "H110105001", "--terminal", "T01", "--channel", "02", "--medstep", "010101"]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None
        ) -> tuple[int, str, str]:
    result = CliRunner(env=ENV if env is None else env).invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    """Platform keys with the spec's test keys (fast KDF for tests)."""
    path = tmp_path / "platform.keys"
    spec_keyset().save(path, PASSPHRASE, scrypt_n=2**10)
    return path


@pytest.fixture
def trust(tmp_path: Path, keyfile: Path) -> Path:
    path = tmp_path / "trust.json"
    code, _, err = run("keys", "export-public", str(keyfile), "--issuer", "test platform",
                       "--trust-list", str(path))
    assert code == 0, err
    return path


def _secrets(keyfile: Path) -> list[str]:
    keyset = KeySet.load(keyfile, PASSPHRASE)
    values = [k.value.hex() for k in keyset.keys.values()]
    values += [f"{d:064x}" for d in keyset.sm2_keys.values()]
    return values + [v.upper() for v in values] + [PASSPHRASE]


# -- keys ------------------------------------------------------------------------------------


def test_keys_generate_platform_and_list(tmp_path: Path) -> None:
    path = tmp_path / "p.keys"
    code, out, err = run("keys", "generate", "--platform", str(path), "--kdf", "pbkdf2-sha256",
                         "--json")
    assert code == 0, err
    rows = {row["role"]: row for row in json.loads(out)}
    assert set(rows) == {"EHC_SECURITY", "EHC_PROTECTION", "EHC_SIGNING"}
    assert rows["EHC_SIGNING"]["algorithm"] == "SM2" and rows["EHC_SECURITY"]["algorithm"] == "SM4"
    keyset = KeySet.load(path, PASSPHRASE)
    assert keyset.sm2_private is None and keyset.certificate is None  # no SAM key
    assert read_key_check_values(path)[1] == keyset.key_check_values()
    code, listed, _ = run("keys", "list", str(path), env={})
    assert code == 0 and "EHC_SIGNING" in listed and "SM2" in listed
    assert not any(s in out + listed for s in _secrets(path))


def test_keys_generate_platform_refusals(tmp_path: Path) -> None:
    code, _, err = run("keys", "generate", "--platform", "--role", "MK_MF", str(tmp_path / "a"))
    assert code == 2 and "platform roles" in err
    code, _, err = run("keys", "generate", "--role", "EHC_SECURITY", "--algorithm", "3des",
                       str(tmp_path / "b"))
    assert code == 4 and "EHC_SECURITY is an SM4 key" in err


def test_export_public_builds_the_trust_list(tmp_path: Path, keyfile: Path, trust: Path) -> None:
    listed = TrustList.load(trust)
    (entry,) = list(listed)
    code, out, _ = run("keys", "export-public", str(keyfile), "--json")
    assert code == 0 and json.loads(out)["kid"] == entry.kid_hex
    assert json.loads(out)["public_key"] == entry.pem()
    closing = "2030-01-01T00:00:00+08:00"
    code, _, _ = run("keys", "export-public", str(keyfile), "--trust-list", str(trust),
                     "--not-after", closing)
    assert code == 0
    (rotated,) = list(TrustList.load(trust))
    assert rotated.kid == entry.kid and rotated.not_after == dt.datetime.fromisoformat(closing)
    code, pem, _ = run("keys", "export-public", str(keyfile), "--pem")
    assert code == 0 and pem == entry.pem()
    assert not any(s in out + pem for s in _secrets(keyfile))
    code, _, err = run("keys", "export-public", str(keyfile), "--role", "EHC_OTHER")
    assert code == 4 and "EHC_OTHER" in err


# -- ehc id ----------------------------------------------------------------------------------


def test_ehc_id_gives_the_hsm_vector_and_decodes_it(keyfile: Path) -> None:
    code, out, err = run("ehc", "id", *PERSON, "--keys", str(keyfile), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["ehc_id"] == HSM_EHC_ID
    assert document["master_index"] == (
        "A59E97C486E8F1C29F46EA87A515E61DB1EECF23076B4993F0E0C5CBEBF909C8"
    )
    assert document["static_qr"] == HSM_EHC_ID + ":1" and document["registry"] is None
    code, out, _ = run("ehc", "id", "--decode", HSM_EHC_ID, "--master-index",
                       document["master_index"], "--keys", str(keyfile), "--json")
    assert code == 0
    assert json.loads(out) == {"ehc_id": HSM_EHC_ID, "id_type": "01",
                               "id_number": GUIFUTONG.id_number}
    assert not any(s in out for s in _secrets(keyfile))


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--id-type", "01", "--id-number", "110101199211140618", "--name", "x"], 2,
         "id_number: check character"),
        (["--id-type", "01", "--id-number", "110101199211140619"], 2, "--name"),
        (["--decode", HSM_EHC_ID, "--master-index", "00" * 32], 1, "identity-mismatch"),
    ],
)
def test_ehc_id_errors(keyfile: Path, args: list[str], code: int, words: str) -> None:
    got, _, err = run("ehc", "id", *args, "--keys", str(keyfile))
    assert got == code and words in err


def test_ehc_id_key_errors_exit_4(tmp_path: Path, keyfile: Path) -> None:
    code, _, err = run("ehc", "id", *PERSON, "--keys", str(keyfile),
                       env={"HEALTHCARD_KEYS_PASSPHRASE": "wrong"})
    assert code == 4 and "wrong passphrase" in err
    protection_only = tmp_path / "protection.keys"
    KeySet.generate(["EHC_PROTECTION"], with_sm2=False).save(protection_only, PASSPHRASE,
                                                             scrypt_n=2**10)
    code, _, err = run("ehc", "id", *PERSON, "--keys", str(protection_only))
    assert code == 4 and "EHC_SECURITY" in err
    code, _, err = run("ehc", "id", *PERSON)
    assert code == 2 and "--keys" in err


def test_ehc_id_registers_with_the_physical_card(tmp_path: Path, keyfile: Path) -> None:
    db = tmp_path / "registry.sqlite"
    args = ["ehc", "id", *PERSON, "--keys", str(keyfile), "--registry", str(db),
            "--card-number", GUIFUTONG.id_number, "--terminal", "window-3"]
    code, out, err = run(*args)
    assert code == 0 and "created" in out, err
    code, out, _ = run(*args)
    assert code == 0 and "already registered" in out
    with Registry.open(db) as registry:
        record = registry.find_by_card_number(GUIFUTONG.id_number)
        assert record is not None and record.ehc_id == HSM_EHC_ID
        assert record.issued_by == "window-3"


# -- ehc qr make / parse ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["static", "dynamic", "signed"])
def test_qr_make_writes_images_that_zbar_reads(tmp_path: Path, keyfile: Path, kind: str) -> None:
    png, svg = tmp_path / f"{kind}.png", tmp_path / f"{kind}.svg"
    code, out, err = run("ehc", "qr", "make", "--kind", kind, *PERSON, "--keys", str(keyfile),
                         "--png", str(png), "--svg", str(svg), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert zbar_decode(png) == document["text"]
    assert decode_svg(svg, tmp_path) == document["text"]
    assert document["qr_version"] <= (10 if kind == "signed" else 5)
    if kind == "signed":
        assert parse_envelope(document["text"]).claims().national().ehc_id == HSM_EHC_ID
    else:
        assert document["text"].startswith(HSM_EHC_ID + (":1" if kind == "static" else ":0:"))


def test_qr_make_draws_on_the_terminal(keyfile: Path) -> None:
    code, out, _ = run("ehc", "qr", "make", "--kind", "static", "--ehc-id", HSM_EHC_ID)
    lines = out.splitlines()
    assert code == 0 and lines[0] == HSM_EHC_ID + ":1"  # a known ID's static code needs no key
    assert len(lines) > 10 and set("".join(lines[1:])) <= {"█", "▀", "▄", " "}
    code, out, _ = run("ehc", "qr", "make", "--kind", "static", "--ehc-id", HSM_EHC_ID,
                       "--issuer-code", "5100A0013", "--no-terminal")
    assert out == HSM_EHC_ID + ":1::5100A0013\n"
    code, _, err = run("ehc", "qr", "make", "--kind", "dynamic", "--ehc-id", HSM_EHC_ID)
    assert code == 2 and "--keys" in err
    code, _, err = run("ehc", "qr", "make", "--ehc-id", "ABC", "--kind", "static")
    assert code == 2 and "ehc_id" in err


def test_qr_parse(keyfile: Path) -> None:
    code, out, _ = run("ehc", "qr", "parse", HSM_EHC_ID.lower() + ":1::5100A0013", "--json")
    assert code == 0 and json.loads(out) == {
        "kind": "national-static", "ehc_id": HSM_EHC_ID, "code_type": 1, "validity": None,
        "issuer_code": "5100A0013", "national_text": HSM_EHC_ID + ":1::5100A0013",
    }
    _, signed, _ = run("ehc", "qr", "make", "--kind", "signed", "--ehc-id", HSM_EHC_ID,
                       "--keys", str(keyfile), "--no-terminal")
    code, out, _ = run("ehc", "qr", "parse", "-", "--json", stdin=signed)
    document = json.loads(out)
    assert code == 0 and document["kind"] == "signed" and document["verified"] is False
    assert document["national_text"].startswith(HSM_EHC_ID + ":0:")
    code, _, err = run("ehc", "qr", "parse", HSM_EHC_ID + ":2")
    assert code == 2 and "code_type" in err
    code, _, err = run("ehc", "qr", "parse", "EHC1:" + signed[5:40])
    assert code == 2 and "envelope" in err


# -- ehc qr verify ---------------------------------------------------------------------------


def _make(keyfile: Path, *args: str) -> str:
    code, out, err = run("ehc", "qr", "make", *args, "--keys", str(keyfile), "--no-terminal")
    assert code == 0, err
    return out.strip()


def test_verify_exit_codes(tmp_path: Path, keyfile: Path, trust: Path) -> None:
    signed = _make(keyfile, "--kind", "signed", "--ehc-id", HSM_EHC_ID)
    code, out, _ = run("ehc", "qr", "verify", signed, "--trust-list", str(trust), "--json")
    assert code == 0 and json.loads(out)["valid"] is True
    assert json.loads(out)["issuer"] == "test platform"

    envelope = parse_envelope(signed)
    forged = type(envelope)(envelope.protected, envelope.payload,
                            bytes(64), envelope.kid).text()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    empty_trust = tmp_path / "empty.json"
    TrustList().save(empty_trust)
    for args, reason in (
        ([forged, "--trust-list", str(trust)], "forged"),
        ([signed, "--trust-list", str(trust), "--now", later], "expired"),
        ([signed, "--trust-list", str(empty_trust)], "unknown-issuer"),
        ([signed], "unknown-issuer"),
    ):
        code, out, err = run("ehc", "qr", "verify", *args, "--json")
        assert code == 1 and json.loads(out) == {"valid": False, "reason": reason,
                                                 "message": json.loads(out)["message"]}
        code, _, err = run("ehc", "qr", "verify", *args)
        assert code == 1 and err.startswith(f"invalid: {reason}: ")

    dynamic = _make(keyfile, "--kind", "dynamic", "--ehc-id", HSM_EHC_ID)
    code, out, _ = run("ehc", "qr", "verify", dynamic, "--keys", str(keyfile))
    assert code == 0 and "national-dynamic" in out
    code, _, err = run("ehc", "qr", "verify", dynamic)
    assert code == 2 and "--keys" in err
    code, _, err = run("ehc", "qr", "verify", dynamic, "--keys", str(keyfile),
                       env={"HEALTHCARD_KEYS_PASSPHRASE": "wrong"})
    assert code == 4
    code, _, err = run("ehc", "qr", "verify", "not a code")
    assert code == 2 and "ehc_id" in err
    code, _, err = run("ehc", "qr", "verify", HSM_EHC_ID + ":1")
    assert code == 1 and "unverifiable" in err


def test_verify_records_uses_once_and_exports_them(tmp_path: Path, keyfile: Path,
                                                   trust: Path) -> None:
    db = str(tmp_path / "registry.sqlite")
    assert run("ehc", "id", *PERSON, "--keys", str(keyfile), "--registry", db)[0] == 0
    signed = _make(keyfile, "--kind", "signed", *PERSON)
    code, out, err = run("ehc", "qr", "verify", signed, "--trust-list", str(trust),
                         "--registry", db, *USE, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["card"]["person"]["name"] == GUIFUTONG.name
    assert document["use"]["medstep"] == "010101"
    code, _, err = run("ehc", "qr", "verify", signed, "--trust-list", str(trust),
                       "--registry", db, *USE)
    assert code == 1 and "replayed" in err
    # bad use options: refused before anything is verified or written
    fresh = _make(keyfile, "--kind", "signed", *PERSON)
    bad = [*USE[:-1], "010108"]
    code, _, err = run("ehc", "qr", "verify", fresh, "--trust-list", str(trust),
                       "--registry", db, *bad)
    assert code == 2 and "medstep" in err
    code, _, err = run("ehc", "qr", "verify", fresh, "--trust-list", str(trust), *USE)
    assert code == 2 and "--registry" in err
    code, _, err = run("ehc", "qr", "verify", fresh, "--trust-list", str(trust), "--registry",
                       db, "--org-code", "H1")
    assert code == 2 and "--terminal" in err
    static = f"{HSM_EHC_ID}:1"
    code, _, _ = run("ehc", "qr", "verify", static, "--registry", db, *USE)
    assert code == 0

    code, out, _ = run("ehc", "uses", "--registry", db)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["kind"] for line in lines] == ["signed", "national-static"]
    target = tmp_path / "uses.jsonl"
    code, _, err = run("ehc", "uses", "--registry", db, "--out", str(target),
                       "--ehc-id", HSM_EHC_ID.lower())
    assert code == 0 and "wrote 2 uses" in err and target.read_text() == out
    code, out, _ = run("ehc", "uses", "--registry", db, "--json",
                       "--since", "2100-01-01T00:00:00+00:00")
    assert code == 0 and json.loads(out) == []


def test_revoke_in_registry_and_list(tmp_path: Path, keyfile: Path, trust: Path) -> None:
    db = str(tmp_path / "registry.sqlite")
    revocations = tmp_path / "revoked.json"
    assert run("ehc", "id", *PERSON, "--keys", str(keyfile), "--registry", db)[0] == 0
    code, out, err = run("ehc", "revoke", HSM_EHC_ID, "--reason", "card reported lost",
                         "--registry", db, "--revocations", str(revocations), "--json")
    assert code == 0, err
    assert json.loads(out) == {"ehc_id": HSM_EHC_ID, "registry": "revoked",
                               "revocations": str(revocations)}
    signed = _make(keyfile, "--kind", "signed", "--ehc-id", HSM_EHC_ID)
    code, _, err = run("ehc", "qr", "verify", signed, "--trust-list", str(trust),
                       "--revocations", str(revocations))
    assert code == 1 and "revoked-card" in err
    code, _, err = run("ehc", "qr", "verify", f"{HSM_EHC_ID}:1", "--registry", db)
    assert code == 1 and "revoked-card" in err
    other = _make(keyfile, "--kind", "static", *["--id-type", "01", "--id-number",
                                                 LI_KUN.id_number, "--name", LI_KUN.name])
    code, _, err = run("ehc", "revoke", other.split(":")[0], "--reason", "x", "--registry", db)
    assert code == 2 and "no e-card" in err


# -- PKCS#11: the platform keys need mechanisms SoftHSM2 does not have -----------------------


@pytest.mark.skipif(shutil.which("softhsm2-util") is None, reason="SoftHSM2 not installed")
def test_pkcs11_token_refuses_platform_keys_clearly(tmp_path: Path) -> None:
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf), HEALTHCARD_PKCS11_PIN="4711",
               HEALTHCARD_KEYS_PASSPHRASE=PASSPHRASE)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "ehc", "--so-pin",
                    "12345678", "--pin", "4711"], check=True, capture_output=True, env=env)
    cli = [sys.executable, "-m", "healthcard_apdu"]
    done = subprocess.run([*cli, "keys", "generate", "--platform", "--pkcs11-token", "ehc"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 4
    assert "cannot hold e-card platform key EHC_SECURITY" in done.stderr
    assert "SM4" in done.stderr
    done = subprocess.run([*cli, "ehc", "id", *PERSON, "--pkcs11-token", "ehc"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 4 and "EHC_SECURITY" in done.stderr and "SM4" in done.stderr
    # signing is delegated to signer= like the SAM's record signing
    keyfile = tmp_path / "platform.keys"
    KeySet.generate(["EHC_SIGNING"], with_sm2=False).save(keyfile, PASSPHRASE, scrypt_n=2**10)
    script = (
        "import sys\n"
        "from healthcard_apdu.security import KeySet, SoftwareSecurityModule\n"
        "from healthcard_apdu.security.pkcs11 import Pkcs11SecurityModule\n"
        "from healthcard_apdu.security.errors import UnsupportedOperation\n"
        "soft = SoftwareSecurityModule(KeySet.load(sys.argv[1], sys.argv[2]))\n"
        "alone = Pkcs11SecurityModule('ehc', '4711')\n"
        "try:\n    alone.public_key_of('EHC_SIGNING')\nexcept UnsupportedOperation as e:\n"
        "    print('refused:', e)\n"
        "token = Pkcs11SecurityModule('ehc', '4711', signer=soft)\n"
        "assert token.public_key_of('EHC_SIGNING') == soft.public_key_of('EHC_SIGNING')\n"
        "assert len(token.sign_digest_as('EHC_SIGNING', bytes(32))) == 64\n"
        "print('delegated')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(keyfile), PASSPHRASE],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "CKM_SM2" in done.stdout and "delegated" in done.stdout


def test_secret_values_never_reach_the_output(tmp_path: Path, keyfile: Path, trust: Path) -> None:
    outputs = []
    for args in (
        ["ehc", "id", *PERSON, "--keys", str(keyfile), "--json"],
        ["ehc", "qr", "make", "--kind", "signed", *PERSON, "--keys", str(keyfile), "--json"],
        ["keys", "export-public", str(keyfile)],
        ["keys", "list", str(keyfile), "--json"],
    ):
        code, out, err = run(*args)
        assert code == 0
        outputs.append(out + err)
    text = "".join(outputs)
    for secret in [*_secrets(keyfile), SPEC_SECURITY_KEY.hex(), SPEC_PROTECTION_KEY.hex()]:
        assert secret not in text and secret.upper() not in text
