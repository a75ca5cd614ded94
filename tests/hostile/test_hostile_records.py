"""Hostile card bytes and JSON against the model: every item codec, every file class, the
card JSON. What the card holds is decoded or refused with a typed error; a record the model
accepts is encoded back without surprises."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu import model
from healthcard_apdu.model import FILE_CLASSES, ITEMS, CardData, ModelError
from hostile_support import budget, count, only_typed_errors

_ITEMS = st.sampled_from(ITEMS)
_CLASSES = st.sampled_from(sorted(FILE_CLASSES.values(), key=lambda c: c.LAYOUT))


@budget(1500)
@given(_ITEMS, st.binary(max_size=120))
def test_every_item_decodes_any_bytes_or_raises_a_model_error(item: Any, raw: bytes) -> None:
    count("item-decode")
    with only_typed_errors():
        model.decode_item(item, raw)
    with only_typed_errors():
        model.decode_tlv(item, raw)


@budget(1200)
@given(_CLASSES, st.binary(max_size=400))
def test_every_file_class_decodes_any_image_or_raises_a_model_error(cls: Any,
                                                                   raw: bytes) -> None:
    count("file-bytes")
    with only_typed_errors():
        value = cls.from_bytes(raw)
        value.to_json()


@budget(800)
@given(_CLASSES, st.dictionaries(st.integers(-2, 300), st.binary(max_size=80), max_size=6))
def test_every_file_class_decodes_any_records_or_raises_a_model_error(
        cls: Any, records: dict[int, bytes]) -> None:
    count("file-records")
    with only_typed_errors():
        cls.from_records(records)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
_KEYS = st.sampled_from(["holder", "issuer", "DDF1EF05", "DDF1EF06", "XM", "SFZH", "CSRQ",
                         "allergies", "immunizations", "inpatient", "DF03EE", "photo", "name",
                         "contacts", "DF01EF05", "KH", "YYCSDM"])


@budget(1000)
@given(st.dictionaries(st.one_of(_KEYS, st.text(max_size=8)), _JSON, max_size=6))
def test_card_json_is_read_or_refused_with_a_model_error(document: dict[str, Any]) -> None:
    count("card-json")
    try:
        card = CardData.from_json(document)
    except ModelError:
        return
    with only_typed_errors():
        card.validate()
        card.to_json()
