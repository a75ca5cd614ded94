"""PKCS#11 backend against a real SoftHSM2 token created in a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security import (
    STANDARD_KEY_SPECS,
    CardFactors,
    KeySet,
    SecurityModuleError,
    SoftwareSecurityModule,
    UnknownKeyRole,
    UnsupportedOperation,
    protect_update_record,
    sign_record,
    verify_record,
)
from healthcard_apdu.security.keyset import set_des_parity
from healthcard_apdu.security.pkcs11 import DEFAULT_PKCS11_MODULE, Pkcs11SecurityModule

pytestmark = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None or not Path(DEFAULT_PKCS11_MODULE).exists(),
    reason="SoftHSM2 not installed (apt-get install softhsm2)",
)

USER_PIN = "4711"
SO_PIN = "12345678"
ROLES = ("RK1_DF03", "UK1_DDF1", "STK_DDF1", "STK_DF03", "MK_MF")
FACTORS = CardFactors(bytes.fromhex("0081866B00001015"), b"21000000")
CHALLENGE = bytes.fromhex("30CB83A6ADABFE3F")
TOKENS = ("perso", "gen", "pin", "cli")


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 config with its own token directory (one per test process)."""
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        # SoftHSM2 only sees tokens that exist when the library is first initialised.
        for label in TOKENS:
            _init_token(label)
        yield conf


def _init_token(label: str) -> None:
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ],
        check=True,
        capture_output=True,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return KeySet.generate(ROLES, BlockCipher.TDES)


@pytest.fixture(scope="module")
def hsm(softhsm: Path, keyset: KeySet) -> Iterator[Pkcs11SecurityModule]:
    module = Pkcs11SecurityModule("perso", USER_PIN)
    assert module.import_keyset(keyset) == keyset.key_check_values()
    yield module
    module.close()


def test_kcvs_from_token_match_software(hsm: Pkcs11SecurityModule, keyset: KeySet) -> None:
    assert hsm.key_check_values() == dict(sorted(keyset.key_check_values().items()))


@pytest.mark.parametrize("role", ROLES)
def test_card_key_equals_software_modulo_parity(
    hsm: Pkcs11SecurityModule, keyset: KeySet, role: str
) -> None:
    soft = SoftwareSecurityModule(keyset)
    spec = STANDARD_KEY_SPECS[role]
    from_token = hsm.derive_card_key(spec, FACTORS)
    from_software = soft.derive_card_key(spec, FACTORS)
    assert set_des_parity(from_token) == set_des_parity(from_software)
    assert from_token == set_des_parity(from_token)  # the token sets parity


@pytest.mark.parametrize("role", ["RK1_DF03", "UK1_DDF1"])
def test_external_auth_data_equals_software(
    hsm: Pkcs11SecurityModule, keyset: KeySet, role: str
) -> None:
    soft = SoftwareSecurityModule(keyset)
    spec = STANDARD_KEY_SPECS[role]
    a = bytes.fromhex("1122334455667788")
    expected = soft.external_auth_data(spec, FACTORS, CHALLENGE, a)
    assert hsm.external_auth_data(spec, FACTORS, CHALLENGE, a) == expected
    assert expected[8:] == a + b"\x01"


@pytest.mark.parametrize("role", ["STK_DDF1", "STK_DF03"])
def test_secure_messaging_equals_software(
    hsm: Pkcs11SecurityModule, keyset: KeySet, role: str
) -> None:
    soft = SoftwareSecurityModule(keyset)
    spec = STANDARD_KEY_SPECS[role]
    plain = bytes.fromhex("07042011FFFF") + bytes(range(30))
    token_session = hsm.session(spec, FACTORS, CHALLENGE)
    expected = protect_update_record(soft.session(spec, FACTORS, CHALLENGE), 1, plain)
    assert protect_update_record(token_session, 1, plain) == expected
    assert token_session.mac(b"abc", bytes(8)) == soft.session(spec, FACTORS, CHALLENGE).mac(
        b"abc", bytes(8)
    )
    token_session.close()
    with pytest.raises(SecurityModuleError, match="already released"):
        token_session.encrypt(bytes(8))


def test_old_sessions_are_destroyed_beyond_the_limit(softhsm: Path, keyset: KeySet) -> None:
    module = Pkcs11SecurityModule("perso", USER_PIN, max_live_sessions=2)
    spec = STANDARD_KEY_SPECS["UK1_DDF1"]
    sessions = [module.session(spec, FACTORS, bytes([i]) * 8) for i in range(3)]
    assert [s.closed for s in sessions] == [True, False, False]
    module.close()
    assert all(s.closed for s in sessions)
    with pytest.raises(SecurityModuleError, match="closed"):
        module.derive_card_key(spec, FACTORS)


def test_master_keys_are_not_extractable(hsm: Pkcs11SecurityModule) -> None:
    import PyKCS11

    session = hsm._open()
    (handle,) = session.findObjects([(PyKCS11.CKA_LABEL, "RK1_DF03"), (PyKCS11.CKA_TOKEN, True)])
    sensitive, extractable = session.getAttributeValue(
        handle, [PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE]
    )
    assert sensitive is True and extractable is False
    assert session.getAttributeValue(handle, [PyKCS11.CKA_VALUE]) == [None]


