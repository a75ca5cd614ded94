"""The command language of ``healthcard shell``: parse a line, run it on a card explorer, reply.

:class:`Shell` turns one command line into a :class:`Reply`: the JSON value of the result, the
blocks a terminal shows (text lines and tables) or the error. The same replies serve the
interactive session, ``--script`` files and standard input, so all three print the same.
:meth:`Shell.complete` gives tab completions (commands, card paths and names, item codes, key
roles, local files) without any terminal library; ``cli.shell`` plugs it into prompt_toolkit.

What each command does with the card is :class:`~healthcard_apdu.card.explorer.CardExplorer`'s
job; :func:`open_explorer` builds one from the shared connection options of ``app.connect``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError, HealthCardError
from healthcard_apdu.app.connect import (
    CardOptions,
    OptionNames,
    SecurityOptions,
    check_card_options,
    open_card_link,
    open_security,
    option_flag,
)
from healthcard_apdu.card.explorer import (
    AUTH_ROLES,
    ApduReply,
    CardExplorer,
    ListingEntry,
    RawFile,
    ReadReply,
    decode_file,
    masked_command_hex,
)
from healthcard_apdu.card.healthcard import HealthCard, SignMode
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import DFS, EF, EFS, file_class
from healthcard_apdu.security import (
    DEFAULT_FACTOR_RULE,
    CardFactors,
    FactorRule,
    KeySpec,
    SecurityModule,
)
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.security.session import SessionOps
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.trace import Tracer, default_masker

__all__ = [
    "COMMANDS",
    "CheckFailed",
    "Reply",
    "Shell",
    "ShellUsageError",
    "Table",
    "default_history_path",
    "open_explorer",
]


class ShellUsageError(HealthCardError, ValueError):
    """A command line the shell cannot run: unknown command, wrong arguments, unreadable file."""


class CheckFailed(HealthCardError):
    """A check in a command failed (``apdu --expect`` got another status word)."""


@dataclass(frozen=True)
class Table:
    """Rows to print as a fixed-width table with these columns."""

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]


Block = str | Table


@dataclass
class Reply:
    """The outcome of one command line.

    ``line`` is the command as it may be shown or kept (secret APDU bytes masked); ``data`` the
    JSON value of the result; ``blocks`` what a terminal shows; ``error`` the failure, if any;
    ``quit`` ends the session.
    """

    line: str
    command: str
    data: Any = None
    blocks: list[Block] = field(default_factory=list)
    error: HealthCardError | None = None
    quit: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The one JSON line of ``--json``."""
        if self.error is not None:
            return {
                "command": self.line,
                "ok": False,
                "error": str(self.error),
                "error_type": type(self.error).__name__,
            }
        return {"command": self.line, "ok": True, "result": self.data}


def default_history_path() -> Path:
    """``$XDG_STATE_HOME/healthcard/shell_history`` (default ``~/.local/state/...``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "healthcard" / "shell_history"


# == argument parsing =============================================================================


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`ShellUsageError` instead of printing and exiting."""

    def __init__(self, prog: str, description: str) -> None:
        super().__init__(prog=prog, description=description, add_help=False)

    def error(self, message: str) -> NoReturn:
        raise ShellUsageError(f"{self.prog}: {message} (help {self.prog.split()[0]})")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ShellUsageError(message or f"{self.prog}: stopped")


_SIGN_MODES: dict[str, SignMode] = {"auto": None, "always": True, "never": False}


@dataclass(frozen=True)
class Command:
    """One shell command: its parser, summary and which arguments complete to what."""

    name: str
    summary: str
    parser: _Parser
    completes: tuple[str, ...] = ()  # per positional: path, ef, item, role, file, command, word
    aliases: tuple[str, ...] = ()


