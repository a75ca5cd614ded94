"""QR texts (national, provincial, EHC1), Base45, the envelope encoding and its size, and the
images -- every image decoded by zbarimg (and SVG rasterized by rsvg-convert)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehc_support import GUIFUTONG, NOW, decode_svg, spec_platform, terminal_to_pbm, zbar_decode
from healthcard_apdu.ehc import (
    DYNAMIC,
    MAX_SIGNED_VERSION,
    STATIC,
    EhcInputError,
    NationalQr,
    QrFormatError,
    b45decode,
    b45encode,
    parse_envelope,
    parse_national,
    png_bytes,
    qr_version,
    save_image,
    svg_text,
    terminal_text,
)
from healthcard_apdu.ehc.signed import MAX_SIGNED_TEXT, Claims, Envelope

EHC_ID = "98FF9F2C05145CB9305E9D8A57E072BB51180CA49E5BE5E9D41BCE3A9A571928"
VALIDITY = "92FD69141DFE1553A42251E2B0196148"
# The examples of docs/reference/ehealth-card.md §4: static, dynamic (TX-ZC), Sichuan 4-field.
STATIC_EXAMPLE = "E1D10AAC73D0B947060B099128732C969A6EF97A6014BF41B3D19EEF9A4FBB18:1"
DYNAMIC_EXAMPLE = (
    "272EB52D0696FD625B6F3E1A830728532779BEB87520CC83948C50A43F439F58:0:"
    "8D7E10969D22699A07C2BDA9B4CE9286"
)
SICHUAN_EXAMPLE = "6836D27C966E1C1BB192F050778358E4AA0208EFBA111FC5CB90AD689124A19B:1::5100A0013"

hex_id = st.text("0123456789ABCDEFabcdef", min_size=64, max_size=64)
hex_validity = st.text("0123456789ABCDEFabcdef", min_size=32, max_size=32)
issuer = st.none() | st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabc", min_size=1, max_size=32)


# -- national texts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "code_type", "issuer_code"),
    [
        (STATIC_EXAMPLE, "national-static", STATIC, None),
        (DYNAMIC_EXAMPLE, "national-dynamic", DYNAMIC, None),
        (SICHUAN_EXAMPLE, "national-static", STATIC, "5100A0013"),
        (DYNAMIC_EXAMPLE + ":5100A0013", "national-dynamic", DYNAMIC, "5100A0013"),
    ],
)
def test_reference_examples_parse_and_format_back(
    text: str, kind: str, code_type: int, issuer_code: str | None
) -> None:
    qr = parse_national(text)
    assert (qr.kind, qr.code_type, qr.issuer_code) == (kind, code_type, issuer_code)
    assert qr.text() == text


def test_parsing_is_lenient_and_formatting_strict() -> None:
    lower = parse_national(f"  {DYNAMIC_EXAMPLE.lower()}\r\n")
    assert lower.text() == DYNAMIC_EXAMPLE
    assert parse_national(STATIC_EXAMPLE + ":").text() == STATIC_EXAMPLE


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("", "qr_text", "empty"),
        (EHC_ID[:63] + ":1", "ehc_id", "64 hex"),
        (EHC_ID[:63] + "G:1", "ehc_id", "64 hex"),
        (EHC_ID, "code_type", "missing"),
        (EHC_ID + ":", "code_type", "missing"),
        (EHC_ID + ":2", "code_type", "'2'"),
        (EHC_ID + ":0", "validity", "32 hex"),
        (EHC_ID + ":0:" + VALIDITY[:30], "validity", "32 hex"),
        (EHC_ID + ":1:" + VALIDITY, "validity", "static"),
        (EHC_ID + ":1::", "issuer_code", "empty"),
        (EHC_ID + ":1::51-00", "issuer_code", "letters and digits"),
        (EHC_ID + ":1::a:b", "qr_text", "at most 4"),
        ("EHC1:ABC", "qr_text", "signed"),
    ],
)
def test_malformed_texts_name_the_field(text: str, field: str, words: str) -> None:
    with pytest.raises(QrFormatError) as caught:
        parse_national(text)
    assert caught.value.field == field
    assert words in str(caught.value)


@given(hex_id, st.booleans(), hex_validity, issuer)
def test_national_round_trip(ehc_id: str, dynamic: bool, validity: str, code: str | None) -> None:
    qr = NationalQr(ehc_id, DYNAMIC if dynamic else STATIC, validity if dynamic else None, code)
    text = qr.text()
    assert text == text.upper() or (code is not None and code != code.upper())
    again = parse_national(text)
    assert again == qr and again.text() == text


# -- Base45 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [  # RFC 9285 §4.3 and §4.4
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
        (b"", ""),
    ],
)
def test_base45_rfc9285_examples(raw: bytes, encoded: str) -> None:
    assert b45encode(raw) == encoded
    assert b45decode(encoded) == raw


@pytest.mark.parametrize("bad", ["GGW", "A", "AAAA", "ab", "BB8\n", ":::", "::"])
def test_base45_refuses_invalid_text(bad: str) -> None:
    with pytest.raises(ValueError):
        b45decode(bad)


@given(st.binary(max_size=300))
def test_base45_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


# -- the EHC1 envelope -----------------------------------------------------------------------


def _signed(**options: object) -> str:
    platform = spec_platform()
    return platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW, **options)  # type: ignore[arg-type]


def test_envelope_carries_the_exact_national_text() -> None:
    platform = spec_platform(issuer_code="5100A0013")
    ehc_id = platform.ecard_id(GUIFUTONG)
    for carry in ("dynamic", "static"):
        text = platform.signed_qr(ehc_id, carry=carry, now=NOW)  # type: ignore[arg-type]
        claims = parse_envelope(text).claims()
        national = claims.national()
        assert national.ehc_id == ehc_id and national.issuer_code == "5100A0013"
        assert national.dynamic == (carry == "dynamic")
        assert claims.issued() == NOW and claims.expires() == NOW + dt.timedelta(seconds=120)
        if national.dynamic:
            assert platform.keys.validity_expiry(national.validity or "") == claims.expires()


@pytest.mark.parametrize("issuer_code", [None, "5100A0013", "X" * 26])
def test_envelope_fits_version_10_at_level_m(issuer_code: str | None) -> None:
    platform = spec_platform(issuer_code=issuer_code)
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)
    assert len(text) <= MAX_SIGNED_TEXT
    assert qr_version(text) <= MAX_SIGNED_VERSION == 10


def test_too_long_provincial_field_is_refused_before_it_overflows_the_budget() -> None:
    platform = spec_platform(issuer_code="X" * 32)
    with pytest.raises(EhcInputError, match="issuer_code"):
        platform.signed_qr(platform.ecard_id(GUIFUTONG), now=NOW)


def test_national_sizes_match_the_reference() -> None:
    # docs/reference/ehealth-card.md §4: static version 4, dynamic 5, Sichuan 4 at level M
    assert qr_version(STATIC_EXAMPLE) == 4
    assert qr_version(DYNAMIC_EXAMPLE) == 5
    assert qr_version(SICHUAN_EXAMPLE) == 4


def test_envelope_is_canonical_cose_sign1() -> None:
    text = _signed()
    envelope = parse_envelope(text)
    outer = cbor2.loads(b45decode(text[5:]))
    assert outer.tag == 18 and len(outer.value) == 4
    assert cbor2.loads(envelope.protected) == {1: -65537, 4: envelope.kid}
    assert envelope.encode() == b45decode(text[5:])
    assert envelope.to_be_signed() == cbor2.dumps(
        ["Signature1", envelope.protected, b"", envelope.payload]
    )
    claims = envelope.claims()
    assert set(cbor2.loads(envelope.payload)) == {4, 6, 7, -65538}
    assert Claims.decode(claims.encode()) == claims


def _reencode(text: str, transform: object) -> str:
    outer = cbor2.loads(b45decode(text[5:]))
    items = list(outer.value)
    items = transform(items)  # type: ignore[operator]
    return "EHC1:" + b45encode(cbor2.dumps(cbor2.CBORTag(18, items)))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda t: t[:5] + t[5:-3], "envelope"),  # truncated
        (lambda t: t + "00", "envelope"),  # trailing bytes
        (lambda t: t[:5] + "a" + t[6:], "envelope"),  # not Base45 (lower case)
        (lambda t: "EHC1:" + b45encode(cbor2.dumps([1, 2])), "envelope"),
        (lambda t: _reencode(t, lambda i: [i[0], {1: 1}, i[2], i[3]]), "envelope"),
        (lambda t: _reencode(t, lambda i: [i[0], {}, i[2], i[3][:63]]), "signature"),
        (lambda t: _reencode(t, lambda i: [cbor2.dumps({1: -7, 4: b"12345678"}), {}, i[2], i[3]]),
         "alg"),
        (lambda t: _reencode(t, lambda i: [cbor2.dumps({1: -65537, 4: b"1234"}), {}, i[2], i[3]]),
         "kid"),
    ],
)
def test_malformed_envelopes_name_the_field(mutate: object, field: str) -> None:
    with pytest.raises(QrFormatError) as caught:
        parse_envelope(mutate(_signed()))  # type: ignore[operator]
    assert caught.value.field == field


def test_non_canonical_encoding_is_refused() -> None:
    text = _signed()
    outer = cbor2.loads(b45decode(text[5:]))
    protected, _, payload, signature = outer.value
    # the same array with a two-byte length header for the signature byte string
    canonical = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))
    assert canonical == b45decode(text[5:])
    stretched = canonical.replace(b"\x58\x40" + signature, b"\x59\x00\x40" + signature)
    with pytest.raises(QrFormatError, match="canonical"):
        parse_envelope("EHC1:" + b45encode(stretched))


@settings(max_examples=60)
@given(st.binary(min_size=1, max_size=400))
def test_random_bodies_never_crash_the_parser(body: bytes) -> None:
    try:
        envelope = parse_envelope("EHC1:" + b45encode(body))
    except QrFormatError:
        return
    assert isinstance(envelope, Envelope)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**32), st.integers(1, 3600), st.binary(min_size=8, max_size=8), st.booleans()
)
def test_envelope_round_trip(start: int, life: int, jti: bytes, dynamic: bool) -> None:
    platform = spec_platform()
    now = dt.datetime.fromtimestamp(start, dt.UTC)
    text = platform.signed_qr(platform.ecard_id(GUIFUTONG), now=now, jti=jti,
                              valid_for=dt.timedelta(seconds=life),
                              carry="dynamic" if dynamic else "static")
    claims = parse_envelope(text).claims()
    assert (claims.issued_at, claims.expires_at, claims.jti) == (start, start + life, jti)
    assert Envelope(*(lambda e: (e.protected, e.payload, e.signature, e.kid))(
        parse_envelope(text))).text() == text


# -- images ----------------------------------------------------------------------------------


def _texts() -> list[str]:
    platform = spec_platform()
    ehc_id = platform.ecard_id(GUIFUTONG)
    return [
        STATIC_EXAMPLE,
        SICHUAN_EXAMPLE,
        platform.dynamic_qr(ehc_id, now=NOW).text(),
        platform.signed_qr(ehc_id, now=NOW),
        platform.signed_qr(ehc_id, now=NOW, carry="static"),
    ]


@pytest.mark.parametrize("index", range(5), ids=["static", "sichuan", "dynamic", "signed",
                                                 "signed-static"])
def test_png_and_svg_decode_with_zbar(index: int, tmp_path: Path) -> None:
    text = _texts()[index]
    png = tmp_path / "code.png"
    png.write_bytes(png_bytes(text))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert zbar_decode(png) == text
    svg = tmp_path / "code.svg"
    svg.write_text(svg_text(text))
    assert decode_svg(svg, tmp_path) == text
    saved = tmp_path / "saved.png"
    save_image(text, saved, scale=3)
    assert zbar_decode(saved) == text


def test_terminal_rendering_decodes_with_zbar(tmp_path: Path) -> None:
    for text in _texts()[2:4]:
        rendering = terminal_text(text)
        assert set(rendering) <= {"█", "▀", "▄", " ", "\n"}
        assert zbar_decode(terminal_to_pbm(rendering, tmp_path / "term.pbm")) == text


def test_image_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(EhcInputError, match="image"):
        save_image(STATIC_EXAMPLE, tmp_path / "x.gif")
    with pytest.raises(EhcInputError, match="qr_text"):
        png_bytes("")
