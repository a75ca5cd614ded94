"""Run every published / regression vector in test_vectors/*.json.

Each file has a ``kind``; each vector an ``operation``. A file with an unknown kind, a
vector with an unknown operation, or an input field the runner does not use FAILS, so no
vector is silently skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from healthcard_apdu.crypto import (
    SM2_GBT32918_TEST_CURVE,
    SM2P256V1,
    BlockCipher,
    Sm2Curve,
    cbc_decrypt,
    cbc_encrypt,
    challenge_iv,
    diversify,
    ecb_decrypt,
    ecb_encrypt,
    fmcos_mac,
    line_decrypt,
    line_encrypt,
    mac_iso9797_alg1,
    mac_iso9797_alg3,
    rfc6979_nonces,
    sm2_openssl,
    sm2_public_key,
    sm2_sign,
    sm2_sign_digest,
    sm2_verify,
    sm2_verify_digest,
    sm2_za,
    sm3,
)

VECTOR_DIR = Path(__file__).resolve().parent.parent / "test_vectors"
REQUIRED_VECTOR_FIELDS = {"id", "source", "operation", "inputs", "expected"}
CURVES: dict[str, Sm2Curve] = {
    "sm2p256v1": SM2P256V1,
    "gbt32918.2-test": SM2_GBT32918_TEST_CURVE,
}


class Inputs:
    """Typed access to a vector's inputs that records which fields were used."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.used: set[str] = set()

    def get_bytes(self, name: str) -> bytes:
        if name in self.raw:
            self.used.add(name)
            return bytes.fromhex(self.raw[name])
        self.used.add(name + "_ascii")
        value: str = self.raw[name + "_ascii"]
        return value.encode("ascii")

    def opt_bytes(self, name: str) -> bytes | None:
        if name not in self.raw and name + "_ascii" not in self.raw:
            return None
        return self.get_bytes(name)

    def int_hex(self, name: str) -> int:
        return int.from_bytes(self.get_bytes(name), "big")

    def value(self, name: str, default: Any = None) -> Any:
        if name in self.raw:
            self.used.add(name)
            return self.raw[name]
        if default is None:
            raise KeyError(name)
        return default

    def cipher(self) -> BlockCipher:
        return BlockCipher(self.value("cipher"))

    def check_all_used(self) -> None:
        unused = set(self.raw) - self.used
        assert not unused, f"vector inputs not used by the runner: {sorted(unused)}"


def _hex(expected: Any) -> bytes:
    assert isinstance(expected, str)
    return bytes.fromhex(expected)


# --- runners per kind -------------------------------------------------------------------


def _block_cipher(op: str, inp: Inputs, expected: Any) -> None:
    exp = _hex(expected)
    cipher = inp.cipher()
    key = inp.get_bytes("key")
    data = inp.get_bytes("data")
    if op == "ecb_encrypt":
        assert ecb_encrypt(cipher, key, data) == exp
        assert ecb_decrypt(cipher, key, exp) == data
    elif op == "ecb_decrypt":
        assert ecb_decrypt(cipher, key, data) == exp
        assert ecb_encrypt(cipher, key, exp) == data
    elif op == "cbc_encrypt":
        iv = inp.get_bytes("iv")
        assert cbc_encrypt(cipher, key, data, iv) == exp
        assert cbc_decrypt(cipher, key, exp, iv) == data
    elif op == "cbc_decrypt":
        iv = inp.get_bytes("iv")
        assert cbc_decrypt(cipher, key, data, iv) == exp
        assert cbc_encrypt(cipher, key, exp, iv) == data
    elif op == "ecb_encrypt_iterated":
        iterations: int = inp.value("iterations")
        # The first round goes through the library; the rest use one encryptor object
        # (cryptography keeps no state between ECB blocks), which keeps 10^6 rounds fast.
        block = ecb_encrypt(cipher, key, data)
        assert cipher is BlockCipher.SM4, "iterated vectors are SM4 only"
        update = Cipher(algorithms.SM4(key), modes.ECB()).encryptor().update
        for _ in range(iterations - 1):
            block = update(block)
        assert block == exp
    else:
        raise AssertionError(f"unknown block_cipher operation {op!r}")


