"""Shared helpers of the e-card tests: platform key sets, an independent QR decoder, registries.

The QR images are decoded by programs that share no code with segno: ``zbarimg`` (Debian
zbar-tools) for PNG/PBM, and ``rsvg-convert`` (librsvg2-bin) to rasterize SVG first.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.ehc import EhcPlatform, Person, Registry
from healthcard_apdu.security import KeySet, MasterKey, SoftwareSecurityModule

SPEC_SECURITY_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
SPEC_PROTECTION_KEY = bytes.fromhex("11223344556677888877665544332211")
PLATFORM_ROLES = ("EHC_SECURITY", "EHC_PROTECTION", "EHC_SIGNING")
NOW = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)

# The HSM vector's person (docs/reference/ehealth-card.md §3) and a second valid resident.
GUIFUTONG = Person(id_type="01", id_number="110101199211140619", name="贵服通")
LI_KUN = Person(id_type="01", id_number="110105198503171231", name="李堃")


def spec_keyset() -> KeySet:
    """A platform key set with the spec's test security key and the HSM's protection key
    (and a fresh SM2 signing key)."""
    keyset = KeySet.generate(PLATFORM_ROLES, with_sm2=False)
    keyset.keys["EHC_SECURITY"] = MasterKey.create(BlockCipher.SM4, SPEC_SECURITY_KEY)
    keyset.keys["EHC_PROTECTION"] = MasterKey.create(BlockCipher.SM4, SPEC_PROTECTION_KEY)
    return keyset


def spec_platform(**options: object) -> EhcPlatform:
    return EhcPlatform.from_module(SoftwareSecurityModule(spec_keyset()), **options)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/setup.sh installs it (APT_PACKAGES)")
    return path


def zbar_decode(image: Path) -> str:
    """The text of the one QR code in ``image`` (PNG or PBM), read by zbarimg."""
    done = subprocess.run(
        [_tool("zbarimg"), "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"zbarimg found no QR code in {image}: {done.stderr.strip()}"
    return done.stdout.removesuffix("\n")


def decode_svg(svg: Path, tmp_path: Path) -> str:
    """Rasterize an SVG with rsvg-convert, then decode it with zbarimg."""
    png = tmp_path / (svg.stem + ".rsvg.png")
    done = subprocess.run(
        [_tool("rsvg-convert"), "--format=png", "--output", str(png), str(svg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return zbar_decode(png)


def terminal_to_pbm(rendering: str, path: Path, *, scale: int = 6) -> Path:
    """Turn a half-block terminal rendering back into a bitmap: each character is two modules
    (upper, lower); a drawn half is light (the rendering is light-on-dark)."""
    upper_light = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
    rows: list[list[bool]] = []
    for line in rendering.splitlines():
        top: list[bool] = []
        bottom: list[bool] = []
        for char in line:
            up, down = upper_light[char]
            top.append(up)
            bottom.append(down)
        rows += [top, bottom]
    width = max(len(row) for row in rows)
    pixels: list[str] = []
    for row in rows:
        dark = ["1" if not light else "0" for light in row] + ["0"] * (width - len(row))
        line = " ".join(bit for bit in dark for _ in range(scale))
        pixels += [line] * scale
    # a white quiet zone around it
    pad = 4 * scale
    full_width = width * scale + 2 * pad
    blank = " ".join("0" * full_width)
    body = [" ".join(["0"] * pad + line.split() + ["0"] * pad) for line in pixels]
    content = [blank] * pad + body + [blank] * pad
    path.write_text(f"P1\n{full_width} {len(content)}\n" + "\n".join(content) + "\n")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A registry per backend: an SQLite file, or a fresh database on the throwaway
    PostgreSQL server of scripts/postgres.sh (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "ehc.sqlite")
        return
    from batch_support import drop_pg_database, fresh_pg_database, pg_server

    server = pg_server()
    dsn, name = fresh_pg_database(server)
    try:
        yield dsn
    finally:
        drop_pg_database(server, name)


@pytest.fixture
def registry(registry_target: str) -> Iterator[Registry]:
    with Registry.open(registry_target) as opened:
        yield opened
