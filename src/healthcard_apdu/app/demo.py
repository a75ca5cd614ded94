"""The README's main job, end to end through PC/SC: blank simulated card + simulated SAM on
the vpcd readers, personalize the sample resident through pcscd, verify it with the SAM, and
read the whole card back with :class:`~healthcard_apdu.card.HealthCard`.

Needs a running pcscd with the vsmartcard vpcd driver (readers "Virtual PCD 00 00" and
"Virtual PCD 00 01"). Test keys only: the key set is generated fresh and the SAM key file
holds it in clear (simulator state).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from healthcard_apdu import model
from healthcard_apdu.card import HealthCard
from healthcard_apdu.card.document import content_json, document_rows, read_selection
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.profile import DEFAULT_PROFILE, load_profile
from healthcard_apdu.perso.verify import verify_card

__all__ = ["CARD_READER", "SAM_READER", "run_demo"]

CARD_READER = "Virtual PCD 00 00"
SAM_READER = "Virtual PCD 00 01"
VPCD_PORT = 35963
READER_WAIT = 20.0


def run_demo(
    workdir: str | os.PathLike[str],
    *,
    profile: str = DEFAULT_PROFILE,
    card_slot: int = 0,
    sam_slot: int = 1,
) -> dict[str, Any]:
    """Personalize, verify and read back a fresh simulated card through pcscd.

    Returns a summary; ``summary["card"]`` is the card read back as JSON (pinyin-code keys)
    and ``summary["rows"]`` the same as table rows (file, item, code, name, value).

    Writes ``card.json`` (the card image) and ``sam.json`` (the simulated SAM's key file,
    mode 0600) into ``workdir``. The readers are free again when this returns.
    """
    from healthcard_apdu.crypto import BlockCipher
    from healthcard_apdu.fileio import write_file
    from healthcard_apdu.security import KeySet, SoftwareSecurityModule
    from healthcard_apdu.security.export import simulator_sam_document
    from healthcard_apdu.security.psam import PsamSecurityModule
    from healthcard_apdu.sim import SimCard, SimSam
    from healthcard_apdu.sim.vpcd import VpcdLink
    from healthcard_apdu.transport.channel import Channel
    from healthcard_apdu.transport.pcsc import PcscTransport, wait_for_card

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    chosen = load_profile(profile)
    keyset = KeySet.generate(algorithm=chosen.algorithm)
    sam_path = work / "sam.json"
    write_file(sam_path, json.dumps(simulator_sam_document(keyset), indent=1))
    card_path = work / "card.json"
    card = SimCard.blank(
        secrets.token_bytes(8),
        path=card_path,
        overwrite=True,
        cipher16=BlockCipher.SM4 if chosen.algorithm is BlockCipher.SM4 else BlockCipher.TDES,
    )
    sam = SimSam.from_key_file(sam_path)
    readers = (f"Virtual PCD 00 0{card_slot}", f"Virtual PCD 00 0{sam_slot}")
    for reader in readers:
        wait_for_card(reader, present=False, timeout=READER_WAIT)
    links = [
        VpcdLink(card, port=VPCD_PORT + card_slot).start(),
        VpcdLink(sam, port=VPCD_PORT + sam_slot).start(),
    ]
    try:
        for reader in readers:
            wait_for_card(reader, present=True, timeout=READER_WAIT)
        resident = model.sample_resident()
        with (
            SoftwareSecurityModule(keyset, name="demo-keys") as issuer_keys,
            PcscTransport(readers[0]) as transport,
        ):
            result = personalize(transport, chosen, resident, issuer_keys)
        with PcscTransport(readers[1]) as sam_link, PcscTransport(readers[0]) as transport:
            psam = PsamSecurityModule(
                Channel(sam_link),
                pin=keyset.sam_pin,
                algorithm=chosen.algorithm,
                name="simulated-psam",
            )
            with psam:
                report = verify_card(transport, chosen, resident, psam)
                selection = read_selection(HealthCard(Channel(transport), psam))
    finally:
        for link in links:
            link.stop()
        for reader in readers:
            wait_for_card(reader, present=False, timeout=READER_WAIT)
    card_json = {sel.key("code"): content_json(content) for sel, content in selection}
    written = resident.to_json("code") if isinstance(resident, model.CardData) else None
    return {
        "card_image": str(card_path),
        "sam_keys": str(sam_path),
        "reader": readers[0],
        "sam_reader": readers[1],
        "profile": chosen.name,
        "card_factor": result.card_factor,
        "personalize": result.to_json(),
        "verify": {
            "ok": report.ok,
            "files_checked": report.files_checked,
            "keys": {k.role: k.result for k in report.keys},
            "forbidden_accesses_refused": sum(p.refused for p in report.probes),
            "problems": report.problems(),
            "apdus": report.apdus,
        },
        "read_back_equals_record": written is None or _same_items(card_json, written),
        "card": card_json,
        "rows": document_rows(selection),
    }


def _same_items(read: Any, written: Any) -> bool:
    """True when every item the record gives is read back with the same value; items the
    record leaves empty (e.g. the EE/ED signature personalization adds) are not compared."""
    if isinstance(written, dict):
        return isinstance(read, dict) and all(
            code in read and _same_items(read[code], value)
            for code, value in written.items()
            if value not in ("", None) or code not in read
        )
    if isinstance(written, list):
        return (
            isinstance(read, list)
            and len(read) == len(written)
            and all(_same_items(r, w) for r, w in zip(read, written, strict=True))
        )
    return bool(read == written)
