"""Issuance profiles: which DFs, EFs and keys to create, with which rights, and how to end.

A profile is a TOML file (format ``healthcard-apdu/profile``, docs/profiles.md) that refers to
the model's layout for structures and sizes and adds what the layout does not say: FMCOS file
types and access bytes, key files, key types, counters and follow-up states, and the end state.
:func:`load_profile` checks everything and reports **all** problems at once, each with its path
in the profile (``files.DF02/EF07.write``); :func:`check_record` does the same for a resident
record against a profile (``record.DF01EF06.LXRXM1``). Nothing here touches a card.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from healthcard_apdu import model
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import CardData, ModelError
from healthcard_apdu.perso.errors import Problem, ProfileError
from healthcard_apdu.security import STANDARD_KEY_SPECS, KeySpec, city_factor_from_region
from healthcard_apdu.security.errors import SecurityModuleError

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_PROFILE",
    "FORMAT",
    "CardSettings",
    "DfProfile",
    "FileProfile",
    "KeyFileProfile",
    "KeyProfile",
    "Profile",
    "access_granted_by",
    "builtin_profile_path",
    "check_record",
    "city_factor_of",
    "load_profile",
    "parse_profile",
    "resident_from",
]

FORMAT = "healthcard-apdu/profile"
FORMAT_VERSION = 1
DEFAULT_PROFILE = "national-32k"
BUILTIN_PROFILES = ("national-32k", "compact-8k")

KeyType = Literal["external", "line", "internal"]
AuthForm = Literal["health", "fmcos"]

#: FMCOS key type byte of each key kind (docs/cos.md §4).
KEY_TYPE_BYTES: dict[str, int] = {"external": 0x39, "line": 0x36, "internal": 0x34}
#: FMCOS CREATE FILE type (low six bits) of each layout structure (docs/cos.md §2).
STRUCTURE_TYPES: dict[str, int] = {
    "transparent": 0x28,
    "linear_fixed": 0x2A,
    "tlv_records": 0x2C,
    "cyclic": 0x2E,
}
#: EEPROM accounting of the COS (docs/cos.md §2): header bytes per file.
FILE_HEADER = 8
SAME_AS_WRITE = 0xFF
_LEVELS = {"card": 1, "card+city": 2}
_LEVEL_NAMES = {1: "card", 2: "card+city"}


# --- the profile as frozen dataclasses ------------------------------------------------------


@dataclass(frozen=True)
class CardSettings:
    """What the card offers: EEPROM capacity and APDU limits.

    ``binary_fill`` is the content of a freshly created binary EF (None: unknown, so every
    byte is written); ``key_entry_overhead`` is what a key costs in its key file beyond its
    value (docs/cos.md: Lc + 1 = 5 header bytes + value + 1).
    """

    capacity: int
    max_command_data: int = 255
    max_response: int = 256
    binary_fill: int | None = 0x00
    key_entry_overhead: int = 6


@dataclass(frozen=True)
class KeyFileProfile:
    size: int
    sfi: int
    add: int


@dataclass(frozen=True)
class DfProfile:
    """A DF to create: the model's DF plus the FMCOS attributes."""

    name: str
    fid: int
    parent: str | None
    df_name: bytes
    size: int
    create: int
    erase: int
    fci: int
    key_file: KeyFileProfile
    reserved: bytes = b"\xff\xff"

    @property
    def is_mf(self) -> bool:
        return self.parent is None

    def create_data(self) -> bytes:
        """CREATE FILE data: ``38 size create erase app-FID FF FF name``."""
        return (
            bytes((0x38,))
            + self.size.to_bytes(2, "big")
            + bytes((self.create, self.erase, self.fci))
            + self.reserved
            + self.df_name
        )

    def key_file_data(self) -> bytes:
        """CREATE FILE data of the key file: ``3F size SFI add FF FF``."""
        kf = self.key_file
        return bytes((0x3F,)) + kf.size.to_bytes(2, "big") + bytes((kf.sfi, kf.add, 0xFF, 0xFF))

    def expected_fci(self) -> bytes:
        """The FCI a SELECT returns (docs/cos.md: A5 00 unless app-FID is FF)."""
        body = b"\x84" + bytes((len(self.df_name),)) + self.df_name
        if self.fci != 0xFF:
            body += b"\xa5\x00"
        return b"\x6f" + bytes((len(body),)) + body

    @property
    def space(self) -> int:
        """EEPROM bytes of the DF itself and its key file (not its children)."""
        return 2 * FILE_HEADER + len(self.df_name) + FILE_HEADER + self.key_file.size


