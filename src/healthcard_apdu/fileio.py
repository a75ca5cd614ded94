"""Files in and out, for every layer (the bottom of the layer table: imports nothing of ours).

Writing (docs/architecture.md, "Files"):

* :func:`write_file` replaces a file atomically: a temporary file in the same directory,
  created with the final mode (0600 unless told otherwise), written, fsynced, renamed over the
  target with ``os.replace``, then the directory is fsynced. A crash leaves the old file or the
  new one, never a mix, and the data is on disk when the call returns.
* :func:`open_private` opens a file for streamed writing (traces, journals of lines) created
  with mode 0600; :func:`create_private` creates an empty 0600 file if it does not exist (an
  SQLite database then keeps that mode, and so do its ``-wal`` / ``-shm`` files).

Everything this project writes holds keys, PINs or personal data (resident records, APDU
traces with their data), so 0600 is the default; pass ``mode`` for a file meant to be shared.

Reading: :func:`parse_json` and :func:`parse_toml` turn every malformed input -- nesting deep
enough to exhaust the parser's recursion, integers longer than Python converts, strings with
lone surrogates (not Unicode, so they cannot be written again as UTF-8) -- into
:class:`ValueError`, which each caller reports as its own typed error naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "PRIVATE_MODE",
    "InvalidText",
    "create_private",
    "open_private",
    "parse_json",
    "parse_toml",
    "write_file",
]

#: Mode of every file written by default: owner read/write only.
PRIVATE_MODE = 0o600


class InvalidText(ValueError):
    """Input that parses but cannot be used: too deep, or not valid Unicode."""


def write_file(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = PRIVATE_MODE,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) atomically, with ``mode``.

    ``durable=False`` skips both fsyncs (for throw-away files on tmpfs, e.g. a simulated card
    pool in tests); the replacement is atomic either way.
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    directory = target.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        if mode != PRIVATE_MODE:  # mkstemp creates 0600
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_private(path: str | os.PathLike[str], *, append: bool = False) -> TextIO:
    """Open a UTF-8 text file for writing (truncated, or appended to), created with mode 0600;
    an existing file of ours is narrowed to 0600 too."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_MODE)
    with contextlib.suppress(OSError):  # not our file: keep its mode
        os.fchmod(fd, PRIVATE_MODE)
    return os.fdopen(fd, "a" if append else "w", encoding="utf-8")


def create_private(path: str | os.PathLike[str]) -> bool:
    """Create an empty file with mode 0600 unless it exists; True when it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        _fsync_directory(Path(path).parent)
    return True


def parse_json(raw: str | bytes | bytearray) -> Any:
    """``json.loads`` for untrusted input: every failure is a :class:`ValueError`.

    ``json.JSONDecodeError`` for bad syntax or bytes that are not UTF-8; :class:`InvalidText`
    for nesting too deep for the parser, an integer of more than 4300 digits, or a string
    holding a lone surrogate (``"\\ud800"``).
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidText("JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise InvalidText(f"not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise InvalidText("a number has more digits than can be converted (4300)") from None
    _check_strings(value)
    return value


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads`` for untrusted input: every failure is a :class:`ValueError`
    (``tomllib.TOMLDecodeError`` is one; nesting too deep becomes :class:`InvalidText`)."""
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise InvalidText("TOML nested too deeply") from None
    _check_strings(value)
    return value


def _check_strings(value: Any) -> None:
    """Refuse strings (keys included) with a lone surrogate; iterative, so any depth works."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_unicode(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    _check_unicode(key)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check_unicode(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidText(
            f"a string holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not "
            "Unicode text"
        ) from None
