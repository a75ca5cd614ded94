"""Byte codecs for data items: cn (BCD), ans (GBK) and b (binary), plus TLV records.

Python value types (see docs/model.md):

* ans -> ``str``; stored GBK, right-padded with 00. Length is counted in encoded bytes.
* cn -> ``str`` of digits (dates "YYYYMMDD", date-times "YYYYMMDDhhmmss", codes "01");
  stored BCD, right-padded with F nibbles. Items of kind ``decimal`` may hold one '.',
  stored as nibble A (one implementation does this; uncertain).
* b -> ``bytes`` (exact item length), except: T/F flags -> ``bool | None`` (01/00, FF =
  not recorded); b1 code items (sex, ABO) -> ``int | None`` (FF = not recorded); index flags
  -> ``bool`` (00 = record valid -> True, FF -> False); the photo -> JPEG ``bytes`` (the
  2-byte length prefix is added and removed here).

Empty values: "" for ans and cn, b"" for binary and photo, None for flags and b1 codes.
Decoding maps all-00 and all-FF ans, all-FF cn and all-00/all-FF binary to the empty value.

**Read leniently, write strictly.** :func:`decode_item` / :func:`decode_tlv` raise
:class:`DecodeError` on bytes out of spec; :func:`decode_item_lenient` /
:func:`decode_tlv_lenient` never raise: they return a best-effort value and a
:class:`DecodeWarning` (what real issued cards hold, e.g. a cn item with a non-decimal nibble,
``00022483A``, is kept as that text). The encoders stay strict, so such a value is refused when
written back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DecodeError, EncodeError, LayoutError
from .layout import Item

Value = str | bytes | bool | int | None
"""A decoded item value; the concrete type depends on the item (see module docstring)."""

_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_DIGITS = frozenset("0123456789")
_PHOTO_HEADER = 2


def empty_value(item: Item) -> Value:
    """The value an unset item decodes to."""
    if item.fmt != "b":
        return ""
    if item.kind == "index_flag":
        return False
    if item.kind in ("flag", "code"):
        return None
    return b""


def value_type_name(item: Item) -> str:
    """The Python type of the item's value, as written in annotations."""
    if item.fmt != "b":
        return "str"
    if item.kind == "index_flag":
        return "bool"
    if item.kind == "flag":
        return "bool | None"
    if item.kind == "code":
        return "int | None"
    return "bytes"


# --- cn -------------------------------------------------------------------------------------


def encode_cn(item: Item, value: object) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(item, value, f"cn item needs a str of digits, not {type(value).__name__}")
    nibbles = 2 * item.length
    if len(value) > nibbles:
        raise EncodeError(item, value, f"{len(value)} digits exceed the limit of {nibbles}")
    if not (value.isascii() and _DIGITS.issuperset(value)):
        if item.kind != "decimal" or not _DECIMAL.fullmatch(value):
            allowed = "digits with at most one inner '.'" if item.kind == "decimal" else "digits"
            raise EncodeError(item, value, f"cn item accepts only {allowed}")
        value = value.replace(".", "A")
    return bytes.fromhex(value + "F" * (nibbles - len(value)))


def decode_cn(item: Item, raw: bytes) -> str:
    text = raw.hex()  # lower case: "f" padding, "a" decimal point
    cut = text.find("f")
    if cut >= 0:
        if text.count("f", cut) != len(text) - cut:
            raise DecodeError(item, raw, "cn value has digits after the F padding")
        text = text[:cut]
    if not text or text.isdigit():  # hex digits: isdigit() means 0-9 only
        return text
    dotted = text.upper().replace("A", ".")
    if item.kind == "decimal" and _DECIMAL.fullmatch(dotted):
        return dotted
    raise DecodeError(item, raw, "cn value holds a non-decimal nibble")


# --- ans ------------------------------------------------------------------------------------


def encode_ans(item: Item, value: object) -> bytes:
    if not isinstance(value, str):
        raise EncodeError(item, value, f"ans item needs a str, not {type(value).__name__}")
    if "\x00" in value:
        raise EncodeError(item, value, "text must not contain NUL characters")
    try:
        data = value.encode("gbk")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end]
        raise EncodeError(
            item, value, f"character {bad!r} (U+{ord(bad[0]):04X}) is not encodable in GBK"
        ) from None
    if len(data) > item.length:
        raise EncodeError(
            item, value, f"needs {len(data)} bytes in GBK, limit is {item.length} bytes"
        )
    return data + bytes(item.length - len(data))


def decode_ans(item: Item, raw: bytes) -> str:
    if raw.count(0xFF) == len(raw):
        return ""
    end = raw.find(0)
    data = raw if end < 0 else raw[:end]
    try:
        return data.decode("gbk")
    except UnicodeDecodeError:
        raise DecodeError(item, raw, "ans value is not valid GBK") from None


# --- b --------------------------------------------------------------------------------------


