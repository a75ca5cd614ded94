"""Every file and every data item written through HealthCard and read back (in-process).

Runs with the software security module and with the simulated PSAM. EE/ED records gain the
SAM's signature and certificate on write; everything else reads back exactly as written.
"""

from __future__ import annotations

import statistics
import time

import pytest

from healthcard_apdu import model
from healthcard_apdu.model import CardData
from healthcard_apdu.security import verify_record
from test_card_fixtures import (
    CERTIFICATE,
    RARE,
    edge_card,
    empty_card,
    health_card,
    max_text,
    sample,
    without_signatures,
)

KINDS = ["software", "psam"]


def _check_signed(data: CardData) -> None:
    for record in (*data.inpatient, *data.outpatient):
        if record is None:
            continue
        values = list(record.values().values())
        signature, certificate = values[-2], values[-1]
        assert certificate == CERTIFICATE
        assert isinstance(signature, bytes)
        assert verify_record(record.data_bytes(), signature, certificate)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("make", [sample, edge_card, empty_card], ids=["sample", "edge", "empty"])
def test_whole_card_round_trip(kind: str, make: object) -> None:
    assert callable(make)
    data: CardData = make()
    with health_card(kind, data) as (card, _sim, _transport):
        written = card.write_card(data)
        back = card.read_card()
    assert back == written
    assert back.to_json("code") == written.to_json("code")
    assert back.to_json("name") == written.to_json("name")
    # the data items are exactly the ones given; the SAM added signature and certificate
    assert without_signatures(back) == without_signatures(data)
    _check_signed(back)
    assert [r is not None for r in back.inpatient] == [r is not None for r in data.inpatient]
    assert [r is not None for r in back.outpatient] == [r is not None for r in data.outpatient]


def test_t0_card_round_trip() -> None:
    data = edge_card(seed=2)
    with health_card("psam", data, protocol="T=0") as (card, sim, rec):
        assert sim.protocol == "T=0"
        written = card.write_card(data)
        assert card.read_card() == written
    assert any(a[:2] == b"\x00\xc0" for a in rec.sent)  # 61xx answered by GET RESPONSE


def test_rare_characters_and_maximum_lengths_survive() -> None:
    data = edge_card(seed=11)
    with health_card("software", data) as (card, _sim, _transport):
        card.write_card(data)
        holder = card.read_holder()
        addresses = card.read_addresses()
        record = card.read_outpatient(5)
    assert holder.name == max_text(30) and set(RARE) <= set(holder.name)
    assert len(addresses.address_1.encode("gbk")) == 100
    assert addresses.address_1 == data.addresses.address_1
    expected = data.outpatient[4]
    assert expected is not None
    assert record.data_bytes() == expected.data_bytes()


def test_empty_optional_items_read_back_as_empty_values() -> None:
    data = empty_card()
    with health_card("software", data) as (card, _sim, _transport):
        card.write_card(data)
        contact = card.read_contact_info()
        clinical = card.read_clinical()
        photo = card.read_photo()
        allergies = card.read_allergies()
        record = card.read_inpatient(1)
    assert contact == model.CardContact()
    assert clinical.asthma_flag is None and clinical.other_medical_alert == ""
    assert photo.photo_jpeg == b""
    assert allergies.entries == ()
    assert record.data_bytes() == model.InpatientRecord().data_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_each_file_through_its_own_methods(kind: str) -> None:
    data = edge_card(seed=3)
    with health_card(kind, data) as (card, _sim, _transport):
        card.write_photo(data.photo.photo_jpeg)
        card.write_contact_info(data.card_contact)
        card.write_addresses(data.addresses)
        card.write_contacts(data.contacts)
        card.write_occupation_marriage(data.occupation_marriage)
        card.write_id_documents(data.id_documents)
        card.write_clinical(data.clinical)
        card.write_special(data.special)
        for entry in data.allergies.append_order():
            card.append_allergy(entry)
        assert data.inpatient[1] is not None and data.outpatient[3] is not None
        card.write_inpatient(2, data.inpatient[1])
        card.write_outpatient(4, data.outpatient[3])
        assert card.read_issuer() == data.issuer
        assert card.read_holder() == data.holder
        assert card.read_photo() == data.photo
        assert card.read_contact_info() == data.card_contact
        assert card.read_addresses() == data.addresses
        assert card.read_contacts() == data.contacts
        assert card.read_occupation_marriage() == data.occupation_marriage
        assert card.read_id_documents() == data.id_documents
        assert card.read_clinical() == data.clinical
        assert card.read_special() == data.special
        assert card.read_allergies() == data.allergies
        assert card.read_allergy(3) == data.allergies.entries[2]
        assert card.read_inpatient(2).data_bytes() == data.inpatient[1].data_bytes()
        assert card.read_outpatient(4).data_bytes() == data.outpatient[3].data_bytes()
        assert card.read_inpatient_index() == model.InpatientIndex(inpatient_record_valid_2=True)
        assert card.read_outpatient_index() == model.OutpatientIndex(outpatient_record_valid_4=True)


def test_generic_read_file_and_write_file_accept_paths_and_names() -> None:
    data = sample()
    with health_card("software", data) as (card, _sim, _transport):
        card.write_file("DF01EF05", data.addresses)
        card.write_file("contacts", data.contacts)
        card.write_file("DF02/EF08", data.immunizations)
        card.write_file("photo", data.photo.photo_jpeg)
        record = data.inpatient[0]
        assert record is not None
        card.write_file("inpatient_3", record)
        assert card.read_file("addresses") == data.addresses
        assert card.read_file("DF01/EF06") == data.contacts
        assert card.read_file("immunizations") == data.immunizations
        assert card.read_file("DDF1EF07") == data.photo
        assert card.read_file("DDF1/EF05") == data.issuer
        stored = card.read_file("DF03EE03")
        assert isinstance(stored, model.InpatientRecord)
        assert stored.data_bytes() == record.data_bytes()
        card.write_file("DF03/EF05", model.InpatientIndex(inpatient_record_valid_1=True))
        assert card.read_file("inpatient_index") == model.InpatientIndex(
            inpatient_record_valid_1=True
        )


def test_small_chunks_and_photo_read_only_reads_the_jpeg() -> None:
    data = sample()
    with health_card("software", data, read_chunk=64, write_chunk=50) as (card, _sim, rec):
        card.write_photo(data.photo.photo_jpeg)
        writes = [a for a in rec.sent if a[1] == 0xD6]
        assert max(a[4] for a in writes) == 50 and len(writes) == -(-3074 // 50)
        rec.sent.clear()
        assert card.read_photo() == data.photo
        reads = [a for a in rec.sent if a[1] == 0xB0]
    jpeg = len(data.photo.photo_jpeg)
    assert len(reads) == -(-(2 + jpeg) // 64)
    assert sum(a[-1] or 256 for a in reads) == 2 + jpeg


def test_reading_the_whole_card_in_process_is_fast() -> None:
    data = sample()
    with health_card("software", data) as (card, _sim, _transport):
        card.write_card(data)
        card.read_card()  # warm up (factors cached)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            card.read_card()
            times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.1, times
