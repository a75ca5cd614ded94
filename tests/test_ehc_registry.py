"""The e-card registry on SQLite and PostgreSQL: issuance, the physical-card link, revocation,
one-time use across terminals, use records and their JSON Lines export."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from typing import Any

import pytest

from ehc_support import GUIFUTONG, LI_KUN, NOW, registry, registry_target, spec_platform
from healthcard_apdu.ehc import (
    EhcInputError,
    Person,
    QrRejected,
    Registry,
    RegistryConflict,
    RegistryError,
    TrustList,
    UseContext,
    Verifier,
    issue_from_identity,
)

__all__ = ["registry", "registry_target"]  # fixtures

WINDOW = UseContext(org_code="H110105001", terminal="T0001", channel="02", medstep="010101",
                    city_code="110105")
PAYMENT = UseContext(org_code="H110105001", terminal="T0002", channel="0200", medstep="010105",
                     scene="0101051", cost_type="0200")


def _verifier() -> tuple[Any, Verifier]:
    platform = spec_platform()
    return platform, Verifier(keys=platform.keys,
                              trust_list=TrustList([platform.trust_entry(issuer="p")]))


def _counts(reg: Registry) -> tuple[int, int, int]:
    rows = [reg._read(f"SELECT COUNT(*) FROM {table}")[0][0]
            for table in ("ecards", "uses", "consumed_codes")]
    return int(rows[0]), int(rows[1]), int(rows[2])


def test_schema_is_migrated_once(registry_target: str) -> None:
    with Registry.open(registry_target) as first:
        assert first.schema_version() == 1
    with Registry.open(registry_target) as again:
        assert again.migrate() == 1 and again.schema_version() == 1
        with again._tx() as cur:  # a registry written by a newer program
            cur.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'x')")
    with pytest.raises(RegistryError, match="newer"):
        Registry.open(registry_target)


def test_issue_links_the_physical_card_and_is_idempotent(registry: Registry) -> None:
    platform = spec_platform()
    issued = issue_from_identity(platform, GUIFUTONG, registry, card_number="110101199211140619",
                                 chip_serial="0001234567", terminal="kiosk-1", now=NOW)
    assert issued.created and issued.record is not None
    assert issued.record.card_number == "110101199211140619"
    assert issued.record.keys_version == "EHC_SECURITY:" + platform.keys.module \
        .key_check_values()["EHC_SECURITY"]
    assert registry.find_by_card_number("110101199211140619") == issued.record
    assert registry.find_by_identity("01", GUIFUTONG.id_number) == issued.record
    assert registry.get(issued.ehc_id.lower()) == issued.record
    again = issue_from_identity(platform, GUIFUTONG, registry, terminal="kiosk-2")
    assert not again.created and again.record == issued.record
    # a replacement card: the new number replaces the old one, the event keeps both
    replaced = registry.link_card(issued.ehc_id, "NEW-CARD-0001", terminal="window")
    assert replaced.card_number == "NEW-CARD-0001"
    assert [e["kind"] for e in registry.events(issued.ehc_id)] == ["issued", "card-linked"]
    assert "was 110101199211140619" in registry.events(issued.ehc_id)[1]["detail"]


def test_conflicts_are_refused_and_write_nothing(registry: Registry) -> None:
    platform = spec_platform()
    first = issue_from_identity(platform, GUIFUTONG, registry, card_number="CARD-A", now=NOW)
    before = _counts(registry)
    with pytest.raises(RegistryConflict, match="CARD-A"):
        issue_from_identity(platform, LI_KUN, registry, card_number="CARD-A")
    renamed = Person(id_type="01", id_number=GUIFUTONG.id_number, name="贵服")
    with pytest.raises(RegistryConflict, match="already holds"):
        issue_from_identity(platform, renamed, registry)
    assert _counts(registry) == before
    registry.revoke(first.ehc_id, "card reported lost", terminal="window")
    with pytest.raises(RegistryConflict, match="revoked"):
        issue_from_identity(platform, GUIFUTONG, registry)
    with pytest.raises(RegistryConflict, match="revoked"):
        registry.link_card(first.ehc_id, "CARD-B")
    with pytest.raises(EhcInputError, match="reason"):
        registry.revoke(first.ehc_id, " ")


def test_national_codes_need_a_registered_active_card(registry: Registry) -> None:
    platform, verifier = _verifier()
    ehc_id = platform.ecard_id(GUIFUTONG)
    static = platform.static_qr(ehc_id).text()
    with pytest.raises(QrRejected, match="unknown-card"):
        verifier.verify(static, now=NOW, registry=registry)
    issue_from_identity(platform, GUIFUTONG, registry, card_number="KH1")
    result = verifier.verify(static, now=NOW, registry=registry, use=WINDOW)
    assert result.kind == "national-static" and result.card is not None
    assert result.card.person.name == "贵服通" and result.card.card_number == "KH1"
    assert result.use is not None and result.use.context == WINDOW
    registry.revoke(ehc_id, "deceased")
    before = _counts(registry)
    for text in (static, platform.dynamic_qr(ehc_id, now=NOW).text(),
                 platform.signed_qr(ehc_id, now=NOW)):
        with pytest.raises(QrRejected) as caught:
            verifier.verify(text, now=NOW, registry=registry, use=WINDOW)
        assert caught.value.reason == "revoked-card"
    assert _counts(registry) == before


def test_signed_codes_are_single_use_across_terminals(registry_target: str) -> None:
    platform, verifier = _verifier()
    text = platform.signed_qr(platform.ecard_id(LI_KUN), now=NOW)  # not registered: foreign
    with Registry.open(registry_target) as terminal_1, Registry.open(registry_target) as terminal_2:
        first = verifier.verify(text, now=NOW, registry=terminal_1, use=WINDOW)
        assert first.card is None and first.use is not None and first.use.jti == first.jti
        with pytest.raises(QrRejected, match="replayed"):
            verifier.verify(text, now=NOW, registry=terminal_2, use=PAYMENT)
        assert _counts(terminal_2) == (0, 1, 1)


def test_concurrent_presentations_accept_exactly_one(registry_target: str) -> None:
    platform, verifier = _verifier()
    text = platform.signed_qr(platform.ecard_id(LI_KUN), now=NOW)
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def present(index: int) -> None:
        with Registry.open(registry_target, migrate=False) as terminal:
            use = UseContext(org_code="H1", terminal=f"T{index}", channel="02",
                             medstep="010101")
            barrier.wait()
            try:
                verifier.verify(text, now=NOW, registry=terminal, use=use)
                outcome = "accepted"
            except QrRejected as rejected:
                outcome = rejected.reason
            with lock:
                outcomes.append(outcome)

    Registry.open(registry_target).close()  # migrate once
    threads = [threading.Thread(target=present, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted", "replayed", "replayed", "replayed"]


def test_uses_export_as_json_lines(registry: Registry) -> None:
    platform, verifier = _verifier()
    ehc_id = issue_from_identity(platform, GUIFUTONG, registry).ehc_id
    other = issue_from_identity(platform, LI_KUN, registry).ehc_id
    times = [NOW + dt.timedelta(minutes=i) for i in range(3)]
    verifier.verify(platform.dynamic_qr(ehc_id, now=times[0]).text(), now=times[0],
                    registry=registry, use=WINDOW)
    verifier.verify(platform.signed_qr(ehc_id, now=times[1]), now=times[1], registry=registry,
                    use=PAYMENT)
    verifier.verify(platform.static_qr(other).text(), now=times[2], registry=registry,
                    use=WINDOW)
    out = io.StringIO()
    assert registry.export_uses(out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["kind"] for line in lines] == ["national-dynamic", "signed", "national-static"]
    assert lines[1] == {
        "id": lines[1]["id"], "at": times[1].isoformat(), "ehc_id": ehc_id, "kind": "signed",
        "card_type": "11", "org_code": "H110105001", "terminal": "T0002", "channel": "0200",
        "medstep": "010105", "scene": "0101051", "city_code": None, "department": None,
        "cost_type": "0200", "jti": lines[1]["jti"], "kid": platform.keys.key_id().hex().upper(),
    }
    assert len(lines[1]["jti"]) == 16 and lines[0]["jti"] is None
    assert [u.kind for u in registry.uses(ehc_id=other)] == ["national-static"]
    assert len(list(registry.uses(since=times[1]))) == 2
    assert len(list(registry.uses(until=times[1]))) == 1


def test_bad_input_writes_nothing(registry: Registry) -> None:
    platform, verifier = _verifier()
    ehc_id = issue_from_identity(platform, GUIFUTONG, registry).ehc_id
    before = _counts(registry)
    expired = platform.signed_qr(ehc_id, now=NOW - dt.timedelta(hours=1))
    with pytest.raises(QrRejected, match="expired"):
        verifier.verify(expired, now=NOW, registry=registry, use=WINDOW)
    with pytest.raises(EhcInputError, match="medstep"):
        UseContext(org_code="H1", terminal="T1", channel="02", medstep="010108")
    assert _counts(registry) == before


def test_consumed_codes_can_be_purged_after_they_expire(registry: Registry) -> None:
    platform, verifier = _verifier()
    text = platform.signed_qr(platform.ecard_id(LI_KUN), now=NOW)
    verifier.verify(text, now=NOW, registry=registry)
    assert registry.purge_consumed(NOW) == 0
    assert registry.purge_consumed(NOW + dt.timedelta(minutes=3)) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": "03"}, "channel"),
        ({"medstep": "10101"}, "medstep"),
        ({"scene": "0101099"}, "scene"),
        ({"city_code": "990000"}, "city_code"),
        ({"medstep": "010105"}, "cost_type"),
        ({"scene": "0101053"}, "cost_type"),
        ({"cost_type": "0500"}, "cost_type"),
        ({"scene": "0101011"}, "department"),
        ({"org_code": ""}, "org_code"),
        ({"terminal": "T\n1"}, "terminal"),
    ],
)
def test_use_context_errors_name_the_field(fields: dict[str, str], field: str) -> None:
    values = {"org_code": "H1", "terminal": "T1", "channel": "02", "medstep": "010101", **fields}
    with pytest.raises(EhcInputError) as caught:
        UseContext(**values)
    assert caught.value.field == field
