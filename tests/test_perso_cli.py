"""``healthcard personalize`` / ``healthcard verify`` on a simulated card image: outputs and
the documented exit codes (docs/cli.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from healthcard_apdu import model
from healthcard_apdu.cli.perso import personalize_command, verify_command
from healthcard_apdu.sim import SimCard, load_image, save_image
from healthcard_apdu.sim.fs import Df, Ef
from perso_support import keyset

PASSPHRASE = "perso-cli-test"
FACTOR = bytes.fromhex("0102030405060708")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    keyfile = tmp_path / "keys.json"
    keyset().save(keyfile, PASSPHRASE, scrypt_n=2**10)
    data = tmp_path / "resident.json"
    data.write_text(json.dumps(model.sample_resident().to_json(), ensure_ascii=False),
                    encoding="utf-8")
    image = tmp_path / "card.json"
    SimCard.blank(FACTOR, path=image, durable=False)
    return {"keys": keyfile, "data": data, "card": image, "dir": tmp_path}


def _run(command: object, args: list[str], **env: str) -> Result:
    runner = CliRunner()
    environment = {"HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE, **env}
    return runner.invoke(command, args, env=environment)  # type: ignore[arg-type]


def _args(files: dict[str, Path], *extra: str) -> list[str]:
    return ["--sim-card", str(files["card"]), "--data", str(files["data"]),
            "--keys", str(files["keys"]), *extra]


def test_personalize_verify_and_exit_codes(files: dict[str, Path]) -> None:
    done = _run(personalize_command, _args(files, "--json"))
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["apdus"] == result["minimum"]["apdus"]
    assert result["card_factor"] == FACTOR.hex().upper() and not result["erased"]

    again = _run(personalize_command, _args(files))
    assert again.exit_code == 3 and "already issued" in again.output and "--erase" in again.output

    erased = _run(personalize_command, _args(files, "--erase", "--json"))
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.output)["erased"] is True

    checked = _run(verify_command, _args(files, "--json"))
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.output)
    assert report["ok"] and report["files_checked"] == 16

    plain = _run(verify_command, _args(files))
    assert plain.exit_code == 0 and "verify: OK" in plain.output


def test_verify_fails_with_exit_1_naming_the_item(files: dict[str, Path]) -> None:
    assert _run(personalize_command, _args(files)).exit_code == 0
    image = load_image(files["card"])
    ddf1 = image.mf.children[0xDDF1]
    assert isinstance(ddf1, Df)
    holder = ddf1.children[0xEF06]
    assert isinstance(holder, Ef)
    record = bytearray(holder.records[0])
    record[2:4] = "张".encode("gbk")
    holder.records[0] = bytes(record)
    save_image(image, files["card"], durable=False)
    failed = _run(verify_command, _args(files))
    assert failed.exit_code == 1
    assert "FAIL DDF1/EF06 item 11 XM (name)" in failed.output
    assert "verify: FAILED" in failed.output


def test_invalid_record_lists_every_problem_and_touches_nothing(files: dict[str, Path]) -> None:
    data = model.sample_resident().to_json(keys="code")
    data["DDF1EF06"]["XB"] = 5
    data["DF01EF07"]["HYZK"] = "77"
    files["data"].write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    before = files["card"].read_bytes()
    result = _run(personalize_command, _args(files))
    assert result.exit_code == 2
    assert "record.DDF1EF06.XB" in result.output and "record.DF01EF07.HYZK" in result.output
    assert files["card"].read_bytes() == before


def test_profile_errors_and_usage(files: dict[str, Path]) -> None:
    bad = files["dir"] / "bad.toml"
    bad.write_text('format = "healthcard-apdu/profile"\nversion = 1\nname = "x"\n')
    result = _run(personalize_command, _args(files, "--profile", str(bad)))
    assert result.exit_code == 2 and "dfs" in result.output
    both = _run(personalize_command, _args(files, "--reader", "Virtual PCD 00 00"))
    assert both.exit_code == 2 and "exactly one of --reader, --sim-card" in both.output
    two_keys = _run(personalize_command, _args(files, "--pkcs11-token", "x"))
    assert two_keys.exit_code == 2


def test_security_errors_exit_4(files: dict[str, Path]) -> None:
    wrong = _run(personalize_command, _args(files), HEALTHCARD_KEYS_PASSPHRASE="wrong")
    assert wrong.exit_code == 4 and "wrong passphrase" in wrong.output
    args = ["--sim-card", str(files["card"]), "--data", str(files["data"]),
            "--sam-reader", "no such reader"]
    psam = _run(personalize_command, args)
    assert psam.exit_code == 4 and "PSAM cannot derive card keys" in psam.output
    three_des = _run(personalize_command, _args(files, "--profile", "compact-8k"))
    assert three_des.exit_code == 2  # the sample has a photo; compact-8k has no photo file
    assert "record.DDF1EF07" in three_des.output


def test_dry_run_writes_a_masked_plan(files: dict[str, Path]) -> None:
    out = files["dir"] / "plan.json"
    args = ["--data", str(files["data"]), "--keys", str(files["keys"]), "--dry-run",
            "--card-factor", FACTOR.hex(), "--out", str(out), "--json"]
    result = _run(personalize_command, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    plan = json.loads(out.read_text())
    assert summary["apdus"] == plan["apdus"] == len(plan["steps"])
    assert plan["card_factor"] == FACTOR.hex().upper()
    keys = [s for s in plan["steps"] if s["kind"] == "write_key"]
    assert keys and all(s["apdu"].endswith("*" * 32) for s in keys)
    from_card = _run(personalize_command, _args(files, "--dry-run"))
    assert from_card.exit_code == 0
    assert json.loads(from_card.output)["apdus"] == plan["apdus"]
    assert SimCard.open(files["card"]).image.mf.children == {}  # nothing was sent
    no_factor = _run(personalize_command, ["--data", str(files["data"]), "--keys",
                                           str(files["keys"]), "--dry-run"])
    assert no_factor.exit_code == 2
