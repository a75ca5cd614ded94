"""Errors of the batch layer. Messages name the file, row, field or reader concerned."""

from __future__ import annotations

from healthcard_apdu.apdu.errors import HealthCardError


class BatchError(HealthCardError):
    """Base of every error the batch layer raises."""


class InputError(BatchError):
    """A resident file that cannot be read at all (encoding, header, syntax)."""

    def __init__(self, path: str, row: int | None, reason: str) -> None:
        self.path = path
        self.row = row
        self.reason = reason
        where = f"{path}, row {row}" if row is not None else path
        super().__init__(f"{where}: {reason}")


class JournalError(BatchError):
    """The journal cannot be opened, migrated or does not match the batch."""


class ReaderGoneError(BatchError):
    """A reader disappeared (unplugged, driver gone); the worker waits for it to return."""
