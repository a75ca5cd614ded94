"""Card images on disk, tearing, removal, hostile replies and the latency model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from healthcard_apdu.sim import (
    CardMuteError,
    FaultPlan,
    Hostile,
    ImageError,
    LatencyModel,
    SimCard,
    load_image,
)
from healthcard_apdu.sim.image import decode_image, encode_image
from sim_issuance import TRACE_CARD_FACTOR, Channel, apdu, issued_image_bytes

SERIAL = bytes.fromhex("0102030405060708")


def file_card(path: Path, **kwargs: object) -> tuple[SimCard, Channel]:
    card = SimCard.blank(SERIAL, path=path, **kwargs)  # type: ignore[arg-type]
    card.power_on()
    ch = Channel(card.process, SERIAL)
    assert ch(apdu(0x80, 0xE0, 0x00, 0x01, bytes.fromhex("280010F0F0FFFF")))[1] == 0x9000
    assert ch("00A40000020001")[1] == 0x9000
    return card, ch


def disk_content(path: Path) -> bytes:
    image = load_image(path)
    ef = image.mf.children[0x0001]
    return bytes(ef.data)  # type: ignore[union-attr]


# --- persistence ---------------------------------------------------------------------------


def test_every_write_is_on_disk_and_reads_do_not_touch_it(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card, ch = file_card(path)
    assert ch("00D600000411223344")[1] == 0x9000
    assert disk_content(path)[:4] == bytes.fromhex("11223344")
    assert path.read_bytes() == encode_image(card.image)
    before = (path.stat().st_mtime_ns, path.read_bytes())
    for _ in range(50):
        ch("00B0000004")
        ch("00A40000020001")
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json"]  # no temp files left


def test_the_same_card_can_be_inserted_again_later(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card, ch = file_card(path)
    ch("00D600000299AA")
    card.power_off()
    again = SimCard.open(path)
    again.power_on()
    ch2 = Channel(again.process, SERIAL)
    ch2("00A40000020001")
    assert ch2("00B0000002")[0] == bytes.fromhex("99AA")
    assert again.atr() == card.atr()


def test_power_on_loads_the_image_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    first, ch = file_card(path)
    other = SimCard.open(path)
    other.power_on()
    ch2 = Channel(other.process, SERIAL)
    ch2("00A40000020001")
    ch2("00D6000001EE")
    first.power_off()
    first.power_on()
    ch("00A40000020001")
    assert ch("00B0000001")[0] == b"\xee"


def test_issued_image_round_trips_through_json() -> None:
    raw = issued_image_bytes()
    assert encode_image(decode_image(raw)) == raw


def test_image_errors(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    SimCard.blank(SERIAL, path=path)
    with pytest.raises(ImageError, match="exists"):
        SimCard.blank(SERIAL, path=path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ImageError, match="not JSON"):
        SimCard.open(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "x"}')
    with pytest.raises(ImageError, match="not a healthcard-sim-card"):
        SimCard.open(tmp_path / "other.json")
    with pytest.raises(ImageError, match="cannot read"):
        SimCard.open(tmp_path / "missing.json")
    with pytest.raises(ImageError, match="8 bytes"):
        SimCard.blank(b"\x01\x02")


def test_malformed_image_parts_raise_image_error() -> None:
    head = '{"format": "healthcard-sim-card/1", "serial": "0011223344556677"'
    mf = ('"mf": {"kind": "df", "fid": "3F00", "name": "FF", "size": 1, "create": 1, "erase": 1,'
          ' "app_fid": 1, "reserved": "FFFF", "blocked": 0, "children": [5]}')
    with pytest.raises(ImageError, match="missing field 'mf'"):
        decode_image((head + "}").encode())
    with pytest.raises(ImageError, match="3F00: must be a JSON object"):
        decode_image((head + ", " + mf + "}").encode())
    with pytest.raises(ImageError, match="'capacity' is not a number"):
        decode_image((head + ', "capacity": "big", ' + mf.replace("[5]", "[]") + "}").encode())
    with pytest.raises(ImageError, match="'name' is 0 bytes"):
        decode_image((head + ", " + mf.replace('"FF"', '""') + "}").encode())


def test_failed_eeprom_write_answers_6581_and_changes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    _card, ch = file_card(directory / "card.json")
    shutil.rmtree(directory)
    assert ch("00D6000001AA")[1] == 0x6581
    ch("00A40000020001")
    assert ch("00B0000001")[0] == b"\x00"


def test_protocol_switch_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card, _ = file_card(path)
    card.set_protocol("T=0")
    assert load_image(path).protocol == "T=0"
    assert SimCard.open(path).atr()[1] & 0xF0 == 0


# --- tearing and removal -------------------------------------------------------------------


@pytest.mark.parametrize("applies", [False, True])
def test_tear_applies_all_or_nothing(tmp_path: Path, applies: bool) -> None:
    path = tmp_path / "card.json"
    card, ch = file_card(path)
    card.faults = FaultPlan(tear_at=card.apdu_count + 1, tear_applies=applies)
    with pytest.raises(CardMuteError, match="power lost"):
        ch("00D600000411223344")
    assert not card.present and not card.powered
    expected = bytes.fromhex("11223344") if applies else bytes(4)
    assert disk_content(path)[:4] == expected
    with pytest.raises(CardMuteError):
        card.power_on()
    card.insert()
    card.power_on()
    ch("00A40000020001")
    assert ch("00B0000004")[0] == expected  # memory equals disk after the power cycle


def test_tear_of_an_in_memory_card_rolls_back(tmp_path: Path) -> None:
    card = SimCard.blank(SERIAL)
    card.power_on()
    ch = Channel(card.process, SERIAL)
    ch(apdu(0x80, 0xE0, 0x00, 0x01, bytes.fromhex("280010F0F0FFFF")))
    card.faults.tear_at = card.apdu_count + 1
    with pytest.raises(CardMuteError):
        ch(apdu(0x80, 0xE0, 0x00, 0x02, bytes.fromhex("280010F0F0FFFF")))
    card.insert()
    card.power_on()
    assert ch("00A40000020002")[1] == 0x6A82
    assert ch("00A40000020001")[1] == 0x9000


def test_torn_failed_authentication_does_not_lose_a_try() -> None:
    card = SimCard(decode_image(issued_image_bytes()))
    card.power_on()
    ch = Channel(card.process, TRACE_CARD_FACTOR)
    ch.select_path("DDF1")
    ch.challenge()
    card.faults = FaultPlan(tear_at=card.apdu_count + 1, tear_applies=False)
    with pytest.raises(CardMuteError):
        ch("0082000511 0000000000000000 1122334455667788 01")
    card.insert()
    card.power_on()
    ch.select_path("DDF1")
    ch.challenge()
    assert ch("0082000511 0000000000000000 1122334455667788 01")[1] == 0x63CE


def test_removal_before_an_apdu_executes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card, ch = file_card(path)
    card.faults = FaultPlan(remove_at=card.apdu_count + 1)
    with pytest.raises(CardMuteError, match="removed"):
        ch("00D600000411223344")
    assert not card.present
    with pytest.raises(CardMuteError):
        ch("00B0000004")
    assert disk_content(path)[:4] == bytes(4)
    card.insert()
    card.power_on()
    assert card.apdu_count == 3
    ch("00A40000020001")
    assert ch("00B0000004") == (bytes(4), 0x9000)


def test_unpowered_card_is_mute() -> None:
    card = SimCard.blank(SERIAL)
    with pytest.raises(CardMuteError, match="not powered"):
        card.process(bytes.fromhex("00A40000023F00"))


# --- hostile replies -----------------------------------------------------------------------


def test_hostile_replies() -> None:
    card = SimCard.blank(SERIAL)
    card.power_on()
    n = card.apdu_count
    card.faults = FaultPlan(hostile={n + 1: Hostile.WRONG_LENGTH, n + 2: Hostile.TRUNCATED,
                                     n + 3: Hostile.GARBAGE})
    normal = card.process(bytes.fromhex("0084000008"))
    assert len(normal) == 8 + 1 + 2 and normal[-2:] == b"\x90\x00"
    assert len(card.process(bytes.fromhex("0084000008"))) == 1
    garbage = card.process(bytes.fromhex("00A40000023F00"))
    assert 1 <= len(garbage) <= 40
    assert card.process(bytes.fromhex("00A40000023F00"))[-2:] == b"\x90\x00"  # fired once


def test_endless_61xx_until_another_command() -> None:
    card = SimCard.blank(SERIAL)
    card.power_on()
    card.faults = FaultPlan(hostile={card.apdu_count + 1: Hostile.ENDLESS_61XX})
    assert card.process(bytes.fromhex("00A40000023F00")) == b"\x61\x10"
    for _ in range(100):
        reply = card.process(bytes.fromhex("00C0000010"))
        assert reply[-2:] == b"\x61\x10" and len(reply) == 18
    assert card.process(bytes.fromhex("0084000008"))[-2:] == b"\x90\x00"
    assert card.process(bytes.fromhex("00C0000010")) == b"\x69\x85"


def test_hostile_reply_still_executes_the_command() -> None:
    card = SimCard.blank(SERIAL)
    card.power_on()
    card.faults = FaultPlan(hostile={card.apdu_count + 1: Hostile.GARBAGE})
    card.process(apdu(0x80, 0xE0, 0x00, 0x01, bytes.fromhex("280010F0F0FFFF")))
    assert card.process(bytes.fromhex("00A40000020001")) == b"\x90\x00"


# --- latency model -------------------------------------------------------------------------


def test_latency_model_t1_transfer_time() -> None:
    model = LatencyModel(baud=9600)
    # 7-byte SELECT, 2-byte answer: (7 + 2 + 2*4 block bytes) * 11 etu + 22 etu BGT
    assert model.transfer_seconds("T=1", 7, 2) == pytest.approx((17 * 11 + 22) / 9600)
    # T=0: one procedure byte for a command with data, 12 etu per character
    assert model.transfer_seconds("T=0", 7, 2) == pytest.approx(10 * 12 / 9600)
    assert model.transfer_seconds("T=0", 5, 10) == pytest.approx(15 * 12 / 9600)


def test_latency_model_counts_eeprom_pages_and_crypto() -> None:
    card = SimCard.blank(SERIAL, latency=LatencyModel(baud=115200))
    card.power_on()
    ch = Channel(card.process, SERIAL)
    ch(apdu(0x80, 0xE0, 0x00, 0x01, bytes.fromhex("280200F0F0FFFF")))
    ch("00A40000020001")
    model = card.latency
    assert model is not None
    start, apdus = model.total, model.apdus
    ch(apdu(0x00, 0xD6, 0x00, 0x3F, bytes(66)))  # bytes 63..128: pages 0, 1 and 2
    write_time = model.total - start
    expected = (model.transfer_seconds("T=1", 5 + 66, 2) + model.dispatch_s
                + 3 * model.eeprom_page_s)
    assert write_time == pytest.approx(expected)
    assert model.apdus == apdus + 1
    start = model.total
    ch("00B0000040")
    assert model.total - start == pytest.approx(
        model.transfer_seconds("T=1", 5, 66) + model.dispatch_s)


def test_latency_model_sleeps_when_asked() -> None:
    card = SimCard.blank(SERIAL, latency=LatencyModel(baud=2400, sleep=True))
    card.power_on()
    begin = time.perf_counter()
    for _ in range(5):
        card.process(bytes.fromhex("0084000008"))
    elapsed = time.perf_counter() - begin
    assert card.latency is not None
    assert elapsed >= card.latency.total * 0.95 > 0.1