def _mac(op: str, inp: Inputs, expected: Any) -> None:
    exp = _hex(expected)
    pad: bool = inp.value("pad", True)
    iv = inp.opt_bytes("iv")
    if op == "iso9797_alg1":
        mac = mac_iso9797_alg1(
            inp.cipher(), inp.get_bytes("key"), inp.get_bytes("data"), iv, pad=pad
        )
    elif op == "iso9797_alg3":
        mac = mac_iso9797_alg3(inp.get_bytes("key"), inp.get_bytes("data"), iv, pad=pad)
    else:
        raise AssertionError(f"unknown mac operation {op!r}")
    length: int = inp.value("mac_length", len(mac))
    assert mac[:length] == exp


def _fmcos(op: str, inp: Inputs, expected: Any) -> None:
    exp = _hex(expected)
    cipher = inp.cipher()
    key = inp.get_bytes("key")
    bs = cipher.block_size
    if op == "external_auth_cryptogram":
        assert ecb_encrypt(cipher, key, challenge_iv(inp.get_bytes("challenge"), bs)) == exp
    elif op == "internal_auth_encrypt":
        assert ecb_encrypt(cipher, key, inp.get_bytes("data")) == exp
    elif op == "internal_auth_decrypt":
        assert ecb_decrypt(cipher, key, inp.get_bytes("data")) == exp
    elif op == "internal_auth_mac":
        assert fmcos_mac(cipher, key, inp.get_bytes("data"), bytes(bs)) == exp
    elif op == "line_encrypt":
        data = inp.get_bytes("data")
        assert line_encrypt(cipher, key, data) == exp
        assert line_decrypt(cipher, key, exp) == data
    elif op == "line_mac":
        assert fmcos_mac(cipher, key, inp.get_bytes("data"), inp.get_bytes("iv")) == exp
    else:
        raise AssertionError(f"unknown fmcos operation {op!r}")


def _hash(op: str, inp: Inputs, expected: Any) -> None:
    if op != "sm3":
        raise AssertionError(f"unknown hash operation {op!r}")
    assert sm3(inp.get_bytes("message")) == _hex(expected)


def _sm2(op: str, inp: Inputs, expected: Any) -> None:
    if op != "sign":
        raise AssertionError(f"unknown sm2 operation {op!r}")
    assert isinstance(expected, dict)
    curve = CURVES[inp.value("curve")]
    d = inp.int_hex("d")
    k = inp.int_hex("k")
    user_id = inp.get_bytes("user_id")
    message = inp.get_bytes("message")

    public = sm2_public_key(d, curve)
    assert public == (int(expected["public_x"], 16), int(expected["public_y"], 16))
    za = sm2_za(public, user_id, curve)
    assert za == _hex(expected["za"])
    e = sm3(za + message)
    assert e == _hex(expected["e"])
    signature = _hex(expected["r"]) + _hex(expected["s"])
    assert sm2_sign(d, message, user_id, k=k, curve=curve) == signature
    assert sm2_sign_digest(d, e, k=k, curve=curve) == signature
    assert sm2_verify(public, message, signature, user_id, curve) is expected["verify"]
    assert sm2_verify_digest(public, e, signature, curve) is expected["verify"]
    assert sm2_verify_digest(public, e, signature, curve, backend="python") is expected["verify"]
    if curve == SM2P256V1 and sm2_openssl.available():  # the compiled path, where usable
        assert sm2_verify_digest(public, e, signature, backend="openssl") is expected["verify"]
    assert sm2_verify(public, message + b".", signature, user_id, curve) is False
    assert set(expected) == {"public_x", "public_y", "za", "e", "r", "s", "verify"}


def _diversification(op: str, inp: Inputs, expected: Any) -> None:
    if op != "diversify":
        raise AssertionError(f"unknown diversification operation {op!r}")
    result = diversify(inp.cipher(), inp.get_bytes("master_key"), inp.get_bytes("factor"))
    assert result == _hex(expected)


def _deterministic_nonce(op: str, inp: Inputs, expected: Any) -> None:
    if op != "nonce":
        raise AssertionError(f"unknown deterministic_nonce operation {op!r}")
    digest = hashlib.sha256(inp.get_bytes("message")).digest()
    first = next(rfc6979_nonces(inp.int_hex("private"), digest, inp.int_hex("order")))
    assert first == int.from_bytes(_hex(expected), "big")


