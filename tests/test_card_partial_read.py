"""A card without some read keys (EXTERNAL AUTHENTICATE ``6A88``): everything else is read.

"A bad byte in one item never hides the rest of the card" holds for files: a whole-card read
(library, ``healthcard read``, the shell's ``read`` and ``tree``) reads what it can, names each
file the card holds no read key for, never sends an absent key twice and spends no try.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from healthcard_apdu.apdu.errors import AuthenticationFailed
from healthcard_apdu.card import HealthCard, KeyNotPresent
from healthcard_apdu.card.document import UnreadableFile, read_document, read_selection
from healthcard_apdu.card.explorer import CardExplorer
from healthcard_apdu.cli.card import read_command
from healthcard_apdu.cli.shell import shell_command
from healthcard_apdu.security import SoftwareSecurityModule
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import Quirks, save_image
from healthcard_apdu.transport import Channel
from test_card_fixtures import SAM_PIN, Recorder, issued_card, keyset, sample

#: Key references of RK1_DDF1 (04) and RK1_DF01..DF03 (84): ``sim new-card --without-rk-keys``.
NO_RK = {0x04, 0x84}
ENV = {"HEALTHCARD_SAM_PIN": SAM_PIN}
RK_FILES = [
    "DDF1EF06",
    "DDF1EF07",
    "DDF1EF08",
    "DF01EF05",
    "DF01EF06",
    "DF01EF07",
    "DF01EF08",
    "DF02EF05",
    "DF02EF06",
    "DF02EF07",
    "DF02EF08",
    "DF03EE",
    "DF03ED",
]


def card_without(refs: set[int]) -> SimCard:
    card = issued_card()
    card.image.quirks = Quirks(absent_external_keys=set(refs))
    return card


def counters(card: SimCard) -> list[int]:
    return [
        key.tries_left
        for df in card.image.mf.walk()
        if df.keyfile is not None
        for key in df.keyfile.keys
        if key.has_counter
    ]


def external_auths(recorder: Recorder) -> list[int]:
    """Key references of the EXTERNAL AUTHENTICATEs sent."""
    return [apdu[3] for apdu in recorder.sent if apdu[1] == 0x82]


def test_the_library_reads_what_it_can_and_names_each_file_it_cannot() -> None:
    card = card_without(NO_RK)
    before = counters(card)
    recorder = Recorder(card)
    health = HealthCard(Channel(recorder), SoftwareSecurityModule(keyset()))
    unreadable: list[UnreadableFile] = []
    selection = read_selection(health, unreadable=unreadable)
    assert [s.code for s, _ in selection] == ["DDF1EF05"]
    assert selection[0][1] == sample().issuer
    assert [u.selector.code for u in unreadable] == RK_FILES
    assert {u.selector.code: u.key for u in unreadable}["DF02EF07"] == "RK1_DF02"
    assert "key RK1_DDF1 not present on this card" in unreadable[0].message
    notices = [n for n in health.warnings if n.kind == "unreadable"]
    assert [n.path for n in notices] == RK_FILES and notices[0].key == "RK1_DDF1"
    assert notices[0].to_json()["key"] == "RK1_DDF1"
    assert external_auths(recorder) == [0x04, 0x84, 0x84, 0x84]  # once per DF, never again
    assert counters(card) == before


def test_only_the_files_of_the_absent_key_are_missing() -> None:
    card = card_without({0x04})  # RK1_DDF1 only: DF01..DF03 are readable
    health = HealthCard(Channel(Recorder(card)), SoftwareSecurityModule(keyset()))
    unreadable: list[UnreadableFile] = []
    document = read_document(health, unreadable=unreadable)
    assert [u.selector.code for u in unreadable] == ["DDF1EF06", "DDF1EF07", "DDF1EF08"]
    full = HealthCard(Channel(Recorder(issued_card())), SoftwareSecurityModule(keyset()))
    expected = read_document(full)
    assert document == {k: v for k, v in expected.items() if k not in RK_FILES[:3]}
    assert document["DF01EF06"] == expected["DF01EF06"] and len(document) == 14 - 3


def test_without_the_list_the_first_absent_key_stops_as_before() -> None:
    card = card_without(NO_RK)
    recorder = Recorder(card)
    health = HealthCard(Channel(recorder), SoftwareSecurityModule(keyset()))
    with pytest.raises(KeyNotPresent, match="key RK1_DDF1 not present"):
        read_selection(health)
    sent = len(recorder.sent)
    with pytest.raises(KeyNotPresent, match="not sent again"):
        health.read_holder()
    assert all(a[1] != 0x82 for a in recorder.sent[sent:])  # not sent again
    with pytest.raises(KeyNotPresent):  # nothing of the selection readable: the error itself
        read_selection(health, ["holder", "photo"], unreadable=[])


def test_a_refused_authentication_still_stops_the_read() -> None:
    card = issued_card()
    before = counters(card)
    health = HealthCard(
        Channel(Recorder(card)), SoftwareSecurityModule(keyset({"RK1_DF01": bytes(16)}))
    )
    with pytest.raises(AuthenticationFailed):
        read_selection(health, unreadable=[])  # a try was spent: not a card-family property
    assert sum(before) - sum(counters(card)) == 1


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "card.json"
    save_image(card_without(NO_RK).image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    return {"image": image, "sam": sam}


def _read(files: dict[str, Path], *args: str) -> tuple[int, str, str]:
    options = ["--sim-card", str(files["image"]), "--sim-sam", str(files["sam"]), *args]
    result = CliRunner(env=ENV).invoke(read_command, options)
    return result.exit_code, result.stdout, result.stderr


def test_healthcard_read_exits_0_with_a_warning_per_unreadable_file(
    files: dict[str, Path],
) -> None:
    code, out, err = _read(files)
    assert code == 0, err
    assert "示例市卫生健康委员会" in out  # the issuer file is shown
    assert any(
        line.startswith("DF02EF07") and "(not read: key RK1_DF02 not present" in line
        for line in out.splitlines()
    )
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(RK_FILES) and "DDF1EF06 (holder) not read" in warnings[0]

    code, out, err = _read(files, "--json", "--keys-by", "name")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"issuer", "warnings"}
    unreadable = [w for w in document["warnings"] if w["kind"] == "unreadable"]
    assert [(w["path"], w["key"]) for w in unreadable][:2] == [
        ("DDF1EF06", "RK1_DDF1"),
        ("DDF1EF07", "RK1_DDF1"),
    ]

    code, out, err = _read(files, "--file", "issuer", "--file", "holder")
    assert code == 0 and "DDF1EF06" in out and "warning: DDF1EF06" in err
    code, out, err = _read(files, "--file", "holder")  # nothing readable: the key error
    assert code == 4 and "key RK1_DDF1 not present on this card" in err
    code, out, err = _read(files, "--require-all-files")
    assert code == 4 and "示例市卫生健康委员会" in out  # shown, then the failure
    assert "13 file(s) not read (--require-all-files)" in err


def test_the_shell_reads_and_lists_around_the_absent_keys(files: dict[str, Path]) -> None:
    options = ["--sim-card", str(files["image"]), "--sim-sam", str(files["sam"]), "--json"]
    result = CliRunner(env=ENV).invoke(shell_command, options, input="tree\nread\n")
    assert result.exit_code == 0, result.stderr
    tree, read = (json.loads(line)["result"] for line in result.stdout.splitlines())
    cells = {entry["path"]: entry["card"] for entry in tree}
    assert cells["DDF1/EF05"] == "present"
    assert cells["DF02/EF07"].startswith("not readable: key RK1_DF02 not present on this card")
    assert cells["DF02/EF08"] == cells["DF02/EF07"]  # the same words, the key not sent again
    assert cells["DF03/EE01"].startswith("present, index: not readable: key RK1_DF03")
    assert set(read) == {"DDF1EF05", "warnings"}
    assert len([w for w in read["warnings"] if w["kind"] == "unreadable"]) == len(RK_FILES)


def test_the_explorer_names_the_files_and_spends_nothing() -> None:
    card = card_without(NO_RK)
    before = counters(card)
    recorder = Recorder(card)
    health = HealthCard(Channel(recorder), SoftwareSecurityModule(keyset()))
    explorer = CardExplorer(health, security_backend="keys")
    explorer.tree()
    reply = explorer.read()
    assert list(reply.document) == ["DDF1EF05"]
    assert [u.selector.code for u in reply.unreadable] == RK_FILES
    assert reply.rows[-1]["value"] == "(not read: key RK1_DF03 not present on this card)"
    assert "warnings" in reply.to_json()
    assert external_auths(recorder) == [
        0x84,
        0x84,
        0x04,
        0x84,
    ]  # tree: DF02, DF03; read: DDF1, DF01
    assert counters(card) == before
