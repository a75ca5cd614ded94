"""``healthcard shell`` scripted (standard input and --script) against the in-process simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from healthcard_apdu.app.shell import COMMANDS, Shell
from healthcard_apdu.card.explorer import CardExplorer
from healthcard_apdu.cli.shell import shell_command
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim.image import save_image
from test_card_fixtures import SAM_PIN, issued_card, keyset, sample

PASSPHRASE = "shell-passphrase"
PROFILES = Path(__file__).parents[1] / "src" / "healthcard_apdu" / "perso" / "profiles"
ENV = {"HEALTHCARD_SAM_PIN": SAM_PIN, "HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "card.json"
    save_image(issued_card().image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    wrong = tmp_path / "wrong-keys.json"
    keyset({"RK1_DF01": bytes(16)}).save(wrong, PASSPHRASE, scrypt_n=2**10)
    return {"image": image, "sam": sam, "wrong": wrong, "dir": tmp_path}


def run(
    files: dict[str, Path], *args: str, script: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    options = ["--sim-card", str(files["image"]), "--sim-sam", str(files["sam"]), *args]
    result = CliRunner(env=ENV if env is None else env).invoke(shell_command, options, input=script)
    return result.exit_code, result.stdout, result.stderr


SESSION = """\
# a lab's check script
select holder
read XM CSRQ
read -x
cd DF01
ls
write contacts LXRXM1 王五
read contacts LXRXM1
auth RK1_DF02
apdu 00B0000000 --expect 6XXX
decode holder 0B02D5C5
"""


def test_a_script_on_stdin_runs_without_a_prompt(files: dict[str, Path]) -> None:
    code, out, err = run(files, script=SESSION)
    assert code == 0, err
    assert "healthcard" not in out.split("\n")[0]  # no banner, no prompt
    lines = out.splitlines()
    assert lines[0].startswith("DDF1/EF06  tlv_records  holder 持卡人基本信息数据文件")
    assert any(line.split()[:4] == ["DDF1EF06", "11", "XM", "姓名"] for line in lines)
    assert "record  1: 0B 1E" in out
    assert any(line.startswith("DF01/EF08") and line.endswith("present") for line in lines)
    assert any(line.split()[:2] == ["DF01EF06", "written"] for line in lines)
    assert any("王五" in line for line in lines)
    assert "RK1_DF02: authenticated in DF02" in out
    assert "SW 6986 command not allowed (no current EF)" in out
    assert any(line.startswith("tag 0B") and "张" in line for line in lines)


def test_script_file_and_stdin_print_the_same(files: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "checks.hcs"
    script.write_text(SESSION, encoding="utf-8")
    first = files["image"].read_bytes()
    code, from_stdin, _ = run(files, script=SESSION)
    assert code == 0
    files["image"].write_bytes(first)
    code, from_file, _ = run(files, "--script", str(script))
    assert code == 0 and from_file == from_stdin
    files["image"].write_bytes(first)
    code, dashed, _ = run(files, "--script", "-", script=SESSION)
    assert code == 0 and dashed == from_stdin


def test_the_first_error_stops_the_script_with_its_exit_code(files: dict[str, Path]) -> None:
    script = "read holder XM\nread nowhere\nread issuer KH\n"
    code, out, err = run(files, script=script)
    assert code == 2
    assert "李堃" in out and "KH" not in out
    assert "error: no card file 'nowhere'" in err
    code, out, err = run(files, "--keep-going", script=script)
    assert code == 2 and "KH" in out  # went on; the exit code is the first failure's

    code, out, err = run(files, script="apdu 00A4000002EF99 --expect 9000\nread holder\n")
    assert code == 1 and "SW 6A82 file not found" in out
    assert "expected SW 9000, card answered 6A82" in err and "李堃" not in out

    code, _, err = run(files, script="frobnicate\n")
    assert code == 2 and "unknown command 'frobnicate'" in err
    code, _, err = run(files, script="read -q\n")
    assert code == 2 and "unrecognized arguments: -q" in err
    code, _, err = run(files, script="write holder XM 张三\n")
    assert code == 2 and "DDF1/EF06 (holder) is not rewritable" in err


def test_a_refused_authentication_exits_4_and_is_never_retried(files: dict[str, Path]) -> None:
    options = ["--sim-card", str(files["image"]), "--keys", str(files["wrong"])]
    result = CliRunner(env=ENV).invoke(
        shell_command,
        [*options, "--keep-going", "--json"],
        input="auth RK1_DF01\nread addresses\nread holder XM\n",
    )
    assert result.exit_code == 4
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["ok"] for r in replies] == [False, False, True]
    assert "63CE" in replies[0]["error"] and "(14 tries left)" in replies[0]["error"]
    assert "refused earlier in this session, not retried" in replies[1]["error"]
    assert replies[2]["result"] == {"DDF1EF06": {"XM": "李堃"}}


def test_json_gives_one_line_per_command(files: dict[str, Path]) -> None:
    code, out, err = run(files, "--json", script=SESSION + "info\n")
    assert code == 0, err
    replies = [json.loads(line) for line in out.splitlines()]
    commands = [line for line in SESSION.splitlines() if not line.startswith("#")] + ["info"]
    assert [r["command"] for r in replies] == commands
    assert all(r["ok"] for r in replies)
    assert replies[1]["result"] == {"DDF1EF06": {"XM": "李堃", "CSRQ": "19850317"}}
    info = replies[-1]["result"]
    assert info["card_factor"]["status"] == "confirmed" and info["card_factor"]["rule"] == "first-8"
    assert info["card_factor"]["confirmed"]["factor"] == info["card_factor"]["factor"]
    assert info["protocol"] == "T=1"  # the simulated card's mode, not "unknown"
    assert info["security"]["pin"] == "verified" and info["security"]["module"] == "sim_sam"
    assert info["atr"]["protocols"] == ["T=1"]


def test_the_card_product_options_set_the_rule_and_its_check(
    files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run(
        files, "--json", "--factor-rule", "last-8", script="info\nread holder XM\n"
    )
    assert code == 0, err
    info, read = (json.loads(line)["result"] for line in out.splitlines())
    factor = info["card_factor"]
    assert factor["rule"] == "last-8" and factor["status"] == "confirmed"
    assert factor["confirmed"]["rules"] == ["first-8"]  # the true factor, by the other rule
    assert [t["matched"] for t in factor["tries"]] == [False, True]
    assert "the configured rule last-8" in factor["message"] and read["DDF1EF06"]["XM"] == "李堃"

    code, out, err = run(files, "--no-factor-check", script="info\n")
    assert code == 0, err
    assert "product rule first-8, status off" in out and "not checked" in out

    profile = tmp_path / "last8.toml"
    profile.write_text(
        (PROFILES / "national-32k.toml")
        .read_text(encoding="utf-8")
        .replace('factor_rule = "first-8"', 'factor_rule = "last-8"'),
        encoding="utf-8",
    )
    code, out, err = run(files, "--json", "--profile", str(profile), script="info\n")
    assert code == 0, err
    assert json.loads(out)["result"]["card_factor"]["rule"] == "last-8"

    code, _, err = run(files, "--factor-rule", "middle-8", script="info\n")
    assert code == 2 and "middle-8" in err

    code, out, err = run(files, "--json", "--factor-rule", "offset:7", script="info\n")
    factor = json.loads(out)["result"]["card_factor"]  # 13 historical bytes: 7..14 do not fit
    assert code == 0 and factor["status"] == "error" and "needs 8 of them" in factor["message"]


def test_auth_with_an_unconfirmed_factor_exits_4_before_any_try(
    files: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other-keys.json"
    keyset({"IRK_DDF1": bytes(16)}).save(other, PASSPHRASE, scrypt_n=2**10)
    options = ["--sim-card", str(files["image"]), "--keys", str(other), "--json", "--keep-going"]
    result = CliRunner(env=ENV).invoke(shell_command, options, input="info\nauth RK1_DF01\n")
    assert result.exit_code == 4
    info, auth = (json.loads(line) for line in result.stdout.splitlines())
    assert info["result"]["card_factor"]["status"] == "not-confirmed"
    assert auth["error_type"] == "FactorNotConfirmed" and "no try spent" in auth["error"]


def test_write_a_json_document_and_help_per_command(files: dict[str, Path]) -> None:
    document = files["dir"] / "doc.json"
    document.write_text(
        json.dumps({"DF01EF05": sample().addresses.to_json("code")}, ensure_ascii=False),
        encoding="utf-8",
    )
    code, out, err = run(
        files, "--json", script=f"write --data {document}\nread addresses\nhelp write\nauth -h\n"
    )
    assert code == 0, err
    replies = [json.loads(line) for line in out.splitlines()]
    assert replies[0]["result"] == [{"file": "DF01EF05", "action": "written", "note": ""}]
    assert replies[1]["result"] == {"DF01EF05": sample().addresses.to_json("code")}
    assert replies[2]["result"]["help"].startswith("usage: write [--sign MODE] [FILE] ITEM VALUE")
    assert "tries left" in replies[3]["result"]["help"]
    code, out, _ = run(files, script="help\n")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[:-1]] == list(COMMANDS)


def test_secrets_never_come_from_stdin_nor_echo(files: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = run(files, script=f"{SAM_PIN}\nread holder\n", env={})
    assert code == 2 and "set the environment variable HEALTHCARD_SAM_PIN" in err
    assert out == ""

    trace = tmp_path / "t.jsonl"
    code, out, err = run(
        files, "--echo", "--trace", str(trace), script="apdu 0020000003123456\nread holder XM\n"
    )
    assert code == 0, err
    assert out.splitlines()[0] == "healthcard MF> apdu 0020000003******"
    assert "123456" not in out
    text = trace.read_text()
    assert "123456" not in text and SAM_PIN not in text
    events = [json.loads(line) for line in text.splitlines()]
    verify = [e for e in events if e.get("command", "").startswith("0020")]
    assert len(verify) == 2 and all("*" in e["command"] for e in verify)  # SAM PIN and ours
    assert Shell.is_secret("apdu 00 20 00 00 03 12 34 56") and not Shell.is_secret("read holder")


def test_no_card_decodes_and_walks_the_layout(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        shell_command,
        ["--no-card"],
        input="tree -n\ncd DF03\ndecode EF05 00FF00\nread\n",
    )
    assert result.exit_code == 2
    out = result.stdout
    assert "inpatient_index" in out and "record 2" in out
    assert "read needs a card" in result.stderr
    result = CliRunner().invoke(shell_command, ["--no-card", "--sim-card", str(files["image"])])
    assert result.exit_code == 2 and "--no-card takes no card" in result.stderr


def test_completion_of_commands_paths_items_roles_and_files(tmp_path: Path) -> None:
    shell = Shell(CardExplorer(None))
    assert shell.complete("rea") == ("rea", ["read"])
    assert shell.complete("") == ("", sorted([*COMMANDS, "cd", "dir", "exit", "?"]))
    assert shell.complete("read hol") == ("hol", ["holder"])
    assert shell.complete("select DDF1/EF0")[1] == [f"DDF1/EF0{n}" for n in (5, 6, 7, 8)]
    assert shell.complete("read holder X") == ("X", ["XB", "XM"])
    assert shell.complete("auth RK1_DF")[1] == ["RK1_DF01", "RK1_DF02", "RK1_DF03"]
    assert shell.complete("read -")[1] == ["--all-items", "--raw", "-a", "-x"]
    shell.execute("cd DF01")
    assert "EF05" in shell.complete("cd EF")[1]
    shell.execute("select EF06")
    assert "LXRXM1" in shell.complete("write LXR")[1]  # items of the current EF
    assert shell.complete("help wr") == ("wr", ["write"])
    (tmp_path / "trace-a.jsonl").write_text("")
    assert shell.complete(f"trace on {tmp_path}/tra")[1] == [f"{tmp_path}/trace-a.jsonl"]
    assert shell.complete("trace o")[1] == ["off", "on"]


def test_history_file_default_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from healthcard_apdu.app.shell import default_history_path

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_history_path() == tmp_path / "healthcard" / "shell_history"
