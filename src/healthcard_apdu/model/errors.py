"""Errors of the model layer. Every message names the item (number, code, English name)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healthcard_apdu.apdu.errors import HealthCardError

if TYPE_CHECKING:
    from .layout import Item

_MAX_VALUE_REPR = 80


def short_repr(value: object) -> str:
    """``repr(value)`` cut to 80 characters (with the full length): every message that quotes
    an input value uses it, so a 1 MB name never puts 1 MB on stderr."""
    text = repr(value)
    if len(text) > _MAX_VALUE_REPR:
        return f"{text[:_MAX_VALUE_REPR]}... ({len(text)} chars)"
    return text


class ModelError(HealthCardError, ValueError):
    """Base of every error the model layer raises (layout look-ups, codecs, validation, JSON)."""


class LayoutError(ModelError, LookupError):
    """Unknown item, file, key or code table, or a range that does not fit the layout."""


class ItemError(ModelError):
    """An error about one data item's value; carries the item and the offending value.

    ``item`` is None for helpers that work without an item (e.g. ``cn_to_date``) and for JSON
    keys that match no item; ``context`` names the file or JSON path when known.
    """

    def __init__(
        self, item: Item | None, value: object, reason: str, *, context: str | None = None
    ) -> None:
        self.item = item
        self.value = value
        self.reason = reason
        self.context = context
        super().__init__(self._text())

    @property
    def item_no(self) -> int | None:
        return self.item.no if self.item is not None else None

    @property
    def code(self) -> str | None:
        return self.item.code if self.item is not None else None

    @property
    def name(self) -> str | None:
        return self.item.name if self.item is not None else None

    def _text(self) -> str:
        if self.item is not None:
            where = f"item {self.item.no} {self.item.code} ({self.item.name})"
        else:
            where = "value"
        if self.context:
            where = f"{self.context}: {where}"
        return f"{where}: {self.reason}; got {short_repr(self.value)}"


class ValidationError(ItemError):
    """A value that is well-typed but not acceptable (bad date, check digit, code, shape...)."""


class EncodeError(ValidationError):
    """A value that cannot be encoded at all (wrong type, too long, not GBK, non-digits...)."""


class DecodeError(ItemError):
    """Bytes read from a card that do not decode as the item's format."""


class SchemaError(ItemError):
    """JSON input that does not fit the model (unknown key, wrong JSON type)."""
