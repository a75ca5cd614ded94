"""Every hostile input the probe turned into a traceback is now one ``error:`` line with the
documented exit code: 2 for input, 4 for keys (issue 11, "Untyped exceptions"). One row per
finding; each row names the command, the file it gets, and what the line must say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batch_support import valid_row, write_jsonl
from healthcard_apdu import model
from healthcard_apdu.cli import main
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import image_to_json
from perso_support import CARD_FACTOR, issued_card, keyset

PASSPHRASE = "hostile-pass"
DEEP = "[" * 100_000
ONE_MEGABYTE_NAME = "名" * 350_000  # a little over 1 MB of UTF-8


@dataclass(frozen=True)
class Files:
    dir: Path
    keys: Path
    data: Path
    card: Path
    image: dict[str, Any]

    def write(self, name: str, content: str | bytes) -> str:
        path = self.dir / name
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return str(path)

    def image_with(self, name: str, change: Callable[[dict[str, Any]], None]) -> str:
        document = json.loads(json.dumps(self.image))
        change(document)
        return self.write(name, json.dumps(document))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    base = tmp_path_factory.mktemp("hostile")
    keys = base / "keys.json"
    keyset().save(keys, PASSPHRASE, scrypt_n=2**10)
    data = base / "resident.json"
    data.write_text(json.dumps(model.sample_resident().to_json(), ensure_ascii=False),
                    encoding="utf-8")
    card = base / "card.json"
    SimCard.blank(CARD_FACTOR, path=card, durable=False)
    return Files(base, keys, data, card, image_to_json(issued_card().image))


def _dry_run(files: Files, *extra: str, data: str | None = None) -> list[str]:
    return ["personalize", "--data", data or str(files.data), "--keys", str(files.keys),
            "--dry-run", "--card-factor", CARD_FACTOR.hex(), *extra]


def _read(files: Files, image: str) -> list[str]:
    return ["read", "--sim-card", image, "--keys", str(files.keys)]


def _first_key(document: dict[str, Any]) -> dict[str, Any]:
    key: dict[str, Any] = document["mf"]["keyfile"]["keys"][0]
    return key


def _first_record_file(document: dict[str, Any]) -> dict[str, Any]:
    ddf1 = next(c for c in document["mf"]["children"] if c["fid"] == "DDF1")
    return next(c for c in ddf1["children"] if c["kind"] == "variable")


Row = tuple[str, Callable[[Files], list[str]], int, str]
ROWS: list[Row] = [
    ("binary key file", lambda f: ["keys", "list", f.write("bin.json", bytes(range(256)))],
     4, "not JSON"),
    ("UTF-16 key file, not a key file", lambda f: [
        "keys", "list", f.write("utf16.json", '{"format": "x"}'.encode("utf-16"))],
     4, "format is not"),
    ("JSON key file nested 100,000 deep", lambda f: ["keys", "list", f.write("deep.json", DEEP)],
     4, "nested too deeply"),
    ("plain key JSON nested deep (keys import)", lambda f: [
        "keys", "import", f.write("deep-plain.json", DEEP), str(f.dir / "out.json")],
     2, "nested too deeply"),
    ("--data nested 100,000 deep", lambda f: _dry_run(f, data=f.write("deep-data.json", DEEP)),
     2, "nested too deeply"),
    ("card image nested 100,000 deep", lambda f: [
        *_read(f, f.write("deep-card.json", DEEP))], 2, "nested too deeply"),
    ("SAM key file nested 100,000 deep", lambda f: [
        "verify", "--sim-card", str(f.card), "--data", str(f.data), "--sim-sam",
        f.write("deep-sam.json", DEEP)], 2, "nested too deeply"),
    ("profile TOML with 5,000-deep arrays", lambda f: _dry_run(
        f, "--profile", f.write("deep.toml", "a = " + "[" * 5000 + "]" * 5000)),
     2, "nested too deeply"),
    ("card image with a 3-byte key", lambda f: _read(f, f.image_with(
        "key3.json", lambda d: _first_key(d).update(value="010203"))), 2, "a 3-byte key"),
    ("card image with a 7-byte key", lambda f: _read(f, f.image_with(
        "key7.json", lambda d: _first_key(d).update(value="01020304050607"))),
     2, "a 7-byte key"),
    ('card image with issued: "false"', lambda f: _read(f, f.image_with(
        "issued.json", lambda d: d.update(issued="false"))), 2, "'issued' must be true or false"),
    ("card image with b4 = 300", lambda f: _read(f, f.image_with(
        "b4.json", lambda d: _first_key(d).update(b4=300))), 2, "'b4' is 300, outside 0..255"),
    ("card image with a negative record count", lambda f: _read(f, f.image_with(
        "nrec.json", lambda d: _first_record_file(d).update(nrec=-1))),
     2, "'nrec' is -1, outside 0..255"),
    ("card image with fid 70000", lambda f: _read(f, f.image_with(
        "fid.json", lambda d: d["mf"].update(fid=70000))), 2, "'fid' is 70000"),
    ("a 1 MB name in --data", lambda f: _dry_run(f, data=f.write("big.json", json.dumps(
        model.sample_resident().to_json() | {"holder": {"name": ONE_MEGABYTE_NAME}},
        ensure_ascii=False))), 2, "chars)"),
    ("keys import with an unknown role", lambda f: [
        "keys", "import", f.write("role.json", json.dumps(
            {"keys": {"RK1_DF3": "00112233445566778899AABBCCDDEEFF"}})),
        str(f.dir / "role-out.json")], 4, "unknown key role 'RK1_DF3' (did you mean RK1_DF03?)"),
    ("key file asking for scrypt n = 2^20, p = 4", lambda f: ["keys", "export", f.write(
        "costly.json", _costly(f.keys)), "--out", str(f.dir / "costly-out.json"),
        "--i-understand-this-exports-keys"], 4, "out of range"),
]


def _costly(keys: Path) -> str:
    document = json.loads(keys.read_text())
    document["kdf"].update(n=2**20, p=4)
    return json.dumps(document)


def _one_error_line(output: str) -> str:
    """The ``error:`` line; a profile or record error may list its problems below it, one
    indented line each (docs/cli.md). Returns the whole message as one line."""
    lines = output.strip().splitlines()
    assert lines and lines[0].startswith("error: ") and "Traceback" not in output, output[:2000]
    assert all(line.startswith("  ") for line in lines[1:]), output[:2000]
    if len(lines) > 1:
        assert "problem(s)" in lines[0], output[:2000]
    return " ".join(lines)


@pytest.mark.parametrize(("what", "args", "code", "text"), ROWS, ids=[r[0] for r in ROWS])
def test_a_hostile_input_is_one_error_line(files: Files, what: str,
                                           args: Callable[[Files], list[str]], code: int,
                                           text: str) -> None:
    result = CliRunner().invoke(main, args(files), env={"HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE})
    assert isinstance(result.exception, SystemExit), (what, result.exception)
    assert result.exit_code == code, (what, result.output[:2000])
    line = _one_error_line(result.output)
    assert text in line, line
    assert len(line) < 1000  # every echoed value is capped


def test_an_empty_passphrase_without_a_terminal_is_one_line(files: Files) -> None:
    """Before: a GetPassWarning and "Aborted!"."""
    args = ["keys", "export", str(files.keys), "--out", str(files.dir / "x.json"),
            "--i-understand-this-exports-keys"]
    result = CliRunner().invoke(main, args, env={"HEALTHCARD_KEYS_PASSPHRASE": ""}, input="")
    assert result.exit_code == 4
    line = _one_error_line(result.output)
    assert "HEALTHCARD_KEYS_PASSPHRASE" in line and "not a terminal" in line
    assert "Aborted" not in result.output


def test_a_non_utf8_passphrase_in_the_environment_is_one_line(files: Files) -> None:
    """Before: UnicodeEncodeError. A real process, so the variable holds real bytes."""
    env = {**os.environb, b"HEALTHCARD_KEYS_PASSPHRASE": b"caf\xe9"}
    args = ["keys", "export", str(files.keys), "--out", str(files.dir / "y.json"),
            "--i-understand-this-exports-keys"]
    done = subprocess.run([sys.executable, "-m", "healthcard_apdu", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 4, done.stderr
    assert _one_error_line(done.stderr) == "error: the key-file passphrase is not valid UTF-8 text"
    assert done.stdout == ""


def test_jsonl_rows_json_cannot_use_are_reported_rows_not_crashes(files: Files) -> None:
    """A 5,000-digit integer and a lone surrogate: before, ValueError and UnicodeEncodeError
    in the report and the journal. Now invalid rows, reported and journaled."""
    path = files.dir / "rows.jsonl"
    write_jsonl(path, [valid_row(0)])
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"XM": ' + "9" * 5000 + "}\n")
        handle.write('{"XM": "\\ud800"}\n')
        handle.write(DEEP + "\n")
    report = files.dir / "rows-report.json"
    result = CliRunner().invoke(main, ["batch", "run", str(path), "--sim", "1", "--issuer",
                                       "batch_support:make_issuer", "--no-progress", "--json",
                                       "--report", str(report)])
    assert result.exit_code == 0, result.output[:2000]
    summary = json.loads(result.output)
    assert summary["counts"]["issued"] == 1 and summary["counts"]["invalid"] == 3
    reasons = [issue["reason"] for issue in json.loads(report.read_text())["issues"]]
    assert any("more digits" in r for r in reasons) and any("surrogate" in r for r in reasons)
