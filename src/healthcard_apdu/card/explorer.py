"""``CardExplorer``: the state and operations behind ``healthcard shell``.

An explorer wraps one :class:`HealthCard` (or none: offline, layout and decoding only) and keeps
what an interactive session needs on top of it: the current DF/EF as the user sees it and the
trace switched on and off at run time. The card factor is the library's business
(:meth:`HealthCard.confirm_card_factor`: INTERNAL AUTHENTICATE, no try counter, before the
first EXTERNAL AUTHENTICATE); ``info`` shows its result. Every operation returns a typed result
with ``to_json()``; printing is the caller's job (``app.shell`` renders them for the command
line).

The card is always driven through the library's own paths, so nothing here bypasses the
rules of :class:`HealthCard` / :class:`CardSession`: reads and writes select, authenticate
(never retrying a refused key) and use secure messaging exactly as ``healthcard read`` /
``write`` do; a raw APDU makes the session forget its selection and security state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import (
    CardError,
    HealthCardError,
    NotFound,
)
from healthcard_apdu.apdu.status import describe
from healthcard_apdu.card.document import (
    FileSelector,
    UnreadableFile,
    WriteResult,
    content_json,
    display_value,
    document_rows,
    read_selection,
    resolve_selector,
    write_document,
)
from healthcard_apdu.card.errors import CardOperationError, KeyNotPresent, NotWritable
from healthcard_apdu.card.factor import FactorConfirmation, FactorStatus
from healthcard_apdu.card.healthcard import HealthCard, SignMode
from healthcard_apdu.card.notices import CardNotice
from healthcard_apdu.card.sam import Sam
from healthcard_apdu.model import (
    DF,
    DFS,
    EF,
    EFS,
    KEYS,
    CyclicFile,
    FileValue,
    Item,
    LayoutError,
    ModelError,
    Slot,
    decode_item,
    decode_tlv,
    df,
    ef,
    file_class,
    layout_items,
)
from healthcard_apdu.model import key as model_key
from healthcard_apdu.security import SecurityModule, factor_candidates
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.trace import Tracer, default_masker, mask_hex, wire_data_offset

__all__ = [
    "AUTH_ROLES",
    "ApduReply",
    "AuthReply",
    "CardExplorer",
    "DecodedItem",
    "ExplorerError",
    "FactorReport",
    "ListingEntry",
    "RawFile",
    "ReadReply",
    "SelectReply",
    "decode_file",
    "item_json_value",
    "masked_command_hex",
]

MF = "MF"
_MF_ALIASES = {"", "/", "MF", "3F00"}
_PARENT = {d.name: d.parent for d in DFS}
#: Key roles the card accepts in EXTERNAL AUTHENTICATE with a host cryptogram.
AUTH_ROLES: tuple[str, ...] = tuple(k.name for k in KEYS if k.role in ("read", "update", "erase"))
_INDEX_OF = {"DF03/EE": "DF03/EF05", "DF03/ED": "DF03/EF06"}
_HEX_LINE = 16


class ExplorerError(HealthCardError, ValueError):
    """A request the explorer cannot carry out as asked (unknown path, no card, bad value)."""


# == results ===================================================================================


@dataclass(frozen=True)
class ListingEntry:
    """One line of ``ls`` / ``tree``: a DF or EF from the layout and what the card says."""

    path: str
    depth: int
    kind: str  # "DF" or the EF structure
    name: str
    name_zh: str
    size: str
    access: str
    card: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "name": self.name,
            "name_zh": self.name_zh,
            "size": self.size,
            "access": self.access,
            "card": self.card,
        }


@dataclass(frozen=True)
class SelectReply:
    """Where a ``select`` / ``cd`` went."""

    path: str
    kind: str
    name: str
    detail: str
    sent: bool  # False when offline (nothing sent)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class ReadReply:
    """Decoded items of the files read (table rows and the ``healthcard read --json`` shape).

    ``unreadable`` are the files the card holds no read key for (left out of ``document``, a
    row each in ``rows``); ``notices`` what this read reported (those files, items out of
    spec, the card-factor check), as ``warnings`` in the JSON like ``healthcard read --json``.
    """

    rows: list[dict[str, Any]]
    document: dict[str, Any]
    unreadable: tuple[UnreadableFile, ...] = ()
    notices: tuple[CardNotice, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if not self.notices:
            return self.document
        return {**self.document, "warnings": [n.to_json() for n in self.notices]}


@dataclass(frozen=True)
class RawFile:
    """The bytes of one EF as the card returned them: records, or the transparent body."""

    path: str
    structure: str
    records: dict[int, bytes] = field(default_factory=dict)
    data: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.path.replace("/", ""), "structure": self.structure}
        if self.data is not None:
            out["data"] = self.data.hex().upper()
        else:
            out["records"] = {str(n): raw.hex().upper() for n, raw in self.records.items()}
        return out

    def lines(self) -> list[str]:
        """A hex dump: one line per record, or 16 bytes per line with the offset."""
        if self.data is None:
            return [f"record {n:>2}: {raw.hex(' ').upper()}" for n, raw in self.records.items()]
        return [
            f"{offset:04X}: {self.data[offset : offset + _HEX_LINE].hex(' ').upper()}"
            for offset in range(0, len(self.data), _HEX_LINE)
        ] or ["(empty)"]


@dataclass(frozen=True)
class DecodedItem:
    """One item decoded from bytes (``decode``); ``note`` says why a value is shown raw."""

    where: str
    item: Item
    value: str
    json_value: Any
    note: str = ""

    def row(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "item": self.item.no,
            "code": self.item.code,
            "name": self.item.name_zh,
            "value": self.value,
            "note": self.note,
        }

    def to_json(self) -> dict[str, Any]:
        out = {**self.row(), "name": self.item.name, "value": self.json_value}
        if not self.note:
            del out["note"]
        return out


@dataclass(frozen=True)
class AuthReply:
    """A successful external authentication."""

    key: str
    df: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "df": self.df, "result": "authenticated"}


@dataclass(frozen=True)
class ApduReply:
    """A raw command and the card's final answer (after the channel's T=0 handling)."""

    command: str  # hex, secret bytes masked
    data: bytes
    sw: int
    meaning: str
    tries_left: int | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": self.command,
            "data": self.data.hex().upper(),
            "sw": f"{self.sw:04X}",
            "meaning": self.meaning,
        }
        if self.tries_left is not None:
            out["tries_left"] = self.tries_left
        return out


@dataclass(frozen=True)
class FactorReport:
    """The card-factor part of ``info``: the card product's rule, the candidates it and the
    other known rules give, and the library's check (:class:`FactorConfirmation`): which
    candidate INTERNAL AUTHENTICATE confirmed (no try counter), or why none was or could be.

    ``confirmation`` is None only when the check could not even start (``error`` says why: the
    rule does not fit the ATR, an unreadable ATR). ``checked_now`` tells whether this report
    sent the check (False: the card's earlier result, or nothing sent).
    """

    rule: str
    confirmation: FactorConfirmation | None
    checked_now: bool = False
    error: str = ""

    @property
    def in_use(self) -> str | None:
        """The factor authentications use (hex), None when none may be used."""
        check = self.confirmation
        if check is None or check.status is FactorStatus.NOT_CONFIRMED:
            return None
        return check.factor.hex().upper()

    def candidates(self) -> list[dict[str, Any]]:
        """Each candidate (the configured rule's first) with what the check made of it."""
        check = self.confirmation
        if check is None:
            return []
        tried = {t.candidate.factor: t for t in check.tries}
        out = []
        for candidate in check.candidates:
            attempt = tried.get(candidate.factor)
            if attempt is None:
                outcome = "not tried" if check.status is FactorStatus.CONFIRMED else "not checked"
            elif attempt.matched:
                outcome = "confirmed by INTERNAL AUTHENTICATE (no try counter)"
            else:
                outcome = "no match: the card's INTERNAL AUTHENTICATE answer differs"
            out.append({**candidate.to_json(), "outcome": outcome})
        return out

    @property
    def message(self) -> str:
        return self.error if self.confirmation is None else self.confirmation.message

    def to_json(self) -> dict[str, Any]:
        if self.confirmation is None:
            return {
                "rule": self.rule,
                "status": "error",
                "candidates": [],
                "tries": [],
                "confirmed": None,
                "factor": None,
                "message": self.error,
            }
        return {
            **self.confirmation.to_json(),
            "candidates": self.candidates(),
            "checked_now": self.checked_now,
        }


# == helpers =====================================================================================


def masked_command_hex(command: CommandApdu) -> str:
    """The command's hex with PINs and key values masked (the trace's rules)."""
    ranges = [
        (start + wire_data_offset(command), end + wire_data_offset(command))
        for start, end in default_masker(command)
    ]
    return mask_hex(command.to_bytes(), ranges)


def _df_path(name: str) -> list[str]:
    path = [name]
    while (parent := _PARENT[path[-1]]) is not None:
        path.append(parent)
    return path[::-1]


def _short(role: str) -> str:
    """A DF's role without its parenthesis: ``personal data (addresses, ...)`` -> ``personal
    data``."""
    return role.split(" (")[0]


def _access(target: EF) -> str:
    parts = [f"read {target.read_key or 'free'}"]
    parts.append(f"write {target.write_key}" if target.write_key else "no rewrite")
    if target.erase_key:
        parts.append(f"erase {target.erase_key}")
    return ", ".join(parts)


def _size(target: EF) -> str:
    if target.structure == "transparent":
        return f"{target.size} bytes"
    if target.structure == "tlv_records":
        count = len(target.record_lengths())
        return f"{count} record{'s' if count != 1 else ''}"
    return f"{target.record_count} x {target.record_length} bytes"


def _refusal(exc: HealthCardError) -> str:
    """A short cell text for a probe that failed."""
    if isinstance(exc, KeyNotPresent):
        return f"not readable: key {exc.key} not present on this card (6A88, no try spent)"
    if isinstance(exc, CardError):
        text = f"SW {exc.sw:04X} {exc.meaning}"
        if exc.retries_left is not None:
            text += f" ({exc.retries_left} tries left)"
        if "refused earlier" in str(exc):
            text += ", refused earlier (not retried)"
        return text
    return str(exc)


def _slot_for(cls: type[FileValue], key: str) -> Slot:
    """The slot of ``cls`` named by pinyin code, English name or item number."""
    wanted = key.strip()
    number = int(wanted) if wanted.isdigit() else None
    for slot in cls.slots():
        names = (slot.json_code, slot.json_name, slot.field, *slot.item.aliases)
        if wanted in names or wanted.upper() in names or number == slot.item.no:
            return slot
    codes = ", ".join(s.json_code for s in cls.slots())
    raise ExplorerError(f"{cls.LAYOUT}: no item {key!r}; items: {codes}")


def item_json_value(slot_item: Item, text: str) -> Any:
    """A command-line value as the JSON value the document codec takes for ``slot_item``.

    Text and digits stay strings; index flags and T/F flags take true/false (flags also null);
    code-table bytes take a number (or null); binary items take hex.
    """
    lowered = text.strip().lower()
    if slot_item.fmt in ("ans", "cn"):
        return text
    if slot_item.kind in ("index_flag", "flag"):
        if lowered in ("true", "yes", "1", "valid"):
            return True
        if lowered in ("false", "no", "0", "invalid"):
            return False
        if slot_item.kind == "flag" and lowered in ("null", "none", ""):
            return None
        return text  # the codec names the item and the accepted values
    if slot_item.kind == "code":
        if lowered in ("null", "none", ""):
            return None
        try:
            return int(lowered, 0)
        except ValueError:
            return text
    return re.sub(r"\s+", "", text)


def _decoded(where: str, it: Item, raw: bytes, value_of: Any) -> DecodedItem:
    try:
        value = value_of()
    except ModelError as exc:
        return DecodedItem(where, it, raw.hex().upper(), raw.hex().upper(), f"raw: {exc}")
    shown = display_value(value, it.kind == "photo")
    json_value = value.hex().upper() if isinstance(value, bytes) else value
    return DecodedItem(where, it, shown, json_value)


def decode_file(target: EF, raw: bytes, offset: int = 0) -> list[DecodedItem]:
    """Decode ``raw`` as the items of ``target`` without a card, leniently (a bad item is shown
    raw with the reason, the others still decode).

    * TLV record files: one or more TLV records (tag, length, value) back to back;
    * index files: one flag byte per record, from record 1;
    * cyclic files: one or more records of the record length, from record 1;
    * transparent files: the file's bytes from ``offset``; items cut by the range are skipped.
    """
    raw = bytes(raw)
    items = layout_items(target.layout)
    out: list[DecodedItem] = []
    if target.structure == "tlv_records":
        by_tag = {i.tag: i for i in items}
        pos = 0
        while pos < len(raw):
            if pos + 2 > len(raw):
                raise ExplorerError(f"{target.path}: bytes end inside a TLV header at {pos}")
            tag, length = raw[pos], raw[pos + 1]
            tlv = raw[pos : pos + 2 + length]
            if len(tlv) < 2 + length:
                raise ExplorerError(
                    f"{target.path}: TLV tag {tag:02X} announces {length} bytes, "
                    f"{len(tlv) - 2} remain"
                )
            found = by_tag.get(tag)
            if found is None:
                raise ExplorerError(f"{target.path}: no item with tag {tag:02X} in this file")
            out.append(
                _decoded(f"tag {tag:02X}", found, tlv, lambda f=found, t=tlv: decode_tlv(f, t))
            )
            pos += 2 + length
        return out
    if target.structure == "linear_fixed":
        flag = items[0]
        count = target.record_count or 0
        if len(raw) > count:
            raise ExplorerError(f"{target.path}: {len(raw)} bytes for {count} one-byte records")
        for number, byte in enumerate(raw, start=1):
            value = bytes((byte,))
            out.append(
                _decoded(f"record {number}", flag, value, lambda v=value: decode_item(flag, v))
            )
        return out
    if target.structure == "cyclic":
        size = target.record_length or 0
        if not raw or len(raw) % size:
            raise ExplorerError(
                f"{target.path}: records are {size} bytes each, got {len(raw)} bytes"
            )
        for number in range(len(raw) // size):
            record = raw[number * size : (number + 1) * size]
            for it in items:
                assert it.offset is not None
                part = record[it.offset : it.end]
                out.append(
                    _decoded(
                        f"record {number + 1}", it, part, lambda i=it, p=part: decode_item(i, p)
                    )
                )
        return out
    size = target.size or 0
    if offset < 0 or offset + len(raw) > size:
        raise ExplorerError(
            f"{target.path}: bytes {offset}-{offset + len(raw) - 1} lie outside the "
            f"{size}-byte file"
        )
    end = offset + len(raw)
    for it in items:
        assert it.offset is not None
        if it.kind == "photo":
            part = raw[it.offset - offset :] if it.offset >= offset else b""
            if part:
                out.append(_decoded("bytes", it, part, lambda i=it, p=part: decode_item(i, p)))
            continue
        if it.offset < offset or it.end > end:
            continue
        part = raw[it.offset - offset : it.end - offset]
        out.append(
            _decoded(f"offset {it.offset}", it, part, lambda i=it, p=part: decode_item(i, p))
        )
    if not out:
        raise ExplorerError(
            f"{target.path}: bytes {offset}-{end - 1} cover no whole item (give --offset)"
        )
    return out


# == the explorer =================================================================================


class CardExplorer:
    """One card (or none) explored interactively: selection as the user sees it, trace, auth.

    ``card`` None means offline: ``ls`` / ``tree`` show the layout only, ``select`` moves
    through the layout without sending anything, ``decode`` works, the rest refuses.
    ``security_backend`` names the security module's kind for :meth:`info` (``keys``,
    ``pkcs11_token``, ``sam_reader``, ``sim_sam``; None when the card has none that works).
    ``trace`` is a tracer already attached to the card's (and SAM's) channel, owned from now on.
    """

    def __init__(
        self,
        card: HealthCard | None,
        *,
        sam: Sam | None = None,
        security_backend: str | None = None,
        trace: Tracer | None = None,
        trace_path: str | None = None,
    ) -> None:
        self.card = card
        self.sam = sam
        self.security_backend = security_backend
        self.cwd: str = MF
        self.current_ef: str | None = None
        self._tracer = trace
        self._trace_path = trace_path if trace is not None else None

    # -- state ----------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The current EF path, else the current DF name (``MF``, ``DDF1``, ``DF01/EF05``)."""
        return self.current_ef or self.cwd

    @property
    def tracing(self) -> str | None:
        """The trace file being written, or None."""
        return self._trace_path

    def _card(self, what: str) -> HealthCard:
        if self.card is None:
            raise ExplorerError(f"{what} needs a card; this session has none (offline)")
        return self.card

    def close(self) -> None:
        """Stop tracing (the card and module belong to whoever opened them)."""
        self.trace_off()

    # -- paths ----------------------------------------------------------------------------------

    def resolve(self, text: str | None) -> DF | EF:
        """A DF or EF from ``text``: ``/``/``MF``, ``..``, a DF name, an EF path (``DDF1/EF06``,
        ``DDF1EF06``), an EF name (``holder``) or an FID of the current DF (``EF05``);
        None means the current EF, else the current DF."""
        if text is None:
            return ef(self.current_ef) if self.current_ef else df(self.cwd)
        spelled = text.strip()
        upper = spelled.upper()
        if upper in _MF_ALIASES:
            return df(MF)
        if spelled == "..":
            if self.current_ef:
                return df(self.cwd)
            parent = _PARENT[self.cwd]
            return df(parent or MF)
        parts = [p for p in upper.split("/") if p and p not in ("MF", "3F00")]
        if parts and parts[-1] in _PARENT:
            return df(parts[-1])
        if len(parts) == 1 and re.fullmatch(r"[0-9A-F]{4}", parts[0]) and self.cwd != MF:
            try:
                return ef(f"{self.cwd}/{parts[0]}")
            except LayoutError:
                pass
        candidates = ["/".join(parts[-2:]), spelled] if len(parts) >= 2 else [spelled]
        for candidate in candidates:
            try:
                return ef(candidate)
            except LayoutError:
                continue
        raise ExplorerError(
            f"no card file {text!r} (from {self.location}); use a DF (DDF1, DF01..DF03), "
            "an EF path such as DDF1/EF06, an EF name such as holder, or an FID of the "
            "current DF"
        )

    def resolve_ef(self, text: str | None) -> EF:
        target = self.resolve(text)
        if isinstance(target, DF):
            if text is None:
                raise ExplorerError(f"no current EF in {self.cwd}: give a file or select one")
            raise ExplorerError(f"{target.name} is a DF; give one of its EFs")
        return target

    def names_a_file(self, text: str) -> bool:
        """Does ``text`` name a file or record group (else it may be an item)?"""
        try:
            self._selector(text)
        except HealthCardError:
            return False
        return True

    def _selector(self, text: str | None) -> FileSelector:
        """A ``read`` target: an EF (resolved like :meth:`resolve`) or a record group."""
        if text is not None:
            try:
                return resolve_selector(text)
            except LayoutError:
                pass
        return resolve_selector(self.resolve_ef(text).path)

    # -- ls / tree ------------------------------------------------------------------------------

    def ls(self, text: str | None = None, *, probe: bool = True) -> list[ListingEntry]:
        """The DF (default: current) and what is directly in it; ``probe`` asks the card."""
        target = self.resolve(text) if text is not None else df(self.cwd)
        if isinstance(target, EF):
            return self._entries([(target, 0)], probe)
        children: list[tuple[DF | EF, int]] = [(target, 0)]
        children += [(d, 1) for d in DFS if d.parent == target.name]
        children += [(e, 1) for e in EFS if e.df == target.name]
        return self._entries(children, probe)

    def tree(self, *, probe: bool = True) -> list[ListingEntry]:
        """Every DF and EF from the MF down, in card order."""
        out: list[tuple[DF | EF, int]] = []

        def walk(name: str, depth: int) -> None:
            out.append((df(name), depth))
            out.extend((e, depth + 1) for e in EFS if e.df == name)
            for child in DFS:
                if child.parent == name:
                    walk(child.name, depth + 1)

        walk(MF, 0)
        return self._entries(out, probe)

    def _entries(self, targets: Sequence[tuple[DF | EF, int]], probe: bool) -> list[ListingEntry]:
        card = self.card if probe else None
        flags: dict[str, dict[int, bool] | str] = {}
        entries = []
        for target, depth in targets:
            state = "-" if card is None else self._probe(card, target, flags)
            if isinstance(target, DF):
                entries.append(
                    ListingEntry(target.name, depth, "DF", _short(target.role), "", "", "", state)
                )
            else:
                entries.append(
                    ListingEntry(
                        target.path,
                        depth,
                        target.structure,
                        target.name,
                        target.name_zh,
                        _size(target),
                        _access(target),
                        state,
                    )
                )
        return entries

    def _probe(
        self, card: HealthCard, target: DF | EF, flags: dict[str, dict[int, bool] | str]
    ) -> str:
        """What the card says about one file; a refusal is shown, not raised."""
        try:
            if isinstance(target, DF):
                card.session.select_df(target.name)
                return "present"
            card.session.select_ef(target)
            if target.structure == "cyclic":
                content = card.read_file(target.path)
                assert isinstance(content, CyclicFile)
                return f"{len(content.entries)} of {target.record_count} records used"
            if target.structure == "linear_fixed":
                valid = self._flags(card, target.path, flags)
                if isinstance(valid, str):
                    return valid
                shown = [f"{n}:{'00' if ok else 'FF'}" for n, ok in valid.items()]
                return "flags " + " ".join(shown)
            index = _INDEX_OF.get(target.layout)
            if index is not None:
                valid = self._flags(card, index, flags)
                if isinstance(valid, str):
                    return f"present, index: {valid}"
                number = int(target.path[-1])
                return "valid (flag 00)" if valid.get(number) else "invalid (flag FF)"
            return "present"
        except NotFound as exc:
            return "missing" if exc.sw == 0x6A82 else _refusal(exc)
        except (HealthCardError, SecurityModuleError) as exc:
            return _refusal(exc)

    def _flags(
        self, card: HealthCard, index: str, cache: dict[str, dict[int, bool] | str]
    ) -> dict[int, bool] | str:
        if index not in cache:
            try:
                content = card.read_file(index)
                assert isinstance(content, FileValue)
                cache[index] = {
                    n: bool(v) for n, v in enumerate(content.values().values(), start=1)
                }
            except HealthCardError as exc:
                cache[index] = _refusal(exc)
        return cache[index]

    # -- select ---------------------------------------------------------------------------------

    def select(self, text: str) -> SelectReply:
        """Make a DF or EF current (SELECT on the card; offline only the view moves)."""
        target = self.resolve(text)
        card = self.card
        if isinstance(target, DF):
            if card is not None:
                card.session.select_df(target.name)
            self.cwd, self.current_ef = target.name, None
            return SelectReply(
                target.name, "DF", target.role, f"FID {target.fid:04X}", card is not None
            )
        if card is not None:
            card.session.select_ef(target)
        self.cwd, self.current_ef = target.df, target.path
        detail = f"{target.structure}, {_size(target)}, {_access(target)}"
        return SelectReply(
            target.path,
            target.structure,
            f"{target.name} {target.name_zh}",
            detail,
            card is not None,
        )

    # -- read -----------------------------------------------------------------------------------

    def read(
        self, text: str | None = None, items: Iterable[str] = (), *, all_items: bool = False
    ) -> ReadReply:
        """Decoded items of a file or record group (default: the current EF, else every file
        of the current DF, the whole card at the MF); ``items`` keeps only those items."""
        card = self._card("read")
        wanted = list(items)
        selectors: list[str] | None
        if text is None and self.current_ef is None:
            selectors = None if self.cwd == MF else self._files_below(self.cwd)
        else:
            selectors = [self._selector(text).code]
        if wanted and (selectors is None or len(selectors) != 1):
            raise ExplorerError("item names need exactly one file")
        noticed = len(card.warnings)
        unreadable: list[UnreadableFile] = []
        selection = read_selection(card, selectors, unreadable=unreadable)
        rows = document_rows(selection, keys="code", all_items=all_items or bool(wanted))
        rows += [entry.row() for entry in unreadable]
        document = {s.key("code"): content_json(c, "code") for s, c in selection}
        notices = tuple(card.warnings[noticed:])
        if wanted:
            selector = selection[0][0]
            cls = self._file_class(selector)
            slots = [_slot_for(cls, key) for key in wanted]
            codes = {s.json_code for s in slots}
            numbers = {s.item.no for s in slots}
            rows = [r for r in rows if r["item"] in numbers or r["code"] in codes]
            document = {selector.code: self._pick(document[selector.code], codes)}
        return ReadReply(rows, document, tuple(unreadable), notices)

    @staticmethod
    def _pick(value: Any, codes: set[str]) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k in codes}
        if isinstance(value, list):
            return [CardExplorer._pick(v, codes) for v in value]
        return value

    @staticmethod
    def _file_class(selector: FileSelector) -> type[FileValue]:
        return file_class(selector.paths[0])

    @staticmethod
    def _files_below(name: str) -> list[str]:
        """Document keys of every EF in ``name`` and the DFs under it, in card order."""
        names = {name} | {d.name for d in DFS if name in _df_path(d.name)}
        out: list[str] = []
        for target in EFS:
            if target.df in names:
                code = resolve_selector(target.path).code
                out.append(code)
        return out

    def read_raw(self, text: str | None = None) -> RawFile:
        """The bytes of one EF as the card returns them (records, or the whole body)."""
        card = self._card("read")
        target = self.resolve_ef(text)
        session = card.session
        session.ensure_access(target, target.read_key, target.path)
        if target.structure == "transparent":
            size = target.size or 0
            data = bytearray()
            while len(data) < size:
                length = min(card.read_chunk, size - len(data))
                where = f"{target.path} bytes {len(data)}-{len(data) + length - 1}"
                data += session.call(commands.read_binary(len(data), length), where).data
            return RawFile(target.path, target.structure, data=bytes(data))
        records: dict[int, bytes] = {}
        by_tag = target.path == "DDF1/EF05" and card.read_issuer_by_tag
        if target.structure == "tlv_records":
            for it in target.items:
                assert it.record is not None and it.tag is not None
                where = f"{target.path} record {it.record} (item {it.no} {it.code})"
                command = (
                    commands.read_record_by_tag(it.tag, it.tlv_length)
                    if by_tag
                    else commands.read_record(it.record, it.tlv_length)
                )
                records[it.record] = session.call(command, where).data
        else:
            for number, length in target.record_lengths().items():
                try:
                    records[number] = session.call(
                        commands.read_record(number, length), f"{target.path} record {number}"
                    ).data
                except NotFound:
                    if target.structure != "cyclic":
                        raise
                    break  # a cyclic file holds only the records written so far
        return RawFile(target.path, target.structure, records=records)

    # -- write ----------------------------------------------------------------------------------

    def write_item(
        self, text: str | None, item_key: str, value: str, *, sign: SignMode = None
    ) -> list[WriteResult]:
        """Set one item of an EF: read the file, change the item, write the file back through
        :func:`write_document` (same validation and secure messaging as ``healthcard write``)."""
        card = self._card("write")
        target = self.resolve_ef(text)
        if target.write_key is None:
            raise NotWritable(
                f"{target.path} ({target.name}) is not rewritable after issuance",
                path=target.path,
            )
        if target.structure == "cyclic":
            raise ExplorerError(
                f"{target.path} ({target.name}) is a cyclic file of entries: write it as a "
                f"JSON document (write --data FILE.json --file {target.name})"
            )
        selector = resolve_selector(target.path)
        slot = _slot_for(file_class(target.path), item_key)
        ((_, content),) = read_selection(card, [selector.code])
        if content is None:
            raise ExplorerError(
                f"{target.path} is invalid (index flag FF): write the whole record as a JSON "
                f"document (write --data FILE.json --file {selector.code})"
            )
        document = content_json(content, "code")
        assert isinstance(document, dict)
        document[slot.json_code] = item_json_value(slot.item, value)
        return write_document(card, {selector.code: document}, [selector.code], sign=sign)

    def write_document(
        self,
        document: Mapping[str, object],
        files: Sequence[str] = (),
        *,
        sign: SignMode = None,
    ) -> list[WriteResult]:
        """``healthcard write`` on this card: the document's files (only ``files`` if given)."""
        card = self._card("write")
        return write_document(card, document, list(files) or None, sign=sign)

    # -- auth -----------------------------------------------------------------------------------

    def auth(self, role: str) -> AuthReply:
        """EXTERNAL AUTHENTICATE with ``role`` in its DF, through the security module.

        As everywhere in the library, the card factor is confirmed first (INTERNAL
        AUTHENTICATE, no try counter; once per card): when no candidate is confirmed this
        raises :class:`~healthcard_apdu.card.factor.FactorNotConfirmed` before any try is
        spent. A refusal raises the card's typed error with the tries left; the session never
        sends that key again (:class:`CardSession`)."""
        card = self._card("auth")
        name = role.strip().upper()
        if name not in AUTH_ROLES:
            raise ExplorerError(
                f"{role!r} is not an external-authentication key; use one of "
                + ", ".join(AUTH_ROLES)
            )
        card_key = model_key(name)
        session = card.session
        spec = session.key_spec(name)
        session.ensure_factor()  # refuses here, before anything else is sent for the key
        if spec.levels == 2:
            _ = session.city_factor  # reads DDF1/EF05 first: it would move away afterwards
        session.select_df(card_key.df)
        self.cwd, self.current_ef = card_key.df, None
        session.authenticate(name, card_key.df)
        return AuthReply(name, card_key.df)

    # -- info -----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """ATR parse, card factor report, security module / SAM state, session state."""
        card = self._card("info")
        atr = card.channel.atr()
        factor = self.card_factor_report()
        out: dict[str, Any] = {
            "reader": card.channel.transport.name,
            "protocol": card.channel.transport.protocol,
            "atr": self._atr(atr),
            "card_factor": factor.to_json(),
            "security": self.security_state(),
            "session": {
                "location": self.location,
                "card_df": card.session.current_df,
                "authenticated_key": card.session.auth_key,
                "trace": self._trace_path,
            },
        }
        return out

    @staticmethod
    def _atr(atr: bytes) -> dict[str, Any]:
        try:
            parsed = parse_atr(atr)
        except AtrError as exc:
            return {"raw": atr.hex().upper(), "error": str(exc)}
        return {
            "raw": atr.hex().upper(),
            "convention": "direct" if parsed.ts == 0x3B else "inverse",
            "protocols": [f"T={p}" for p in parsed.protocols],
            "preferred_protocol": f"T={parsed.preferred_protocol}",
            "interface_bytes": {k: f"{v:02X}" for k, v in parsed.interface.items()},
            "historical_bytes": parsed.historical_bytes.hex().upper(),
            "tck": "absent" if parsed.tck_ok is None else ("ok" if parsed.tck_ok else "wrong"),
        }

    def card_factor_report(self) -> FactorReport:
        """The card-factor part of :meth:`info`: :meth:`HealthCard.confirm_card_factor`.

        The check runs once per card (a reset forgets it): SELECT MF and DDF1, a free READ
        RECORD of YYCSDM for the city factor, INTERNAL AUTHENTICATE per candidate -- no try
        counter is touched. Then what was current on the card is selected again, as far as the
        session knows it. Without a security module nothing is sent: the candidates are shown
        as not checked.
        """
        card = self._card("info")
        session = card.session
        rule = str(session.factor_rule)
        if session.factor_confirmation is not None:
            return FactorReport(rule, session.factor_confirmation)
        try:
            if self.security_backend is None and session.confirm_factor:
                return FactorReport(rule, self._unchecked(card))
            df_name, ef_path = session.current_df, session.current_ef
            check = card.confirm_card_factor()
        except (AtrError, SecurityModuleError, CardOperationError) as exc:
            return FactorReport(rule, None, error=f"card factor: {exc}")
        if df_name is not None and (session.current_df, session.current_ef) != (df_name, ef_path):
            session.select_df(df_name)
            if ef_path is not None:
                session.select_ef(ef(ef_path))
        return FactorReport(rule, check, checked_now=bool(check.tries))

    @staticmethod
    def _unchecked(card: HealthCard) -> FactorConfirmation:
        """The candidates without a security module to check them (nothing is sent)."""
        rule = card.session.factor_rule
        try:
            historical = parse_atr(card.channel.atr()).historical_bytes
        except AtrError:
            if rule.needs_atr:
                raise
            historical = b""
        reason = "no security module to compute INTERNAL AUTHENTICATE"
        return FactorConfirmation(
            FactorStatus.IMPOSSIBLE, rule, factor_candidates(historical, rule), reason=reason
        )

    def security_state(self) -> dict[str, Any]:
        """Which security module works for the card, and the PSAM's state when there is one."""
        card = self.card
        if self.security_backend is None or card is None:
            return {"module": "none"}
        module: SecurityModule = card.security
        out: dict[str, Any] = {
            "module": self.security_backend,
            "name": module.name,
            "algorithm": module.algorithm.name,
        }
        sam = self.sam
        if sam is not None:
            out["pin"] = sam.security.pin_state
            try:
                public = sam.read_public_info()
                out["sam_serial"] = public.serial_number.hex().upper()
                out["sam_version"] = f"{public.sam_version:02X}"
            except HealthCardError as exc:
                out["sam_public_info"] = f"unreadable: {exc}"
            try:
                terminal = sam.read_terminal_info()
                out["terminal"] = (
                    f"{terminal.province:02X}{terminal.city:02X}{terminal.issuer:02X}"
                    f"{terminal.serial.hex().upper()}"
                )
            except HealthCardError as exc:
                out["terminal"] = f"unreadable: {exc}"
        return out

    # -- apdu -----------------------------------------------------------------------------------

    def apdu(self, hex_text: str) -> ApduReply:
        """Send a raw command; any status word is returned. The channel answers T=0 ``61xx`` /
        ``6Cxx`` itself; the session forgets its selection and security state afterwards."""
        card = self._card("apdu")
        cleaned = re.sub(r"[\s:]", "", hex_text)
        try:
            raw = bytes.fromhex(cleaned)
        except ValueError:
            raise ExplorerError(f"APDU {hex_text!r} is not hex") from None
        command = CommandApdu.from_bytes(raw)
        response = card.transmit(command)
        meaning = "success" if response.ok else describe(response.sw, command.ins)
        tries = response.sw & 0x0F if response.sw & 0xFFF0 == 0x63C0 else None
        return ApduReply(masked_command_hex(command), response.data, response.sw, meaning, tries)

    # -- trace ----------------------------------------------------------------------------------

    def _channels(self) -> list[Any]:
        channels: list[Any] = []
        if self.card is not None:
            channels.append(self.card.channel)
        if self.sam is not None and self.sam.channel not in channels:
            channels.append(self.sam.channel)
        return channels

    def trace_on(self, path: str | Path) -> str:
        """Write a JSON Lines trace of the card's (and SAM's) APDUs to ``path`` (secrets masked);
        a trace already on is closed first."""
        self.trace_off()
        tracer = Tracer(Path(path))
        for channel in self._channels():
            channel.trace = tracer
            try:
                atr = channel.atr().hex().upper()
            except HealthCardError:
                atr = ""
            tracer.event("open", transport=channel.transport.name, atr=atr)
        self._tracer, self._trace_path = tracer, str(path)
        return str(path)

    def trace_off(self) -> str | None:
        """Stop tracing; returns the file that was written, or None."""
        tracer, path = self._tracer, self._trace_path
        if tracer is None:
            return None
        for channel in self._channels():
            if channel.trace is tracer:
                channel.trace = None
        tracer.close()
        self._tracer = self._trace_path = None
        return path

    # -- reset ----------------------------------------------------------------------------------

    def reset(self, *, cold: bool = False) -> bytes:
        """Reset the card; the view goes back to the MF and the card factor is checked again
        (by the next ``info`` or authentication)."""
        card = self._card("reset")
        atr = card.reset(cold)
        self.cwd, self.current_ef = MF, None
        return atr

    def forget(self) -> None:
        """After an interrupted command: the card's selection and security state are unknown."""
        if self.card is not None:
            self.card.session.invalidate()
