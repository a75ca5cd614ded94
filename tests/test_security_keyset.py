"""Key sets: generation, KCVs, the encrypted key file (round trip, wrong passphrase, tampering)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security import (
    DEFAULT_ROLES,
    KeyFileError,
    KeySet,
    MasterKey,
    read_key_check_values,
)
from healthcard_apdu.security.keyset import set_des_parity

FAST_N = 2**10


def _kcv(cipher: BlockCipher, key: bytes) -> str:
    algo = algorithms.SM4(key) if cipher is BlockCipher.SM4 else TripleDES(key + key[:8])
    enc = Cipher(algo, modes.ECB()).encryptor()
    return (enc.update(bytes(cipher.block_size)) + enc.finalize())[:3].hex().upper()


def test_default_roles_cover_reference_inventory_and_issuance_keys() -> None:
    for role in (
        "IRK_DDF1",
        "STK_DDF1",
        "STK_DF03",
        "LK_DF02",
        "UK1_DDF1",
        "UK3_DF02",
        "UK2_DF03",
        "RK1_DDF1",
        "RK1_DF03",
        "BK_MF",
        "STM_MF",
        "MK_MF",
        "MK_DF03",
    ):
        assert role in DEFAULT_ROLES
    assert len(DEFAULT_ROLES) == len(set(DEFAULT_ROLES)) == 26


@pytest.mark.parametrize("cipher", [BlockCipher.SM4, BlockCipher.TDES])
def test_generate_gives_distinct_keys_with_correct_kcvs(cipher: BlockCipher) -> None:
    keyset = KeySet.generate(("RK1_DF03", "UK1_DDF1", "MK_MF"), cipher, with_sm2=False)
    values = [k.value for k in keyset.keys.values()]
    assert len(set(values)) == 3 and all(len(v) == 16 for v in values)
    for role, key in keyset.keys.items():
        assert keyset.key_check_values()[role] == key.kcv == _kcv(cipher, key.value)
    if cipher is BlockCipher.TDES:
        assert all(set_des_parity(v) == v for v in values)


def test_des_parity_sets_odd_parity_without_touching_key_bits() -> None:
    fixed = set_des_parity(bytes(range(256)))
    assert all(bin(b).count("1") % 2 == 1 for b in fixed)
    assert all((a ^ b) in (0, 1) for a, b in zip(fixed, range(256), strict=True))


def test_file_round_trip_keeps_everything(tmp_path: Path) -> None:
    keyset = KeySet.generate(("RK1_DF03", "STK_DDF1"), BlockCipher.SM4, sam_pin="654321")
    path = tmp_path / "keys.json"
    keyset.save(path, "correct horse", scrypt_n=FAST_N)
    loaded = KeySet.load(path, "correct horse")
    assert loaded.algorithm is BlockCipher.SM4
    assert loaded.keys == keyset.keys  # values, versions and KCVs
    assert loaded.sam_pin == "654321"
    assert loaded.sm2_private == keyset.sm2_private
    assert loaded.certificate == keyset.certificate
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pbkdf2_file_round_trip(tmp_path: Path) -> None:
    keyset = KeySet.generate(("UK1_DDF1",), BlockCipher.TDES, with_sm2=False)
    path = tmp_path / "keys.json"
    keyset.save(path, b"pw", kdf="pbkdf2-sha256", pbkdf2_iterations=10_000)
    assert json.loads(path.read_text())["kdf"]["name"] == "pbkdf2-sha256"
    assert KeySet.load(path, b"pw").keys["UK1_DDF1"].value == keyset.keys["UK1_DDF1"].value


def test_file_holds_no_key_material_in_clear(tmp_path: Path) -> None:
    keyset = KeySet.generate(("RK1_DF03",), BlockCipher.SM4)
    path = tmp_path / "keys.json"
    keyset.save(path, "pw", scrypt_n=FAST_N)
    text = path.read_text().upper()
    assert keyset.keys["RK1_DF03"].value.hex().upper() not in text
    assert f"{keyset.sm2_private:064X}" not in text
    assert keyset.keys["RK1_DF03"].kcv in text


def test_kcvs_readable_without_passphrase(tmp_path: Path) -> None:
    keyset = KeySet.generate(("RK1_DF03", "MK_DF01"), BlockCipher.TDES, with_sm2=False)
    path = tmp_path / "keys.json"
    keyset.save(path, "pw", scrypt_n=FAST_N)
    assert read_key_check_values(path) == (BlockCipher.TDES, keyset.key_check_values())


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeySet.generate(("RK1_DF03",), with_sm2=False).save(path, "right", scrypt_n=FAST_N)
    with pytest.raises(KeyFileError, match=r"keys\.json: wrong passphrase, or the file was mod"):
        KeySet.load(path, "wrong")
    with pytest.raises(KeyFileError, match="must not be empty"):
        KeySet.load(path, "")


def _flip_first_byte(b64: str) -> str:
    raw = base64.b64decode(b64)
    return base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()


def _tamper(path: Path, mutate: object) -> None:
    document = json.loads(path.read_text())
    assert callable(mutate)
    mutate(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.__setitem__("ciphertext", _flip_first_byte(d["ciphertext"])),
        lambda d: d["kcv"].__setitem__("RK1_DF03", "000000"),
        lambda d: d.__setitem__("algorithm", "3des"),
        lambda d: d["kdf"].__setitem__("n", 2**11),
        lambda d: d["aead"].__setitem__("nonce", base64.b64encode(bytes(12)).decode()),
    ],
    ids=["ciphertext", "clear-kcv", "algorithm", "kdf-param", "nonce"],
)
def test_tampered_file_is_rejected(tmp_path: Path, mutate: object) -> None:
    path = tmp_path / "keys.json"
    KeySet.generate(("RK1_DF03",), with_sm2=False).save(path, "pw", scrypt_n=FAST_N)
    _tamper(path, mutate)
    with pytest.raises(KeyFileError, match="wrong passphrase, or the file was modified"):
        KeySet.load(path, "pw")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"format": "other"}', "format is not"),
        ('{"format": "healthcard-apdu/keyset", "version": 9}', "version 9 unsupported"),
        ('{"format": "healthcard-apdu/keyset", "version": 1}', "missing"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message):
        KeySet.load(path, "pw")
    with pytest.raises(KeyFileError, match=r"bad\.json"):
        read_key_check_values(path)


def test_excessive_kdf_cost_is_refused_before_deriving(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeySet.generate(("RK1_DF03",), with_sm2=False).save(path, "pw", scrypt_n=FAST_N)
    _tamper(path, lambda d: d["kdf"].__setitem__("n", 2**30))
    with pytest.raises(KeyFileError, match="scrypt parameters"):
        KeySet.load(path, "pw")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"nope\.json: cannot read"):
        KeySet.load(tmp_path / "nope.json", "pw")


def test_plain_import_accepts_hex_and_checks_stated_kcv() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    keyset = KeySet.from_plain_dict({"algorithm": "3des", "keys": {"UK1_DDF1": key.hex()}})
    assert keyset.keys["UK1_DDF1"] == MasterKey.create(BlockCipher.TDES, key, 1)
    assert keyset.keys["UK1_DDF1"].kcv == "08D7B4"  # PKCS#11 CKA_CHECK_VALUE seen in SoftHSM2
    with pytest.raises(KeyFileError, match="UK1_DDF1 KCV 08D7B4 does not match the stated 123456"):
        KeySet.from_plain_dict(
            {"algorithm": "3des", "keys": {"UK1_DDF1": {"value": key.hex(), "kcv": "123456"}}}
        )
    with pytest.raises(KeyFileError, match="key UK1_DDF1 must be 16 bytes"):
        KeySet.from_plain_dict({"keys": {"UK1_DDF1": "0011"}})
    with pytest.raises(KeyFileError, match="'sm4' or '3des'"):
        KeySet.from_plain_dict({"algorithm": "aes", "keys": {"UK1_DDF1": key.hex()}})


def test_plain_dict_round_trip() -> None:
    keyset = KeySet.generate(("RK1_DF03",), BlockCipher.SM4)
    again = KeySet.from_plain_dict(keyset.to_plain_dict())
    assert again.keys == keyset.keys
    assert (again.sm2_private, again.certificate, again.sam_pin) == (
        keyset.sm2_private,
        keyset.certificate,
        keyset.sam_pin,
    )


@pytest.mark.parametrize(
    "document",
    [
        ["not", "an", "object"],
        {"algorithm": "sm4", "keys": {"MK_MF": "00" * 16}, "sm2_private": "00" * 32},
        {"algorithm": "sm4", "keys": {"MK_MF": "00" * 16}, "sm2_private": "FF" * 32},
    ],
)
def test_plain_key_data_that_is_not_a_key_set_is_a_key_file_error(document: object) -> None:
    with pytest.raises(KeyFileError) as info:
        KeySet.from_plain_dict(document, "plain.json")  # type: ignore[arg-type]
    assert "plain.json" in str(info.value) and "FF" * 32 not in str(info.value)