@dataclass(frozen=True)
class FileProfile:
    """An EF to create: the model's EF plus FMCOS type, access bytes and size."""

    path: str
    df: str
    fid: int
    ef: model.EF
    type_byte: int
    read: int
    write: int
    erase: int = SAME_AS_WRITE
    byte7: int = 0xFF
    size: int = 0
    nrec: int = 0
    reclen: int = 0

    @property
    def structure(self) -> str:
        return self.ef.structure

    @property
    def sfi(self) -> int:
        return self.fid & 0x1F

    @property
    def is_record(self) -> bool:
        return self.structure != "transparent"

    @property
    def code(self) -> str:
        """Compact name as used in record paths (``DF01EF06``)."""
        return self.path.replace("/", "")

    def create_data(self) -> bytes:
        """CREATE FILE data: ``type size(2)|nrec reclen read write erase BYTE7``."""
        if self.structure in ("linear_fixed", "cyclic"):
            dims = bytes((self.nrec, self.reclen))
        else:
            dims = self.size.to_bytes(2, "big")
        return (
            bytes((self.type_byte,))
            + dims
            + bytes((self.read, self.write, self.erase, self.byte7))
        )

    @property
    def space(self) -> int:
        if self.structure in ("linear_fixed", "cyclic"):
            return self.nrec * (self.reclen + 1) + FILE_HEADER
        return self.size + FILE_HEADER

    @property
    def effective_erase(self) -> int:
        return self.write if self.erase == SAME_AS_WRITE else self.erase


@dataclass(frozen=True)
class KeyProfile:
    """One key of the card: where it lives, its FMCOS header and how it is diversified."""

    role: str
    df: str
    type: KeyType
    kid: int
    ref: int
    use: int
    change: int
    b3: int
    b4: int
    levels: int
    version: int
    sam_p1: int
    sam_p2: int
    auth: AuthForm = "health"
    protected: bool = False

    @property
    def type_byte(self) -> int:
        return KEY_TYPE_BYTES[self.type] | (0xC0 if self.protected else 0)

    @property
    def follow_up(self) -> int | None:
        """State loaded into the SSR on success (external keys only)."""
        return self.b3 & 0x0F if self.type == "external" else None

    @property
    def spec(self) -> KeySpec:
        return KeySpec(self.role, self.sam_p1, self.sam_p2, self.levels, self.version)

    def header(self) -> bytes:
        """WRITE KEY header: ``type use change b3 b4``."""
        return bytes((self.type_byte, self.use, self.change, self.b3, self.b4))


@dataclass(frozen=True)
class Profile:
    """A validated issuance profile."""

    name: str
    description: str
    production: bool
    card: CardSettings
    algorithm: BlockCipher
    dfs: tuple[DfProfile, ...]
    files: tuple[FileProfile, ...]
    keys: tuple[KeyProfile, ...]
    end_issuance: bool
    source: str = ""
    _by_path: dict[str, FileProfile] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_path.update({f.path: f for f in self.files})

    def df(self, name: str) -> DfProfile:
        for d in self.dfs:
            if d.name == name:
                return d
        raise KeyError(f"profile {self.name} has no DF {name!r}")

    def file(self, path: str) -> FileProfile | None:
        return self._by_path.get(path)

    def files_in(self, df: str) -> tuple[FileProfile, ...]:
        return tuple(f for f in self.files if f.df == df)

    def keys_in(self, df: str) -> tuple[KeyProfile, ...]:
        return tuple(k for k in self.keys if k.df == df)

    def key(self, role: str) -> KeyProfile:
        for k in self.keys:
            if k.role == role:
                return k
        raise KeyError(f"profile {self.name} has no key {role!r}")

    def master_key(self, df: str) -> KeyProfile | None:
        """The DF master key: external authentication key with KID 00."""
        return next((k for k in self.keys_in(df) if k.type == "external" and k.kid == 0), None)

    @property
    def needs_city_factor(self) -> bool:
        return any(k.levels == 2 for k in self.keys)

    @property
    def space(self) -> int:
        """EEPROM bytes the whole file system takes (docs/cos.md accounting)."""
        return sum(d.space for d in self.dfs) + sum(f.space for f in self.files)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "production": self.production,
            "algorithm": "sm4" if self.algorithm is BlockCipher.SM4 else "3des",
            "dfs": [d.name for d in self.dfs],
            "files": len(self.files),
            "keys": len(self.keys),
            "end_issuance": self.end_issuance,
            "space": self.space,
            "capacity": self.card.capacity,
        }