def _command(
    name: str,
    usage_args: str,
    summary: str,
    description: str,
    completes: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> Command:
    parser = _Parser(f"{name} {usage_args}".strip(), f"{summary}\n\n{description}".strip())
    parser.usage = f"{name} {usage_args}".strip()
    return Command(name, summary, parser, completes, aliases)


def _build_commands() -> dict[str, Command]:
    cmds: list[Command] = []

    c = _command(
        "ls",
        "[-n] [PATH]",
        "list a DF (default: the current one) with what the card holds",
        "Columns: path, structure, name, size, access keys and the card's answer: present, "
        "missing, records used in cyclic files, index flags, record validity. Reading "
        "record counts and flags authenticates with the RK keys. -n shows the layout only.",
        ("path",),
        ("dir",),
    )
    c.parser.add_argument("-n", "--layout", action="store_true")
    c.parser.add_argument("path", nargs="?")
    cmds.append(c)

    c = _command(
        "tree",
        "[-n]",
        "the whole card from the MF, with what the card holds",
        "Same columns as ls, every DF and EF in card order. -n shows the layout only.",
    )
    c.parser.add_argument("-n", "--layout", action="store_true")
    cmds.append(c)

    c = _command(
        "select",
        "PATH",
        "make a DF or EF current (SELECT)",
        "PATH: / or MF, .., a DF (DDF1, DF01..DF03), an EF path (DDF1/EF06, DDF1EF06), an "
        "EF name (holder) or an FID of the current DF (EF05). cd without PATH goes to the MF.",
        ("path",),
        ("cd",),
    )
    c.parser.add_argument("path", nargs="?")
    cmds.append(c)

    c = _command(
        "read",
        "[-x] [-a] [FILE] [ITEM ...]",
        "read and decode a file: item number, code, name, value",
        "FILE defaults to the current EF, else every file of the current DF (the whole card "
        "at the MF); record groups inpatient / outpatient read EE01-03 / ED01-05. ITEMs "
        "(codes, names or numbers) keep only those items. -x shows the raw bytes (records "
        "or a hex dump) instead; -a also shows empty items.",
        ("read-file", "item"),
    )
    c.parser.add_argument("-x", "--raw", action="store_true")
    c.parser.add_argument("-a", "--all-items", action="store_true")
    c.parser.add_argument("file", nargs="?")
    c.parser.add_argument("items", nargs="*")
    cmds.append(c)

    c = _command(
        "write",
        "[--sign MODE] [FILE] ITEM VALUE | --data DOC.json [--file FILE ...]",
        "write one item, or a JSON document as `healthcard write` does",
        "One item: the file is read, the item changed and the file written back, through the "
        "same validation and secure messaging as `healthcard write` (FILE defaults to the "
        "current EF). --data writes a document as printed by `read --json` / `healthcard read "
        "--json` (only the --file entries when given). --sign auto|always|never: EE/ED "
        "record signatures (default auto).",
        ("ef", "item", "word"),
    )
    c.parser.add_argument("--data", metavar="DOC.json")
    c.parser.add_argument("--file", dest="files", action="append", default=[])
    c.parser.add_argument("--sign", choices=list(_SIGN_MODES), default="auto")
    c.parser.add_argument("args", nargs="*")
    cmds.append(c)

    c = _command(
        "auth",
        "ROLE",
        "external authentication with a key role (RK1_DDF1, UK1_DF01, ...)",
        "The security module computes the cryptogram for the card's challenge. A refusal "
        "shows the tries left; the key is then never sent again in this session.",
        ("role",),
    )
    c.parser.add_argument("role")
    cmds.append(c)

    c = _command(
        "info",
        "",
        "ATR, card factor candidates and confirmation, security module and SAM state",
        "The card factor is confirmed once per card, as before any authentication: SELECT "
        "MF and DDF1, a free READ RECORD of YYCSDM, INTERNAL AUTHENTICATE per candidate (no "
        "try counter); then what was current is selected again. A PSAM's public files were "
        "read when it was opened.",
    )
    cmds.append(c)

    c = _command(
        "apdu",
        "[--expect SW] HEX",
        "send a raw APDU; the status word is explained",
        "T=0 61xx / 6Cxx are answered by the channel (GET RESPONSE, Le). Afterwards the "
        "shell forgets the card's selection and security state. --expect SW (X = any digit, "
        "e.g. 63CX) fails the command when the status word differs. PINs and key values are "
        "masked in the output, the trace and the history.",
    )
    c.parser.add_argument("--expect", metavar="SW")
    c.parser.add_argument("hex", nargs="+")
    cmds.append(c)

    c = _command(
        "trace",
        "[on FILE | off]",
        "start or stop a JSON Lines APDU trace (keys and PINs masked)",
        "on FILE starts a new trace (replacing the file); off stops it; without arguments "
        "shows whether tracing is on.",
        ("word", "file"),
    )
    c.parser.add_argument("switch", nargs="?", choices=["on", "off"])
    c.parser.add_argument("file", nargs="?")
    cmds.append(c)

    c = _command(
        "decode",
        "[--offset N] FILE HEX",
        "decode bytes as a file's items (no card needed)",
        "TLV files: TLV records back to back; index files: one flag byte per record; cyclic "
        "files: whole records; transparent files: bytes from --offset (default 0). Items "
        "that do not decode are shown raw with the reason.",
        ("ef",),
    )
    c.parser.add_argument("--offset", type=int, default=0)
    c.parser.add_argument("file")
    c.parser.add_argument("hex", nargs="+")
    cmds.append(c)

    c = _command(
        "reset",
        "[--cold]",
        "reset the card (warm; --cold powers it off and on)",
        "The selection goes back to the MF and every security state is lost.",
    )
    c.parser.add_argument("--cold", action="store_true")
    cmds.append(c)

    c = _command("help", "[COMMAND]", "list the commands, or explain one", "", ("command",), ("?",))
    c.parser.add_argument("topic", nargs="?")
    cmds.append(c)

    c = _command("quit", "", "leave the shell (also Ctrl-D)", "", (), ("exit",))
    cmds.append(c)
    return {cmd.name: cmd for cmd in cmds}


COMMANDS: dict[str, Command] = _build_commands()
_ALIASES: dict[str, str] = {
    alias: cmd.name for cmd in COMMANDS.values() for alias in (cmd.name, *cmd.aliases)
}


# == the shell ====================================================================================


class Shell:
    """Runs command lines on a :class:`CardExplorer`."""

    def __init__(self, explorer: CardExplorer) -> None:
        self.explorer = explorer

    def prompt(self) -> str:
        return f"healthcard {self.explorer.location}> "

    # -- running ----------------------------------------------------------------------------------

    def execute(self, line: str) -> Reply | None:
        """Run one line; None for a blank line or a ``#`` comment. Errors are in the reply."""
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        shown = self.masked(text)
        try:
            words = shlex.split(text)
        except ValueError as exc:
            return Reply(shown, "", error=ShellUsageError(f"cannot parse the line: {exc}"))
        name = _ALIASES.get(words[0].lower())
        if name is None:
            error = ShellUsageError(f"unknown command {words[0]!r}; help lists the commands")
            return Reply(shown, words[0], error=error)
        reply = Reply(shown, name)
        if "-h" in words[1:] or "--help" in words[1:]:
            return self._help(reply, name)
        try:
            args = COMMANDS[name].parser.parse_args(words[1:])
            getattr(self, f"_do_{name}")(reply, args)
        except HealthCardError as exc:
            reply.error = exc
        except OSError as exc:
            reply.error = ShellUsageError(f"{name}: {exc.strerror or exc}: {exc.filename}")
        return reply

    @staticmethod
    def masked(line: str) -> str:
        """The line with an ``apdu`` command's secret bytes (PINs, keys) masked."""
        try:
            words = shlex.split(line)
        except ValueError:
            return line
        command = _secret_apdu(words)
        if command is None:
            return line
        return f"{words[0]} {masked_command_hex(command)}"

    @staticmethod
    def is_secret(line: str) -> bool:
        """True when the line carries a PIN or key value (never kept in the history)."""
        try:
            return _secret_apdu(shlex.split(line)) is not None
        except ValueError:
            return False

    # -- commands ---------------------------------------------------------------------------------

    def _do_ls(self, reply: Reply, args: argparse.Namespace) -> None:
        _listing(reply, self.explorer.ls(args.path, probe=not args.layout), tree=False)

    def _do_tree(self, reply: Reply, args: argparse.Namespace) -> None:
        _listing(reply, self.explorer.tree(probe=not args.layout), tree=True)

    def _do_select(self, reply: Reply, args: argparse.Namespace) -> None:
        result = self.explorer.select(args.path or "/")
        reply.data = result.to_json()
        text = f"{result.path}  {result.kind}  {result.name}"
        if result.detail:
            text += f"  ({result.detail})"
        reply.blocks.append(text)

    def _do_read(self, reply: Reply, args: argparse.Namespace) -> None:
        if args.raw:
            if args.items:
                raise ShellUsageError("read -x reads a whole file; give no ITEM")
            raw: RawFile = self.explorer.read_raw(args.file)
            reply.data = raw.to_json()
            reply.blocks.append(f"{raw.path} ({raw.structure})")
            reply.blocks.extend(raw.lines())
            return
        target, items = args.file, list(args.items)
        if (
            target is not None
            and self.explorer.current_ef
            and not self.explorer.names_a_file(target)
        ):
            target, items = None, [target, *items]  # ITEMs of the current EF
        result: ReadReply = self.explorer.read(target, items, all_items=args.all_items)
        reply.data = result.to_json()
        reply.blocks.append(Table(result.rows, ("file", "item", "code", "name", "value")))
        reply.blocks.extend(  # unreadable files have their row in the table already
            f"warning: {n.message}" for n in result.notices if n.kind != "unreadable"
        )

    def _do_write(self, reply: Reply, args: argparse.Namespace) -> None:
        sign = _SIGN_MODES[args.sign]
        explorer = self.explorer
        if args.data is not None:
            if args.args:
                raise ShellUsageError("write --data takes no FILE ITEM VALUE (use --file)")
            path = Path(args.data).expanduser()
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ShellUsageError(f"{path}: not a readable JSON document ({exc})") from None
            results = explorer.write_document(document, args.files, sign=sign)
        else:
            if args.files:
                raise ShellUsageError("--file goes with --data")
            if len(args.args) == 2:
                target, (item_key, value) = None, args.args
            elif len(args.args) == 3:
                target, item_key, value = args.args
            else:
                raise ShellUsageError(
                    "write needs [FILE] ITEM VALUE, or --data DOC.json (help write)"
                )
            results = explorer.write_item(target, item_key, value, sign=sign)
        rows = [{"file": r.file, "action": r.action, "note": r.note} for r in results]
        reply.data = rows
        reply.blocks.append(Table(rows, ("file", "action", "note")))

    def _do_auth(self, reply: Reply, args: argparse.Namespace) -> None:
        result = self.explorer.auth(args.role)
        reply.data = result.to_json()
        reply.blocks.append(f"{result.key}: authenticated in {result.df}")

    def _do_info(self, reply: Reply, args: argparse.Namespace) -> None:
        info = self.explorer.info()
        reply.data = info
        reply.blocks.extend(_info_lines(info))

    def _do_apdu(self, reply: Reply, args: argparse.Namespace) -> None:
        result: ApduReply = self.explorer.apdu("".join(args.hex))
        reply.data = result.to_json()
        reply.blocks.append(f"> {result.command}")
        if result.data:
            reply.blocks.append(f"< {result.data.hex(' ').upper()}")
        sw = f"SW {result.sw:04X} {result.meaning}"
        if result.tries_left is not None:
            sw += f" ({result.tries_left} tries left)"
        reply.blocks.append(sw)
        if args.expect is not None:
            pattern = args.expect.upper().replace(" ", "")
            if not re.fullmatch(r"[0-9A-FX]{4}", pattern):
                raise ShellUsageError(f"--expect {args.expect!r}: give 4 hex digits, X = any")
            regex = pattern.replace("X", "[0-9A-F]")
            if not re.fullmatch(regex, f"{result.sw:04X}"):
                raise CheckFailed(f"apdu: expected SW {pattern}, card answered {result.sw:04X}")

    def _do_trace(self, reply: Reply, args: argparse.Namespace) -> None:
        explorer = self.explorer
        if args.switch == "on":
            if not args.file:
                raise ShellUsageError("trace on needs a FILE")
            path = explorer.trace_on(Path(args.file).expanduser())
            reply.blocks.append(f"trace on: {path} (keys and PINs masked)")
        elif args.switch == "off":
            if args.file:
                raise ShellUsageError("trace off takes no FILE")
            written = explorer.trace_off()
            reply.blocks.append(f"trace off ({written} written)" if written else "trace was off")
        else:
            reply.blocks.append(
                f"trace on: {explorer.tracing}" if explorer.tracing else "trace off"
            )
        reply.data = {"trace": explorer.tracing}

    def _do_decode(self, reply: Reply, args: argparse.Namespace) -> None:
        target = self.explorer.resolve_ef(args.file)
        text = re.sub(r"[\s:]", "", "".join(args.hex))
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ShellUsageError(f"decode: {text[:40]!r} is not hex") from None
        items = decode_file(target, raw, args.offset)
        reply.data = {"file": target.path.replace("/", ""), "items": [i.to_json() for i in items]}
        reply.blocks.append(
            Table([i.row() for i in items], ("where", "item", "code", "name", "value", "note"))
        )

    def _do_reset(self, reply: Reply, args: argparse.Namespace) -> None:
        atr = self.explorer.reset(cold=args.cold)
        reply.data = {"atr": atr.hex().upper(), "cold": args.cold}
        reply.blocks.append(f"{'cold' if args.cold else 'warm'} reset, ATR {atr.hex().upper()}")

    def _do_help(self, reply: Reply, args: argparse.Namespace) -> None:
        if args.topic:
            name = _ALIASES.get(args.topic.lower())
            if name is None:
                raise ShellUsageError(f"no command {args.topic!r}; help lists the commands")
            self._help(reply, name)
            return
        width = max(len(c.name) for c in COMMANDS.values())
        lines = [
            f"{c.name:<{width}}  {c.summary}"
            + (f" (also {', '.join(c.aliases)})" if c.aliases else "")
            for c in COMMANDS.values()
        ]
        lines.append("help COMMAND (or COMMAND -h) explains one; Tab completes.")
        reply.data = {"commands": {c.name: c.summary for c in COMMANDS.values()}}
        reply.blocks.extend(lines)

    def _help(self, reply: Reply, name: str) -> Reply:
        text = COMMANDS[name].parser.format_help().rstrip()
        reply.data = {"help": text}
        reply.blocks.extend(text.splitlines())
        return reply

    def _do_quit(self, reply: Reply, args: argparse.Namespace) -> None:
        reply.quit = True
        reply.data = {"quit": True}

    # -- completion -------------------------------------------------------------------------------

    def complete(self, text: str) -> tuple[str, list[str]]:
        """Completions for the line typed so far: ``(word being completed, candidates)``;
        each candidate replaces the word."""
        words = text.split()
        if text and not text[-1].isspace():
            word, before = words[-1], words[:-1]
        else:
            word, before = "", words
        if not before:
            return word, _matches(
                word, [*COMMANDS, *(a for c in COMMANDS.values() for a in c.aliases)]
            )
        name = _ALIASES.get(before[0].lower())
        if name is None:
            return word, []
        command = COMMANDS[name]
        if word.startswith("-"):
            options = [o for a in command.parser._actions for o in a.option_strings]
            return word, _matches(word, options)
        if before[-1] in ("--data",):
            return word, _local_files(word)
        if before[-1] in ("--file",):
            return word, _matches(word, self._card_files(ef_only=True))
        if before[-1] in ("--sign",):
            return word, _matches(word, list(_SIGN_MODES))
        positionals = _positionals(before[1:])
        if name == "trace":
            if not positionals:
                return word, _matches(word, ["on", "off"])
            return word, _local_files(word) if positionals[0] == "on" else []
        if name == "write" and len(positionals) == 1 and not self._is_file(positionals[0]):
            kind = "word"  # [FILE] omitted: ITEM VALUE in the current EF
        else:
            kinds = command.completes
            kind = kinds[min(len(positionals), len(kinds) - 1)] if kinds else ""
        if kind == "item":
            source = positionals[0] if positionals and self._is_file(positionals[0]) else None
            return word, _matches(word, self._items(source))
        if kind == "path":
            return word, _matches(word, [*self._card_files(ef_only=False), "..", "/"])
        if kind == "ef":
            if name == "write" and not positionals and self.explorer.current_ef:
                return word, _matches(word, [*self._card_files(True), *self._items(None)])
            return word, _matches(word, self._card_files(ef_only=True))
        if kind == "read-file":
            groups = ["inpatient", "outpatient", "DF03EE", "DF03ED"]
            choices = self._card_files(ef_only=True) + groups
            if self.explorer.current_ef:
                choices += self._items(None)
            return word, _matches(word, choices)
        if kind == "role":
            return word, _matches(word, list(AUTH_ROLES))
        if kind == "command":
            return word, _matches(word, list(COMMANDS))
        return word, []

    def _card_files(self, ef_only: bool) -> list[str]:
        cwd = self.explorer.cwd
        names = [] if ef_only else [d.name for d in DFS if d.name != "MF"]
        names += [e.path for e in EFS] + [e.name for e in EFS]
        names += [e.path.split("/")[1] for e in EFS if e.df == cwd]
        return names

    def _is_file(self, text: str) -> bool:
        return self.explorer.names_a_file(text)

    def _items(self, source: str | None) -> list[str]:
        try:
            target: EF = self.explorer.resolve_ef(source)
        except HealthCardError:
            return []
        slots = file_class(target.path).slots()
        return [s.json_code for s in slots] + [s.json_name for s in slots]


def _positionals(words: Sequence[str]) -> list[str]:
    """The words that are not options or option values."""
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("--data", "--file", "--sign", "--expect", "--offset"):
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


def _matches(word: str, candidates: Sequence[str]) -> list[str]:
    lowered = word.lower()
    seen: dict[str, None] = {}
    for candidate in candidates:
        if candidate.lower().startswith(lowered):
            seen.setdefault(candidate, None)
    return sorted(seen, key=lambda c: (c.lower() != c, c))


def _local_files(word: str) -> list[str]:
    pattern = os.path.expanduser(word) + "*"
    return [p + ("/" if os.path.isdir(p) else "") for p in sorted(glob.glob(pattern))]


def _secret_apdu(words: Sequence[str]) -> CommandApdu | None:
    """The APDU of an ``apdu`` line when the trace rules call part of it secret."""
    if not words or _ALIASES.get(words[0].lower()) != "apdu":
        return None
    hex_words = _positionals(words[1:])
    try:
        command = CommandApdu.from_bytes(bytes.fromhex(re.sub(r"[\s:]", "", "".join(hex_words))))
    except (ValueError, ApduFormatError):
        return None
    return command if default_masker(command) else None


def _listing(reply: Reply, entries: list[ListingEntry], *, tree: bool) -> None:
    reply.data = [e.to_json() for e in entries]
    rows = []
    for entry in entries:
        label = entry.path.split("/")[-1] if tree else entry.path
        rows.append(
            {
                "path": "  " * entry.depth + label if tree else label,
                "kind": entry.kind,
                "name": entry.name,
                "size": entry.size,
                "access": entry.access,
                "card": entry.card,
            }
        )
    reply.blocks.append(Table(rows, ("path", "kind", "name", "size", "access", "card")))


def _factor_lines(factor: dict[str, Any]) -> list[str]:
    """The card-factor lines of ``info``: rule, candidates with their outcome, factor in use."""
    lines = [f"factor    product rule {factor['rule']}, status {factor['status']}"]
    width = max((len(" = ".join(c["rules"])) for c in factor["candidates"]), default=0)
    lines += [
        f"            {c['factor']}  {' = '.join(c['rules']):<{width}}  {c['outcome']}"
        for c in factor["candidates"]
    ]
    lines.append(f"          in use {factor['factor'] or 'none'}")
    lines.append(f"          {factor['message']}")
    return lines


def _info_lines(info: dict[str, Any]) -> list[str]:
    lines = [f"reader    {info['reader']} ({info['protocol'] or 'protocol unknown'})"]
    atr = info["atr"]
    lines.append(f"ATR       {atr['raw']}")
    if "error" in atr:
        lines.append(f"          unreadable: {atr['error']}")
    else:
        interface = " ".join(f"{k}={v}" for k, v in atr["interface_bytes"].items()) or "none"
        lines += [
            f"          {atr['convention']} convention, protocols {', '.join(atr['protocols'])}"
            f" (uses {atr['preferred_protocol']}), TCK {atr['tck']}",
            f"          interface bytes {interface}",
            f"          historical bytes {atr['historical_bytes'] or '(none)'}",
        ]
    lines += _factor_lines(info["card_factor"])
    security = info["security"]
    details = ", ".join(f"{k} {v}" for k, v in security.items() if k != "module")
    lines.append(f"security  {security['module']}" + (f": {details}" if details else ""))
    session = info["session"]
    lines.append(
        f"session   at {session['location']}, card DF {session['card_df'] or 'unknown'}, "
        f"authenticated {session['authenticated_key'] or 'none'}, "
        f"trace {session['trace'] or 'off'}"
    )
    return lines


# == opening =======================================================================================


class _NoSecurityModule(SecurityModule):
    """Stands in when the shell was opened without keys: every key operation says so."""

    name = "none"

    def __init__(self, names: OptionNames) -> None:
        listed = ", ".join(names(n) for n in ("keys", "pkcs11_token", "sam_reader", "sim_sam"))
        self._message = f"no security module: this needs the card keys; start with one of {listed}"

    def _refuse(self) -> NoReturn:
        raise SecurityModuleError(self._message)

    @property
    def algorithm(self) -> BlockCipher:
        return BlockCipher.SM4

    def session(self, key: KeySpec, factors: CardFactors, challenge: bytes) -> SessionOps:
        self._refuse()

    def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
        self._refuse()

    def key_check_values(self) -> dict[str, str]:
        self._refuse()

    def sign_digest(self, digest: bytes) -> bytes:
        self._refuse()

    def certificate(self) -> bytes:
        self._refuse()


@contextmanager
def open_explorer(
    card: CardOptions | None,
    security: SecurityOptions,
    *,
    trace: str | os.PathLike[str] | None = None,
    names: OptionNames = option_flag,
    factor_rule: FactorRule | str = DEFAULT_FACTOR_RULE,
    confirm_factor: bool = True,
) -> Iterator[CardExplorer]:
    """Open the card (``None``: offline) and the security module (optional: without one, key
    operations say which options give one) as a :class:`CardExplorer`; closes them after.

    ``trace`` starts a JSON Lines trace of the card's and SAM's APDUs from the first one.
    ``factor_rule`` / ``confirm_factor`` are the card product's card-factor rule and its
    confirmation by INTERNAL AUTHENTICATE (as for :class:`HealthCard`).
    """
    if card is not None:
        check_card_options(card, names=names)
    backend = security.backend(names) if security.chosen() else None
    with ExitStack() as stack:
        tracer = None
        if trace is not None:
            tracer = stack.enter_context(Tracer(Path(trace)))
        if card is None:
            explorer = CardExplorer(None)
            stack.callback(explorer.close)
            yield explorer
            return
        module: SecurityModule
        sam = None
        if backend is not None:
            opened = stack.enter_context(open_security(security, trace=tracer, names=names))
            module, sam = opened.module, opened.sam
        else:
            module = _NoSecurityModule(names)
        link = stack.enter_context(open_card_link(card, names=names))
        health_card = HealthCard(
            Channel(link.transport, trace=tracer),
            module,
            factor_rule=factor_rule,
            confirm_factor=confirm_factor,
        )
        explorer = CardExplorer(
            health_card,
            sam=sam,
            security_backend=backend,
            trace=tracer,
            trace_path=None if trace is None else str(trace),
        )
        stack.callback(explorer.close)
        yield explorer
