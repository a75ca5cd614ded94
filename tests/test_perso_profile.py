"""Issuance profiles: loading, complete validation with paths, record checks, the schema."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest

from healthcard_apdu import model
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.perso import profile as profile_module
from healthcard_apdu.perso.errors import ProfileError
from healthcard_apdu.perso.profile import (
    BUILTIN_PROFILES,
    access_granted_by,
    access_kind,
    check_record,
    load_profile,
)
from perso_support import profile_text, profile_variant, resident_for


def _paths(exc: ProfileError) -> set[str]:
    return {p.path for p in exc.problems}


def test_national_profile_covers_the_whole_layout() -> None:
    p = load_profile("national-32k")
    assert [d.name for d in p.dfs] == [d.name for d in model.DFS]
    assert {f.path for f in p.files} == {e.path for e in model.EFS}
    layout_keys = {k.name for k in model.KEYS}
    assert layout_keys <= {k.role for k in p.keys}
    assert {k.role for k in p.keys} - layout_keys == {"MK_MF", "MK_DDF1", "MK_DF01", "MK_DF02",
                                                       "MK_DF03"}
    assert p.algorithm is BlockCipher.SM4 and p.end_issuance and not p.production
    assert p.space <= p.card.capacity == 32768
    # every key sits at the layout's reference and is diversified as the SAM key map says
    for key in p.keys:
        if key.role.startswith("MK_"):
            assert key.kid == 0 and key.auth == "fmcos"
            continue
        layout = model.key(key.role)
        assert key.ref == layout.card_key_ref and key.df == layout.df
        assert key.levels == (2 if layout.uses_city_factor else 1)
        assert key.sam_p2 == layout.sam_p2(1)


def test_compact_variant_is_data() -> None:
    national, compact = load_profile("national-32k"), load_profile("compact-8k")
    assert compact.algorithm is BlockCipher.TDES
    assert compact.file("DDF1/EF07") is None
    assert {f.path for f in compact.files if f.path.startswith("DF03/E")} - {
        "DF03/EF05", "DF03/EF06"} == {"DF03/EE01", "DF03/ED01"}
    ee01 = compact.file("DF03/EE01")
    assert ee01 is not None and ee01.size == model.ef("DF03/EE01").data_length
    assert compact.space <= compact.card.capacity == 8192 < national.space


def test_builtin_names_and_paths_load_the_same(tmp_path: Path) -> None:
    for name in BUILTIN_PROFILES:
        path = tmp_path / f"{name}.toml"
        path.write_text(profile_text(name), encoding="utf-8")
        assert load_profile(path).summary() == load_profile(name).summary()


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_variant("national-32k", {
            # duplicate FID: DF01/EF06 listed twice
            '  { path = "DF01/EF07",': '  { path = "DF01/EF06", type = 0xAC, read = 0x11, '
                                      'write = 0x22 },\n  { path = "DF01/EF07",',
            # missing key for an access rule (UK3_DF02 writes DF02/EF07 and EF08)
            '  { role = "UK3_DF02", df = "DF02", type = "external", follow_up = 0x04, '
            'counter = 0xFF, levels = "card+city" },\n': "",
            # data that does not fit: TLV file smaller than its records; card too small
            '{ path = "DF01/EF07", type = 0xAC, read = 0x11, write = 0x22 }':
                '{ path = "DF01/EF07", type = 0xAC, read = 0x11, write = 0x22, size = 4 }',
            "capacity = 32768": "capacity = 20000",
            # wrong structure type, free read where the layout protects
            '{ path = "DF03/EE02", type = 0x28, read = 0x11':
                '{ path = "DF03/EE02", type = 0x2A, read = 0xF0',
            # a typo'd field, an unknown file, a kid that disagrees with the layout
            "max_response = 256": "max_respons = 256",
            '{ path = "DF03/ED05",': '{ path = "DF03/ED09", type = 0x28, read = 0x11, '
                                     'write = 0x22 },\n  { path = "DF03/ED05",',
            '{ role = "RK1_DF01", df = "DF01", type = "external",':
                '{ role = "RK1_DF01", df = "DF01", type = "external", kid = 0x07,',
            # create right not free; bad counter; RK1 made to grant writes
            'name = "DF02"\nsize = 0x0400\ncreate = 0xF0': 'name = "DF02"\nsize = 0x0400\n'
                                                          'create = 0x11',
            '{ role = "UK1_DF01", df = "DF01", type = "external", follow_up = 0x02, '
            'counter = 0xFF': '{ role = "UK1_DF01", df = "DF01", type = "external", '
                              'follow_up = 0x02, counter = 0xF3',
            '{ role = "RK1_DF03", df = "DF03", type = "external", follow_up = 0x01':
                '{ role = "RK1_DF03", df = "DF03", type = "external", follow_up = 0x02',
        }, tmp_path)
    paths = _paths(caught.value)
    expected = {
        "files.DF01/EF06",
        "files.DF02/EF07.write",
        "files.DF02/EF08.write",
        "files.DF01/EF07.size",
        "card.capacity",
        "files.DF03/EE02.type",
        "files.DF03/EE02.read",
        "card.max_respons",
        "files.DF03/ED09",
        "keys.RK1_DF01.kid",
        "dfs.DF02.create",
        "keys.UK1_DF01.counter",
        "files.DF03/EF05.read",
        "files.DF03/EE01.write",
    }
    assert expected <= paths, expected - paths
    messages = {p.path: p.message for p in caught.value.problems}
    assert "duplicate FID DF01/EF06" not in messages["files.DF01/EF06"]
    assert "duplicate FID EF06" in messages["files.DF01/EF06"]
    assert "missing key UK3_DF02" in messages["files.DF02/EF07.write"]
    assert "RK1_DF03" in messages["files.DF03/EE01.write"]
    text = str(caught.value)
    assert all(path in text for path in expected)


def test_unreadable_and_malformed_profiles(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot read.*national-32k"):
        load_profile(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "healthcard-apdu/profile"\nname = \n', encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(empty)
    assert {"format", "version", "profile.name", "dfs", "filesystem.files", "keys.entries",
            "card.capacity"} <= _paths(caught.value)


def test_layout_rules_are_enforced(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        profile_variant("national-32k", {
            # issuance-only file made rewritable; master key removed from DF01 (erase right AA)
            '{ path = "DDF1/EF06", type = 0x2C, read = 0x11, write = 0xEF }':
                '{ path = "DDF1/EF06", type = 0x2C, read = 0x11, write = 0x22 }',
            '  { role = "MK_DF01",  df = "DF01", type = "external", kid = 0x00, '
            'follow_up = 0xAA, levels = "card", auth = "fmcos" },\n': "",
            # a 2-level key declared 1-level; index erase right left as "same as write"
            '{ role = "RK1_DF02", df = "DF02", type = "external", follow_up = 0x01, '
            'counter = 0xFF, levels = "card+city" }':
                '{ role = "RK1_DF02", df = "DF02", type = "external", follow_up = 0x01, '
                'counter = 0xFF, levels = "card" }',
            '{ path = "DF03/EF06", type = 0x2A, read = 0x11, write = 0x22, erase = 0x33 }':
                '{ path = "DF03/EF06", type = 0x2A, read = 0x11, write = 0x22 }',
        }, tmp_path)
    paths = _paths(caught.value)
    assert {"files.DDF1/EF06.write", "dfs.DF01.erase", "keys.RK1_DF02.levels",
            "files.DF03/EF06.erase"} <= paths


def test_access_bytes() -> None:
    p = load_profile("national-32k")
    rk1, uk1, mk = p.key("RK1_DF03"), p.key("UK1_DF03"), p.key("MK_DF03")
    assert access_kind(0xF0) == "free" and access_kind(0xEF) == "never"
    assert access_kind(0x11) == "df" and access_kind(0x03) == "mf"
    assert access_granted_by(0x11, rk1) and not access_granted_by(0x11, uk1)
    assert access_granted_by(0x22, uk1) and not access_granted_by(0x22, mk)
    assert access_granted_by(0xAA, mk) and not access_granted_by(0xEF, mk)
    assert access_granted_by(0xF1, uk1) and not access_granted_by(0xF1, p.key("STK_DF03"))
    assert access_granted_by(0x02, p.key("MK_MF")) and not access_granted_by(0x02, uk1)


def test_record_problems_are_all_reported_with_paths() -> None:
    compact = load_profile("compact-8k")
    data = model.sample_resident().to_json(keys="code")
    data["DDF1EF06"]["XB"] = 7
    data["DF01EF07"]["HYZK"] = "77"
    data["DF03EE"][0]["ZYJGMC"] = "x" * 200
    data["DF03EE"][1] = data["DF03EE"][0] | {"ZYJGMC": "第二家医院"}
    card, problems = check_record(compact, data)
    assert card is None
    paths = {p.path for p in problems}
    assert {"record.DDF1EF06.XB", "record.DF01EF07.HYZK", "record.DF03EE01.ZYJGMC",
            "record.DDF1EF07", "record.DF03EE02"} <= paths
    by_path = {p.path: p.message for p in problems}
    assert "sex" in by_path["record.DDF1EF06.XB"] and "7" in by_path["record.DDF1EF06.XB"]
    assert "no file DDF1/EF07" in by_path["record.DDF1EF07"]


def test_sample_resident_fits_both_profiles_and_signature_does_not_fit_compact() -> None:
    for name in BUILTIN_PROFILES:
        card, problems = check_record(load_profile(name), resident_for(name))
        assert problems == [] and card is not None
    sample = resident_for("compact-8k")
    signed = sample.inpatient[0]
    assert signed is not None
    signed = signed.replace(inpatient_signature=bytes(range(64)))
    data = dataclasses.replace(sample, inpatient=(signed, None, None))
    _, problems = check_record(load_profile("compact-8k"), data)
    assert [p.path for p in problems] == ["record.DF03EE01"]
    assert "do not fit the 1639-byte file" in problems[0].message
    _, problems = check_record(load_profile("national-32k"), data)
    assert problems == []


def test_missing_city_code_is_a_record_problem() -> None:
    sample = model.sample_resident()
    card = model.CardData(issuer=sample.issuer.replace(application_city_code=""))
    _, problems = check_record(load_profile("national-32k"), card)
    assert [p.path for p in problems] == ["record.DDF1EF05.YYCSDM"]


def test_unknown_json_key_in_record() -> None:
    data = model.sample_resident().to_json(keys="code")
    data["DDF1EF06"]["NOPE"] = 1
    card, problems = check_record(load_profile("national-32k"), data)
    assert card is None and problems[0].path.startswith("record.DDF1EF06")
    assert "NOPE" in problems[0].message


def _schema() -> dict[str, object]:
    text = resources.files("healthcard_apdu.perso").joinpath("profile.schema.json").read_text()
    document: dict[str, object] = json.loads(text)
    return document


def _props(node: dict[str, object]) -> set[str]:
    props = node["properties"]
    assert isinstance(props, dict)
    return set(props)


def test_schema_lists_exactly_the_fields_the_parser_accepts() -> None:
    schema = _schema()
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    assert _props(schema) == set(profile_module._TOP)
    assert _props(defs["card"]) == set(profile_module._CARD)
    assert _props(defs["product"]) == set(profile_module._PRODUCT)
    assert _props(defs["df"]) == set(profile_module._DF)
    assert _props(defs["key_file"]) == set(profile_module._KEY_FILE)
    assert _props(defs["file"]) == set(profile_module._FILE)
    assert _props(defs["keys"]) == set(profile_module._KEYS)
    assert _props(defs["key"]) == set(profile_module._KEY)
    assert _props(defs["key_defaults"]) == set(profile_module._KEY_DEFAULTS)


def test_builtin_profiles_satisfy_the_schema_shape() -> None:
    """A small structural check of the shipped TOML against the schema (required fields,
    enums, byte ranges), without a JSON-schema library."""
    import tomllib

    schema = _schema()
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    for name in BUILTIN_PROFILES:
        document = tomllib.loads(profile_text(name))
        _check(document, schema, defs, name)


def _check(value: object, node: object, defs: dict[str, object], where: str) -> None:
    assert isinstance(node, dict)
    if "$ref" in node:
        ref = str(node["$ref"]).removeprefix("#/$defs/")
        _check(value, defs[ref], defs, where)
        return
    kind = node.get("type")
    if kind == "object":
        assert isinstance(value, dict), where
        for req in node.get("required", []):
            assert req in value, f"{where}.{req} required"
        props = node.get("properties", {})
        assert isinstance(props, dict)
        for key, sub in value.items():
            assert key in props, f"{where}.{key} not in schema"
            _check(sub, props[key], defs, f"{where}.{key}")
    elif kind == "array":
        assert isinstance(value, list), where
        for i, sub in enumerate(value):
            _check(sub, node["items"], defs, f"{where}[{i}]")
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), where
        assert node.get("minimum", value) <= value <= node.get("maximum", value), where
    elif kind == "string":
        assert isinstance(value, str), where
        if "enum" in node:
            assert value in node["enum"], where
    elif kind == "boolean":
        assert isinstance(value, bool), where
    if "const" in node:
        assert value == node["const"], where
