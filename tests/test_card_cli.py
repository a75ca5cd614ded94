"""``healthcard read`` / ``write`` through click's CliRunner against the in-process simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from healthcard_apdu.card.document import read_document, write_document
from healthcard_apdu.cli.card import read_command, write_command
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim.image import load_image, save_image
from test_card_fixtures import CERTIFICATE, SAM_PIN, health_card, issued_card, keyset, sample

PASSPHRASE = "card-cli-passphrase"
ENV = {"HEALTHCARD_SAM_PIN": SAM_PIN, "HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE}


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "card.json"
    save_image(issued_card().image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    keys = tmp_path / "keys.json"
    keyset().save(keys, PASSPHRASE, scrypt_n=2**10)
    return {"image": image, "sam": sam, "keys": keys, "dir": tmp_path}


def _run(command: Any, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=ENV if env is None else env).invoke(command, list(args))
    return result.exit_code, result.stdout, result.stderr


def _sim(setup: dict[str, Path], module: str = "sim-sam") -> list[str]:
    target = setup["sam"] if module == "sim-sam" else setup["keys"]
    return ["--sim-card", str(setup["image"]), f"--{module}", str(target)]


def _blank_signatures(document: dict[str, Any]) -> dict[str, Any]:
    out = dict(document)
    for group, keys in (("DF03EE", ("ZYJYXXQM", "ZYSAMKZS")), ("DF03ED", ("MZJYXXQM", "MZSAMKZS"))):
        out[group] = [None if r is None else {**r, **dict.fromkeys(keys, "")} for r in out[group]]
    return out


def test_write_then_read_json_round_trip(setup: dict[str, Path]) -> None:
    written = sample().to_json("code")
    data = setup["dir"] / "in.json"
    data.write_text(json.dumps(written, ensure_ascii=False), encoding="utf-8")

    code, out, err = _run(write_command, "--data", str(data), "--json", *_sim(setup))
    assert code == 0, err
    actions = {r["file"]: r["action"] for r in json.loads(out)}
    assert actions["DDF1EF05"] == actions["DDF1EF06"] == "skipped"  # not rewritable
    assert actions["DF01EF05"] == actions["DF03EE"] == actions["DF03ED"] == "written"

    code, out, err = _run(read_command, "--json", *_sim(setup))
    assert code == 0, err
    first = json.loads(out)
    assert {k: v for k, v in first.items() if k != "signatures"} != first
    assert first["signatures"] == {"DF03EE01": "signed-valid", "DF03ED01": "signed-valid"}
    assert "warnings" not in first and err == ""
    assert _blank_signatures({k: v for k, v in first.items() if k != "signatures"}) == \
        _blank_signatures(written)
    record = first["DF03EE"][0]
    assert bytes.fromhex(record["ZYSAMKZS"]) == CERTIFICATE
    assert first["DF03EE"][1:] == [None, None]

    # what was read (with its "signatures" report), written back, reads back identically
    # (valid signatures are kept; the reserved keys are not files)
    again = setup["dir"] / "again.json"
    again.write_text(out, encoding="utf-8")
    assert _run(write_command, "--data", str(again), *_sim(setup))[0] == 0
    code, out, _ = _run(read_command, "--json", *_sim(setup))
    assert code == 0 and json.loads(out) == first


def test_read_table_and_chosen_files(setup: dict[str, Path]) -> None:
    code, out, err = _run(read_command, *_sim(setup))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["file", "item", "code", "name", "value"]
    assert any(line.split()[:3] == ["DDF1EF06", "11", "XM"] and "李堃" in line for line in lines)
    assert any("(record invalid: index flag FF)" in line for line in lines)

    code, out, err = _run(
        read_command,
        "--file",
        "holder",
        "--file",
        "DF03EE01",
        "--json",
        "--keys-by",
        "name",
        *_sim(setup, "keys"),
    )
    assert code == 0, err
    document = json.loads(out)
    assert list(document) == ["holder", "inpatient_1"]
    assert document["holder"]["name"] == "李堃" and document["inpatient_1"] is None


def test_write_chosen_files_only(setup: dict[str, Path]) -> None:
    data = setup["dir"] / "in.json"
    data.write_text(json.dumps(sample().to_json("name"), ensure_ascii=False), encoding="utf-8")
    code, out, err = _run(
        write_command, "--data", str(data), "--file", "contacts", "--json", *_sim(setup)
    )
    assert code == 0, err
    assert json.loads(out) == [{"file": "DF01EF06", "action": "written", "note": ""}]
    code, out, _ = _run(
        read_command, "--json", "--file", "DF01EF06", "--file", "DF01EF05", *_sim(setup)
    )
    document = json.loads(out)
    assert document["DF01EF06"] == sample().contacts.to_json("code")
    assert document["DF01EF05"] != sample().addresses.to_json("code")  # not written
    code, _, err = _run(write_command, "--data", str(data), "--file", "holder", *_sim(setup))
    assert code == 2 and "DDF1/EF06" in err and "not rewritable" in err


def test_tampered_record_exits_with_a_clear_message(setup: dict[str, Path]) -> None:
    data = setup["dir"] / "in.json"
    data.write_text(json.dumps(sample().to_json("code"), ensure_ascii=False), encoding="utf-8")
    assert _run(write_command, "--data", str(data), *_sim(setup))[0] == 0
    image = load_image(setup["image"])
    mf: Any = image.mf
    node = mf.children[0xDDF1].children[0xDF03].children[0xED01]
    node.data[0:2] = "甲".encode("gbk")  # first character of the institution name
    save_image(image, setup["image"], durable=False)
    code, out, err = _run(read_command, *_sim(setup))
    assert code == 1
    assert "DF03/ED01 (outpatient record 1): signature check failed" in err
    # the rest of the card is still shown, and the record's status says what happened
    assert any(line.split()[:3] == ["DDF1EF06", "11", "XM"] for line in out.splitlines())
    assert any(line.split() == ["DF03ED01", "signature", "signature-invalid"]
               for line in out.splitlines())
    code, out, _ = _run(read_command, "--no-verify", "--json", *_sim(setup))
    assert code == 0
    record = json.loads(out)["DF03ED"][0]
    assert record["JZJGMC"].startswith("甲")


def test_option_and_input_errors(setup: dict[str, Path]) -> None:
    code, _, err = _run(read_command, "--sim-card", str(setup["image"]))
    assert code == 2 and "exactly one security module" in err
    code, _, err = _run(
        read_command, *_sim(setup, "keys"), env={"HEALTHCARD_KEYS_PASSPHRASE": "wrong"}
    )
    assert code == 4 and "wrong passphrase" in err
    bad = setup["dir"] / "bad.json"
    bad.write_text(json.dumps({"DF01EF05": {"DZ1": "地" * 51}}), encoding="utf-8")
    code, _, err = _run(write_command, "--data", str(bad), *_sim(setup))
    assert code == 2 and "DZ1" in err and "100 bytes" in err
    bad.write_text("{not json", encoding="utf-8")
    code, _, err = _run(write_command, "--data", str(bad), *_sim(setup))
    assert code == 2 and "not a readable JSON document" in err
    code, _, err = _run(read_command, "--file", "EF99", *_sim(setup))
    assert code == 2 and "no card file 'EF99'" in err


def test_wrong_sam_pin_is_a_security_error(setup: dict[str, Path]) -> None:
    code, _, err = _run(read_command, *_sim(setup), env={"HEALTHCARD_SAM_PIN": "000000"})
    assert code == 4 and "PIN refused" in err and "000000" not in err


def test_trace_records_card_and_sam_exchanges_with_the_pin_masked(
    setup: dict[str, Path],
) -> None:
    trace = setup["dir"] / "trace.jsonl"
    code, _, err = _run(read_command, "--file", "holder", "--trace", str(trace), *_sim(setup))
    assert code == 0, err
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]
    commands = [r["command"] for r in records if "command" in r]
    assert any(c.startswith("00820004") for c in commands)  # RK1_DDF1 on the card
    assert any(c.startswith("80DE4731") for c in commands)  # its session key in the SAM
    verifies = [c for c in commands if c.startswith("0020000003")]
    assert verifies and all("123456" not in c for c in verifies)


def test_documents_with_single_records_and_index_files() -> None:
    data = sample()
    record = data.outpatient[0]
    assert record is not None
    with health_card("software", data) as (card, _sim, _rec):
        results = write_document(
            card,
            {
                "outpatient_3": record.to_json("name"),
                "DF03EE01": None,
                "DF03EF05": {"ZYJLBS2": True},
            },
        )
        assert [r.action for r in results] == ["written"] * 3
        document = read_document(card, ["DF03ED03", "inpatient_index", "DF03EE"], keys="name")
    assert list(document) == ["outpatient_3", "inpatient_index", "inpatient"]
    assert document["outpatient_3"]["outpatient_number"] == record.outpatient_number
    assert document["inpatient_index"] == {
        "inpatient_record_valid_1": False,
        "inpatient_record_valid_2": True,
        "inpatient_record_valid_3": False,
    }
    # EE02 is flagged valid but was never written: it is an unsigned blank record
    assert document["inpatient"][0] is None and document["inpatient"][2] is None
    assert document["inpatient"][1]["inpatient_signature"] == ""
