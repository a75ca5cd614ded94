"""The e-card platform keys as roles of the security layer: key files, SM2 role keys, data
ciphers, SubjectPublicKeyInfo, and that no other backend pretends to hold them."""

from __future__ import annotations

import logging
import pickle
import threading
from pathlib import Path

import pytest

from healthcard_apdu.crypto import BlockCipher, ecb_decrypt, sm2_public_key, sm2_verify_digest, sm3
from healthcard_apdu.security import (
    PLATFORM_ROLES,
    KeyFileError,
    KeySet,
    PublicKeyError,
    SoftwareSecurityModule,
    UnknownKeyRole,
    UnsupportedOperation,
    key_id,
    public_key_from_spki,
    read_key_check_values,
    spki_der,
    spki_pem,
)
from healthcard_apdu.security.export import simulator_sam_document

FAST_N = 2**10


def test_generate_platform_roles() -> None:
    keyset = KeySet.generate(PLATFORM_ROLES, with_sm2=False)
    assert set(keyset.keys) == {"EHC_SECURITY", "EHC_PROTECTION"}
    assert set(keyset.sm2_keys) == {"EHC_SIGNING"}
    public = sm2_public_key(keyset.sm2_keys["EHC_SIGNING"])
    assert keyset.key_check_values()["EHC_SIGNING"] == key_id(public)[:3].hex().upper()
    assert "EHC_SIGNING" in repr(keyset) and f"{keyset.sm2_keys['EHC_SIGNING']:X}" not in repr(
        keyset
    )
    with pytest.raises(KeyFileError, match="EHC_PROTECTION is an SM4 key"):
        KeySet.generate(["EHC_PROTECTION"], BlockCipher.TDES)


def test_key_file_round_trip_with_sm2_roles(tmp_path: Path) -> None:
    keyset = KeySet.generate([*PLATFORM_ROLES, "MK_MF"])
    path = tmp_path / "k.json"
    keyset.save(path, "pw", scrypt_n=FAST_N)
    loaded = KeySet.load(path, "pw")
    assert loaded.sm2_keys == keyset.sm2_keys and loaded.sm2_private == keyset.sm2_private
    assert read_key_check_values(path) == (BlockCipher.SM4, keyset.key_check_values())
    assert f"{keyset.sm2_keys['EHC_SIGNING']:064X}" not in path.read_text()


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"keys": {}, "sm2_keys": {"SAM": "01"}}, "not one of"),
        ({"keys": {}, "sm2_keys": {"EHC_SIGNING": "zz"}}, "not hex"),
        ({"keys": {}, "sm2_keys": {"EHC_SIGNING": "00"}}, "not a valid SM2"),
        ({"keys": {}, "sm2_keys": []}, "'sm2_keys' must be an object"),
        ({"keys": {}}, "non-empty"),
        ({"algorithm": "3des", "keys": {"EHC_SECURITY": "00" * 16}}, "SM4"),
    ],
)
def test_plain_import_errors(document: dict[str, object], words: str) -> None:
    with pytest.raises(KeyFileError, match=words):
        KeySet.from_plain_dict(document)


def test_simulated_sam_export_leaves_platform_keys_out() -> None:
    keyset = KeySet.generate([*PLATFORM_ROLES, "RK1_DF03"])
    roles = [entry["role"] for entry in simulator_sam_document(keyset)["keys"]]
    assert roles == ["RK1_DF03"]


def test_data_cipher_equals_the_primitive_and_keeps_its_key_inside() -> None:
    keyset = KeySet.generate(["EHC_PROTECTION"], with_sm2=False)
    module = SoftwareSecurityModule(keyset)
    cipher = module.data_cipher("EHC_PROTECTION")
    data = bytes(range(48))
    encrypted = cipher.encrypt(data)
    assert ecb_decrypt(BlockCipher.SM4, keyset.keys["EHC_PROTECTION"].value, encrypted) == data
    assert cipher.decrypt(encrypted) == data
    assert keyset.keys["EHC_PROTECTION"].value.hex() not in repr(cipher).lower()
    with pytest.raises(TypeError):
        pickle.dumps(cipher)
    from healthcard_apdu.security import SecurityModuleError

    with pytest.raises(SecurityModuleError, match="16-byte blocks"):
        cipher.encrypt(b"short")


