"""DF02/EF07 and EF08: cyclic appends (newest first, oldest dropped) and whole-file writes."""

from __future__ import annotations

import pytest

from healthcard_apdu import model
from healthcard_apdu.apdu import NotFound
from test_card_fixtures import health_card


def _allergy(n: int) -> model.AllergyEntry:
    return model.AllergyEntry(allergen_name=f"过敏原{n}", allergic_reaction=f"反应{n}")


def _shot(n: int) -> model.ImmunizationEntry:
    return model.ImmunizationEntry(vaccine_name=f"疫苗{n}", vaccination_date=f"202401{n:02d}")


def test_appends_put_the_newest_first_and_drop_the_oldest() -> None:
    with health_card() as (card, _sim, rec):
        assert card.read_allergies().entries == ()
        for n in range(1, 5):
            card.append_allergy(_allergy(n))
            assert rec.headers()[-1] == "00DC0003"
        assert card.read_allergies().entries == (_allergy(4), _allergy(3), _allergy(2))
        assert card.read_allergy(1) == _allergy(4)
        assert card.read_allergy(3) == _allergy(2)
        for n in range(1, 13):
            card.append_immunization(_shot(n))
        shots = card.read_immunizations().entries
        assert shots == tuple(_shot(n) for n in range(12, 2, -1))
        assert card.read_immunization(10) == _shot(3)


def test_missing_record_and_bad_record_numbers() -> None:
    with health_card() as (card, _sim, _rec):
        card.append_allergy(_allergy(1))
        with pytest.raises(NotFound, match="DF02/EF07 record 2"):
            card.read_allergy(2)
        with pytest.raises(model.LayoutError, match=r"1\.\.3"):
            card.read_allergy(4)
        with pytest.raises(model.LayoutError, match=r"1\.\.10"):
            card.read_immunization(0)


def test_writing_the_whole_file_replaces_older_entries() -> None:
    with health_card() as (card, _sim, _rec):
        for n in range(1, 4):
            card.append_allergy(_allergy(n))
        card.write_allergies(model.Allergies((_allergy(9),)))
        assert card.read_allergies().entries == (_allergy(9),)
        card.write_immunizations(model.Immunizations((_shot(2), _shot(1))))
        assert card.read_immunizations().entries == (_shot(2), _shot(1))
        card.write_file("DF02/EF08", _shot(3))  # a single entry is appended
        assert card.read_immunizations().entries == (_shot(3), _shot(2), _shot(1))


def test_cyclic_writes_use_uk3_and_reads_rk1() -> None:
    with health_card() as (card, _sim, rec):
        card.append_allergy(_allergy(1))
        card.read_allergies()
    auths = [a[:4].hex().upper() for a in rec.sent if a[1] == 0x82]
    assert auths == ["00820087", "00820084"]