def _encode_b(item: Item, value: object) -> bytes:
    kind = item.kind
    if kind == "flag":
        if value is None:
            return b"\xff"
        if isinstance(value, bool):
            return b"\x01" if value else b"\x00"
        raise EncodeError(item, value, "T/F flag needs True, False or None")
    if kind == "index_flag":
        if isinstance(value, bool):
            return b"\x00" if value else b"\xff"
        raise EncodeError(item, value, "index flag needs True (valid) or False (invalid)")
    if kind == "code":
        if value is None:
            return b"\xff"
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFE:
            return bytes((value,))
        raise EncodeError(item, value, "b1 code needs an int 0..254 or None")
    if not isinstance(value, bytes | bytearray):
        raise EncodeError(item, value, f"b item needs bytes, not {type(value).__name__}")
    if kind == "photo":
        limit = item.length - _PHOTO_HEADER
        if len(value) > limit:
            raise EncodeError(item, value, f"photo has {len(value)} bytes, limit is {limit}")
        body = len(value).to_bytes(2, "big") + bytes(value)
        return body + bytes(item.length - len(body))
    if not value:
        return bytes(item.length)
    if len(value) != item.length:
        raise EncodeError(item, value, f"needs exactly {item.length} bytes, got {len(value)}")
    return bytes(value)


def _decode_b(item: Item, raw: bytes) -> Value:
    kind = item.kind
    if kind == "flag":
        flag = raw[0]
        if flag == 0xFF:
            return None
        if flag in (0, 1):
            return flag == 1
        raise DecodeError(item, raw, "T/F flag must be 00, 01 or FF")
    if kind == "index_flag":
        if raw[0] == 0x00:
            return True
        if raw[0] == 0xFF:
            return False
        raise DecodeError(item, raw, "index flag must be 00 (valid) or FF (invalid)")
    if kind == "code":
        return None if raw[0] == 0xFF else raw[0]
    if raw.count(0) == len(raw) or raw.count(0xFF) == len(raw):
        return b""
    return bytes(raw)


def _decode_photo(item: Item, raw: bytes) -> bytes:
    if len(raw) < _PHOTO_HEADER:
        raise DecodeError(item, raw, "photo file shorter than its 2-byte length")
    size = int.from_bytes(raw[:2], "big")
    if size in (0, 0xFFFF):
        return b""
    limit = item.length - _PHOTO_HEADER
    if size > limit:
        raise DecodeError(item, raw[:2], f"photo length {size} exceeds {limit}")
    if len(raw) < 2 + size:
        raise DecodeError(item, raw[:2], f"photo length {size} but only {len(raw) - 2} bytes")
    return bytes(raw[2 : 2 + size])


# --- items ----------------------------------------------------------------------------------


def encode_item(item: Item, value: object) -> bytes:
    """Encode a value to the item's fixed-length card bytes; raises EncodeError."""
    if item.fmt == "ans":
        return encode_ans(item, value)
    if item.fmt == "cn":
        return encode_cn(item, value)
    return _encode_b(item, value)


def decode_item(item: Item, raw: bytes) -> Value:
    """Decode the item's card bytes (exactly ``item.length``; the photo may be shorter)."""
    if type(raw) is not bytes:
        raw = bytes(raw)
    fmt = item.fmt
    if fmt == "b" and item.kind == "photo":  # (photo items are binary)
        if len(raw) > item.length:
            raise DecodeError(item, raw[:2], f"photo file longer than {item.length} bytes")
        return _decode_photo(item, raw)
    if len(raw) != item.length:
        raise DecodeError(item, raw, f"needs {item.length} bytes, got {len(raw)}")
    if fmt == "ans":
        return decode_ans(item, raw)
    if fmt == "cn":
        return decode_cn(item, raw)
    return _decode_b(item, raw)


def exact_decoder(item: Item) -> Callable[[Item, bytes], Value] | None:
    """What :func:`decode_item` calls for bytes of exactly ``item.length`` (None for the
    photo): the file decoders call it directly when the length is known to fit."""
    if item.fmt == "b" and item.kind == "photo":
        return None
    if item.fmt == "ans":
        return decode_ans
    if item.fmt == "cn":
        return decode_cn
    return _decode_b


def encode_tlv(item: Item, value: object) -> bytes:
    """Encode a TLV record ``tag | len | value`` with the full fixed length."""
    if item.tag is None:
        raise LayoutError(f"item {item.no} {item.code} is not stored as a TLV record")
    return bytes((item.tag, item.length)) + encode_item(item, value)


def decode_tlv(item: Item, raw: bytes) -> Value:
    """Decode a TLV record. A shorter length byte is accepted for ans/cn (padded as usual)."""
    if item.tag is None:
        raise LayoutError(f"item {item.no} {item.code} is not stored as a TLV record")
    raw = bytes(raw)
    if len(raw) < 2:
        raise DecodeError(item, raw, "TLV record shorter than tag and length")
    if raw[0] != item.tag:
        raise DecodeError(item, raw[:2], f"TLV tag {raw[0]:02X}, expected {item.tag:02X}")
    size = raw[1]
    if len(raw) != 2 + size:
        raise DecodeError(item, raw, f"TLV length byte {size} but {len(raw) - 2} value bytes")
    if size > item.length or (size < item.length and item.fmt == "b"):
        raise DecodeError(item, raw[:2], f"TLV length {size}, item length is {item.length}")
    value = raw[2:]
    if size < item.length:
        value += (b"\xff" if item.fmt == "cn" else b"\x00") * (item.length - size)
    return decode_item(item, value)


