"""The shared connection options (``cli.options``) and the one factory behind them
(``app.connect``): every command takes the same option names, each security backend is built
from them, and a missing or contradicting option exits 2 naming the option."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from healthcard_apdu import model
from healthcard_apdu.app.connect import (
    CardOptions,
    SecurityOptions,
    env_secret,
    open_card_link,
    open_security,
)
from healthcard_apdu.card import ConnectOptionsError
from healthcard_apdu.cli import main
from healthcard_apdu.cli.options import CARD_OPTION_NAMES, SECURITY_OPTION_NAMES
from healthcard_apdu.perso.errors import SecurityModuleUnsuitable
from healthcard_apdu.security import (
    STANDARD_KEY_SPECS,
    CardFactors,
    KeyFileError,
    SoftwareSecurityModule,
)
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.pkcs11 import DEFAULT_PKCS11_MODULE
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import save_image
from perso_support import keyset as perso_keyset
from test_card_fixtures import SAM_PIN, issued_card, keyset, sample

PASSPHRASE = "options-test-pass"
FACTORS = CardFactors(bytes.fromhex("0081866B00001015"), b"21000000")
CHALLENGE = bytes.fromhex("30CB83A6ADABFE3F")
A = bytes.fromhex("1122334455667788")
TESTS = Path(__file__).parent

COMMANDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("read",): (*CARD_OPTION_NAMES, *SECURITY_OPTION_NAMES, "--trace"),
    ("write",): (*CARD_OPTION_NAMES, *SECURITY_OPTION_NAMES, "--trace"),
    ("personalize",): (*CARD_OPTION_NAMES, *SECURITY_OPTION_NAMES, "--trace"),
    ("verify",): (*CARD_OPTION_NAMES, *SECURITY_OPTION_NAMES, "--trace"),
    ("conformance", "run"): (*CARD_OPTION_NAMES, *SECURITY_OPTION_NAMES),
    ("batch", "run"): SECURITY_OPTION_NAMES,
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "card.json"
    save_image(issued_card().image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    keys = tmp_path / "keys.json"
    keyset().save(keys, PASSPHRASE, scrypt_n=2**10)
    plain = tmp_path / "plain-keys.json"
    plain.write_text(json.dumps(keyset().to_plain_dict()))
    data = tmp_path / "resident.json"
    data.write_text(json.dumps(model.sample_resident().to_json(), ensure_ascii=False),
                    encoding="utf-8")
    return {"image": image, "sam": sam, "keys": keys, "plain": plain, "data": data,
            "dir": tmp_path}


def _cli(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env or {})


def _auth(module: Any) -> bytes:
    data: bytes = module.external_auth_data(STANDARD_KEY_SPECS["RK1_DF03"], FACTORS, CHALLENGE, A)
    return data


# --- every command takes the same options ----------------------------------------------------


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_help_lists_the_shared_options(command: tuple[str, ...]) -> None:
    result = _cli(*command, "--help")
    assert result.exit_code == 0, result.output
    listed = {word.rstrip(",") for line in result.output.splitlines() for word in line.split()
              if word.startswith("--")}
    missing = set(COMMANDS[command]) - listed
    assert not missing, f"healthcard {' '.join(command)} lacks {sorted(missing)}"
    # secrets are never options, only the variables that hold them
    assert not {"--passphrase", "--pin", "--sam-pin", "--pkcs11-pin"} & listed


def test_secrets_cannot_be_given_on_the_command_line(files: dict[str, Path]) -> None:
    result = _cli("read", "--sim-card", files["image"], "--keys", files["keys"],
                  "--passphrase", PASSPHRASE)
    assert result.exit_code == 2 and "No such option" in result.output
    assert PASSPHRASE not in result.output


def test_deprecated_conformance_sim_is_hidden_but_still_accepted(files: dict[str, Path]) -> None:
    assert "--sim " not in _cli("conformance", "run", "--help").output
    both = _cli("conformance", "run", "--sim", files["image"], "--sim-card", files["image"],
                "--profile", "national-32k", "--keys", files["plain"], "--report",
                files["dir"] / "out")
    assert both.exit_code == 2 and "--sim-card" in both.output


# --- the factory builds every backend ------------------------------------------------------


def test_software_key_file_asks_the_named_variable_only_when_needed(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPTIONS_TEST_PASS", raising=False)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return PASSPHRASE

    secret = env_secret("OPTIONS_TEST_PASS", "Key-file passphrase", ask)
    options = SecurityOptions(keys=files["keys"], passphrase=secret)
    with open_security(options) as opened:
        assert opened.backend == "keys" and opened.sam is None
        assert isinstance(opened.module, SoftwareSecurityModule)
        assert opened.module.key_check_values() == keyset().key_check_values()
    assert asked == ["Key-file passphrase"]
    monkeypatch.setenv("OPTIONS_TEST_PASS", PASSPHRASE)
    with open_security(options) as opened:
        assert _auth(opened.module) == _auth(SoftwareSecurityModule(keyset()))
    assert len(asked) == 1  # the variable was set: no prompt
    # without a prompt, an unset variable is named
    monkeypatch.delenv("OPTIONS_TEST_PASS")
    with pytest.raises(ConnectOptionsError, match="OPTIONS_TEST_PASS"):
        open_security(SecurityOptions(keys=files["keys"],
                                      passphrase=env_secret("OPTIONS_TEST_PASS", "passphrase")))


def test_plain_json_keys_only_where_allowed(files: dict[str, Path]) -> None:
    def never() -> str:
        raise AssertionError("a plain key set needs no passphrase")

    with open_security(SecurityOptions(keys=files["plain"], passphrase=never),
                       plain_keys=True) as opened:
        assert opened.module.key_check_values() == keyset().key_check_values()
    with pytest.raises(KeyFileError):
        open_security(SecurityOptions(keys=files["plain"], passphrase="x"))
    files["plain"].write_text("not json")
    with pytest.raises(KeyFileError, match="not a readable JSON key file"):
        open_security(SecurityOptions(keys=files["plain"]), plain_keys=True)


def test_simulated_sam_in_process(files: dict[str, Path]) -> None:
    options = SecurityOptions(sim_sam=files["sam"], sam_pin=lambda: SAM_PIN)
    with open_security(options) as opened:
        assert opened.backend == "sim_sam"
        assert isinstance(opened.module, PsamSecurityModule) and opened.sam is not None
        # the SAM derives the same cryptogram as the key set it was exported from
        assert _auth(opened.module) == _auth(SoftwareSecurityModule(keyset()))
        assert opened.sam.verify_pin(SAM_PIN) == 3


def test_a_psam_is_refused_for_issuance_before_anything_is_opened(tmp_path: Path) -> None:
    absent = tmp_path / "no-such-sam.json"
    with pytest.raises(SecurityModuleUnsuitable, match="--sim-sam"):
        open_security(SecurityOptions(sim_sam=absent), issuing=True)
    with pytest.raises(SecurityModuleUnsuitable, match="--sam-reader"):
        open_security(SecurityOptions(sam_reader="no such reader"), issuing=True)


def test_option_errors_name_the_options(files: dict[str, Path]) -> None:
    with pytest.raises(ConnectOptionsError, match="got --keys, --sim-sam"):
        open_security(SecurityOptions(keys=files["keys"], sim_sam=files["sam"]))
    with pytest.raises(ConnectOptionsError, match="--pkcs11-module goes with --pkcs11-token"):
        open_security(SecurityOptions(keys=files["keys"], pkcs11_module="/x.so"))
    with pytest.raises(ConnectOptionsError, match="--reader, --sim-card, not both"):
        open_card_link(CardOptions("0", files["image"]))
    with pytest.raises(ConnectOptionsError, match=r"exactly one of --reader, --sim-card$"):
        open_card_link(CardOptions(), required=True)


def test_card_link_to_a_simulated_image(files: dict[str, Path]) -> None:
    with open_card_link(CardOptions(sim_card=files["image"])) as link:
        assert isinstance(link.sim_card, SimCard)
        assert link.transport.reset() == link.sim_card.atr()


PKCS11_SCENARIO = textwrap.dedent(
    """
    import json, sys
    from healthcard_apdu.app.connect import SecurityOptions, env_secret, open_security
    from healthcard_apdu.card import ConnectOptionsError
    from healthcard_apdu.crypto import BlockCipher
    from healthcard_apdu.security import (
        DEFAULT_ROLES, STANDARD_KEY_SPECS, CardFactors, KeySet, SoftwareSecurityModule)
    from healthcard_apdu.security.pkcs11 import Pkcs11SecurityModule

    keys = KeySet.generate(DEFAULT_ROLES, BlockCipher.TDES, with_sm2=False)
    with Pkcs11SecurityModule("options", sys.argv[1]) as hsm:
        hsm.import_keyset(keys)
    factors = CardFactors(bytes.fromhex("0081866B00001015"), b"21000000")
    spec, challenge, a = STANDARD_KEY_SPECS["RK1_DF03"], bytes(range(8)), bytes(range(8, 16))
    expected = SoftwareSecurityModule(keys).external_auth_data(spec, factors, challenge, a)
    out = {}
    try:
        open_security(SecurityOptions(
            pkcs11_token="options", pkcs11_pin=env_secret("UNSET_TOKEN_PIN", "PIN")))
    except ConnectOptionsError as exc:
        out["missing_pin"] = str(exc)
    options = SecurityOptions(pkcs11_token="options",
                              pkcs11_pin=env_secret("OPTIONS_TOKEN_PIN", "PIN"))
    with open_security(options, algorithm=BlockCipher.TDES) as opened:
        module = opened.module
        out["type"] = type(module).__name__
        out["backend"] = opened.backend
        out["kcv_equal"] = module.key_check_values() == keys.key_check_values()
        out["auth_equal"] = module.external_auth_data(spec, factors, challenge, a) == expected
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(
    shutil.which("softhsm2-util") is None or not Path(DEFAULT_PKCS11_MODULE).exists(),
    reason="SoftHSM2 not installed (apt-get install softhsm2)",
)
def test_pkcs11_token_with_softhsm2(tmp_path: Path) -> None:
    """In a child process: SoftHSM2 reads its token directory once per process."""
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf), OPTIONS_TOKEN_PIN="2468")
    env.pop("UNSET_TOKEN_PIN", None)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "options",
                    "--so-pin", "13572468", "--pin", "2468"],
                   check=True, capture_output=True, env=env)
    script = tmp_path / "scenario.py"
    script.write_text(PKCS11_SCENARIO)
    done = subprocess.run([sys.executable, str(script), "2468"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["type"] == "Pkcs11SecurityModule" and out["backend"] == "pkcs11_token"
    assert out["kcv_equal"] and out["auth_equal"]
    assert "UNSET_TOKEN_PIN" in out["missing_pin"]


# --- the same options work on every command -----------------------------------------------


def test_custom_variable_names_and_the_simulated_sam_across_commands(
    files: dict[str, Path],
) -> None:
    """``--passphrase-env`` / ``--sam-pin-env`` name other variables; ``--sim-sam`` now also
    serves ``verify`` and ``conformance run``."""
    env = {"MY_KEYS_PASS": PASSPHRASE, "MY_SAM_PIN": SAM_PIN}
    read = _cli("read", "--sim-card", files["image"], "--keys", files["keys"],
                "--passphrase-env", "MY_KEYS_PASS", "--file", "holder", "--json", env=env)
    assert read.exit_code == 0, read.output
    assert json.loads(read.output)["DDF1EF06"]["XM"] == sample().holder.name

    issuer_keys = perso_keyset()
    keys = files["dir"] / "issuer-keys.json"
    issuer_keys.save(keys, PASSPHRASE, scrypt_n=2**10)
    sam = files["dir"] / "issuer-sam.json"
    sam.write_text(json.dumps(simulator_sam_document(issuer_keys)))
    env["MY_SAM_PIN"] = issuer_keys.sam_pin
    blank = files["dir"] / "blank.json"
    SimCard.blank(bytes.fromhex("0102030405060708"), path=blank, durable=False)
    issued = _cli("personalize", "--sim-card", blank, "--data", files["data"],
                  "--keys", keys, "--passphrase-env", "MY_KEYS_PASS", "--json", env=env)
    assert issued.exit_code == 0, issued.output
    checked = _cli("verify", "--sim-card", blank, "--data", files["data"], "--sim-sam", sam,
                   "--sam-pin-env", "MY_SAM_PIN", "--json", env=env)
    assert checked.exit_code == 0, checked.output
    results = {k["role"]: k["result"] for k in json.loads(checked.output)["keys"]}
    assert results["RK1_DF03"] == "ok" and results["MK_MF"] == "skipped"  # PSAM: no card keys

    out = files["dir"] / "report"
    suite = _cli("conformance", "run", "--sim-card", blank, "--profile", "national-32k",
                 "--sim-sam", sam, "--sam-pin-env", "MY_SAM_PIN", "--report", out,
                 "--group", "sm", "--json", env=env)
    assert suite.exit_code == 0, suite.output
    assert json.loads((out / "report.json").read_text())["security"]["module"] == "psam"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["read", "--sim-card", "IMAGE"], ["--keys", "--sim-sam"]),
        (["read", "--sim-card", "IMAGE", "--keys", "KEYS", "--sim-sam", "SAM"],
         ["got --keys, --sim-sam"]),
        (["write", "--data", "DATA", "--reader", "0", "--sim-card", "IMAGE", "--keys", "KEYS"],
         ["--reader, --sim-card"]),
        (["read", "--sim-card", "IMAGE", "--keys", "KEYS", "--pkcs11-module", "/x.so"],
         ["--pkcs11-module"]),
        (["personalize", "--data", "DATA", "--keys", "KEYS"], ["--reader, --sim-card"]),
        (["personalize", "--data", "DATA", "--sim-card", "IMAGE"], ["--keys", "--pkcs11-token"]),
        (["verify", "--data", "DATA", "--sim-card", "IMAGE", "--keys", "KEYS",
          "--pkcs11-token", "t"], ["got --keys, --pkcs11-token"]),
        (["conformance", "run", "--sim-card", "IMAGE", "--profile", "national-32k",
          "--report", "OUT"], ["--keys", "--sim-sam"]),
        (["conformance", "run", "--profile", "national-32k", "--keys", "KEYS",
          "--report", "OUT"], ["--reader, --sim-card and --replay"]),
        (["batch", "run", "RESIDENTS", "--sim", "1", "--no-progress"], ["--keys"]),
        (["batch", "run", "RESIDENTS", "--sim", "1", "--keys", "pkcs11:perso"],
         ["--pkcs11-token perso"]),
        (["batch", "run", "RESIDENTS", "--sim", "1", "--no-progress", "--issuer",
          "batch_support:make_issuer", "--sim-sam", "SAM"], ["--sim-sam"]),
    ],
)
def test_missing_or_conflicting_options_exit_2_naming_them(
    files: dict[str, Path], args: list[str], named: list[str]
) -> None:
    residents = files["dir"] / "people.csv"
    residents.write_text("XM,SFZH\n", encoding="utf-8")
    values = {"IMAGE": files["image"], "KEYS": files["keys"], "SAM": files["sam"],
              "DATA": files["data"], "OUT": files["dir"] / "out", "RESIDENTS": residents}
    before = files["image"].read_bytes()
    result = _cli(*(values.get(a, a) for a in args), env={"HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 2, result.output
    for name in named:
        assert name in result.output
    assert files["image"].read_bytes() == before  # nothing was sent


def test_a_psam_cannot_personalize_on_any_command(files: dict[str, Path]) -> None:
    blank = files["dir"] / "blank.json"
    SimCard.blank(bytes.fromhex("0102030405060708"), path=blank, durable=False)
    for args in (
        ["personalize", "--sim-card", blank, "--data", files["data"], "--sim-sam", files["sam"]],
        ["batch", "run", files["data"], "--sim", "1", "--no-progress", "--sim-sam",
         files["sam"], "--journal", files["dir"] / "j.sqlite"],
    ):
        result = _cli(*args, env={"HEALTHCARD_SAM_PIN": SAM_PIN})
        assert result.exit_code == 4, result.output
        assert "PSAM cannot derive card keys" in result.output and "--sim-sam" in result.output
    assert SimCard.open(blank).image.mf.children == {}
