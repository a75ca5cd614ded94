"""JUnit XML, JSON and HTML reports; the HTML rendered in headless Chromium.

The Chromium test is skipped when no chromium binary is installed, unless
HEALTHCARD_REQUIRE_BROWSER=1 (scripts/test.sh sets it): then a missing browser fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from healthcard_apdu.conformance import SuiteRun, write_reports
from healthcard_apdu.conformance.report import verdicts_from_json
from healthcard_apdu.perso.profile import builtin_profile_path
from healthcard_apdu.security import STANDARD_KEY_SPECS, SoftwareSecurityModule
from healthcard_apdu.sim.defects import Defect, defective_card
from test_conformance_support import (
    PROFILE,
    failing_ids,
    fresh_image,
    keyset,
    run_on,
    seeded_rng,
)

REQUIRE_BROWSER_ENV = "HEALTHCARD_REQUIRE_BROWSER"
FAIL_BORDER = (0xC6, 0x28, 0x28)  # section.case.fail border colour in the report CSS
PASS_BORDER = (0x2E, 0x7D, 0x32)


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteRun, Path]:
    """A small run with two failures (MAC not checked) and its report directory."""
    out = tmp_path_factory.mktemp("report")
    card = defective_card(fresh_image(), Defect.MAC_NOT_CHECKED, rng=seeded_rng())
    run = run_on(card, groups=["atr", "sm", "issuance"], destructive=True,
                 trace=out / "trace.jsonl")
    assert failing_ids(run) == {"HC-SM-002", "HC-SM-007"}
    write_reports(run, out)
    return run, out


def test_junit_xml_parses_with_one_suite_per_group(failing_run: tuple[SuiteRun, Path]) -> None:
    run, out = failing_run
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert int(root.get("tests", "0")) == len(run.results)
    assert int(root.get("failures", "0")) == 2
    suites = root.findall("testsuite")
    assert [s.get("name", "").split()[0] for s in suites] == ["atr", "sm", "issuance"]
    failures = {c.get("name", "").split()[0]: c.find("failure")
                for s in suites for c in s.findall("testcase")}
    failed = {name for name, element in failures.items() if element is not None}
    assert failed == {"HC-SM-002", "HC-SM-007"}
    message = failures["HC-SM-002"].get("message", "")  # type: ignore[union-attr]
    assert "expected 6988 or 9302, got 9000" in message
    props = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    profile_hash = hashlib.sha256(builtin_profile_path(PROFILE).read_bytes()).hexdigest()
    assert props["profile.sha256"] == profile_hash
    assert props["card.factor"] == "0081866B00001015"


def test_json_report_holds_identity_verdicts_and_exchanges(
    failing_run: tuple[SuiteRun, Path],
) -> None:
    run, out = failing_run
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert document["format"] == "healthcard-apdu/conformance-report"
    assert document["passed"] is False
    assert document["summary"]["failed"] == 2
    assert document["profile"]["sha256"] == run.profile.sha256  # type: ignore[union-attr]
    assert document["card"]["atr"] == run.atr
    assert document["tool"]["version"]
    case = next(c for c in document["cases"] if c["id"] == "HC-SM-002")
    assert case["status"] == "failed"
    assert any(not check["ok"] for check in case["checks"])
    commands = [e["command"] for e in case["exchanges"] if "command" in e]
    assert any(c.startswith("04DC") for c in commands)
    assert verdicts_from_json(out / "report.json") == run.verdicts()
    timing = {row["command"] for row in document["command_timing"]}
    assert {"SELECT", "EXTERNAL AUTHENTICATE", "UPDATE RECORD (SM)"} <= timing


def test_no_secret_reaches_trace_or_reports(failing_run: tuple[SuiteRun, Path]) -> None:
    run, out = failing_run
    keys = keyset()
    module = SoftwareSecurityModule(keys)
    from healthcard_apdu.security import CardFactors, city_factor_from_region

    factors = CardFactors(bytes.fromhex(run.card_factor), city_factor_from_region(run.region_code))
    secrets_hex = {k.value.hex().upper() for k in keys.keys.values()}
    secrets_hex |= {module.derive_card_key(STANDARD_KEY_SPECS[role], factors).hex().upper()
                    for role in keys.keys}
    texts = [p.read_text(encoding="utf-8").upper() for p in out.iterdir()]
    assert len(texts) == 4
    for text in texts:
        assert not any(secret in text for secret in secrets_hex)
    trace = (out / "trace.jsonl").read_text(encoding="utf-8")
    write_key = [json.loads(line) for line in trace.splitlines() if '"WRITE KEY' in line]
    assert write_key and all(r["command"].endswith("******") for r in write_key)


def test_html_is_self_contained_with_failures_first(failing_run: tuple[SuiteRun, Path]) -> None:
    _run, out = failing_run
    page = (out / "report.html").read_text(encoding="utf-8")
    lowered = page.lower()
    for external in ("<script", "<link", "src=", "http://", "https://", "url("):
        assert external not in lowered
    first_fail = page.index('class="case fail"')
    first_pass = page.index('class="case pass"')
    assert first_fail < first_pass
    assert page.index('id="HC-SM-002"') < page.index('id="HC-ATR-001"')
    for needle in ("Profile SHA-256", "Card factor", "Tool version", "0081866B00001015"):
        assert needle in page


class _Dom(HTMLParser):
    """Element attributes by id, and the text inside the element with id ``verdict``."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.open_details_in: set[str] = set()
        self.verdict = ""
        self._stack: list[str] = []
        self._section = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.by_id[values["id"]] = {"tag": tag, **values}
        if tag == "section":
            self._section = values.get("id", "")
        if tag == "details" and "open" in values and self._section:
            self.open_details_in.add(self._section)
        self._stack.append(values.get("id", ""))

    def handle_endtag(self, tag: str) -> None:
        if self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if "verdict" in self._stack:
            self.verdict += data