# --- national DLL string form ---------------------------------------------------------------


def to_dll_string(item: Item, value: object) -> str:
    """The national DLL's text form: ans as text, cn as digits, b as upper-case hex."""
    if item.fmt == "b":
        return encode_item(item, value).hex().upper()
    encode_item(item, value)  # validate
    return str(value)


def from_dll_string(item: Item, text: str) -> Value:
    """Inverse of :func:`to_dll_string`."""
    if item.fmt != "b":
        encode_item(item, text)
        return text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise EncodeError(item, text, "b item needs a hex string") from None
    if len(raw) != item.length:
        raise EncodeError(item, text, f"needs {item.length} bytes of hex, got {len(raw)}")
    try:
        return decode_item(item, raw)
    except DecodeError as exc:
        raise EncodeError(item, text, exc.reason) from None


# --- lenient decoding -------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeWarning:
    """Card bytes of one item that are out of spec, and the value shown for them instead.

    ``raw`` is what the card holds for the item (the whole TLV record for record items);
    ``context`` is the file path and ``record`` the record number when known.
    """

    item: Item
    raw: bytes
    value: Value
    reason: str
    context: str | None = None
    record: int | None = None

    @property
    def shown(self) -> str:
        """The value as shown (bytes as hex)."""
        if isinstance(self.value, bytes):
            return self.value.hex().upper()
        return repr(self.value)

    @property
    def message(self) -> str:
        where = f"{self.context}: " if self.context else ""
        return (f"{where}item {self.item.no} {self.item.code} ({self.item.name}): {self.reason}; "
                f"card bytes {self.raw.hex().upper() or '(none)'}, shown as {self.shown}")

    def __str__(self) -> str:
        return self.message


def _fit(item: Item, raw: bytes) -> bytes:
    """``raw`` cut or padded to the item's length (cn and one-byte flags/codes with FF, i.e.
    "not recorded"; others with 00)."""
    fill = b"\xff" if item.fmt == "cn" or item.kind in ("flag", "code", "index_flag") else b"\x00"
    return raw[: item.length] + fill * max(0, item.length - len(raw))


def _fallback(item: Item, raw: bytes) -> Value:
    """The value shown for bytes that do not decode (``raw`` has the item's length)."""
    if item.fmt == "cn":
        return raw.hex().upper().rstrip("F")
    if item.fmt == "ans":
        end = raw.find(0)
        return (raw if end < 0 else raw[:end]).decode("gbk", errors="replace")
    kind = item.kind
    if kind == "flag":
        return None
    if kind == "index_flag":
        return raw[:1] == b"\x00"
    if kind == "code":
        return None if not raw or raw[0] == 0xFF else raw[0]
    return bytes(raw)


def _photo_fallback(item: Item, raw: bytes) -> bytes:
    size = int.from_bytes(raw[:_PHOTO_HEADER], "big") if len(raw) >= _PHOTO_HEADER else 0
    if size in (0, 0xFFFF):
        return b""
    return bytes(raw[_PHOTO_HEADER : _PHOTO_HEADER + min(size, item.length - _PHOTO_HEADER)])


def decode_item_lenient(item: Item, raw: bytes) -> tuple[Value, DecodeWarning | None]:
    """:func:`decode_item`, but never raising: bytes out of spec give a best-effort value (cn:
    the nibbles as text up to the F padding; ans: GBK with U+FFFD for bad bytes; flags: None;
    index flags: valid only for 00; wrong lengths are cut or padded) and a warning."""
    raw = bytes(raw)
    try:
        return decode_item(item, raw), None
    except DecodeError as exc:
        reason = exc.reason
    if item.kind == "photo":
        value: Value = _photo_fallback(item, raw)
    else:
        fitted = _fit(item, raw)
        try:
            value = decode_item(item, fitted)
        except DecodeError:
            value = _fallback(item, fitted)
    return value, DecodeWarning(item, raw, value, reason)


def decode_tlv_lenient(item: Item, raw: bytes) -> tuple[Value, DecodeWarning | None]:
    """:func:`decode_tlv`, but never raising (see :func:`decode_item_lenient`): a wrong tag or
    length byte is reported and the value bytes that are there are decoded."""
    raw = bytes(raw)
    try:
        return decode_tlv(item, raw), None
    except DecodeError as exc:
        reason = exc.reason
    except LayoutError:
        raise
    body = raw[2 : 2 + raw[1]] if len(raw) >= 2 else b""
    value, _ = decode_item_lenient(item, _fit(item, body))
    return value, DecodeWarning(item, raw, value, reason)
