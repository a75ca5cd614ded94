"""Personalization and verification with 3DES master keys in a SoftHSM2 token.

The token lives in a temporary directory. Because SoftHSM2 reads its token directory once per
process, the scenario runs in a child process with its own ``SOFTHSM2_CONF``; the child prints
a JSON summary that the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from healthcard_apdu.security.pkcs11 import DEFAULT_PKCS11_MODULE

pytestmark = pytest.mark.skipif(
    shutil.which("softhsm2-util") is None or not Path(DEFAULT_PKCS11_MODULE).exists(),
    reason="SoftHSM2 not installed (apt-get install softhsm2)",
)

# Not made of hex digits, so random key bytes in a hex trace cannot contain it by chance.
USER_PIN = "hsm-PIN-7x9q"
SO_PIN = "87654321"
TESTS = Path(__file__).parent

SCENARIO = textwrap.dedent(
    """
    import dataclasses, io, json, logging, sys
    sys.path.insert(0, sys.argv[1])
    from click.testing import CliRunner
    from perso_support import blank_card, profile_text, resident_for
    from healthcard_apdu import model
    from healthcard_apdu.cli.perso import personalize_command, verify_command
    from healthcard_apdu.crypto import BlockCipher
    from healthcard_apdu.perso.execute import personalize
    from healthcard_apdu.perso.profile import load_profile
    from healthcard_apdu.perso.verify import verify_card
    from healthcard_apdu.perso.errors import SecurityModuleUnsuitable
    from healthcard_apdu.security import KeySet, DEFAULT_ROLES, SoftwareSecurityModule
    from healthcard_apdu.security.pkcs11 import Pkcs11SecurityModule
    from healthcard_apdu.sim import SimCard
    from healthcard_apdu.transport import InProcessTransport, Tracer

    pin, workdir = sys.argv[2], sys.argv[3]
    log = io.StringIO()
    logging.basicConfig(stream=log, level=logging.DEBUG)
    keys = KeySet.generate(DEFAULT_ROLES, BlockCipher.TDES)
    # SoftHSM2 has no SM2: the EE/ED record signatures come from a software signer
    plain = Pkcs11SecurityModule("perso", pin)
    plain.import_keyset(keys)
    hsm = Pkcs11SecurityModule("perso", pin, signer=SoftwareSecurityModule(keys))
    out = {}
    trace = io.StringIO()
    # the compact 3DES profile, and the national layout with the algorithm line changed
    national_3des = workdir + "/national-3des.toml"
    with open(national_3des, "w", encoding="utf-8") as fh:
        fh.write(profile_text("national-32k").replace('algorithm = "sm4"', 'algorithm = "3des"'))
    try:  # EE/ED records of the full layout must be signed: a token without signer is refused
        with InProcessTransport(blank_card(BlockCipher.TDES)) as link:
            personalize(link, load_profile(national_3des), resident_for("national-32k"), plain)
        out["unsigned_refused"] = None
    except SecurityModuleUnsuitable as exc:
        out["unsigned_refused"] = str(exc)
    for name in ("compact-8k", national_3des):
        profile = load_profile(name)
        resident = resident_for("compact-8k" if name == "compact-8k" else "national-32k")
        card = blank_card(BlockCipher.TDES)
        with InProcessTransport(card) as link, Tracer(trace) as tracer:
            result = personalize(link, profile, resident, hsm, tracer=tracer)
            report = verify_card(link, profile, resident, hsm, tracer=tracer)
        out[profile.name] = {"apdus": result.apdus, "minimum": result.minimum.apdus,
                             "ok": report.ok, "problems": report.problems(),
                             "keys_ok": sorted(k.role for k in report.keys if k.result == "ok")}
    # the command line with the token
    image = workdir + "/card.json"
    SimCard.blank(bytes.fromhex("0A0B0C0D0E0F1011"), path=image, cipher16=BlockCipher.TDES)
    data = workdir + "/resident.json"
    with open(data, "w", encoding="utf-8") as fh:
        # the command line has no signer option: a resident without clinical records
        no_records = dataclasses.replace(resident_for("compact-8k"), inpatient=(None,) * 3,
                                         outpatient=(None,) * 5)
        json.dump(no_records.to_json(), fh, ensure_ascii=False)
    runner = CliRunner()
    env = {"HEALTHCARD_PKCS11_PIN": pin}
    args = ["--sim-card", image, "--data", data, "--pkcs11-token", "perso", "--profile",
            "compact-8k", "--json"]
    first = runner.invoke(personalize_command, args, env=env)
    second = runner.invoke(verify_command, args, env=env)
    out["cli"] = [first.exit_code, second.exit_code]
    out["cli_verify_ok"] = json.loads(second.output)["ok"] if second.exit_code == 0 else None
    hsm.close()
    texts = trace.getvalue() + log.getvalue() + first.output + second.output
    out["pin_leaked"] = pin in texts or pin.encode().hex() in texts.lower()
    print(json.dumps(out))
    """
)


def _init_token(env: dict[str, str]) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "perso", "--so-pin", SO_PIN,
         "--pin", USER_PIN],
        check=True, capture_output=True, env=env,
    )


def test_personalize_and_verify_with_softhsm2_keys(tmp_path: Path) -> None:
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    _init_token(env)
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    done = subprocess.run([sys.executable, str(script), str(TESTS), USER_PIN, str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("compact-8k", "national-32k"):
        summary = out[name]
        assert summary["ok"], summary["problems"]
        assert summary["apdus"] == summary["minimum"]
        assert {"MK_MF", "RK1_DF03", "UK1_DDF1", "STK_DF02", "IRK_DDF1"} <= set(
            summary["keys_ok"])
    assert "inpatient records" in out["unsigned_refused"]
    assert "cannot sign" in out["unsigned_refused"]
    assert out["cli"] == [0, 0]
    assert out["cli_verify_ok"] is True
    assert out["pin_leaked"] is False