# --- access rules ---------------------------------------------------------------------------


def access_kind(ac: int) -> str:
    """``free``, ``never``, ``mf`` (0Y: MF state >= Y) or ``df`` (Y <= state <= X)."""
    x, y = ac >> 4, ac & 0x0F
    if x == 0:
        return "free" if y == 0 else "mf"
    if x < y:
        return "never"
    if y == 0 and x == 0x0F:
        return "free"
    return "df"


def access_ok(ac: int, state: int, mf_state: int = 0) -> bool:
    """FMCOS access byte evaluation (docs/reference/cos-crypto.md §2.1)."""
    x, y = ac >> 4, ac & 0x0F
    if x == 0:
        return mf_state >= y
    if x < y:
        return False
    return y <= state <= x


def access_granted_by(ac: int, key: KeyProfile) -> bool:
    """Does a successful authentication with ``key`` (in the right DF) meet ``ac``?"""
    if key.follow_up is None:
        return False
    kind = access_kind(ac)
    if kind == "free":
        return True
    if kind == "never":
        return False
    if kind == "mf":
        return key.df == "MF" and access_ok(ac, 0, key.follow_up)
    return access_ok(ac, key.follow_up, 0)


# --- loading --------------------------------------------------------------------------------


def builtin_profile_path(name: str) -> Path:
    """Path of a profile shipped with the package (``national-32k``, ``compact-8k``)."""
    ref = resources.files(__package__).joinpath("profiles", f"{name}.toml")
    return Path(str(ref))


def load_profile(source: str | Path) -> Profile:
    """Load a profile by built-in name or file path; raises :class:`ProfileError` listing
    every problem."""
    text_source = str(source)
    path = Path(source)
    if not path.exists() and isinstance(source, str) and source in BUILTIN_PROFILES:
        path = builtin_profile_path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        known = ", ".join(BUILTIN_PROFILES)
        raise ProfileError(
            text_source,
            [Problem("profile", f"cannot read ({exc.strerror}); built-in profiles: {known}")],
        ) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(text_source, [Problem("profile", f"not valid TOML: {exc}")]) from None
    return parse_profile(document, str(path))


