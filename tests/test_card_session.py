"""Selection and authentication state, factors, and typed errors that name file and key."""

from __future__ import annotations

import dataclasses
import logging

import pytest

import sim_issuance as si
from healthcard_apdu import model
from healthcard_apdu.apdu import (
    AuthenticationFailed,
    CardError,
    SecureMessagingError,
    SecurityStatusNotSatisfied,
)
from healthcard_apdu.apdu import commands as c
from healthcard_apdu.card import CardOperationError, HealthCard, NotWritable
from healthcard_apdu.card.session import _route
from healthcard_apdu.security import SamCommandError, SoftwareSecurityModule
from healthcard_apdu.transport import Channel
from test_card_fixtures import (
    Recorder,
    health_card,
    issued_card,
    keyset,
    sam_over,
    sample,
    sim_sam,
    with_city,
)

WRONG = bytes(range(16))


def _selects(rec: Recorder) -> list[str]:
    return [a[5:7].hex().upper() for a in rec.sent if a[1] == 0xA4]


def _auths(rec: Recorder) -> list[str]:
    return [f"{a[3]:02X}" for a in rec.sent if a[1] == 0x82]


@pytest.mark.parametrize(
    ("current", "target", "route"),
    [
        (None, "DF02", ["MF", "DDF1", "DF02"]),
        ("MF", "DF03", ["DDF1", "DF03"]),
        ("DF01", "DF02", ["DF02"]),
        ("DF02", "DDF1", ["DDF1"]),
        ("DDF1", "DF01", ["DF01"]),
        ("DF03", "MF", ["MF"]),
        ("DF01", "DF01", []),
    ],
)
def test_routes_follow_iso_fid_resolution(
    current: str | None, target: str, route: list[str]
) -> None:
    assert _route(current, target) == route


def test_selects_and_authenticates_only_when_needed() -> None:
    data = sample()
    with health_card("software", data) as (card, _sim, rec):
        card.read_addresses()
        assert _selects(rec) == ["3F00", "DDF1", "EF05", "DF01", "EF05"]  # EF05: city code
        assert _auths(rec) == ["84"]  # RK1_DF01 once
        rec.sent.clear()
        card.read_contacts()
        card.read_id_documents()
        assert _selects(rec) == ["EF06", "EF08"] and _auths(rec) == []
        rec.sent.clear()
        card.write_addresses(data.addresses)
        card.write_contacts(data.contacts)
        assert _auths(rec) == ["85"]  # UK1_DF01 once for both files
        rec.sent.clear()
        card.read_contacts()  # read right needs the RK state again (exact state 1)
        assert _selects(rec) == [] and _auths(rec) == ["84"]
        rec.sent.clear()
        card.read_clinical()
        assert _selects(rec) == ["DF02", "EF05"] and _auths(rec) == ["84"]


def test_city_factor_is_read_once_from_ddf1_ef05() -> None:
    with health_card() as (card, _sim, rec):
        card.read_clinical()
        card.read_special()
        card.read_inpatient_index()
    city_reads = [a.hex().upper() for a in rec.sent if a[1] == 0xB2 and a[3] == 0x00]
    assert city_reads == ["00B2390005"]  # by tag 39 (YYCSDM), as in the traces


def test_reading_the_issuer_file_supplies_the_city_factor() -> None:
    with health_card() as (card, _sim, rec):
        assert card.read_issuer().application_city_code == "210000"
        count = len([a for a in rec.sent if a[1] == 0xB2])
        card.read_holder()
    assert len([a for a in rec.sent if a[1] == 0xB2]) == count + 5  # no extra city read


def test_city_code_override_and_unusable_city_code() -> None:
    data = with_city(sample(), "")
    card_obj = issued_card(data)
    module = SoftwareSecurityModule(keyset())
    card = HealthCard(Channel(Recorder(card_obj)), module)
    with pytest.raises(CardOperationError, match=r"DDF1/EF05.*YYCSDM ''"):
        card.read_holder()
    card = HealthCard(Channel(Recorder(card_obj)), module, city_code="210000")
    assert card.read_holder() == data.holder


def test_wrong_read_key_raises_typed_error_with_tries_left_and_is_not_retried() -> None:
    card_obj = issued_card()
    rec = Recorder(card_obj)
    module = SoftwareSecurityModule(keyset({"RK1_DDF1": WRONG}))
    card = HealthCard(Channel(rec), module)
    with pytest.raises(AuthenticationFailed) as info:
        card.read_holder()
    assert info.value.retries_left == 14
    assert "DDF1/EF06: external authentication with RK1_DDF1" in str(info.value)
    sent = len(rec.sent)
    with pytest.raises(AuthenticationFailed, match="refused earlier in this session, not retried"):
        card.read_photo()
    assert [a for a in rec.sent[sent:] if a[1] == 0x82] == []
    assert isinstance(card.read_addresses(), model.Addresses)  # other keys still work


def test_wrong_secure_messaging_key_is_refused_by_the_card() -> None:
    card_obj = issued_card()
    module = SoftwareSecurityModule(keyset({"STK_DF01": WRONG}))
    card = HealthCard(Channel(Recorder(card_obj)), module)
    with pytest.raises(SecureMessagingError, match=r"DF01/EF07 record 1: UPDATE RECORD 1 \(SM\)"):
        card.write_occupation_marriage(model.OccupationMarriage(occupation="X01"))


