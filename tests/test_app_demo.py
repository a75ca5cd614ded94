"""The README's main job: simulated card + SAM on vpcd, personalize, verify, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import require_pcsc, slot_lock
from healthcard_apdu import model
from healthcard_apdu.app.demo import _same_items, run_demo
from healthcard_apdu.cli import main

pytestmark = pytest.mark.pcsc


def test_demo_through_pcscd(tmp_path: Path) -> None:
    require_pcsc()
    with slot_lock(0), slot_lock(1):
        summary = run_demo(tmp_path)
    assert summary["verify"]["ok"], summary["verify"]["problems"]
    assert summary["personalize"]["apdus"] == summary["personalize"]["minimum"]["apdus"]
    assert summary["verify"]["forbidden_accesses_refused"] == 8
    keys = summary["verify"]["keys"]
    assert keys["RK1_DF03"] == "ok" and keys["STK_DDF1"] == "ok"
    assert keys["MK_MF"] == "skipped"  # the PSAM gives no card keys
    assert Path(summary["card_image"]).exists()
    assert Path(summary["sam_keys"]).stat().st_mode & 0o077 == 0
    # read back through pcscd with the card layer: the holder is the sample resident
    holder = model.sample_resident().to_json("code")["DDF1EF06"]
    assert summary["card"]["DDF1EF06"]["XM"] == holder["XM"]
    assert summary["card"]["DDF1EF06"]["SFZH"] == holder["SFZH"]
    assert summary["read_back_equals_record"] is True


def test_demo_command_prints_the_card_and_exits_zero(tmp_path: Path) -> None:
    require_pcsc()
    with slot_lock(0), slot_lock(1):
        result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    name = model.sample_resident().to_json("code")["DDF1EF06"]["XM"]
    assert any("XM" in line and name in line for line in result.output.splitlines())
    assert "verify           OK" in result.output
    assert "read back        equals the record" in result.output
    with slot_lock(0), slot_lock(1):
        as_json = CliRunner().invoke(main, ["demo", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["card"]["DDF1EF06"]["XM"] == name


def test_read_back_comparison_names_a_difference() -> None:
    written = {"DDF1EF06": {"XM": "张三", "XB": 1}, "DF03EE": [None]}
    assert _same_items({"DDF1EF06": {"XM": "张三", "XB": 1, "MZ": "01"}, "DF03EE": [None]}, written)
    assert not _same_items({"DDF1EF06": {"XM": "李四", "XB": 1}, "DF03EE": [None]}, written)
    assert not _same_items({"DF03EE": [None]}, written)


def test_read_back_comparison_skips_only_items_the_record_leaves_empty() -> None:
    written = {"DF03EE": [{"ZYJGMC": "人民医院", "JYXXQM": ""}, None]}
    read = {"DF03EE": [{"ZYJGMC": "人民医院", "JYXXQM": "8A3F"}, None]}
    assert _same_items(read, written)
    assert not _same_items({"DF03EE": [{"ZYJGMC": "县医院", "JYXXQM": "8A3F"}, None]}, written)
    assert not _same_items({"DF03EE": [None, None]}, written)
