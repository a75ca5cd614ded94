"""Offline verification: national dynamic windows, the EHC1 checks (signature, trust list,
rotation, revocation, clock skew, lifetime, one-time use), the splice and replay weaknesses of
the national code and how the envelope closes them, and OpenSSL interoperability."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import cbor2
import pytest
from asn1crypto import core

from ehc_support import GUIFUTONG, LI_KUN, NOW, spec_keyset, spec_platform
from healthcard_apdu.ehc import (
    EhcInputError,
    EhcPlatform,
    NationalQr,
    QrFormatError,
    QrRejected,
    ReplayCache,
    RevocationList,
    TrustedKey,
    TrustList,
    Verifier,
    VerifyPolicy,
    b45decode,
    b45encode,
    parse_envelope,
)
from healthcard_apdu.security import KeySet, SoftwareSecurityModule, public_key_from_spki

SECOND = dt.timedelta(seconds=1)


def _verifier(platform: EhcPlatform, **options: object) -> Verifier:
    trust = TrustList([platform.trust_entry(issuer="test platform")])
    return Verifier(keys=platform.keys, trust_list=trust, **options)  # type: ignore[arg-type]


def _reason(verifier: Verifier, text: str, now: dt.datetime = NOW) -> str:
    with pytest.raises(QrRejected) as caught:
        verifier.verify(text, now=now)
    return caught.value.reason


# -- national dynamic ------------------------------------------------------------------------


def test_dynamic_code_valid_until_its_expiry_plus_skew() -> None:
    platform = spec_platform()
    verifier = _verifier(platform)
    code = platform.dynamic_qr(platform.ecard_id(GUIFUTONG), now=NOW).text()
    result = verifier.verify(code, now=NOW)
    assert result.kind == "national-dynamic"
    assert result.expires_at == NOW + dt.timedelta(seconds=120)
    assert verifier.verify(code, now=NOW + dt.timedelta(seconds=150)).ehc_id == result.ehc_id
    assert _reason(verifier, code, NOW + dt.timedelta(seconds=151)) == "expired"


def test_dynamic_code_expiring_too_far_ahead_is_refused() -> None:
    platform = spec_platform()
    code = platform.dynamic_qr(platform.ecard_id(GUIFUTONG), now=NOW,
                               valid_for=dt.timedelta(hours=2)).text()
    assert _reason(_verifier(platform), code) == "validity-too-long"
    relaxed = _verifier(platform, policy=VerifyPolicy(max_national_validity=dt.timedelta(hours=3)))
    assert relaxed.verify(code, now=NOW).kind == "national-dynamic"


def test_dynamic_code_of_another_platform_is_bad_validity() -> None:
    ours, theirs = spec_platform(), EhcPlatform.from_module(
        SoftwareSecurityModule(KeySet.generate(["EHC_SECURITY", "EHC_PROTECTION"],
                                               with_sm2=False)))
    code = theirs.dynamic_qr(theirs.ecard_id(GUIFUTONG), now=NOW).text()
    assert _reason(_verifier(ours), code) == "bad-validity"


def test_static_or_keyless_national_codes_are_unverifiable_offline() -> None:
    platform = spec_platform()
    ehc_id = platform.ecard_id(GUIFUTONG)
    assert _reason(_verifier(platform), platform.static_qr(ehc_id).text()) == "unverifiable"
    keyless = Verifier()
    assert _reason(keyless, platform.dynamic_qr(ehc_id, now=NOW).text()) == "unverifiable"


def test_national_splice_weakness_and_the_envelope_fix() -> None:
    """docs/reference/ehealth-card.md §10: the validity block is not bound to the ID, so a
    block of one code can be spliced onto another ID and still verifies. The signed envelope
    binds them."""
    platform = spec_platform()
    verifier = _verifier(platform)
    mine = platform.dynamic_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    victim = platform.ecard_id(LI_KUN)
    spliced = NationalQr(victim, 0, mine.validity).text()
    assert verifier.verify(spliced, now=NOW).ehc_id == victim  # the national weakness

    signed_mine = parse_envelope(platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW))
    signed_victim = parse_envelope(platform.signed_qr(victim, now=NOW))
    forged = type(signed_mine)(signed_mine.protected, signed_victim.payload,
                               signed_mine.signature, signed_mine.kid).text()
    assert _reason(verifier, forged) == "forged"


def test_malformed_text_is_an_input_error() -> None:
    with pytest.raises(QrFormatError, match="ehc_id"):
        _verifier(spec_platform()).verify("hello", now=NOW)


# -- signed ----------------------------------------------------------------------------------


def test_signed_code_verifies_offline_with_the_trust_list_only() -> None:
    platform = spec_platform()
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    hospital = Verifier(trust_list=TrustList([platform.trust_entry(issuer="平台")]))
    result = hospital.verify(text, now=NOW + dt.timedelta(seconds=5))
    assert result.kind == "signed" and result.issuer == "平台"
    assert result.kid == platform.keys.key_id().hex().upper()
    assert result.national.dynamic and result.issued_at == NOW
    # the gateway forwards the national text; the platform's key still checks it
    assert _verifier(platform).verify(result.national.text(), now=NOW).kind == "national-dynamic"


@pytest.mark.parametrize("position", [0, 30, 60, 63])
def test_any_signature_change_is_forged(position: int) -> None:
    platform = spec_platform()
    envelope = parse_envelope(platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW))
    signature = bytearray(envelope.signature)
    signature[position] ^= 0x01
    tampered = type(envelope)(envelope.protected, envelope.payload, bytes(signature),
                              envelope.kid).text()
    assert _reason(_verifier(platform), tampered) == "forged"


def test_changed_claims_are_forged() -> None:
    platform = spec_platform()
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    envelope = parse_envelope(text)
    claims = cbor2.loads(envelope.payload)
    longer = dict(claims)
    longer[4] = claims[4] + 3600
    payload = cbor2.dumps(longer, canonical=True)
    tampered = type(envelope)(envelope.protected, payload, envelope.signature, envelope.kid)
    assert _reason(_verifier(platform), tampered.text()) == "forged"
    # a kid swapped for another trusted key's changes the protected header: forged as well
    other = spec_platform()
    trust = TrustList([platform.trust_entry(), other.trust_entry()])
    swapped_header = cbor2.dumps({1: -65537, 4: other.keys.key_id()}, canonical=True)
    swapped = type(envelope)(swapped_header, envelope.payload, envelope.signature,
                             other.keys.key_id())
    assert _reason(Verifier(trust_list=trust), swapped.text()) == "forged"


def test_unknown_and_revoked_issuers() -> None:
    platform, stranger = spec_platform(), spec_platform()
    text = stranger.signed_qr(stranger.ecard_id(GUIFUTONG), now=NOW)
    assert _reason(_verifier(platform), text) == "unknown-issuer"
    assert _reason(Verifier(), text) == "unknown-issuer"
    own = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    revoked = RevocationList(kids={platform.keys.key_id().hex().upper()})
    assert _reason(_verifier(platform, revocations=revoked), own) == "revoked-key"


def test_key_rotation_windows() -> None:
    """Rotation: the old key's window closes at the switch; codes it signed before remain
    good until they expire, codes it signs after are refused; the new key takes over."""
    old, new = spec_platform(), spec_platform()
    switch = NOW + dt.timedelta(minutes=5)
    trust = TrustList([
        old.trust_entry(not_after=switch),
        new.trust_entry(not_before=switch - dt.timedelta(minutes=1)),
    ])
    verifier = Verifier(trust_list=trust)
    ehc_id = old.ecard_id(GUIFUTONG)
    before = old.signed_qr(ehc_id, now=switch - dt.timedelta(seconds=30))
    assert verifier.verify(before, now=switch + dt.timedelta(seconds=60)).kind == "signed"
    after = old.signed_qr(ehc_id, now=switch + SECOND)
    assert _reason(verifier, after, switch + 2 * SECOND) == "key-not-valid"
    assert verifier.verify(new.signed_qr(ehc_id, now=switch), now=switch).kind == "signed"
    early = new.signed_qr(ehc_id, now=switch - dt.timedelta(minutes=2))
    assert _reason(verifier, early, switch - dt.timedelta(minutes=2)) == "key-not-valid"


def test_clock_skew_and_lifetime() -> None:
    platform = spec_platform()
    verifier = _verifier(platform)
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    assert verifier.verify(text, now=NOW - dt.timedelta(seconds=30)).kind == "signed"
    assert _reason(verifier, text, NOW - dt.timedelta(seconds=31)) == "not-yet-valid"
    assert verifier.verify(text, now=NOW + dt.timedelta(seconds=150)).kind == "signed"
    assert _reason(verifier, text, NOW + dt.timedelta(seconds=151)) == "expired"
    strict = _verifier(platform, policy=VerifyPolicy(clock_skew=dt.timedelta(0)))
    assert _reason(strict, text, NOW + dt.timedelta(seconds=121)) == "expired"
    long_lived = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW,
                                    valid_for=dt.timedelta(hours=1))
    assert _reason(verifier, long_lived) == "validity-too-long"


def test_revoked_card_and_code() -> None:
    platform = spec_platform()
    ehc_id = platform.ecard_id(GUIFUTONG)
    text = platform.signed_qr(ehc_id, now=NOW)
    jti = parse_envelope(text).claims().jti.hex().upper()
    assert _reason(_verifier(platform, revocations=RevocationList(ehc_ids={ehc_id})),
                   text) == "revoked-card"
    assert _reason(_verifier(platform, revocations=RevocationList(jtis={jti})),
                   text) == "revoked-code"
    national = platform.dynamic_qr(ehc_id, now=NOW).text()
    assert _reason(_verifier(platform, revocations=RevocationList(ehc_ids={ehc_id})),
                   national) == "revoked-card"


def test_replay_cache_makes_codes_single_use() -> None:
    platform = spec_platform()
    verifier = _verifier(platform, replay_cache=ReplayCache())
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    verifier.verify(text, now=NOW)
    assert _reason(verifier, text) == "replayed"
    fresh = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    assert verifier.verify(fresh, now=NOW).jti != parse_envelope(text).claims().jti.hex()
    reusable = _verifier(platform, replay_cache=ReplayCache(),
                         policy=VerifyPolicy(one_time=False))
    reusable.verify(text, now=NOW)
    assert reusable.verify(text, now=NOW).kind == "signed"


def test_replay_cache_forgets_expired_codes_only_when_full() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.check_and_add(b"a" * 8, 100.0, 50.0)
    assert cache.check_and_add(b"b" * 8, 200.0, 50.0)
    assert not cache.check_and_add(b"a" * 8, 100.0, 60.0)
    assert cache.check_and_add(b"c" * 8, 300.0, 150.0)  # "a" expired and is dropped
    from healthcard_apdu.ehc import EhcError

    with pytest.raises(EhcError, match="full"):
        cache.check_and_add(b"d" * 8, 300.0, 150.0)


def test_policy_refuses_negative_durations() -> None:
    with pytest.raises(EhcInputError, match="clock_skew"):
        VerifyPolicy(clock_skew=-SECOND)


def test_use_needs_a_registry() -> None:
    from healthcard_apdu.ehc import UseContext

    platform = spec_platform()
    code = platform.dynamic_qr(platform.ecard_id(GUIFUTONG), now=NOW).text()
    use = UseContext(org_code="H1", terminal="T1", channel="02", medstep="010101")
    with pytest.raises(EhcInputError, match="registry"):
        _verifier(platform).verify(code, now=NOW, use=use)


# -- trust list and revocation files ---------------------------------------------------------


def test_trust_list_file_round_trip(tmp_path: Path) -> None:
    platform = spec_platform()
    entry = platform.trust_entry(issuer="示例平台", not_before=NOW, not_after=NOW + SECOND * 60)
    path = tmp_path / "trust.json"
    TrustList([entry]).save(path)
    loaded = TrustList.load(path)
    assert list(loaded) == [entry]
    assert loaded.get(platform.keys.key_id()) == entry
    with pytest.raises(EhcInputError, match="already"):
        loaded.add(entry)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kid": "0000000000000000"}, "kid"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
         "public_key"),
        ({"not_before": "2025-01-01T00:00:00"}, "not_before"),
        ({"not_after": "yesterday"}, "not_after"),
        ({"issuer": 5}, "issuer"),
    ],
)
def test_bad_trust_entries_name_the_field(change: dict[str, object], field: str) -> None:
    entry = {**spec_platform().trust_entry().to_dict(), **change}
    with pytest.raises(EhcInputError) as caught:
        TrustList.from_dict({"keys": [entry]})
    assert caught.value.field.endswith(field)


def test_trust_list_refuses_a_p256_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(EhcInputError, match="sm2p256v1"):
        TrustList.from_dict({"keys": [{"public_key": pem}]})


def test_revocation_list_round_trip_and_errors(tmp_path: Path) -> None:
    listed = RevocationList(kids={"00" * 8}, ehc_ids={"AB" * 32}, jtis={"CD" * 8})
    path = tmp_path / "revoked.json"
    listed.save(path)
    assert RevocationList.load(path) == listed
    with pytest.raises(EhcInputError, match="ehc_ids"):
        RevocationList.from_dict({"ehc_ids": ["AB"]})
    path.write_text('{"format": "something else"}')
    with pytest.raises(EhcInputError, match="format"):
        RevocationList.load(path)


# -- interoperability with OpenSSL (an independent SM2 implementation) -----------------------


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is missing (APT_PACKAGES)")
    return path


def test_openssl_generated_sm2_key_is_accepted(tmp_path: Path) -> None:
    key, pub = tmp_path / "sm2.pem", tmp_path / "sm2pub.pem"
    subprocess.run([_openssl(), "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True)
    subprocess.run([_openssl(), "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    point = public_key_from_spki(pub.read_text())
    entry = TrustedKey(point)
    assert entry.pem() == pub.read_text()


def test_openssl_verifies_the_envelope_signature(tmp_path: Path) -> None:
    module = SoftwareSecurityModule(spec_keyset())
    platform = EhcPlatform.from_module(module)
    envelope = parse_envelope(platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW))
    (tmp_path / "pub.pem").write_text(platform.trust_entry().pem())
    (tmp_path / "tbs.bin").write_bytes(envelope.to_be_signed())
    r, s = (int.from_bytes(envelope.signature[i : i + 32], "big") for i in (0, 32))
    der = core.SequenceOf(spec=core.Integer, value=[r, s]).dump()
    (tmp_path / "sig.der").write_bytes(der)
    done = subprocess.run(
        [_openssl(), "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
         "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
         "-in", str(tmp_path / "tbs.bin"), "-sigfile", str(tmp_path / "sig.der")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0 and "Verified Successfully" in done.stdout, done.stderr
    # and a changed byte does not verify there either
    (tmp_path / "tbs.bin").write_bytes(envelope.to_be_signed()[:-1] + b"\x00")
    bad = subprocess.run(
        [_openssl(), "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
         "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
         "-in", str(tmp_path / "tbs.bin"), "-sigfile", str(tmp_path / "sig.der")],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode != 0


def test_base45_body_of_a_real_envelope_is_alphanumeric() -> None:
    platform = spec_platform()
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    assert b45encode(b45decode(text[5:])) == text[5:]
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