def test_plain_update_of_a_protected_file_is_refused() -> None:
    with (
        health_card("software", secure_record_updates=False) as (card, _sim, _rec),
        pytest.raises(SecureMessagingError, match="DDF1/EF08 record 1"),
    ):
        card.write_contact_info(model.CardContact(card_expiry_date="20301231"))


def test_raw_command_without_the_right_state_is_refused() -> None:
    with health_card() as (card, _sim, rec):
        card.read_photo()  # RK1_DDF1 state, DDF1/EF07 selected
        response = card.transmit(c.update_binary(0, b"\x00\x00"))
        assert response.sw == 0x6982
        # the raw command made the cached state unknown: the next read starts at the MF
        rec.sent.clear()
        card.read_photo()
        assert _selects(rec)[:2] == ["3F00", "DDF1"]
        with pytest.raises(SecurityStatusNotSatisfied, match="DDF1/EF07 bytes 0-1"):
            card.session.call(c.update_binary(0, b"\x00\x00"), "DDF1/EF07 bytes 0-1")


def test_files_that_are_not_rewritable_are_refused_before_any_apdu() -> None:
    with health_card() as (card, _sim, rec):
        with pytest.raises(NotWritable, match=r"DDF1/EF06 .*not rewritable"):
            card.write_file("holder", sample().holder)
        with pytest.raises(NotWritable, match="DDF1/EF05"):
            card.write_file("DDF1EF05", sample().issuer)
        with pytest.raises(TypeError, match="expected Addresses"):
            card.write_file("DF01/EF05", sample().contacts)
    assert rec.sent == []


def test_write_card_encodes_and_signs_everything_before_the_first_command() -> None:
    data = sample()
    bad = dataclasses.replace(
        data, special=data.special, addresses=data.addresses.replace(address_1="地" * 51)
    )
    with health_card() as (card, _sim, rec):
        with pytest.raises(model.EncodeError, match="DF01/EF05"):
            card.write_card(bad)
        assert rec.sent == []
    sam = sam_over(sim_sam(), pin=None)  # no PIN: the SAM refuses to sign
    card_obj = issued_card()
    rec = Recorder(card_obj)
    card = HealthCard(Channel(rec), sam.security)
    with pytest.raises(SamCommandError, match="SM2 SIGN"):
        card.write_card(data)
    assert rec.sent == []


def test_reset_forgets_the_state() -> None:
    with health_card() as (card, _sim, rec):
        card.read_holder()
        atr = card.reset()
        assert atr == card.channel.atr()
        rec.sent.clear()
        card.read_holder()
    assert _selects(rec)[:2] == ["3F00", "DDF1"] and _auths(rec) == ["04"]


def test_write_card_refuses_an_oversized_photo_before_any_apdu() -> None:
    data = dataclasses.replace(sample(), photo=model.Photo(photo_jpeg=b"\xff\xd8" + bytes(3071)))
    with health_card() as (card, _sim, rec):
        with pytest.raises(model.EncodeError, match="DDF1/EF07"):
            card.write_card(data)
        assert rec.sent == []


def test_no_key_material_in_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    secrets = [si.master_key(r.name).hex() for r in si.ROLES]
    secrets += [si.card_key(r.name, si.TRACE_CARD_FACTOR).hex() for r in si.ROLES]
    messages = []
    with caplog.at_level(logging.DEBUG):
        with health_card("psam") as (card, _sim, _rec):
            card.write_card(sample())
            card.read_card()
        wrong = HealthCard(
            Channel(Recorder(issued_card())),
            SoftwareSecurityModule(keyset({"RK1_DF02": WRONG})),
        )
        with pytest.raises(AuthenticationFailed) as info:
            wrong.read_clinical()
        messages.append(str(info.value))
    text = (caplog.text + " ".join(messages) + repr(card) + repr(card.session.security)).lower()
    assert "authenticated RK1_DF03".lower() in text  # the log is there, just without secrets
    assert not [s for s in secrets if s in text or s[:16] in text]


def test_state_lost_behind_the_card_objects_back_is_recovered_after_one_error() -> None:
    with health_card() as (card, sim, rec):
        holder = card.read_holder()
        sim.reset()  # e.g. another application reset the card: MF current, no security state
        with pytest.raises(CardError, match="DDF1/EF06 record 1"):
            card.read_holder()
        rec.sent.clear()
        assert card.read_holder() == holder
        assert _selects(rec)[:2] == ["3F00", "DDF1"] and _auths(rec) == ["04"]


def test_error_context_is_not_repeated() -> None:
    from healthcard_apdu.apdu.errors import NotFound
    from healthcard_apdu.card.errors import in_context

    exc = NotFound(0x6A82, "SELECT DDF1", "file not found")
    assert str(in_context(exc, "SELECT DDF1")) == "SELECT DDF1: SW 6A82 file not found"
    assert str(in_context(exc, "DDF1/EF06")).startswith("DDF1/EF06: SELECT DDF1: SW 6A82")
