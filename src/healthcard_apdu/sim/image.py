"""The card image: everything a simulated card keeps in EEPROM, as JSON.

The image is the card: file tree, file contents, keys (values included), try counters,
life-cycle and block states. :func:`save_image` writes it atomically (temporary file in
the same directory, fsync, ``os.replace``, fsync of the directory), so a crash leaves
either the old or the new image, never a mix. Images hold test keys in clear: they are
simulator state, not a key store.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.sim.errors import ImageError
from healthcard_apdu.sim.fs import MF_FID, Df, Ef, EfKind
from healthcard_apdu.sim.keys import Key, KeyFile

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


def _int(obj: dict[str, Any], name: str, where: str) -> int:
    try:
        value = obj[name]
        return int(value, 16) if isinstance(value, str) else int(value)
    except (KeyError, ValueError, TypeError) as exc:
        raise ImageError(f"{where}: field {name!r} missing or not a number") from exc


def _bytes(obj: dict[str, Any], name: str, where: str) -> bytes:
    try:
        return bytes.fromhex(obj[name])
    except (KeyError, ValueError, TypeError) as exc:
        raise ImageError(f"{where}: field {name!r} missing or not hex") from exc


def _key_from_json(obj: dict[str, Any], where: str) -> Key:
    return Key(_int(obj, "type", where), _int(obj, "kid", where), _int(obj, "use", where),
               _int(obj, "change", where), _int(obj, "b3", where), _int(obj, "b4", where),
               _bytes(obj, "value", where))


def _node_from_json(obj: dict[str, Any], where: str) -> Df | Ef:
    kind = obj.get("kind")
    fid = _int(obj, "fid", where)
    where = f"{where}/{fid:04X}"
    if kind == "df":
        df = Df(fid, _bytes(obj, "name", where), _int(obj, "size", where),
                _int(obj, "create", where), _int(obj, "erase", where),
                _int(obj, "app_fid", where), _bytes(obj, "reserved", where),
                blocked=_int(obj, "blocked", where))
        kf = obj.get("keyfile")
        if kf is not None:
            df.keyfile = KeyFile(
                _int(kf, "size", where), _int(kf, "sfi", where), _int(kf, "add", where),
                _bytes(kf, "reserved", where),
                [_key_from_json(k, f"{where}/key") for k in kf.get("keys", [])],
            )
        for child in obj.get("children", []):
            df.add(_node_from_json(child, where))
        return df
    try:
        ef_kind = EfKind[str(kind).upper()]
    except KeyError as exc:
        raise ImageError(f"{where}: unknown file kind {kind!r}") from exc
    ef = Ef(fid, ef_kind, _int(obj, "type", where), _int(obj, "read", where),
            _int(obj, "write", where), _int(obj, "erase", where), _int(obj, "byte7", where),
            _int(obj, "size", where))
    if ef_kind is EfKind.BINARY:
        ef.data = bytearray(_bytes(obj, "data", where))
        if len(ef.data) != ef.size:
            raise ImageError(f"{where}: {len(ef.data)} data bytes for size {ef.size}")
    else:
        ef.nrec, ef.reclen = _int(obj, "nrec", where), _int(obj, "reclen", where)
        try:
            ef.records = [bytes.fromhex(r) for r in obj.get("records", [])]
        except (ValueError, TypeError) as exc:
            raise ImageError(f"{where}: records are not hex") from exc
    return ef


def image_from_json(obj: dict[str, Any], where: str = "image") -> CardImage:
    """Parse a card image; any malformed part raises :class:`ImageError`."""
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
        raise ImageError(f"{where}: protocol {protocol!r} is not one of {PROTOCOLS}")
    try:
        cipher16 = BlockCipher[obj.get("cipher16", "SM4")]
    except KeyError as exc:
        raise ImageError(f"{where}: unknown cipher16 {obj.get('cipher16')!r}") from exc
    serial = _bytes(obj, "serial", where)
    if len(serial) != 8:
        raise ImageError(f"{where}: serial must be 8 bytes, got {len(serial)}")
    mf = _node_from_json(obj["mf"], where)
    if not isinstance(mf, Df) or mf.fid != MF_FID:
        raise ImageError(f"{where}: root is not an MF (3F00)")
    historical = obj.get("historical")
    image = CardImage(serial, mf, protocol, cipher16, bool(obj.get("issued", False)),
                      bool(obj.get("card_blocked", False)),
                      int(obj.get("capacity", DEFAULT_CAPACITY)), dict(obj.get("extra", {})),
                      atr_layout=str(obj.get("atr_layout", "factor-first")),
                      historical=None if historical is None else _bytes(obj, "historical", where),
                      quirks=Quirks.from_json(obj.get("quirks"), where))
    image.check_atr(where)
    return image


def decode_image(raw: bytes, where: str = "image") -> CardImage:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{where}: not JSON ({exc})") from exc
    return image_from_json(obj, where)


def load_image(path: Path) -> CardImage:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read card image ({exc.strerror})") from exc
    return decode_image(raw, str(path))


def atomic_write(path: Path, raw: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``raw`` atomically (temp file + fsync + os.replace)."""
    path = Path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_image(image: CardImage, path: Path, *, durable: bool = True) -> bytes:
    """Write the image atomically; returns the bytes written."""
    raw = encode_image(image)
    atomic_write(path, raw, durable=durable)
    return raw
