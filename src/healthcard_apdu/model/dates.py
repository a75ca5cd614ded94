"""Conversions between cn date strings and :mod:`datetime` values."""

from __future__ import annotations

from datetime import date, datetime

from .errors import ValidationError
from .layout import Item


def date_to_cn(value: date) -> str:
    """``date(2024, 1, 15)`` -> ``"20240115"``."""
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def datetime_to_cn(value: datetime) -> str:
    """``datetime(2024, 1, 15, 8, 30)`` -> ``"20240115083000"``."""
    return date_to_cn(value.date()) + f"{value.hour:02d}{value.minute:02d}{value.second:02d}"


def parse_date(item: Item | None, text: object) -> date:
    """Parse ``YYYYMMDD`` into a real calendar date; raises ValidationError naming ``item``."""
    if not isinstance(text, str) or len(text) != 8 or not (text.isascii() and text.isdigit()):
        raise ValidationError(item, text, "date must be 8 digits YYYYMMDD")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ValidationError(item, text, "not a calendar date") from None


def parse_datetime(item: Item | None, text: object) -> datetime:
    """Parse ``YYYYMMDDhhmmss``; raises ValidationError naming ``item``."""
    if not isinstance(text, str) or len(text) != 14 or not (text.isascii() and text.isdigit()):
        raise ValidationError(item, text, "date-time must be 14 digits YYYYMMDDhhmmss")
    try:
        return datetime(
            int(text[:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:]),
        )
    except ValueError:
        raise ValidationError(item, text, "not a calendar date and time") from None


def cn_to_date(text: str) -> date:
    """``"20240115"`` -> ``date(2024, 1, 15)``; raises ValidationError."""
    return parse_date(None, text)


def cn_to_datetime(text: str) -> datetime:
    """``"20240115083000"`` -> ``datetime(2024, 1, 15, 8, 30)``; raises ValidationError."""
    return parse_datetime(None, text)