class _Collector:
    """Collects problems while reading a TOML document."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def table(self, obj: object, path: str, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(obj, dict):
            self.add(path, f"must be a table, got {type(obj).__name__}")
            return {}
        for key in obj:
            if key not in allowed:
                self.add(f"{path}.{key}", f"unknown field (allowed: {', '.join(allowed)})")
        return obj

    def byte(self, obj: Mapping[str, Any], key: str, path: str, default: int | None = None) -> int:
        value = obj.get(key, default)
        if value is None:
            self.add(f"{path}.{key}", "missing")
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
            self.add(f"{path}.{key}", f"must be a byte 0x00..0xFF, got {value!r}")
            return 0
        return value

    def integer(
        self, obj: Mapping[str, Any], key: str, path: str, lo: int, hi: int,
        default: int | None = None,
    ) -> int:
        value = obj.get(key, default)
        if value is None:
            self.add(f"{path}.{key}", "missing")
            return lo
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.add(f"{path}.{key}", f"must be an integer {lo}..{hi}, got {value!r}")
            return lo
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{path}.{key}", f"must be true or false, got {value!r}")
            return default
        return value

    def text(self, obj: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        value = obj.get(key, default)
        if not isinstance(value, str):
            shown = "missing" if value is None else f"must be text, got {value!r}"
            self.add(f"{path}.{key}", shown)
            return ""
        return value

    def choice(
        self, obj: Mapping[str, Any], key: str, path: str, options: Sequence[str],
        default: str | None = None,
    ) -> str:
        value = obj.get(key, default)
        if value not in options:
            shown = "missing" if value is None else repr(value)
            self.add(f"{path}.{key}", f"must be one of {', '.join(options)}; got {shown}")
            return options[0]
        return str(value)

    def entries(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = obj.get(key)
        if not isinstance(value, list):
            self.add(f"{path}.{key}" if path else key, "missing or not a list")
            return []
        return value


_TOP = ("format", "version", "name", "description", "production", "card", "end_state", "dfs",
        "filesystem", "keys")
_CARD = ("capacity", "max_command_data", "max_response", "binary_fill", "key_entry_overhead")
_DF = ("name", "df_name", "size", "create", "erase", "fci", "key_file")
_KEY_FILE = ("size", "sfi", "add")
_FILE = ("path", "type", "read", "write", "erase", "byte7", "size")
_KEYS = ("algorithm", "version", "defaults", "entries")
_KEY_DEFAULTS = ("use", "change", "counter")
_KEY = ("role", "df", "type", "kid", "use", "change", "follow_up", "counter", "levels",
        "version", "auth", "protected", "algorithm_id", "sam_p1", "sam_p2")


def parse_profile(document: Mapping[str, Any], source: str = "profile") -> Profile:
    """Build and validate a profile from a parsed TOML document (all problems at once)."""
    c = _Collector()
    top = c.table(document, "profile", _TOP)
    if top.get("format") != FORMAT:
        c.add("format", f"must be {FORMAT!r}, got {top.get('format')!r}")
    if top.get("version") != FORMAT_VERSION:
        c.add("version", f"must be {FORMAT_VERSION}, got {top.get('version')!r}")
    name = c.text(top, "name", "profile")
    description = c.text(top, "description", "profile", "")
    production = c.boolean(top, "production", "profile", False)

    card_t = c.table(top.get("card", {}), "card", _CARD)
    fill = card_t.get("binary_fill", 0)
    if fill == -1:
        binary_fill: int | None = None
    else:
        binary_fill = c.byte(card_t, "binary_fill", "card", 0)
    card = CardSettings(
        capacity=c.integer(card_t, "capacity", "card", 1024, 1 << 20),
        max_command_data=c.integer(card_t, "max_command_data", "card", 16, 255, 255),
        max_response=c.integer(card_t, "max_response", "card", 16, 256, 256),
        binary_fill=binary_fill,
        key_entry_overhead=c.integer(card_t, "key_entry_overhead", "card", 0, 64, 6),
    )
    end_t = c.table(top.get("end_state", {}), "end_state", ("end_issuance",))
    end_issuance = c.boolean(end_t, "end_issuance", "end_state", True)

    keys_t = c.table(top.get("keys", {}), "keys", _KEYS)
    algorithm_name = c.choice(keys_t, "algorithm", "keys", ("sm4", "3des"), "sm4")
    algorithm = BlockCipher.SM4 if algorithm_name == "sm4" else BlockCipher.TDES
    key_version = c.integer(keys_t, "version", "keys", 0, 7, 1)
    defaults = c.table(keys_t.get("defaults", {}), "keys.defaults", _KEY_DEFAULTS)

    dfs = _parse_dfs(c, top)
    df_names = {d.name for d in dfs}
    files = _parse_files(c, top.get("filesystem", {}), df_names)
    keys = _parse_keys(c, keys_t, defaults, key_version, df_names)

    _check_dfs(c, dfs, files, keys, card)
    _check_files(c, files, keys)
    _check_keys(c, dfs, keys, card)
    if c.problems:
        raise ProfileError(source, c.problems)
    return Profile(name, description, production, card, algorithm, tuple(dfs), tuple(files),
                   tuple(keys), end_issuance, source)


def _parse_dfs(c: _Collector, top: Mapping[str, Any]) -> list[DfProfile]:
    out: list[DfProfile] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(c.entries(top, "dfs", "")):
        obj = c.table(raw, f"dfs[{index}]", _DF)
        name = obj.get("name")
        path = f"dfs.{name}" if isinstance(name, str) else f"dfs[{index}]"
        try:
            layout_df = model.df(str(name))
        except ModelError:
            known = ", ".join(d.name for d in model.DFS)
            c.add(path, f"unknown DF {name!r} (layout DFs: {known})")
            continue
        if layout_df.name in seen:
            c.add(path, f"duplicate DF (also entry {seen[layout_df.name]})")
            continue
        seen[layout_df.name] = index
        df_name = layout_df.df_name
        if "df_name" in obj:
            try:
                df_name = bytes.fromhex(str(obj["df_name"]))
            except ValueError:
                c.add(f"{path}.df_name", f"must be hex, got {obj['df_name']!r}")
            if not 5 <= len(df_name) <= 16:
                c.add(f"{path}.df_name", f"must be 5..16 bytes, got {len(df_name)}")
        kf = c.table(obj.get("key_file", {}), f"{path}.key_file", _KEY_FILE)
        out.append(
            DfProfile(
                name=layout_df.name,
                fid=layout_df.fid,
                parent=layout_df.parent,
                df_name=df_name,
                size=c.integer(obj, "size", path, 0x0100, 0xFFFF),
                create=c.byte(obj, "create", path),
                erase=c.byte(obj, "erase", path),
                fci=c.byte(obj, "fci", path, 0xFF),
                key_file=KeyFileProfile(
                    size=c.integer(kf, "size", f"{path}.key_file", 1, 0xFFFF),
                    sfi=c.byte(kf, "sfi", f"{path}.key_file"),
                    add=c.byte(kf, "add", f"{path}.key_file"),
                ),
            )
        )
    if not any(d.name == "MF" for d in out):
        c.add("dfs", "the MF is missing (every profile starts with the MF)")
    names = {d.name for d in out}
    for d in out:
        if d.parent is not None and d.parent not in names:
            c.add(f"dfs.{d.name}", f"its parent {d.parent} is not in the profile")
    order = {d.name: i for i, d in enumerate(out)}
    for d in out:
        if d.parent is not None and d.parent in order and order[d.parent] > order[d.name]:
            c.add(f"dfs.{d.name}", f"must come after its parent {d.parent}")
    return out


def _parse_files(c: _Collector, fs: object, df_names: set[str]) -> list[FileProfile]:
    fs_t = c.table(fs, "filesystem", ("files",))
    out: list[FileProfile] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(c.entries(fs_t, "files", "filesystem")):
        obj = c.table(raw, f"files[{index}]", _FILE)
        path_value = obj.get("path")
        path = f"files.{path_value}" if isinstance(path_value, str) else f"files[{index}]"
        try:
            layout_ef = model.ef(str(path_value))
        except ModelError:
            c.add(path, f"unknown file {path_value!r} (not in the layout)")
            continue
        if layout_ef.path != path_value:
            c.add(path, f"write the path as {layout_ef.path!r}")
            continue
        fid_key = layout_ef.path
        if fid_key in seen:
            c.add(path, f"duplicate FID {layout_ef.fid:04X} in {layout_ef.df} "
                        f"(entries {seen[fid_key]} and {index})")
            continue
        seen[fid_key] = index
        if layout_ef.df not in df_names:
            c.add(path, f"its DF {layout_ef.df} is not in the profile")
        type_byte = c.byte(obj, "type", path)
        expected = STRUCTURE_TYPES[layout_ef.structure]
        if type_byte & 0x3F != expected:
            c.add(f"{path}.type", f"0x{type_byte:02X} does not create a {layout_ef.structure} "
                                  f"file (type 0x{expected:02X}, optionally | 0x80 / 0x40)")
        size = nrec = reclen = 0
        if layout_ef.structure == "tlv_records":
            needed = sum(i.tlv_length for i in layout_ef.items)
            size = c.integer(obj, "size", path, 1, 0xFFFF, needed)
            if size < needed:
                c.add(f"{path}.size", f"{size} bytes do not hold the layout's records "
                                      f"({needed} bytes)")
        elif layout_ef.structure == "transparent":
            size = c.integer(obj, "size", path, 1, 0x7FFF, layout_ef.size or 1)
            if layout_ef.size is not None and size > layout_ef.size:
                c.add(f"{path}.size", f"{size} is larger than the layout's {layout_ef.size}")
        else:
            if "size" in obj:
                c.add(f"{path}.size", "record counts and lengths come from the layout")
            nrec = layout_ef.record_count or 0
            reclen = layout_ef.record_length or 0
        out.append(
            FileProfile(
                path=layout_ef.path,
                df=layout_ef.df,
                fid=layout_ef.fid,
                ef=layout_ef,
                type_byte=type_byte,
                read=c.byte(obj, "read", path),
                write=c.byte(obj, "write", path),
                erase=c.byte(obj, "erase", path, SAME_AS_WRITE),
                byte7=c.byte(obj, "byte7", path, 0xFF),
                size=size,
                nrec=nrec,
                reclen=reclen,
            )
        )
    return out


def _parse_keys(
    c: _Collector,
    keys_t: Mapping[str, Any],
    defaults: Mapping[str, Any],
    key_version: int,
    df_names: set[str],
) -> list[KeyProfile]:
    out: list[KeyProfile] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(c.entries(keys_t, "entries", "keys")):
        obj = c.table(raw, f"keys[{index}]", _KEY)
        role = obj.get("role")
        path = f"keys.{role}" if isinstance(role, str) else f"keys[{index}]"
        if not isinstance(role, str) or not role:
            c.add(path, "role missing")
            continue
        if role in seen:
            c.add(path, f"duplicate key role (entries {seen[role]} and {index})")
            continue
        seen[role] = index
        df = c.text(obj, "df", path)
        if df and df not in df_names:
            c.add(f"{path}.df", f"DF {df} is not in the profile")
        ktype = c.choice(obj, "type", path, ("external", "line", "internal"))
        layout_key = _layout_key(role)
        default_kid = layout_key.card_key_ref & 0x7F if layout_key is not None else None
        kid = c.byte(obj, "kid", path, default_kid)
        ref = layout_key.card_key_ref if layout_key is not None else kid
        if layout_key is not None and kid != layout_key.card_key_ref & 0x7F:
            c.add(f"{path}.kid", f"0x{kid:02X}, but the user card addresses {role} with "
                                 f"reference {layout_key.card_key_ref:02X} "
                                 f"(KID {layout_key.card_key_ref & 0x7F:02X})")
        if layout_key is not None and df and layout_key.df != df:
            c.add(f"{path}.df", f"{df}, but the layout puts {role} in {layout_key.df}")
        use = c.byte(obj, "use", path, defaults.get("use", 0xF0))
        change = c.byte(obj, "change", path, defaults.get("change", 0xAA))
        version = c.integer(obj, "version", path, 0, 7, key_version)
        if ktype == "external":
            b3 = c.byte(obj, "follow_up", path)
            b4 = c.byte(obj, "counter", path, defaults.get("counter", 0x33))
        elif ktype == "line":
            b3 = 0xFF
            b4 = c.byte(obj, "counter", path, defaults.get("counter", 0x33))
        else:
            b3 = version
            b4 = c.byte(obj, "algorithm_id", path, 0x00)
        if ktype != "external" and "follow_up" in obj:
            c.add(f"{path}.follow_up", f"only external keys have a follow-up state ({ktype})")
        if ktype in ("external", "line"):
            _check_counter(c, f"{path}.counter", b4)
        levels_name = c.choice(obj, "levels", path, tuple(_LEVELS))
        levels = _LEVELS[levels_name]
        spec = STANDARD_KEY_SPECS.get(role)
        sam_p1 = c.byte(obj, "sam_p1", path, spec.sam_p1 if spec else None)
        default_p2 = None
        if spec is not None:
            bare = not spec.sam_p2 & 0xE0  # STK: traced without version bits
            default_p2 = spec.sam_p2 if bare else (spec.sam_p2 & 0x1F) | (version << 5)
        sam_p2 = c.byte(obj, "sam_p2", path, default_p2)
        expected_levels = spec.levels if spec is not None else None
        if layout_key is not None:
            expected_levels = 2 if layout_key.uses_city_factor else 1
        if expected_levels is not None and expected_levels != levels:
            c.add(f"{path}.levels", f"{levels_name}, but {role} is diversified with "
                                    f"{_LEVEL_NAMES[expected_levels]} (SAM key map)")
        auth = c.choice(obj, "auth", path, ("health", "fmcos"), "health")
        if auth == "fmcos" and ktype != "external":
            c.add(f"{path}.auth", "only external keys authenticate")
        out.append(
            KeyProfile(
                role=role, df=df, type=ktype,  # type: ignore[arg-type]
                kid=kid, ref=ref, use=use, change=change, b3=b3, b4=b4, levels=levels,
                version=version, sam_p1=sam_p1, sam_p2=sam_p2,
                auth=auth,  # type: ignore[arg-type]
                protected=c.boolean(obj, "protected", path, False),
            )
        )
    return out


def _layout_key(role: str) -> model.Key | None:
    try:
        return model.key(role)
    except ModelError:
        return None


def _check_counter(c: _Collector, path: str, counter: int) -> None:
    most, left = counter >> 4, counter & 0x0F
    if most == 0 or left != most:
        c.add(path, f"0x{counter:02X}: an error counter XY needs X = Y = the number of tries "
                    "(1..F), e.g. 0x33")


def _check_dfs(
    c: _Collector,
    dfs: Sequence[DfProfile],
    files: Sequence[FileProfile],
    keys: Sequence[KeyProfile],
    card: CardSettings,
) -> None:
    for d in dfs:
        path = f"dfs.{d.name}"
        if not access_ok(d.create, 0, 0):
            c.add(f"{path}.create", f"0x{d.create:02X} needs an authentication; issuance "
                                    "creates files without one (use 0xF0)")
        if not access_ok(d.key_file.add, 0, 0):
            c.add(f"{path}.key_file.add", f"0x{d.key_file.add:02X} needs an authentication; "
                                          "issuance adds keys without one (use 0xF0)")
        erase_kind = access_kind(d.erase)
        if erase_kind in ("df", "mf") and not any(
            k.df == d.name and access_granted_by(d.erase, k) for k in keys
        ):
            c.add(f"{path}.erase", f"0x{d.erase:02X}: no key of {d.name} meets this right "
                                   "(missing master key?)")
        own_keys = [k for k in keys if k.df == d.name]
        needed = sum(card.key_entry_overhead + 16 for _ in own_keys)
        if needed > d.key_file.size:
            c.add(f"{path}.key_file.size", f"{d.key_file.size} bytes do not hold its "
                                           f"{len(own_keys)} keys ({needed} bytes)")
        if not d.is_mf:
            content = d.space + sum(f.space for f in files if f.df == d.name)
            content += sum(child.space + sum(f.space for f in files if f.df == child.name)
                           for child in dfs if child.parent == d.name)
            if content > d.size:
                c.add(f"{path}.size", f"0x{d.size:04X} ({d.size}) bytes do not hold its files "
                                      f"and keys ({content} bytes)")
        siblings = {f.fid: f.path for f in files if f.df == d.name}
        for child in dfs:
            if child.parent == d.name and child.fid in siblings:
                c.add(f"dfs.{child.name}", f"FID {child.fid:04X} is also used by "
                                           f"{siblings[child.fid]}")
    total = sum(d.space for d in dfs) + sum(f.space for f in files)
    if total > card.capacity:
        c.add("card.capacity", f"{card.capacity} bytes do not hold the file system "
                               f"({total} bytes)")


def _check_files(c: _Collector, files: Sequence[FileProfile], keys: Sequence[KeyProfile]) -> None:
    by_role = {k.role: k for k in keys}
    for f in files:
        path = f"files.{f.path}"
        ef = f.ef
        _check_rule(c, f"{path}.read", f, f.read, ef.read_key, by_role, keys, "read")
        _check_rule(c, f"{path}.write", f, f.write, ef.write_key, by_role, keys, "write")
        if f.erase != SAME_AS_WRITE or ef.erase_key is not None:
            if f.erase == SAME_AS_WRITE and ef.erase_key not in (None, ef.write_key):
                c.add(f"{path}.erase", f"0xFF (same as write), but the layout erases with "
                                       f"{ef.erase_key}")
            elif f.erase != SAME_AS_WRITE:
                _check_rule(c, f"{path}.erase", f, f.erase, ef.erase_key or ef.write_key,
                            by_role, keys, "erase")


def _check_rule(
    c: _Collector,
    path: str,
    f: FileProfile,
    ac: int,
    layout_key: str | None,
    by_role: Mapping[str, KeyProfile],
    keys: Sequence[KeyProfile],
    what: str,
) -> None:
    kind = access_kind(ac)
    if layout_key is None:
        if what == "read" and kind != "free":
            c.add(path, f"0x{ac:02X}, but the layout lets everyone read {f.path} (use 0xF0)")
        if what == "write" and kind != "never":
            c.add(path, f"0x{ac:02X}, but the layout forbids rewriting {f.path} after "
                        "issuance (use a 'never' byte such as 0xEF)")
        return
    if kind == "free":
        c.add(path, f"free (0x{ac:02X}), but the layout protects {what}s of {f.path} "
                    f"with {layout_key}")
        return
    if kind == "never":
        c.add(path, f"never (0x{ac:02X}), but the layout lets {layout_key} {what} {f.path}")
        return
    key = by_role.get(layout_key)
    if key is None:
        c.add(path, f"missing key {layout_key} for this access rule (0x{ac:02X})")
        return
    scope = "MF" if kind == "mf" else f.df
    if key.df != scope:
        c.add(path, f"0x{ac:02X} is checked in {scope}, but {layout_key} is a key of {key.df}")
        return
    if not access_granted_by(ac, key):
        state = "none" if key.follow_up is None else f"{key.follow_up:X}"
        c.add(path, f"0x{ac:02X} is not met by {layout_key} (follow-up state {state})")
        return
    others = [k.role for k in keys if k.df == scope and k.role != key.role
              and access_granted_by(ac, k) and k.kid != 0]
    if others:
        c.add(path, f"0x{ac:02X} is also met by {', '.join(others)}; the layout reserves it "
                    f"for {layout_key}")


def _check_keys(
    c: _Collector, dfs: Sequence[DfProfile], keys: Sequence[KeyProfile], card: CardSettings
) -> None:
    seen: dict[tuple[str, int, int], str] = {}
    for k in keys:
        slot = (k.df, KEY_TYPE_BYTES[k.type], k.kid)
        if slot in seen:
            c.add(f"keys.{k.role}.kid", f"KID {k.kid:02X} of type {k.type} in {k.df} is also "
                                        f"used by {seen[slot]}")
        else:
            seen[slot] = k.role
        if k.auth == "fmcos" and k.kid != 0:
            c.add(f"keys.{k.role}.auth", "the FMCOS form is used for DF master keys (KID 00)")
    mf = next((d for d in dfs if d.is_mf), None)
    if mf is not None and access_kind(mf.erase) != "never":
        master = next((k for k in keys if k.df == "MF" and k.kid == 0 and k.type == "external"),
                      None)
        if master is None:
            c.add("keys", "the MF can be erased but has no master key (external, KID 00) to "
                          "authenticate the erase")


# --- the resident record against a profile ------------------------------------------------


def resident_from(data: CardData | Mapping[str, Any]) -> CardData:
    """A :class:`CardData` from itself or from model JSON (names or codes)."""
    if isinstance(data, CardData):
        return data
    return CardData.from_json(data, "auto")


def city_factor_of(card: CardData) -> bytes:
    """City factor from the record's application city code (YYCSDM, item 57)."""
    return city_factor_from_region(str(card.issuer.get("YYCSDM")))


