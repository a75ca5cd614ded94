"""``healthcard sim``: serve simulated cards over vpcd, create blank cards and SAMs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from healthcard_apdu.crypto import BlockCipher, sm2_generate_private
from healthcard_apdu.fileio import parse_json, write_file
from healthcard_apdu.sim.errors import ImageError
from healthcard_apdu.sim.faults import LatencyModel
from healthcard_apdu.sim.image import CardImage, Quirks, save_image
from healthcard_apdu.sim.sam import (
    DEFAULT_PIN,
    default_certificate,
    load_sam_keys,
    sam_state_to_json,
)
from healthcard_apdu.sim.server import serve as serve_cards
from healthcard_apdu.sim.vpcd import DEFAULT_PORT


def _extra(values: tuple[str, ...]) -> list[tuple[Path, int]]:
    out: list[tuple[Path, int]] = []
    for value in values:
        path, sep, slot = value.rpartition(":")
        if not sep or not slot.isdigit():
            raise click.BadParameter(f"{value!r} is not IMAGE:SLOT", param_hint="--extra-card")
        out.append((Path(path), int(slot)))
    return out


@click.group(name="sim")
def sim() -> None:
    """Simulated health card and SAM (in-process or as PC/SC readers through vpcd)."""


@sim.command()
@click.option("--card", "card_image", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), required=True, help="User-card image (JSON).")
@click.option("--sam", "sam_keys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SAM key file (JSON); omit to serve the user card only.")
@click.option("--card-slot", type=int, default=0, show_default=True)
@click.option("--sam-slot", type=int, default=1, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "base_port", type=int, default=DEFAULT_PORT, show_default=True,
              help="vpcd port of slot 0 (slot n uses port + n).")
@click.option("--extra-card", multiple=True, metavar="IMAGE:SLOT",
              help="Serve another user-card image on another slot (repeatable).")
@click.option("--latency-baud", type=int, default=None,
              help="Sleep the modeled ISO 7816-3 time per APDU at this baud rate.")
@click.option("--no-quickack", is_flag=True, help="Naive socket (for benchmarks only).")
@click.option("-v", "--verbose", is_flag=True)
def serve(card_image: Path, sam_keys: Path | None, card_slot: int, sam_slot: int, host: str,
          base_port: int, extra_card: tuple[str, ...], latency_baud: int | None,
          no_quickack: bool, verbose: bool) -> None:
    """Connect the user card and the SAM to vpcd; stop with SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    latency = LatencyModel(baud=latency_baud, sleep=True) if latency_baud else None
    try:
        serve_cards(card_image, sam_keys, (card_slot, sam_slot), host=host, base_port=base_port,
                    quickack=not no_quickack, latency=latency, extra_cards=_extra(extra_card))
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc


#: Key references of the national RK keys (RK1_DDF1 = 04, RK1_DF01..03 = 84) and of the
#: internal-authentication key (04; 00 = "the DF's first internal key").
RK_KEY_REFS = (0x04, 0x84)
INTERNAL_KEY_REFS = (0x00, 0x04)
MF_FID = 0x3F00
DDF1_FID = 0xDDF1


@sim.command("new-card")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--serial", required=True, help="8-byte card factor (16 hex digits).")
@click.option("--protocol", type=click.Choice(["T=1", "T=0"]), default="T=1", show_default=True)
@click.option("--cipher", type=click.Choice(["SM4", "TDES"]), default="SM4", show_default=True,
              help="Algorithm of 16-byte keys.")
@click.option("--atr-layout", type=click.Choice(["factor-first", "factor-last"]),
              default="factor-first", show_default=True,
              help="Historical bytes: the factor then 5 more bytes (the real family's shape), "
              "or 'HC' + the factor (this simulator's old shape).")
@click.option("--historical", metavar="HEX",
              help="Explicit ATR historical bytes (0..15 bytes; overrides --atr-layout).")
@click.option("--mf-bare-9000", is_flag=True,
              help="SELECT of the MF answers a bare 9000 without FCI.")
@click.option("--ddf1-no-a5", is_flag=True, help="The FCI of DDF1 has no A5 template.")
@click.option("--record-le00", is_flag=True,
              help="READ RECORD with Le = 00 returns the whole record (also under T=0).")
@click.option("--without-rk-keys", is_flag=True,
              help="EXTERNAL AUTHENTICATE with the RK keys (04, 84) answers 6A88.")
@click.option("--without-internal-key", is_flag=True,
              help="INTERNAL AUTHENTICATE (00 88, key 00/04) answers 6A88.")
@click.option("--force", is_flag=True, help="Overwrite an existing image.")
def new_card(path: Path, serial: str, protocol: str, cipher: str, atr_layout: str,
             historical: str | None, mf_bare_9000: bool, ddf1_no_a5: bool, record_le00: bool,
             without_rk_keys: bool, without_internal_key: bool, force: bool) -> None:
    """Create a blank card image (MF only, issuance state)."""
    try:
        factor = bytes.fromhex(serial)
    except ValueError as exc:
        raise click.BadParameter("not hex", param_hint="--serial") from exc
    try:
        explicit = None if historical is None else bytes.fromhex(historical)
    except ValueError as exc:
        raise click.BadParameter("not hex", param_hint="--historical") from exc
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (use --force)")
    quirks = Quirks(
        bare_select={MF_FID} if mf_bare_9000 else set(),
        fci_without_a5={DDF1_FID} if ddf1_no_a5 else set(),
        record_le00=record_le00,
        absent_external_keys=set(RK_KEY_REFS) if without_rk_keys else set(),
        absent_internal_keys=set(INTERNAL_KEY_REFS) if without_internal_key else set(),
    )
    try:
        image = CardImage.blank(factor, protocol=protocol, cipher16=BlockCipher[cipher],
                                atr_layout=atr_layout, historical=explicit, quirks=quirks)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    save_image(image, path)
    click.echo(f"blank card {factor.hex().upper()} written to {path} "
               f"(historical bytes {image.historical_bytes().hex().upper()})")


@sim.command("new-sam")
@click.argument("keys", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def new_sam(keys: Path, out: Path, force: bool) -> None:
    """Complete a SAM key file: check it, add an SM2 key and default files, write OUT."""
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists (use --force)")
    try:
        state = load_sam_keys(keys)  # checks the file; any problem is an ImageError
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    raw = parse_json(keys.read_bytes())  # already parsed once above: cannot fail here
    if state.sm2_private is None:
        state.sm2_private = sm2_generate_private()
        if "EF1C" not in raw.get("files", {}):
            state.files["EF1C"] = default_certificate(state.serial, state.sm2_private)
    # master keys, the SM2 private key and the PIN in clear: 0600, atomic, durable
    write_file(out, json.dumps(sam_state_to_json(state, str(raw.get("pin", DEFAULT_PIN))),
                               indent=1))
    click.echo(f"SAM with {len(state.keys)} master keys written to {out} (mode 0600)")