def test_data_cipher_is_safe_to_share_between_threads() -> None:
    module = SoftwareSecurityModule(KeySet.generate(["EHC_PROTECTION"], with_sm2=False))
    cipher = module.data_cipher("EHC_PROTECTION")
    blocks = [bytes([i]) * 16 for i in range(64)]
    expected = [cipher.encrypt(b) for b in blocks]
    failures: list[int] = []

    def work() -> None:
        for _ in range(200):
            for block, want in zip(blocks, expected, strict=True):
                if cipher.encrypt(block) != want or cipher.decrypt(want) != block:
                    failures.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_role_signing_is_separate_from_the_sam_key() -> None:
    keyset = KeySet.generate(["EHC_SIGNING"])  # with the SAM's own SM2 key as well
    module = SoftwareSecurityModule(keyset)
    digest = sm3(b"envelope")
    public = module.public_key_of("EHC_SIGNING")
    assert sm2_verify_digest(public, digest, module.sign_digest_as("EHC_SIGNING", digest))
    assert public != sm2_public_key(keyset.sm2_private or 1)
    with pytest.raises(UnknownKeyRole):
        module.public_key_of("OTHER")


def test_spki_round_trip_and_refusals() -> None:
    keyset = KeySet.generate(["EHC_SIGNING"], with_sm2=False)
    public = sm2_public_key(keyset.sm2_keys["EHC_SIGNING"])
    der = spki_der(public)
    header = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")  # as OpenSSL
    assert len(der) == 91 and der.startswith(header)
    assert public_key_from_spki(der) == public == public_key_from_spki(spki_pem(public))
    assert key_id(public) == sm3(der)[:8]
    off_curve = der[:-1] + bytes([der[-1] ^ 1])
    for bad, words in (
        (off_curve, "curve"),
        (b"\x30\x03\x02\x01\x01", "SubjectPublicKeyInfo"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PRIVATE KEY"),
        (b"x" * 5000, "too long"),
    ):
        with pytest.raises(PublicKeyError, match=words):
            public_key_from_spki(bad)


def test_psam_holds_no_platform_keys() -> None:
    from healthcard_apdu.security.psam import PsamSecurityModule
    from healthcard_apdu.sim import SimSam
    from healthcard_apdu.sim.sam import sam_state_from_json
    from healthcard_apdu.transport.channel import Channel
    from healthcard_apdu.transport.inprocess import InProcessTransport

    keyset = KeySet.generate(["RK1_DF03"])
    sam = SimSam(sam_state_from_json(simulator_sam_document(keyset)))
    module = PsamSecurityModule(Channel(InProcessTransport(sam)), pin=keyset.sam_pin)
    with pytest.raises(UnsupportedOperation, match="holds no platform key EHC_PROTECTION"):
        module.data_cipher("EHC_PROTECTION")
    with pytest.raises(UnsupportedOperation, match="EHC_SIGNING"):
        module.sign_digest_as("EHC_SIGNING", bytes(32))


def test_platform_flows_log_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    keyset = KeySet.generate(PLATFORM_ROLES, with_sm2=False)
    module = SoftwareSecurityModule(keyset)
    with caplog.at_level(logging.DEBUG):
        module.data_cipher("EHC_SECURITY", factor=bytes(8)).encrypt(bytes(32))
        module.data_cipher("EHC_PROTECTION").decrypt(bytes(16))
        module.sign_digest_as("EHC_SIGNING", bytes(32))
    text = caplog.text.lower()
    for key in keyset.keys.values():
        assert key.value.hex() not in text
    assert f"{keyset.sm2_keys['EHC_SIGNING']:064x}" not in text
