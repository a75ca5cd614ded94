"""Generic behaviour of the per-file dataclasses: JSON, record/byte codecs, validation.

A file dataclass declares ``LAYOUT`` and one field per item, named by the item's English name
(index files: one field per record, ``<name>_<n>``). Everything else is driven by the table.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from .codec import (
    DecodeWarning,
    Value,
    decode_item,
    decode_item_lenient,
    decode_tlv,
    decode_tlv_lenient,
    empty_value,
    encode_item,
    encode_tlv,
    exact_decoder,
)
from .errors import DecodeError, LayoutError, SchemaError, ValidationError
from .layout import EF, Item, Structure, files_of_layout, items_in_range, layout_items
from .validators import CROSS_CHECKS, item_errors

KeyStyle = Literal["name", "code", "auto"]
"""JSON key style: English names, pinyin codes, or (reading only) either."""

JsonValue = str | int | bool | None
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Slot:
    """One dataclass field: the item it stores and, for index files, the record number."""

    field: str
    item: Item
    record: int | None
    json_code: str
    json_name: str


_SLOTS: dict[type, tuple[Slot, ...]] = {}

_Decoder = Callable[[Item, bytes], Value] | None
_BytesPlan = tuple[int, int, Slot | None, tuple[tuple[str, Item, int, int, _Decoder], ...]]
"""(size, data length, the photo slot or None, (field, item, offset, end) per slot)."""
_BYTES_PLANS: dict[type, _BytesPlan] = {}
_EXACT: dict[int, Any] = {}  # item number -> exact_decoder(item)
_NOT_SET = object()
_DIRECT_BUILD: dict[type, bool] = {}


def _slots_for(layout: str) -> tuple[Slot, ...]:
    ef = files_of_layout(layout)[0]
    slots: list[Slot] = []
    for it in layout_items(layout):
        if it.kind == "index_flag":
            count = ef.record_count or 0
            slots += [
                Slot(f"{it.name}_{n}", it, n, f"{it.code}{n}", f"{it.name}_{n}")
                for n in range(1, count + 1)
            ]
        else:
            slots.append(Slot(it.name, it, it.record, it.code, it.name))
    return tuple(slots)


def value_to_json(item: Item, value: Value) -> JsonValue:
    """bytes become upper-case hex; everything else is already a JSON scalar."""
    if isinstance(value, bytes):
        return value.hex().upper()
    return value


def value_from_json(item: Item, data: object, context: str) -> Value:
    """Check the JSON type of one value and convert hex strings to bytes."""
    if item.fmt in ("ans", "cn"):
        if isinstance(data, str):
            return data
        raise SchemaError(item, data, "needs a JSON string", context=context)
    if item.kind == "index_flag":
        if isinstance(data, bool):
            return data
        raise SchemaError(item, data, "needs true or false", context=context)
    if item.kind == "flag":
        if data is None or isinstance(data, bool):
            return data
        raise SchemaError(item, data, "needs true, false or null", context=context)
    if item.kind == "code":
        if data is None or (isinstance(data, int) and not isinstance(data, bool)):
            return data
        raise SchemaError(item, data, "needs an integer or null", context=context)
    if isinstance(data, str):
        try:
            return bytes.fromhex(data)
        except ValueError:
            pass
    raise SchemaError(item, data, "needs a hex string", context=context)


class FileValue:
    """Mixin for the frozen per-file dataclasses in :mod:`healthcard_apdu.model.files`."""

    LAYOUT: ClassVar[str]

    # --- introspection ----------------------------------------------------------------------

    @classmethod
    def slots(cls) -> tuple[Slot, ...]:
        cached = _SLOTS.get(cls)
        if cached is None:
            cached = _SLOTS[cls] = _slots_for(cls.LAYOUT)
        return cached

    @classmethod
    def files(cls) -> tuple[EF, ...]:
        """The EFs this class describes (EE01-EE03 share InpatientRecord, ...)."""
        return files_of_layout(cls.LAYOUT)

    @classmethod
    def structure(cls) -> Structure:
        return cls.files()[0].structure

    def values(self) -> dict[str, Value]:
        """Field name -> value, in file order."""
        return {s.field: getattr(self, s.field) for s in self.slots()}

    def items(self) -> Iterator[tuple[Slot, Value]]:
        for s in self.slots():
            yield s, getattr(self, s.field)

    def get(self, key: str | int) -> Value:
        """Value by English name, pinyin code (index files: ``ZYJLBS2``) or item number."""
        for s in self.slots():
            if key in (s.field, s.json_code, s.item.no, *s.item.aliases):
                return getattr(self, s.field)  # type: ignore[no-any-return]
        raise LayoutError(f"{self.LAYOUT}: no item {key!r}")

    def replace(self, **changes: Value) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def is_empty(self) -> bool:
        return all(v == empty_value(s.item) for s, v in self.items())

    # --- JSON -------------------------------------------------------------------------------

    def to_json(
        self, keys: Literal["name", "code"] = "name", *, omit_empty: bool = False
    ) -> JsonObject:
        """JSON object keyed by English names or pinyin codes; ``omit_empty`` drops items
        holding their empty value ("" / b"" / None; index flags are always kept)."""
        if keys not in ("name", "code"):
            raise SchemaError(None, keys, "key style must be 'name' or 'code'")
        by_code = keys == "code"
        return {
            (s.json_code if by_code else s.json_name): value_to_json(s.item, v)
            for s, v in self.items()
            if not (omit_empty and v == empty_value(s.item) and s.item.kind != "index_flag")
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], keys: KeyStyle = "auto") -> Self:
        """Build from a JSON object keyed by English names or pinyin codes; missing keys are
        empty. Raises SchemaError for unknown keys or wrong JSON types."""
        if not isinstance(data, Mapping):
            raise SchemaError(None, data, "file value must be a JSON object", context=cls.LAYOUT)
        if keys not in ("name", "code", "auto"):
            raise SchemaError(None, keys, "key style must be 'name', 'code' or 'auto'")
        lookup: dict[str, Slot] = {}
        for s in cls.slots():
            if keys in ("name", "auto"):
                lookup[s.json_name] = s
            if keys in ("code", "auto"):
                lookup[s.json_code] = s
                for alias in s.item.aliases:
                    lookup[alias] = s
        fields: dict[str, Value] = {}
        for k, v in data.items():
            slot = lookup.get(k)
            if slot is None:
                raise SchemaError(None, k, f"unknown {keys} key", context=cls.LAYOUT)
            if slot.field in fields:
                raise SchemaError(slot.item, k, "item given twice", context=cls.LAYOUT)
            fields[slot.field] = value_from_json(slot.item, v, cls.LAYOUT)
        return cls(**fields)

    # --- validation -------------------------------------------------------------------------

    def validate(self) -> list[ValidationError]:
        """Every problem of this file value (empty when valid)."""
        errors = [e for s, v in self.items() for e in item_errors(s.item, v)]
        cross = CROSS_CHECKS.get(self.LAYOUT)
        if cross is not None:
            errors += cross(self.values())
        return errors

    # --- record files -----------------------------------------------------------------------

    def to_records(self) -> list[tuple[int, bytes]]:
        """(record number, record bytes) for TLV and index files; raises EncodeError."""
        structure = self.structure()
        if structure == "tlv_records":
            return [(s.record or 0, encode_tlv(s.item, v)) for s, v in self.items()]
        if structure == "linear_fixed":
            return [(s.record or 0, encode_item(s.item, v)) for s, v in self.items()]
        raise LayoutError(f"{self.LAYOUT} is {structure}; use to_bytes()")

    @classmethod
    def from_records(
        cls, records: Mapping[int, bytes], *, warnings: list[DecodeWarning] | None = None
    ) -> Self:
        """Decode records read from the card; missing record numbers give empty values.

        Strict (raises :class:`DecodeError`) unless ``warnings`` is a list: then bytes out of
        spec decode leniently and one :class:`DecodeWarning` per item is appended to it.
        """
        structure = cls.structure()
        if structure not in ("tlv_records", "linear_fixed"):
            raise LayoutError(f"{cls.LAYOUT} is {structure}; use from_bytes()")
        tlv = structure == "tlv_records"
        fields: dict[str, Value] = {}
        for s in cls.slots():
            raw = records.get(s.record or 0)
            if raw is not None and warnings is not None and tlv:
                # the usual case, decode_tlv's own path: the tag and the full length
                item = s.item
                exact = _EXACT.get(item.no, _NOT_SET)
                if exact is _NOT_SET:
                    exact = _EXACT[item.no] = exact_decoder(item)
                if (
                    exact is not None
                    and len(raw) == 2 + item.length
                    and raw[0] == item.tag
                    and raw[1] == item.length
                ):
                    try:
                        fields[s.field] = exact(item, bytes(raw[2:]))
                        continue
                    except DecodeError:
                        pass  # out of spec: decode_tlv_lenient below gives value and warning
            if raw is None:
                fields[s.field] = empty_value(s.item)
            elif warnings is None:
                fields[s.field] = (decode_tlv if tlv else decode_item)(s.item, raw)
            else:
                value, warning = (decode_tlv_lenient if tlv else decode_item_lenient)(s.item, raw)
                fields[s.field] = value
                if warning is not None:
                    warnings.append(dataclasses.replace(warning, context=cls.LAYOUT,
                                                        record=s.record))
        return cls._build(fields)

    @classmethod
    def _build(cls, fields: dict[str, Value]) -> Self:
        """``cls(**fields)`` for a value of every field, as the decoders produce.

        A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
        (about 200 µs for the 149 fields of an EE record); a plain dataclass without
        ``__post_init__`` gets the same instance by filling its ``__dict__`` directly.
        """
        direct = _DIRECT_BUILD.get(cls)
        if direct is None:
            names = (
                {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None
            )
            direct = _DIRECT_BUILD[cls] = (
                names == {s.field for s in cls.slots()}
                and not hasattr(cls, "__post_init__")
                and not hasattr(cls, "__slots__")
            )
        if direct and len(fields) == len(cls.slots()):
            value = object.__new__(cls)
            value.__dict__.update(fields)
            return value
        return cls(**fields)

    # --- transparent files and single cyclic records ----------------------------------------

    @classmethod
    def _offset_slots(cls) -> tuple[Slot, ...]:
        structure = cls.structure()
        if structure not in ("transparent", "cyclic"):
            raise LayoutError(f"{cls.LAYOUT} is {structure}; use to_records()/from_records()")
        return cls.slots()

    @classmethod
    def byte_size(cls) -> int:
        """Bytes of the whole file (transparent) or of one record (cyclic)."""
        ef = cls.files()[0]
        size = ef.size if ef.structure == "transparent" else ef.record_length
        if size is None:
            raise LayoutError(f"{cls.LAYOUT} has no fixed size")
        return size

    @classmethod
    def data_length(cls) -> int:
        """Bytes before the signature (EE/ED: 1639/3013), else the whole size."""
        return cls.files()[0].data_length or cls.byte_size()

    def to_bytes(self) -> bytes:
        """The file (or cyclic record) image; raises EncodeError."""
        return b"".join(encode_item(s.item, getattr(self, s.field)) for s in self._offset_slots())

    def data_bytes(self) -> bytes:
        """The signed part of an EE/ED record (everything before the signature)."""
        return self.to_bytes()[: self.data_length()]

    @classmethod
    def _bytes_plan(cls) -> _BytesPlan:
        """What :meth:`from_bytes` needs, worked out once per class (LayoutError as before)."""
        plan = _BYTES_PLANS.get(cls)
        if plan is None:
            slots = cls._offset_slots()
            size = cls.byte_size()
            photo = slots[0] if slots[0].item.kind == "photo" else None
            entries = tuple(
                (
                    s.field,
                    s.item,
                    s.item.offset or 0,
                    (s.item.offset or 0) + s.item.length,
                    exact_decoder(s.item),
                )
                for s in slots
            )
            plan = _BYTES_PLANS[cls] = (size, cls.data_length(), photo, entries)
        return plan

    @classmethod
    def from_bytes(cls, raw: bytes, *, warnings: list[DecodeWarning] | None = None) -> Self:
        """Decode a file image. EE/ED also accept only the data part (no signature/cert);
        the photo accepts any length from 2 + its JPEG length up to 3074.

        Strict unless ``warnings`` is a list (see :meth:`from_records`); then an image of
        another length is decoded as far as it goes, too.
        """
        raw = bytes(raw)
        if warnings is not None:
            return cls._from_bytes_lenient(raw, warnings)
        size, data_length, photo, entries = cls._bytes_plan()
        length = len(raw)
        if photo is not None:
            return cls(**{photo.field: decode_item(photo.item, raw)})
        if length != size and length != data_length:
            raise DecodeError(
                None, length, f"needs {size} (or {data_length}) bytes", context=cls.LAYOUT
            )
        fields: dict[str, Value] = {}
        for name, item, offset, end, _ in entries:
            if offset >= length:
                fields[name] = empty_value(item)
            else:
                fields[name] = decode_item(item, raw[offset:end])
        return cls._build(fields)

    @classmethod
    def _from_bytes_lenient(cls, raw: bytes, warnings: list[DecodeWarning]) -> Self:
        """:meth:`from_bytes` with ``warnings``: every item decodes to a value or a warning,
        and an image of another length is decoded as far as it goes."""
        size, data_length, photo, entries = cls._bytes_plan()
        length = len(raw)
        whole = length in (size, data_length)
        fields: dict[str, Value] = {}
        for name, item, offset, end, exact in entries:
            if exact is not None and end <= length and photo is None:  # decode_item, directly
                try:
                    fields[name] = exact(item, raw[offset:end])
                    continue
                except DecodeError:
                    pass  # out of spec: the lenient decoding below gives value and warning
            if offset >= length:
                fields[name] = empty_value(item)
                continue
            part = raw if photo is not None else raw[offset:end]
            if photo is None and len(part) < item.length and whole:
                fields[name] = empty_value(item)  # beyond the data part: not stored
                continue
            value, warning = decode_item_lenient(item, part)
            fields[name] = value
            if warning is not None:
                warnings.append(dataclasses.replace(warning, context=cls.LAYOUT))
        return cls._build(fields)

    @classmethod
    def decode_range(
        cls, pos: int, raw: bytes, *, warnings: list[DecodeWarning] | None = None
    ) -> dict[str, Value]:
        """Decode a partial read at ``pos`` (item-aligned) to English name -> value (lenient
        with ``warnings``, see :meth:`from_records`)."""
        items = items_in_range(cls.LAYOUT, pos, len(raw))
        out: dict[str, Value] = {}
        for i in items:
            part = raw[(i.offset or 0) - pos : i.end - pos]
            if warnings is None:
                out[i.name] = decode_item(i, part)
                continue
            out[i.name], warning = decode_item_lenient(i, part)
            if warning is not None:
                warnings.append(dataclasses.replace(warning, context=cls.LAYOUT))
        return out

    @classmethod
    def encode_range(cls, values: Mapping[str, Value]) -> tuple[int, bytes]:
        """Encode some items of a transparent layout that form one contiguous range.

        Returns ``(pos, bytes)`` for a partial UPDATE BINARY.
        """
        slots = {s.field: s for s in cls._offset_slots()}
        chosen = sorted((slots[k] for k in values if k in slots), key=lambda s: s.item.offset or 0)
        unknown = [k for k in values if k not in slots]
        if unknown or not chosen:
            raise LayoutError(f"{cls.LAYOUT}: no items {unknown or list(values)!r}")
        for a, b in itertools.pairwise(chosen):
            if a.item.end != b.item.offset:
                raise LayoutError(f"{cls.LAYOUT}: {a.field} and {b.field} are not adjacent")
        data = b"".join(encode_item(s.item, values[s.field]) for s in chosen)
        return chosen[0].item.offset or 0, data
