"""No master key, card key, session key, PIN or passphrase reaches a log, trace, dry run,
result, report, CLI output or exception message (including chained causes)."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from healthcard_apdu import model
from healthcard_apdu.card.factor import FactorNotConfirmed
from healthcard_apdu.cli.perso import personalize_command, verify_command
from healthcard_apdu.crypto import diversify
from healthcard_apdu.perso.errors import PersoError
from healthcard_apdu.perso.execute import erase_card, personalize
from healthcard_apdu.perso.plan import build_plan
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.security import SoftwareSecurityModule
from healthcard_apdu.sim import SimCard
from healthcard_apdu.transport import InProcessTransport, Tracer
from perso_support import (
    TapTransport,
    blank_card,
    card_keys,
    keyset,
    software,
)

NATIONAL = load_profile("national-32k")
PASSPHRASE = "correct horse battery staple 2024"


def _exception_texts(exc: BaseException) -> list[str]:
    out: list[BaseException | None] = [exc]
    texts = []
    while out:
        item = out.pop()
        if item is None:
            continue
        texts += [str(item), repr(item)]
        out += [item.__cause__, item.__context__]
    return texts


def _forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), secret[:8].hex(), secret[:8].hex().upper(),
            repr(secret)[2:-1]]


def _challenges_from_trace(text: str) -> set[bytes]:
    out = set()
    for line in text.splitlines():
        record = json.loads(line)
        if record.get("command", "").startswith("00840000") and record.get("response"):
            out.add(bytes.fromhex(record["response"])[:-2])
    return out


def test_no_secret_anywhere(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    ks = keyset()
    module = SoftwareSecurityModule(ks)
    challenges: list[bytes] = []

    def rng(n: int) -> bytes:
        value = os.urandom(n)
        challenges.append(value)
        return value

    texts: list[str] = []
    trace = io.StringIO()
    sample = model.sample_resident()
    card = blank_card(rng=rng)
    with InProcessTransport(card) as link, Tracer(trace) as tracer:
        result = personalize(link, NATIONAL, sample, module, tracer=tracer)
        texts += [json.dumps(result.to_json()), repr(result)]
        report = verify_card(link, NATIONAL, sample, module, tracer=tracer)
        texts += [json.dumps(report.to_json()), *report.problems(), repr(report)]
        # provoke errors: issued card, refused master key, corrupted read key, read-back
        for attempt in (
            lambda: personalize(link, NATIONAL, sample, module, tracer=tracer),
            lambda: erase_card(link, NATIONAL, software(variant=1), tracer=tracer),
            lambda: erase_card(link, NATIONAL, software(variant=1), tracer=tracer,
                               confirm_factor=False),
        ):
            with pytest.raises((PersoError, FactorNotConfirmed)) as caught:
                attempt()
            texts += _exception_texts(caught.value)
    fresh = blank_card(rng=rng)
    with InProcessTransport(fresh) as link, Tracer(trace) as tracer:
        flip = TapTransport(link, on_command=lambda c: c[:5] + bytes([c[5] ^ 1]) + c[6:]
                            if c[:2] == b"\x00\x82" else c)
        with pytest.raises(PersoError) as caught:
            personalize(flip, NATIONAL, sample, module, tracer=tracer)
        texts += _exception_texts(caught.value)
    plan = build_plan(NATIONAL, sample, card.card_factor, module)
    texts += [json.dumps(plan.to_json(include_erase=True)), repr(plan),
              *(repr(s) for s in plan.steps), *(repr(s) for s in plan.erase)]
    texts += [repr(module), str(module)]

    # the command line, with an encrypted key file and its passphrase in the environment
    keyfile = tmp_path / "keys.json"
    ks.save(keyfile, PASSPHRASE, scrypt_n=2**10)
    data = tmp_path / "resident.json"
    data.write_text(json.dumps(sample.to_json(keys="code"), ensure_ascii=False))
    image = tmp_path / "card.json"
    SimCard.blank(bytes.fromhex("A1A2A3A4A5A6A7A8"), path=image, durable=False)
    cli_trace = tmp_path / "cli-trace.jsonl"
    runner = CliRunner()
    env = {"HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE}
    common = ["--sim-card", str(image), "--data", str(data), "--keys", str(keyfile)]
    for command, args in (
        (personalize_command, [*common, "--json", "--trace", str(cli_trace)]),
        (personalize_command, [*common, "--dry-run", "--erase"]),
        (personalize_command, [*common]),  # card not blank: error output
        (verify_command, [*common, "--json"]),
    ):
        outcome = runner.invoke(command, args, env=env, catch_exceptions=False)
        texts += [outcome.output, outcome.stderr if outcome.stderr_bytes is not None else ""]
    cli_trace_text = cli_trace.read_text()
    texts += [trace.getvalue(), cli_trace_text, caplog.text]
    texts += [r.getMessage() for r in caplog.records]

    # every secret that existed in this test
    secrets = [k.value for k in ks.keys.values()]
    by_card = [card_keys(ks, NATIONAL, card.card_factor),
               card_keys(ks, NATIONAL, fresh.card_factor),
               card_keys(ks, NATIONAL, bytes.fromhex("A1A2A3A4A5A6A7A8"))]
    card_level = [v for keys in by_card for v in keys.values()]
    secrets += card_level
    seen = set(challenges) | _challenges_from_trace(cli_trace_text) | \
        _challenges_from_trace(trace.getvalue())
    assert len(seen) > 10
    secrets += [diversify(ks.algorithm, key, c) for key in card_level for c in seen]
    words = [ks.sam_pin, PASSPHRASE]
    blob = "\n".join(texts)
    assert "WRITE KEY" in blob and "****" in blob  # the texts are the real outputs
    for secret in secrets:
        for form in _forms(secret):
            assert form not in blob, "a key value leaked"
    for word in words:
        assert word not in blob, "a PIN or passphrase leaked"
