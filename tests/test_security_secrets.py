"""No key, PIN, passphrase or session key reaches logs, reprs, str() or exception messages."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from healthcard_apdu.crypto import BlockCipher, diversify_levels
from healthcard_apdu.security import (
    STANDARD_KEY_SPECS,
    CardFactors,
    KeySet,
    SoftwareSecurityModule,
    SoftwareSession,
    protect_update_record,
    sign_record,
    unprotect,
)

PIN = "97531864"
PASSPHRASE = "Tr0ub4dor&3-secret-passphrase"
FACTORS = CardFactors(bytes.fromhex("0081866B00001015"), b"21000000")
ROLES = ("RK1_DF03", "UK1_DDF1", "STK_DDF1", "MK_MF")


def _secrets_of(keyset: KeySet) -> list[str]:
    """Hex forms of every secret a flow with this key set touches."""
    values: list[bytes] = []
    for role, master in keyset.keys.items():
        spec = STANDARD_KEY_SPECS[role]
        card_key = diversify_levels(keyset.algorithm, master.value, FACTORS.for_key(spec))
        session_key = diversify_levels(keyset.algorithm, card_key, [bytes(8)])
        values += [master.value, card_key, session_key]
    texts = [v.hex() for v in values] + [v.hex().upper() for v in values]
    # Shorter fragments would also betray a key: check the first 8 bytes of each too.
    texts += [v[:8].hex() for v in values] + [v[:8].hex().upper() for v in values]
    assert keyset.sm2_private is not None
    texts += [f"{keyset.sm2_private:064x}", f"{keyset.sm2_private:064X}", str(keyset.sm2_private)]
    return [*texts, PIN, PASSPHRASE]


def _assert_clean(text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"secret material leaked: {len(leaked)} hit(s)"


def _exception_text(exc: BaseException) -> str:
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("cipher", [BlockCipher.SM4, BlockCipher.TDES])
def test_flows_errors_and_reprs_hold_no_secrets(
    cipher: BlockCipher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyset = KeySet.generate(ROLES, cipher, sam_pin=PIN)
    secrets = _secrets_of(keyset)
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        path = tmp_path / "keys.json"
        keyset.save(path, PASSPHRASE, scrypt_n=2**10)
        module = SoftwareSecurityModule.from_file(path, PASSPHRASE)
        for role in ROLES:
            spec = STANDARD_KEY_SPECS[role]
            session = module.session(spec, FACTORS, bytes(8))
            texts += [repr(session), str(session)]
            texts.append(module.external_auth_data(spec, FACTORS, bytes(8), bytes(8)).hex())
            protected = protect_update_record(session, 1, b"\x07\x04\x20\x11\xff\xff")
            texts += [repr(protected), repr(unprotect(session, protected))]
        texts.append(sign_record(module, b"record").hex())
        texts += [repr(keyset), str(keyset), repr(module), repr(keyset.keys["MK_MF"])]
        texts.append(path.read_text())
        # Error paths.
        failures: list[Callable[[], object]] = [
            lambda: KeySet.load(path, PASSPHRASE + "x"),
            lambda: module.session(STANDARD_KEY_SPECS["UK2_DF03"], FACTORS, bytes(8)),
            lambda: module.session(
                STANDARD_KEY_SPECS["RK1_DF03"], CardFactors(FACTORS.card), bytes(8)
            ),
            lambda: module.session(STANDARD_KEY_SPECS["RK1_DF03"], FACTORS, bytes(3)),
            lambda: unprotect(SoftwareSession(cipher, bytes(16)), protected),
            lambda: SoftwareSession(cipher, keyset.keys["MK_MF"].value[:15]),
            lambda: KeySet.from_plain_dict(
                {
                    "algorithm": cipher.value,
                    "keys": {"MK_MF": {"value": keyset.keys["MK_MF"].value.hex(), "kcv": "000000"}},
                }
            ),
            lambda: KeySet.from_plain_dict(
                {"keys": {"MK_MF": keyset.keys["MK_MF"].value.hex()}, "sam_pin": PIN + "x"}
            ),
        ]
        for failure in failures:
            with pytest.raises(Exception) as info:
                failure()
            texts.append(_exception_text(info.value))
    texts += [record.getMessage() for record in caplog.records]
    assert any("session" in record.getMessage() for record in caplog.records)  # logging ran
    _assert_clean("\n".join(texts), secrets)


def test_session_keys_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(SoftwareSession(BlockCipher.SM4, bytes(16)))
