"""QR images of the e-card texts: PNG, SVG and a terminal rendering (segno).

Every text is encoded at error-correction level M (no automatic boost, so the version is
predictable) in QR alphanumeric mode: the national texts are upper-case hex and ``:``, and EHC1
is Base45. :data:`MAX_SIGNED_VERSION` is the size budget of the signed envelope (version 10 at
M holds 311 alphanumeric characters).
"""

from __future__ import annotations

import io
import os

import segno

from healthcard_apdu.ehc.errors import EhcInputError

__all__ = [
    "ERROR_LEVEL",
    "MAX_SIGNED_VERSION",
    "png_bytes",
    "qr_code",
    "qr_version",
    "save_image",
    "svg_text",
    "terminal_text",
]

ERROR_LEVEL = "M"
MAX_SIGNED_VERSION = 10
DEFAULT_SCALE = 6
DEFAULT_BORDER = 4


def qr_code(text: str) -> segno.QRCode:
    """The QR code of ``text`` at level M (never a Micro QR)."""
    if not text:
        raise EhcInputError("qr_text", "is empty")
    try:
        return segno.make(text, error=ERROR_LEVEL, boost_error=False, micro=False)
    except segno.DataOverflowError:
        raise EhcInputError("qr_text", f"{len(text)} characters do not fit a QR code") from None


def qr_version(text: str) -> int:
    """The QR version (1-40) ``text`` needs at level M."""
    return int(qr_code(text).version)


def png_bytes(text: str, *, scale: int = DEFAULT_SCALE, border: int = DEFAULT_BORDER) -> bytes:
    """A black-on-white PNG of the QR code."""
    out = io.BytesIO()
    qr_code(text).save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


def svg_text(text: str, *, scale: int = DEFAULT_SCALE, border: int = DEFAULT_BORDER) -> str:
    """A standalone SVG document of the QR code (black on an opaque white background)."""
    out = io.BytesIO()
    qr_code(text).save(out, kind="svg", scale=scale, border=border, xmldecl=True, light="#fff")
    return out.getvalue().decode("utf-8")


def save_image(
    text: str,
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    scale: int = DEFAULT_SCALE,
    border: int = DEFAULT_BORDER,
) -> None:
    """Write a PNG or SVG (``kind``, else the file name's suffix) of the QR code."""
    chosen = (kind or os.fspath(path).rsplit(".", 1)[-1]).lower()
    if chosen not in ("png", "svg"):
        raise EhcInputError("image", f"{os.fspath(path)!r}: kind must be png or svg")
    data = png_bytes(text, scale=scale, border=border) if chosen == "png" else (
        svg_text(text, scale=scale, border=border).encode("utf-8")
    )
    with open(path, "wb") as handle:
        handle.write(data)


def terminal_text(text: str, *, border: int = 2) -> str:
    """The QR code drawn with Unicode half blocks, two modules per character row (light
    modules as blocks, so it scans on a dark terminal and on paper alike)."""
    out = io.StringIO()
    qr_code(text).terminal(out, border=border, compact=True)
    return out.getvalue()