RUNNERS: dict[str, Callable[[str, Inputs, Any], None]] = {
    "block_cipher": _block_cipher,
    "mac": _mac,
    "fmcos": _fmcos,
    "hash": _hash,
    "sm2": _sm2,
    "diversification": _diversification,
    "deterministic_nonce": _deterministic_nonce,
}


def run_vector(file_name: str, kind: object, vector: dict[str, Any]) -> None:
    """Dispatch one vector; AssertionError for unknown kinds/operations or unused inputs."""
    if not isinstance(kind, str) or kind not in RUNNERS:
        raise AssertionError(
            f"{file_name}: unknown vector kind {kind!r}; add a runner to {Path(__file__).name}"
        )
    missing = REQUIRED_VECTOR_FIELDS - set(vector)
    assert not missing, f"{file_name}: vector {vector.get('id')!r} lacks {sorted(missing)}"
    inputs = Inputs(vector["inputs"])
    RUNNERS[kind](vector["operation"], inputs, vector["expected"])
    inputs.check_all_used()


# --- collection -------------------------------------------------------------------------


def _load_files() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text("utf-8"))) for p in sorted(VECTOR_DIR.glob("*.json"))]


def _params() -> list[Any]:
    params: list[Any] = []
    for path, doc in _load_files():
        kind = doc.get("kind")
        vectors = doc.get("vectors") or []
        if kind not in RUNNERS or not vectors:
            # Runs run_vector with the bad kind (or nothing), which fails loudly.
            params.append(pytest.param(path.name, kind, {}, id=f"{path.stem}:bad-file"))
            continue
        for vector in vectors:
            marks = [pytest.mark.slow] if vector.get("slow") else []
            vid = f"{path.stem}:{vector.get('id')}"
            params.append(pytest.param(path.name, kind, vector, id=vid, marks=marks))
    return params


@pytest.mark.parametrize(("file_name", "kind", "vector"), _params())
def test_vector(file_name: str, kind: object, vector: dict[str, Any]) -> None:
    assert vector, f"{file_name}: no vectors"
    run_vector(file_name, kind, vector)


def test_vector_files_are_present_and_well_formed() -> None:
    files = _load_files()
    names = {path.name for path, _ in files}
    assert {
        "des.json",
        "sm4.json",
        "iso9797_mac.json",
        "fmcos.json",
        "sm3.json",
        "sm2.json",
        "diversification.json",
        "rfc6979.json",
    } <= names
    ids: set[str] = set()
    for path, doc in files:
        for vector in doc["vectors"]:
            assert vector["id"] not in ids, f"{path.name}: duplicate id {vector['id']}"
            ids.add(vector["id"])
            if vector.get("regression"):
                assert "no published KAT" in vector["source"], vector["id"]


def test_reference_rows_are_all_present() -> None:
    rows: set[int] = set()
    for _, doc in _load_files():
        for vector in doc["vectors"]:
            rows.update(vector.get("ref_rows", []))
            if "ref_row" in vector:
                rows.add(vector["ref_row"])
    wanted = {
        1,
        3,
        4,
        5,
        6,
        11,
        *range(17, 23),
        41,
        *range(43, 51),
        *range(52, 59),
        62,
        63,
        64,
        65,
        66,
    }
    assert wanted <= rows, f"missing docs/reference/cos-crypto.md §5 rows: {sorted(wanted - rows)}"


def test_unknown_kind_fails() -> None:
    vector = {"id": "x", "source": "s", "operation": "op", "inputs": {}, "expected": ""}
    with pytest.raises(AssertionError, match="unknown vector kind"):
        run_vector("new.json", "no-such-kind", vector)


def test_unknown_operation_fails() -> None:
    vector = {"id": "x", "source": "s", "operation": "no-such-op", "inputs": {}, "expected": ""}
    with pytest.raises(AssertionError, match="unknown hash operation"):
        run_vector("sm3.json", "hash", vector)


def test_unused_input_fails() -> None:
    vector = {
        "id": "x",
        "source": "s",
        "operation": "sm3",
        "inputs": {"message_ascii": "abc", "typo": "00"},
        "expected": "66C7F0F462EEEDD9D1F2D46BDC10E4E24167C4875CF2F7A2297DA02B8F4BA8E0",
    }
    with pytest.raises(AssertionError, match="typo"):
        run_vector("sm3.json", "hash", vector)
