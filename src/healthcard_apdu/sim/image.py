"""The card image: everything a simulated card keeps in EEPROM, as JSON.

The image is the card: file tree, file contents, keys (values included), try counters,
life-cycle and block states. :func:`save_image` writes it atomically (temporary file in
the same directory, fsync, ``os.replace``, fsync of the directory), so a crash leaves
either the old or the new image, never a mix. Images hold test keys in clear: they are
simulator state, not a key store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.fileio import parse_json, write_file
from healthcard_apdu.sim.errors import ImageError
from healthcard_apdu.sim.fs import MAX_DF_DEPTH, MF_FID, Df, Ef, EfKind
from healthcard_apdu.sim.keys import TYPE_PIN, Key, KeyFile

FORMAT = "healthcard-sim-card/1"
PROTOCOLS = ("T=1", "T=0")
#: Default EEPROM capacity: 64 KiB (the national profile is a 32K card; leave headroom).
DEFAULT_CAPACITY = 64 * 1024
#: Name of the MF on a blank card (FMCOS example scripts use FF*5); perso may redefine it.
BLANK_MF_NAME = b"\xff" * 5
#: ATR historical-byte layouts (docs/cos.md §1): the card factor first and 5 bytes after it
#: (13 bytes, the shape of the real card family in public reader logs), or "HC" + the factor
#: (10 bytes, factor last: this simulator's shape before).
ATR_LAYOUTS = ("factor-first", "factor-last")
#: The 5 bytes after the factor in the factor-first layout: "HC", version 01, status 9000.
FACTOR_FIRST_TAIL = b"HC\x01\x90\x00"
FACTOR_LAST_PREFIX = b"HC"
_MAX_HISTORICAL = 15


def _fid_set(values: object, name: str, where: str) -> set[int]:
    if not isinstance(values, list):
        raise ImageError(f"{where}: quirks.{name} must be a list of hex numbers")
    out: set[int] = set()
    for value in values:
        try:
            number = int(value, 16) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ImageError(f"{where}: quirks.{name}: {value!r} is not a hex number") from None
        if not 0 <= number <= 0xFFFF:
            raise ImageError(f"{where}: quirks.{name}: {value!r} is out of range")
        out.add(number)
    return out


@dataclass
class Quirks:
    """Behaviours of real card families the simulator can imitate (docs/sim.md, docs/cos.md).

    * ``bare_select``: DF FIDs whose SELECT answers a bare ``9000`` (no FCI), e.g. 3F00;
    * ``fci_without_a5``: DF FIDs whose FCI has no ``A5`` template, e.g. DDF1;
    * ``record_le00``: READ RECORD with Le = 00 returns the whole record also under T=0
      (instead of ``6C xx``);
    * ``absent_external_keys`` / ``absent_internal_keys``: key references (P2) that EXTERNAL /
      INTERNAL AUTHENTICATE answer with ``6A88`` as if the card did not hold the key.
    """

    bare_select: set[int] = field(default_factory=set)
    fci_without_a5: set[int] = field(default_factory=set)
    record_le00: bool = False
    absent_external_keys: set[int] = field(default_factory=set)
    absent_internal_keys: set[int] = field(default_factory=set)

    _SETS: ClassVar[tuple[str, ...]] = (
        "bare_select", "fci_without_a5", "absent_external_keys", "absent_internal_keys"
    )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: [_hx(v, 2 if name.startswith("absent") else 4)
                   for v in sorted(getattr(self, name))]
            for name in self._SETS
            if getattr(self, name)
        }
        if self.record_le00:
            out["record_le00"] = True
        return out

    @classmethod
    def from_json(cls, obj: object, where: str) -> Quirks:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise ImageError(f"{where}: quirks must be an object")
        unknown = set(obj) - {*cls._SETS, "record_le00"}
        if unknown:
            raise ImageError(f"{where}: unknown quirks {sorted(unknown)}")
        quirks = cls(record_le00=bool(obj.get("record_le00", False)))
        for name in cls._SETS:
            if name in obj:
                setattr(quirks, name, _fid_set(obj[name], name, where))
        return quirks


@dataclass(eq=False)
class CardImage:
    """EEPROM contents of a simulated user card."""

    serial: bytes
    mf: Df
    protocol: str = "T=1"
    cipher16: BlockCipher = BlockCipher.SM4
    issued: bool = False
    card_blocked: bool = False
    capacity: int = DEFAULT_CAPACITY
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``factor-first`` (default) or ``factor-last``; ignored when ``historical`` is set.
    atr_layout: str = "factor-first"
    #: Explicit ATR historical bytes (0..15), or None for the ``atr_layout`` shape.
    historical: bytes | None = None
    quirks: Quirks = field(default_factory=Quirks)

    @classmethod
    def blank(
        cls,
        serial: bytes,
        *,
        protocol: str = "T=1",
        cipher16: BlockCipher = BlockCipher.SM4,
        capacity: int = DEFAULT_CAPACITY,
        atr_layout: str = "factor-first",
        historical: bytes | None = None,
        quirks: Quirks | None = None,
    ) -> CardImage:
        """A card straight from the chip factory: an empty MF, issuance state."""
        if len(serial) != 8:
            raise ImageError(f"card serial (card factor) must be 8 bytes, got {len(serial)}")
        if protocol not in PROTOCOLS:
            raise ImageError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        image = cls(bytes(serial), Df(MF_FID, BLANK_MF_NAME), protocol, cipher16, False,
                    False, capacity, atr_layout=atr_layout,
                    historical=None if historical is None else bytes(historical),
                    quirks=quirks or Quirks())
        image.check_atr("image")
        return image

    def check_atr(self, where: str) -> None:
        if self.atr_layout not in ATR_LAYOUTS:
            raise ImageError(f"{where}: atr_layout must be one of {ATR_LAYOUTS}, "
                             f"got {self.atr_layout!r}")
        if self.historical is not None and len(self.historical) > _MAX_HISTORICAL:
            raise ImageError(f"{where}: at most {_MAX_HISTORICAL} historical bytes, "
                             f"got {len(self.historical)}")

    def historical_bytes(self) -> bytes:
        """The ATR historical bytes: explicit, or the card factor (serial) in the layout."""
        if self.historical is not None:
            return self.historical
        if self.atr_layout == "factor-last":
            return FACTOR_LAST_PREFIX + self.serial
        return self.serial + FACTOR_FIRST_TAIL


# --- JSON codec --------------------------------------------------------------------------


def _hx(value: int, width: int = 2) -> str:
    return f"{value:0{width}X}"


def _key_to_json(key: Key) -> dict[str, Any]:
    return {
        "type": _hx(key.type_byte), "kid": _hx(key.kid), "use": _hx(key.use_ac),
        "change": _hx(key.change_ac), "b3": _hx(key.b3), "b4": _hx(key.b4),
        "value": key.value.hex().upper(),
    }


def _node_to_json(node: Df | Ef) -> dict[str, Any]:
    if isinstance(node, Ef):
        out: dict[str, Any] = {
            "kind": node.kind.name.lower(), "fid": _hx(node.fid, 4), "type": _hx(node.type_byte),
            "read": _hx(node.read_ac), "write": _hx(node.write_ac), "erase": _hx(node.erase_ac),
            "byte7": _hx(node.byte7),
        }
        if node.kind is EfKind.BINARY:
            out["size"] = node.size
            out["data"] = bytes(node.data).hex().upper()
        else:
            out.update(size=node.size, nrec=node.nrec, reclen=node.reclen,
                       records=[r.hex().upper() for r in node.records])
        return out
    df: dict[str, Any] = {
        "kind": "df", "fid": _hx(node.fid, 4), "name": node.name.hex().upper(),
        "size": node.size, "create": _hx(node.create_ac), "erase": _hx(node.erase_ac),
        "app_fid": _hx(node.app_fid), "reserved": node.reserved.hex().upper(),
        "blocked": node.blocked,
        "keyfile": None,
        "children": [_node_to_json(c) for c in node.children.values()],
    }
    if node.keyfile is not None:
        kf = node.keyfile
        df["keyfile"] = {
            "size": kf.size, "sfi": _hx(kf.sfi_byte), "add": _hx(kf.add_ac),
            "reserved": kf.reserved.hex().upper(), "keys": [_key_to_json(k) for k in kf.keys],
        }
    return df


def image_to_json(image: CardImage) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "serial": image.serial.hex().upper(),
        "protocol": image.protocol,
        "cipher16": image.cipher16.name,
        "issued": image.issued,
        "card_blocked": image.card_blocked,
        "capacity": image.capacity,
        "extra": image.extra,
        "atr_layout": image.atr_layout,
        "historical": None if image.historical is None else image.historical.hex().upper(),
        "quirks": image.quirks.to_json(),
        "mf": _node_to_json(image.mf),
    }


def encode_image(image: CardImage) -> bytes:
    return json.dumps(image_to_json(image), indent=1).encode()


#: Largest EEPROM an image may claim (16 MiB: far beyond any card, small enough to be sane).
MAX_CAPACITY = 16 * 1024 * 1024
_BYTE = (0, 0xFF)
_WORD = (0, 0xFFFF)


def _int(obj: dict[str, Any], name: str, where: str, bounds: tuple[int, int] = _BYTE) -> int:
    """A number field (hex text or JSON integer, never a boolean) within ``bounds``."""
    if name not in obj:
        raise ImageError(f"{where}: field {name!r} missing")
    value = obj[name]
    try:
        if isinstance(value, bool):
            raise TypeError
        number = int(value, 16) if isinstance(value, str) else value
        if not isinstance(number, int):
            raise TypeError
    except (ValueError, TypeError):
        raise ImageError(f"{where}: field {name!r} is not a number") from None
    lo, hi = bounds
    if not lo <= number <= hi:
        raise ImageError(f"{where}: field {name!r} is {number}, outside {lo}..{hi}")
    return number


def _flag(obj: dict[str, Any], name: str, where: str) -> bool:
    value = obj.get(name, False)
    if not isinstance(value, bool):
        raise ImageError(f"{where}: field {name!r} must be true or false")
    return value


def _bytes(obj: dict[str, Any], name: str, where: str, sizes: tuple[int, int] | None = None
           ) -> bytes:
    value = obj.get(name)
    try:
        if not isinstance(value, str):
            raise TypeError
        raw = bytes.fromhex(value)
    except (ValueError, TypeError):
        raise ImageError(f"{where}: field {name!r} missing or not hex") from None
    if sizes is not None and not sizes[0] <= len(raw) <= sizes[1]:
        span = str(sizes[0]) if sizes[0] == sizes[1] else f"{sizes[0]}..{sizes[1]}"
        raise ImageError(f"{where}: field {name!r} is {len(raw)} bytes, must be {span}")
    return raw


def _list(obj: dict[str, Any], name: str, where: str) -> list[Any]:
    value = obj.get(name, [])
    if not isinstance(value, list):
        raise ImageError(f"{where}: field {name!r} must be a list")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImageError(f"{where}: must be a JSON object")
    return value


def _key_from_json(obj: dict[str, Any], where: str) -> Key:
    obj = _object(obj, where)
    key = Key(_int(obj, "type", where), _int(obj, "kid", where), _int(obj, "use", where),
              _int(obj, "change", where), _int(obj, "b3", where), _int(obj, "b4", where),
              _bytes(obj, "value", where))
    where = f"{where} {key.type_byte:02X}/{key.kid:02X}"
    lengths = (2, 3, 4, 5, 6, 7, 8) if key.base == TYPE_PIN else (8, 16, 24)
    if len(key.value) not in lengths:  # the length only: never the value
        raise ImageError(f"{where}: a {len(key.value)}-byte key; this type takes "
                         f"{', '.join(map(str, lengths))} bytes")
    if key.has_counter and key.tries_left > key.max_tries:
        raise ImageError(f"{where}: error counter {key.b4:02X} has more tries left than its "
                         "maximum")
    return key


def _node_from_json(obj: dict[str, Any], where: str, depth: int = 1) -> Df | Ef:
    obj = _object(obj, where)
    kind = obj.get("kind")
    fid = _int(obj, "fid", where, _WORD)
    where = f"{where}/{fid:04X}"
    if kind == "df":
        if depth > MAX_DF_DEPTH:
            raise ImageError(f"{where}: DFs nest at most {MAX_DF_DEPTH} levels deep")
        df = Df(fid, _bytes(obj, "name", where, (1, 16)), _int(obj, "size", where, _WORD),
                _int(obj, "create", where), _int(obj, "erase", where),
                _int(obj, "app_fid", where), _bytes(obj, "reserved", where, (2, 2)),
                blocked=_int(obj, "blocked", where, (0, 2)))
        kf = obj.get("keyfile")
        if kf is not None:
            kf = _object(kf, f"{where}/keyfile")
            df.keyfile = KeyFile(
                _int(kf, "size", where, _WORD), _int(kf, "sfi", where), _int(kf, "add", where),
                _bytes(kf, "reserved", where, (2, 2)),
                [_key_from_json(k, f"{where}/key") for k in _list(kf, "keys", where)],
            )
        for child in _list(obj, "children", where):
            node = _node_from_json(child, where, depth + 1)
            if node.fid in df.children or node.fid == MF_FID:
                raise ImageError(f"{where}: file {node.fid:04X} appears twice")
            df.add(node)
        return df
    try:
        ef_kind = EfKind[str(kind).upper()]
    except KeyError:
        raise ImageError(f"{where}: unknown file kind {str(kind)[:20]!r}") from None
    ef = Ef(fid, ef_kind, _int(obj, "type", where), _int(obj, "read", where),
            _int(obj, "write", where), _int(obj, "erase", where), _int(obj, "byte7", where),
            _int(obj, "size", where, _WORD))
    if ef.type_byte & 0x3F != ef_kind.value:
        raise ImageError(f"{where}: type {ef.type_byte:02X} is not a {ef_kind.name.lower()} "
                         "file")
    if ef_kind is EfKind.BINARY:
        ef.data = bytearray(_bytes(obj, "data", where))
        if len(ef.data) != ef.size:
            raise ImageError(f"{where}: {len(ef.data)} data bytes for size {ef.size}")
        return ef
    ef.nrec, ef.reclen = _int(obj, "nrec", where), _int(obj, "reclen", where)
    try:
        ef.records = [bytes.fromhex(r) for r in _list(obj, "records", where)]
    except (ValueError, TypeError):
        raise ImageError(f"{where}: records are not hex") from None
    if ef_kind is EfKind.VARIABLE:
        if any(not 2 <= len(r) <= 0xFF for r in ef.records):
            raise ImageError(f"{where}: a TLV record is not 2..255 bytes")
    elif len(ef.records) > ef.nrec or any(len(r) != ef.reclen for r in ef.records):
        raise ImageError(f"{where}: records do not match nrec {ef.nrec} x reclen {ef.reclen}")
    return ef


def image_from_json(obj: dict[str, Any], where: str = "image") -> CardImage:
    """Parse and range-check a card image; any malformed part raises :class:`ImageError`
    naming the file path inside the image and the field (never a key value)."""
    try:
        return _image_from_json(obj, where)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # Not the exception text: it could quote image content (keys are stored in clear).
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else type(exc).__name__
        raise ImageError(f"{where}: malformed image ({detail})") from None


def _image_from_json(obj: dict[str, Any], where: str) -> CardImage:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ImageError(f"{where}: not a {FORMAT} image")
    protocol = obj.get("protocol", "T=1")
    if protocol not in PROTOCOLS:
        raise ImageError(f"{where}: protocol {str(protocol)[:20]!r} is not one of {PROTOCOLS}")
    cipher_name = obj.get("cipher16", "SM4")
    if cipher_name not in ("SM4", "TDES"):
        raise ImageError(f"{where}: unknown cipher16 {str(cipher_name)[:20]!r}")
    cipher16 = BlockCipher[cipher_name]
    serial = _bytes(obj, "serial", where, (8, 8))
    capacity = _int(obj, "capacity", where, (1, MAX_CAPACITY)) if "capacity" in obj \
        else DEFAULT_CAPACITY
    extra = obj.get("extra", {})
    if not isinstance(extra, dict):
        raise ImageError(f"{where}: field 'extra' must be an object")
    if "mf" not in obj:
        raise ImageError(f"{where}: missing field 'mf'")
    mf = _node_from_json(obj["mf"], f"{where}: mf")
    if not isinstance(mf, Df) or mf.fid != MF_FID:
        raise ImageError(f"{where}: root is not an MF (3F00)")
    historical = obj.get("historical")
    atr_layout = obj.get("atr_layout", "factor-first")
    if not isinstance(atr_layout, str):
        raise ImageError(f"{where}: field 'atr_layout' must be a string")
    image = CardImage(serial, mf, protocol, cipher16, _flag(obj, "issued", where),
                      _flag(obj, "card_blocked", where), capacity, dict(extra),
                      atr_layout=atr_layout[:40],
                      historical=None if historical is None
                      else _bytes(obj, "historical", where, (0, 15)),
                      quirks=Quirks.from_json(obj.get("quirks"), where))
    image.check_atr(where)
    return image


def decode_image(raw: bytes, where: str = "image") -> CardImage:
    """A card image from its JSON bytes; :class:`ImageError` for anything malformed."""
    try:
        obj = parse_json(raw)
    except ValueError as exc:
        raise ImageError(f"{where}: not JSON ({exc})") from None
    return image_from_json(obj, where)


def load_image(path: Path) -> CardImage:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read card image ({exc.strerror})") from exc
    return decode_image(raw, str(path))


def atomic_write(path: Path, raw: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``raw`` atomically, mode 0600 (the image holds keys in clear):
    :func:`healthcard_apdu.fileio.write_file`."""
    write_file(path, raw, durable=durable)


def save_image(image: CardImage, path: Path, *, durable: bool = True) -> bytes:
    """Write the image atomically; returns the bytes written."""
    raw = encode_image(image)
    atomic_write(path, raw, durable=durable)
    return raw
