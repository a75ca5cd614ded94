"""``Sam``: the national SAM functions against the simulated PSAM."""

from __future__ import annotations

import pytest

import sim_issuance as si
from healthcard_apdu.card import Sam
from healthcard_apdu.crypto import sm2_public_key, sm2_verify_digest, sm3
from healthcard_apdu.security import SamCommandError, SamPinError
from healthcard_apdu.transport import Channel
from test_card_fixtures import CERTIFICATE, SAM_PIN, Recorder, sam_over, sim_sam


def test_public_files_and_certificates() -> None:
    sam = sam_over(sim_sam(), pin=None)
    public = sam.read_public_info()
    assert public.serial_number == CERTIFICATE[6:16]  # the certificate's subject is the serial
    assert sam.read_terminal_info().terminal_number == "000000000000"
    assert sam.read_app_info().issuer_id == bytes(8)
    assert sam.read_issuer_certificate() == bytes(180)
    assert sam.read_certificate() == CERTIFICATE
    # the MF files were read up front; reading them again sends nothing
    assert sam.read_public_info() == public


def test_verify_pin_returns_tries_left_and_a_wrong_pin_is_not_retried() -> None:
    card = sim_sam()
    sam = sam_over(card, pin=None)
    assert sam.verify_pin(SAM_PIN) == 3
    with pytest.raises(SamPinError) as info:
        sam.verify_pin("999999")
    assert info.value.retries_left == 2
    assert "999999" not in str(info.value)
    assert sam.tries_left() == 2


def test_change_pin() -> None:
    sam = sam_over(sim_sam(), pin=None)
    sam.change_pin(SAM_PIN, "654321")
    assert sam.verify_pin("654321") == 3
    with pytest.raises(SamPinError, match="old PIN refused, 2 tries left"):
        sam.change_pin("111111", "222222")


def test_sm3_and_sm2_services() -> None:
    sam = sam_over(sim_sam(), pin=None)
    data = bytes(range(256)) * 3
    assert sam.sm3_digest(data) == sm3(data)
    with pytest.raises(SamCommandError, match="6982"):
        sam.sm2_sign_hash(sm3(b"x"))  # no PIN yet
    sam.verify_pin(SAM_PIN)
    digest = sm3(b"record")
    signature = sam.sm2_sign_hash(digest)
    assert sm2_verify_digest(sm2_public_key(si.SAM_SM2_PRIVATE), digest, signature)


def test_pin_given_at_creation_is_verified_once_before_the_first_service() -> None:
    transport = Recorder(sim_sam())
    sam = Sam(Channel(transport), pin=SAM_PIN)
    assert not [a for a in transport.sent if a[1] == 0x20]
    sam.sm2_sign_hash(sm3(b"x"))
    sam.sm2_sign_hash(sm3(b"y"))
    assert len([a for a in transport.sent if a[1] == 0x20]) == 1
