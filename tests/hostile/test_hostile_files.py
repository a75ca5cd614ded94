"""Hostile files against every reader: JSON and TOML text, key files, card images, SAM key
files, profiles, resident files (CSV / JSON Lines) and APDU traces. Valid documents are
mutated at a random place with a random JSON value; raw text is thrown at the parsers. Only
the reader's typed error may come out (or the document is accepted and then usable)."""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.batch.errors import InputError
from healthcard_apdu.batch.input import read_residents, scan_file
from healthcard_apdu.batch.validate import validate_rows
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.fileio import parse_json, parse_toml
from healthcard_apdu.perso.errors import ProfileError
from healthcard_apdu.perso.profile import builtin_profile_path, parse_profile
from healthcard_apdu.security import KeyFileError, KeySet
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.errors import ImageError
from healthcard_apdu.sim.image import image_from_json, image_to_json
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport.base import TransportError
from healthcard_apdu.transport.replay import read_trace
from hostile_support import budget, count
from perso_support import issued_card

WORK = Path(tempfile.mkdtemp(prefix="hostile-files-"))
PASSPHRASE = "hostile"
KEYSET = KeySet.generate(("MK_MF", "RK1_DF01", "STK_DF01"), BlockCipher.SM4)
KEY_FILE = WORK / "keys.json"
KEYSET.save(KEY_FILE, PASSPHRASE, scrypt_n=2**10)
KEY_DOCUMENT = json.loads(KEY_FILE.read_text())
IMAGE = image_to_json(issued_card().image)
SAM = simulator_sam_document(KeySet.generate(("RK1_DF01", "UK1_DF01"), BlockCipher.SM4))
PROFILE = tomllib.loads(builtin_profile_path("national-32k").read_text(encoding="utf-8"))

_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["00", "FF", "3F00", "zz", "39", "", "T=0", "SM4"]))
_JSON = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:6]):
            out += _paths(child, (*prefix, index))
    return out


@st.composite
def _mutated(draw: st.DrawFn, document: Any, times: int = 3) -> Any:
    """``document`` with 1..``times`` places replaced by random JSON (or deleted)."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, times))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return draw(_JSON)
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_JSON)
    return doc


@budget(1200)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60),
                 st.text(alphabet="[]{}\",:0123456789eE.-\\ud", max_size=80)))
def test_parse_json_raises_only_value_errors(raw: str | bytes) -> None:
    count("parse-json")
    with contextlib.suppress(ValueError):
        parse_json(raw)


@budget(600)
@given(st.text(alphabet=st.sampled_from([*"[]{}=\"'.,#\n ab1", "\ud800", "名"]),
               max_size=80))
def test_parse_toml_raises_only_value_errors(raw: str) -> None:
    count("parse-toml")
    with contextlib.suppress(ValueError):
        parse_toml(raw)


@budget(500)
@given(_mutated(KEYSET.to_plain_dict()))
def test_plain_key_json_is_loaded_or_refused_with_a_key_file_error(document: Any) -> None:
    count("plain-keys")
    with contextlib.suppress(KeyFileError):
        KeySet.from_plain_dict(document)


@budget(300)
@given(_mutated(KEY_DOCUMENT, times=2))
def test_an_encrypted_key_file_is_loaded_or_refused_with_a_key_file_error(
        document: Any) -> None:
    count("key-file")
    path = WORK / "mutated-keys.json"
    path.write_text(json.dumps(document))
    with contextlib.suppress(KeyFileError):
        KeySet.load(path, PASSPHRASE)


@budget(700)
@given(_mutated(IMAGE))
def test_a_card_image_is_loaded_and_usable_or_refused_with_an_image_error(
        document: Any) -> None:
    count("card-image")
    try:
        image = image_from_json(document)
    except ImageError:
        return
    card = SimCard(image)
    card.power_on()
    for raw in ("00A4000002DDF1", "00A4000002DF01", "00B2010400", "0084000008",
                "00A40000023F00", "00B0000010"):
        assert len(card.process(bytes.fromhex(raw))) >= 2


@budget(400)
@given(_mutated(SAM))
def test_a_sam_key_file_is_loaded_or_refused_with_an_image_error(document: Any) -> None:
    count("sam-file")
    with contextlib.suppress(ImageError):
        sam_state_from_json(document)


@budget(400)
@given(_mutated(PROFILE))
def test_a_profile_is_loaded_or_refused_with_a_profile_error(document: Any) -> None:
    count("profile")
    with contextlib.suppress(ProfileError):
        parse_profile(document)


_LINES = st.lists(st.one_of(
    st.binary(max_size=40),
    st.sampled_from(["居民0,1,X", "王五丽,2,X", "a;b;c", '"x""y",1', "XM,XM", ""])
    .map(lambda t: t.encode("utf-8")),
    st.sampled_from(["居民4,2,X", "欧阳娜娜,2,X"]).map(lambda t: t.encode("gbk")),
    st.sampled_from(['{"XM": "张三"}', '{"XM": ' + "9" * 5000 + "}", '{"XM": "\\ud800"}',
                     "[" * 3000, '{"DDF1EF06": {"XM": 1}}']).map(str.encode),
), max_size=8)


@budget(600)
@given(st.sampled_from(["r.csv", "r.jsonl"]), st.sampled_from(["XM,XB,SFZH\n", ""]), _LINES,
       st.sampled_from([None, "gbk", "ascii", "utf-8"]))
def test_a_resident_file_is_read_or_refused_with_an_input_error(
        name: str, header: str, lines: list[bytes], encoding: str | None) -> None:
    count("resident-file")
    path = WORK / name
    path.write_bytes(header.encode() + b"\n".join(lines))
    try:
        info = scan_file(path, encoding=encoding)
        for verdict in validate_rows(read_residents(info)):
            json.dumps([issue.to_dict() for issue in verdict.issues], ensure_ascii=False
                       ).encode("utf-8")  # what the report and the journal store
    except InputError:
        pass


@budget(500)
@given(st.lists(st.one_of(
    st.binary(max_size=60),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"command": st.text(max_size=20), "response": st.text(max_size=20)})
    .map(lambda v: json.dumps(v).encode()),
), max_size=5))
def test_an_apdu_trace_is_read_or_refused_with_a_transport_error(lines: list[bytes]) -> None:
    count("trace")
    path = WORK / "trace.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    with contextlib.suppress(TransportError):
        read_trace(path)