def _record_path(context: str | None, code: str | None) -> str:
    where = (context or "").replace("/", "")
    parts = ["record"]
    if where:
        parts.append(where)
    if code:
        parts.append(code)
    return ".".join(parts)


def check_record(
    profile: Profile, data: CardData | Mapping[str, Any]
) -> tuple[CardData | None, list[Problem]]:
    """Check a resident record against the model and the profile; all problems at once."""
    try:
        card = resident_from(data)
    except ModelError as exc:
        context = getattr(exc, "context", None)
        code = getattr(exc, "code", None)
        reason = getattr(exc, "reason", None) or str(exc)
        value = getattr(exc, "value", None)
        message = f"{reason}; got {value!r}" if value is not None else reason
        return None, [Problem(_record_path(context, code), message)]
    problems = [
        Problem(_record_path(err.context, err.code), f"{err.reason}; got {err.value!r}")
        for err in card.validate()
    ]
    for ef, content in card.file_contents():
        f = profile.file(ef.path)
        if content is None:
            continue
        if f is None:
            if _has_data(content):
                problems.append(Problem(f"record.{ef.path.replace('/', '')}",
                                        f"has data, but the profile has no file {ef.path} "
                                        f"({ef.name})"))
            continue
        if f.structure == "transparent":
            _check_transparent_fit(problems, f, content)
    if profile.needs_city_factor:
        try:
            city_factor_of(card)
        except (SecurityModuleError, ModelError) as exc:
            problems.append(Problem("record.DDF1EF05.YYCSDM",
                                    f"needed for the city factor of 2-level keys: {exc}"))
    return (card if not problems else None), problems


def _has_data(content: Any) -> bool:
    if isinstance(content, model.CyclicFile):
        return bool(content.entries)
    if content.structure() == "linear_fixed":
        return any(content.values().values())
    return not content.is_empty()


def _check_transparent_fit(problems: list[Problem], f: FileProfile, content: Any) -> None:
    try:
        raw: bytes = content.to_bytes()
    except ModelError:
        return  # already reported by validate()
    if len(raw) > f.size and any(raw[f.size:]):
        used = max(i for i, b in enumerate(raw) if b) + 1
        problems.append(Problem(f"record.{f.code}",
                                f"{used} bytes of data do not fit the {f.size}-byte file "
                                f"(bytes {f.size}.. are not empty)"))


def file_image(f: FileProfile, content: Any) -> bytes:
    """The bytes of a transparent file as written: the model's image cut to the file size."""
    raw: bytes = content.to_bytes()
    return raw[: f.size]