def test_keys_generated_inside_the_token(softhsm: Path) -> None:
    module = Pkcs11SecurityModule("gen", USER_PIN)
    kcvs = module.generate_keys(["UK1_DDF1"])
    assert list(kcvs) == ["UK1_DDF1"] and len(kcvs["UK1_DDF1"]) == 6
    spec = STANDARD_KEY_SPECS["UK1_DDF1"]
    card_key = module.derive_card_key(spec, FACTORS)
    # The session key is the card key diversified once more with the challenge.
    card_level = SoftwareSecurityModule(
        KeySet.from_plain_dict({"algorithm": "3des", "keys": {"UK1_DDF1": card_key.hex()}})
    )
    a = bytes(range(8))
    session_in_token = module.external_auth_data(spec, FACTORS, CHALLENGE, a)
    with pytest.raises(SecurityModuleError, match="already has a key labelled 'UK1_DDF1'"):
        module.generate_keys(["UK1_DDF1"])
    module.close()
    # Recompute with software from the card key: SK = diversify(K_card, R).
    from healthcard_apdu.crypto import diversify, ecb_encrypt

    sk = diversify(BlockCipher.TDES, card_key, CHALLENGE)
    assert session_in_token == ecb_encrypt(BlockCipher.TDES, sk, a) + a + b"\x01"
    assert card_level.key_check_values()["UK1_DDF1"] != kcvs["UK1_DDF1"]


def test_sm4_is_unsupported_with_role_and_mechanism(
    softhsm: Path, hsm: Pkcs11SecurityModule
) -> None:
    sm4 = Pkcs11SecurityModule("perso", USER_PIN, algorithm=BlockCipher.SM4)
    try:
        with pytest.raises(UnsupportedOperation, match=r"SM4 key RK1_DF03.*DES3_ECB_ENCRYPT_DATA"):
            sm4.session(STANDARD_KEY_SPECS["RK1_DF03"], FACTORS, CHALLENGE)
        with pytest.raises(UnsupportedOperation, match="SM4 key UK1_DDF1"):
            sm4.derive_card_key(STANDARD_KEY_SPECS["UK1_DDF1"], FACTORS)
    finally:
        sm4.close()
    with pytest.raises(UnsupportedOperation, match="SM4 key MK_MF"):
        hsm.import_keyset(KeySet.generate(("MK_MF",), BlockCipher.SM4, with_sm2=False))


def test_unknown_role_and_signing_delegation(hsm: Pkcs11SecurityModule, softhsm: Path) -> None:
    with pytest.raises(UnknownKeyRole, match="no master key labelled 'UK2_DF03'"):
        hsm.derive_card_key(STANDARD_KEY_SPECS["UK2_DF03"], FACTORS)
    with pytest.raises(UnsupportedOperation, match="no SM2"):
        hsm.sign_digest(bytes(32))
    signer = SoftwareSecurityModule(KeySet.generate(("MK_MF",), BlockCipher.TDES))
    with Pkcs11SecurityModule("perso", USER_PIN, signer=signer) as delegating:
        signature = sign_record(delegating, b"record")
        assert verify_record(b"record", signature, delegating.certificate())


def test_wrong_pin_and_unknown_token(softhsm: Path, hsm: Pkcs11SecurityModule) -> None:
    # "pin" is a token nobody in this process is logged in to.
    with pytest.raises(SecurityModuleError, match="CKR_PIN_INCORRECT") as info:
        Pkcs11SecurityModule("pin", "999999")
    assert "999999" not in str(info.value)
    with pytest.raises(SecurityModuleError, match=r"no token labelled 'missing'.*'perso'"):
        Pkcs11SecurityModule("missing", USER_PIN)


def test_cli_imports_key_file_into_token_and_lists_kcvs(softhsm: Path, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from healthcard_apdu.cli.keys import keys_group

    env = {"HEALTHCARD_KEYS_PASSPHRASE": "pw", "HEALTHCARD_PKCS11_PIN": USER_PIN}
    runner = CliRunner(env=env)
    path = tmp_path / "keys.json"
    keyset = KeySet.generate(("UK1_DDF1", "RK1_DF01"), BlockCipher.TDES)
    keyset.save(path, "pw", scrypt_n=2**10)
    result = runner.invoke(keys_group, ["import", str(path), "--pkcs11-token", "cli", "--json"])
    assert result.exit_code == 0, result.stderr
    assert {r["role"]: r["kcv"] for r in json.loads(result.stdout)} == keyset.key_check_values()
    listed = runner.invoke(keys_group, ["list", "--pkcs11-token", "cli", "--json"])
    assert {r["role"]: r["kcv"] for r in json.loads(listed.stdout)} == keyset.key_check_values()
    again = runner.invoke(keys_group, ["import", str(path), "--pkcs11-token", "cli"])
    assert again.exit_code == 4 and "already has a key labelled" in again.stderr
    generated = runner.invoke(
        keys_group, ["generate", "--pkcs11-token", "cli", "--role", "MK_MF", "--json"]
    )
    assert generated.exit_code == 0, generated.stderr
    assert [r["role"] for r in json.loads(generated.stdout)] == ["MK_MF"]