def _png_pixels(raw: bytes) -> tuple[int, int, set[tuple[int, int, int]]]:
    """Width, height and the set of RGB colours of an 8-bit RGB/RGBA PNG (no interlace)."""
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, b"", b""
    while pos < len(raw):
        size, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        body = raw[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + size
    width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 4 if colour == 6 else 3
    data, stride = zlib.decompress(chunks), width * channels
    previous, colours = bytearray(stride), set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = data[start], bytearray(data[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        colours.update(tuple(line[i : i + 3]) for i in range(0, stride, channels))  # type: ignore[misc]
        previous = line
    return width, height, colours


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"chromium is not installed ({REQUIRE_BROWSER_ENV}=1)", pytrace=False)
        pytest.skip("chromium is not installed")
    return binary


def _headless(binary: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile_dir}", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "HOME": str(profile_dir)},
    )


def test_html_renders_in_chromium_with_failures_visible(
    failing_run: tuple[SuiteRun, Path], tmp_path: Path,
) -> None:
    binary = _chromium()
    _run, out = failing_run
    url = (out / "report.html").resolve().as_uri()
    dumped = _headless(binary, tmp_path / "dom", "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = _Dom()
    dom.feed(dumped.stdout)
    assert dom.verdict.startswith("FAIL")
    for case_id in ("HC-SM-002", "HC-SM-007"):
        element = dom.by_id[case_id]
        assert element["tag"] == "section" and "fail" in element["class"].split()
        assert element["data-status"] == "failed"
        assert case_id in dom.open_details_in  # expanded: the failure can be read at once
    assert "pass" in dom.by_id["HC-ATR-001"]["class"].split()
    assert "HC-ATR-001" not in dom.open_details_in

    shot = tmp_path / "report.png"
    taken = _headless(binary, tmp_path / "shot", f"--screenshot={shot}",
                      "--window-size=1000,1400", "--hide-scrollbars", url)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    width, height, colours = _png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    assert FAIL_BORDER in colours  # the failed cases are drawn in the first screen


def test_reports_and_the_trace_are_created_0600(failing_run: tuple[SuiteRun, Path]) -> None:
    """They quote APDUs with the card's personal data (issue 11)."""
    _, out = failing_run
    for name in ("report.json", "junit.xml", "report.html", "trace.jsonl"):
        assert (out / name).stat().st_mode & 0o777 == 0o600, name
