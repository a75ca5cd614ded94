"""Reports of a suite run: JSON (everything), JUnit XML (for CI systems), self-contained HTML.

The exchanges come from the run's trace, in which the tracer has already masked key values
and PINs; nothing else secret passes through the suite. The HTML has no external resources
(inline CSS, no scripts): it opens from a file, an e-mail or a CI artifact store.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from healthcard_apdu.conformance.case import Group, Status
from healthcard_apdu.conformance.runner import CaseResult, Record, SuiteRun
from healthcard_apdu.fileio import write_file

REPORT_FORMAT = "healthcard-apdu/conformance-report"
REPORT_VERSION = 1
_KEPT_EVENTS = ("reset",)
_EXCHANGE_FIELDS = ("n", "name", "command", "response", "sw", "ms", "error", "message")
_INS_NAMES = {
    0xA4: "SELECT", 0xB0: "READ BINARY", 0xB2: "READ RECORD", 0xD6: "UPDATE BINARY",
    0xDC: "UPDATE RECORD", 0xE2: "APPEND RECORD", 0xD2: "WRITE RECORD (flag)",
    0x0C: "ERASE RECORD (flag)", 0x84: "GET CHALLENGE", 0x82: "EXTERNAL AUTHENTICATE",
    0x88: "INTERNAL AUTHENTICATE", 0xC0: "GET RESPONSE", 0xE0: "CREATE FILE", 0xD4: "WRITE KEY",
    0x0E: "ERASE DF", 0xE8: "END ISSUANCE", 0x1E: "APPLICATION BLOCK",
    0x18: "APPLICATION UNBLOCK", 0x16: "CARD BLOCK", 0x20: "VERIFY",
}


# --- shared ------------------------------------------------------------------------------------


def exchanges(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The exchanges and resets of a trace bucket, without timestamps and other events."""
    out: list[dict[str, Any]] = []
    for record in records:
        if "command" in record:
            row: dict[str, Any] = {k: record[k] for k in _EXCHANGE_FIELDS if k in record}
            out.append(row)
        elif record.get("event") in _KEPT_EVENTS:
            out.append({"event": record["event"], "cold": bool(record.get("cold")),
                        "atr": record.get("atr", "")})
    return out


def command_class(command_hex: str) -> str:
    """A name for a command from its header (masked ``*`` nibbles are fine)."""
    try:
        cla, ins = int(command_hex[0:2], 16), int(command_hex[2:4], 16)
    except ValueError:
        return "?"
    name = _INS_NAMES.get(ins, f"INS {ins:02X}")
    if ins in (0xD6, 0xDC, 0xE2) and cla & 0x04:
        name += " (SM)"
    return name


def command_timing(run: SuiteRun) -> list[dict[str, Any]]:
    """Per command class: count and min/median/max link time over the whole run."""
    samples: dict[str, list[float]] = {}
    buckets = [run.setup_exchanges, *(r.exchanges for r in run.results)]
    for bucket in buckets:
        for record in bucket:
            if "command" in record and "ms" in record:
                samples.setdefault(command_class(str(record["command"])), []).append(
                    float(record["ms"]))
    return [
        {"command": name, "count": len(values), "min_ms": round(min(values), 3),
         "median_ms": round(median(values), 3), "max_ms": round(max(values), 3)}
        for name, values in sorted(samples.items())
    ]


def _ordered(results: Sequence[CaseResult]) -> list[CaseResult]:
    """Failures and errors first, then the rest in run order."""
    return [r for r in results if r.status.is_problem] + [
        r for r in results if not r.status.is_problem
    ]


# --- JSON --------------------------------------------------------------------------------------


def case_dict(result: CaseResult) -> dict[str, Any]:
    info = result.info
    return {
        "id": info.id,
        "title": info.title,
        "group": info.group.slug,
        "group_title": info.group.title,
        "reference": info.reference,
        "severity": info.severity,
        "destructive": info.destructive,
        "params": dict(info.params),
        "status": result.status.value,
        "message": result.message,
        "seconds": round(result.seconds, 4),
        "checks": [
            {"what": c.what, "expected": c.expected, "actual": c.actual, "ok": c.ok}
            for c in result.checks
        ],
        "notes": list(result.notes),
        "exchanges": exchanges(result.exchanges),
    }


def report_dict(run: SuiteRun) -> dict[str, Any]:
    profile = run.profile
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "tool": {"name": "healthcard-apdu", "version": run.tool_version},
        "mode": run.mode,
        "started": run.started,
        "finished": run.finished,
        "card": {"atr": run.atr, "card_factor": run.card_factor, "region_code": run.region_code,
                 "protocol": run.protocol, "transport": run.transport,
                 "factor_check": run.factor_check},
        "profile": None if profile is None else {
            "name": profile.name, "source": profile.source, "sha256": profile.sha256,
            "production": profile.production,
        },
        "security": {"module": run.security, "algorithm": run.algorithm},
        "destructive": run.destructive,
        "seed": run.seed,
        "trace": run.trace_path,
        "passed": run.passed,
        "summary": run.counts(),
        "setup": {"error": run.setup_error, "exchanges": exchanges(run.setup_exchanges)},
        "command_timing": command_timing(run),
        "cases": [case_dict(r) for r in run.results],
    }


def write_json(run: SuiteRun, path: str | Path) -> Path:
    target = Path(path)
    write_file(target, json.dumps(report_dict(run), ensure_ascii=False, indent=1) + "\n")
    return target


def verdicts_from_json(path: str | Path) -> dict[str, str]:
    """Case ID -> status of a JSON report (to compare a replay with the recorded run)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if document.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not a conformance report")
    return {str(c["id"]): str(c["status"]) for c in document["cases"]}


# --- JUnit XML ---------------------------------------------------------------------------------


def _case_text(result: CaseResult) -> str:
    lines = [f"{result.info.id} [{result.info.severity}] {result.info.reference}"]
    lines += [f"{'ok  ' if c.ok else 'FAIL'} {c.what}: expected {c.expected}, got {c.actual}"
              for c in result.checks]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _transcript(result: CaseResult) -> str:
    rows = []
    for row in exchanges(result.exchanges):
        if "event" in row:
            rows.append(f"-- {'cold' if row['cold'] else 'warm'} reset, ATR {row['atr']}")
        else:
            answer = row.get("response") or f"{row.get('error')}: {row.get('message', '')}"
            rows.append(f"> {row['command']}  < {answer}  ({row.get('ms', 0)} ms) {row['name']}")
    return "\n".join(rows)


def junit_tree(run: SuiteRun) -> ET.ElementTree[ET.Element]:
    counts = run.counts()
    root = ET.Element("testsuites", {
        "name": "healthcard conformance",
        "tests": str(counts["total"]),
        "failures": str(counts[Status.FAILED.value]),
        "errors": str(counts[Status.ERROR.value]),
        "skipped": str(counts[Status.SKIPPED.value] + counts[Status.NOT_APPLICABLE.value]),
        "time": f"{sum(r.seconds for r in run.results):.3f}",
        "timestamp": run.started,
    })
    properties = {
        "tool.version": run.tool_version, "mode": run.mode, "card.atr": run.atr,
        "card.factor": run.card_factor, "transport": run.transport,
        "card.factor_check": (run.factor_check or {}).get("message", ""),
        "profile.name": run.profile.name if run.profile else "",
        "profile.sha256": run.profile.sha256 if run.profile else "",
        "destructive": str(run.destructive).lower(),
    }
    for group in Group:
        results = [r for r in run.results if r.info.group is group]
        if not results:
            continue
        suite = ET.SubElement(root, "testsuite", {
            "name": f"{group.slug} ({group.title})",
            "tests": str(len(results)),
            "failures": str(sum(r.status is Status.FAILED for r in results)),
            "errors": str(sum(r.status is Status.ERROR for r in results)),
            "skipped": str(sum(r.status in (Status.SKIPPED, Status.NOT_APPLICABLE)
                               for r in results)),
            "time": f"{sum(r.seconds for r in results):.3f}",
            "timestamp": run.started,
        })
        props = ET.SubElement(suite, "properties")
        for name, value in properties.items():
            ET.SubElement(props, "property", {"name": name, "value": value})
        for result in results:
            _junit_case(suite, result, group)
    return ET.ElementTree(root)


def _junit_case(suite: ET.Element, result: CaseResult, group: Group) -> None:
    info = result.info
    element = ET.SubElement(suite, "testcase", {
        "classname": f"healthcard.conformance.{group.slug}",
        "name": f"{info.id} {info.title}",
        "time": f"{result.seconds:.3f}",
    })
    if result.status is Status.FAILED:
        failure = ET.SubElement(element, "failure",
                                {"message": result.message, "type": info.severity})
        failure.text = _case_text(result)
    elif result.status is Status.ERROR:
        error = ET.SubElement(element, "error", {"message": result.message, "type": "error"})
        error.text = _case_text(result)
    elif result.status in (Status.SKIPPED, Status.NOT_APPLICABLE):
        ET.SubElement(element, "skipped", {"message": f"{result.status.value}: {result.message}"})
    transcript = _transcript(result)
    if transcript:
        ET.SubElement(element, "system-out").text = transcript


def write_junit(run: SuiteRun, path: str | Path) -> Path:
    target = Path(path)
    tree = junit_tree(run)
    ET.indent(tree)
    write_file(target, ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True))
    return target


# --- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fff}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.4em 0 .5em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:left;vertical-align:top}th{background:#f2f2f2}
code,.hex{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.banner{padding:.6em 1em;font-size:1.2em;font-weight:bold;border-radius:4px;display:inline-block}
.banner.pass{background:#d8f3dc;color:#1b4332}.banner.fail{background:#ffd6d6;color:#7f1d1d}
.status{font-weight:bold;padding:0 .4em;border-radius:3px}
.status.passed{background:#d8f3dc}.status.failed,.status.error{background:#ffd6d6}
.status.skipped,.status.not_applicable{background:#eee}
section.case{border:1px solid #ccc;border-left-width:6px;margin:.5em 0;padding:.3em .8em}
section.case.fail{border-left-color:#c62828;background:#fff7f7}
section.case.pass{border-left-color:#2e7d32}section.case.other{border-left-color:#9e9e9e}
.check-fail{background:#ffe3e3}.msg{color:#7f1d1d;font-weight:bold}
details>summary{cursor:pointer}.small{color:#555;font-size:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
           raw: bool = False, row_class: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{row_class[index]}"' if row_class and row_class[index] else ""
        cells = "".join(f"<td>{c if raw else _e(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _identity(run: SuiteRun) -> str:
    profile = run.profile
    rows: list[tuple[str, object]] = [
        ("ATR", run.atr), ("Card factor", run.card_factor),
        ("Card-factor check", (run.factor_check or {}).get("message", "-")),
        ("Region code (YYCSDM)", run.region_code),
        ("Protocol", run.protocol), ("Transport", run.transport),
        ("Profile", profile.name if profile else "-"),
        ("Profile SHA-256", profile.sha256 if profile else "-"),
        ("Production profile", profile.production if profile else "-"),
        ("Security module", f"{run.security} ({run.algorithm})"),
        ("Tool version", f"healthcard-apdu {run.tool_version}"),
        ("Mode", run.mode), ("Destructive cases", run.destructive),
        ("Started / finished", f"{run.started} / {run.finished}"),
        ("Host random seed", run.seed), ("Trace", run.trace_path or "-"),
    ]
    return _table(("Item", "Value"), rows)


def _summary(run: SuiteRun) -> str:
    counts = run.counts()
    verdict = "PASS" if run.passed else "FAIL"
    cls = "pass" if run.passed else "fail"
    parts = [f'<p><span class="banner {cls}" id="verdict">{verdict}: {counts["passed"]} passed, '
             f'{counts["failed"]} failed, {counts["error"]} errors, {counts["skipped"]} skipped, '
             f'{counts["not_applicable"]} not applicable of {counts["total"]} cases</span></p>']
    if run.setup_error:
        parts.append(f'<p class="msg">Setup failed: {_e(run.setup_error)}</p>')
    rows = []
    for group in Group:
        results = [r for r in run.results if r.info.group is group]
        if results:
            rows.append((group.title, len(results),
                         *(sum(r.status is s for r in results) for s in Status)))
    parts.append(_table(("Group", "Cases", *(s.value.replace("_", " ") for s in Status)), rows))
    return "".join(parts)


def _exchange_rows(records: Sequence[Record]) -> str:
    rows = []
    for row in exchanges(records):
        if "event" in row:
            rows.append(("", f"{'cold' if row['cold'] else 'warm'} reset",
                         f'<span class="hex">ATR {_e(row["atr"])}</span>', "", "", ""))
            continue
        response = str(row.get("response", ""))
        data, sw = (response[:-4], response[-4:]) if response else ("", "")
        if "error" in row:
            data = f"{row['error']}: {row.get('message', '')}"
        rows.append((
            _e(row.get("n", "")), _e(row.get("name", "")),
            f'<span class="hex">{_e(row["command"])}</span>',
            f'<span class="hex">{_e(data)}</span>', _e(sw), _e(row.get("ms", "")),
        ))
    if not rows:
        return '<p class="small">No APDU exchange.</p>'
    return _table(("#", "Command", "C-APDU", "Response data", "SW", "ms"), rows, raw=True)


def _case_html(result: CaseResult) -> str:
    info = result.info
    status = result.status.value
    cls = "fail" if result.status.is_problem else "pass" if status == "passed" else "other"
    head = (f'<span class="status {status} {cls}">{_e(status.replace("_", " "))}</span> '
            f'<b>{_e(info.id)}</b> {_e(info.title)} '
            f'<span class="small">[{_e(info.severity)}; {_e(info.group.title)}; '
            f'{_e(info.reference)}{"; destructive" if info.destructive else ""}]</span>')
    body = []
    if result.message:
        body.append(f'<p class="msg">{_e(result.message)}</p>')
    if result.checks:
        body.append(_table(
            ("Check", "Expected", "Actual", "OK"),
            [(c.what, c.expected, c.actual, "yes" if c.ok else "NO") for c in result.checks],
            row_class=["" if c.ok else "check-fail" for c in result.checks],
        ))
    body += [f'<p class="small">Note: {_e(n)}</p>' for n in result.notes]
    open_attr = " open" if result.status.is_problem else ""
    body.append(f'<details class="exchange"{open_attr}><summary>APDU exchange '
                f"({len(exchanges(result.exchanges))} rows, {result.seconds * 1000:.0f} ms)"
                f"</summary>{_exchange_rows(result.exchanges)}</details>")
    return (f'<section class="case {cls}" id="{_e(info.id)}" data-status="{status}">'
            f"<details{open_attr}><summary>{head}</summary>{''.join(body)}</details></section>")


def render_html(run: SuiteRun) -> str:
    ordered = _ordered(run.results)
    problems = [r for r in ordered if r.status.is_problem]
    others = [r for r in ordered if not r.status.is_problem]
    timing = command_timing(run)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Health card conformance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Resident Health Card conformance report</h1>",
        '<h2 id="summary">Summary</h2>', _summary(run),
        '<h2 id="identity">Card, profile and tool</h2>', _identity(run),
        f'<h2 id="failures">Failures and errors ({len(problems)})</h2>',
        "".join(_case_html(r) for r in problems) or "<p>None.</p>",
        f'<h2 id="cases">Other cases ({len(others)})</h2>',
        "".join(_case_html(r) for r in others) or "<p>None.</p>",
        '<h2 id="timing">Time per command class</h2>',
        _table(("Command", "Count", "Min ms", "Median ms", "Max ms"),
               [(t["command"], t["count"], t["min_ms"], t["median_ms"], t["max_ms"])
                for t in timing]),
        '<h2 id="setup">Setup exchange</h2>', _exchange_rows(run.setup_exchanges),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html(run: SuiteRun, path: str | Path) -> Path:
    target = Path(path)
    write_file(target, render_html(run))
    return target


def write_reports(run: SuiteRun, directory: str | Path) -> Mapping[str, Path]:
    """``report.json``, ``junit.xml`` and ``report.html`` in ``directory`` (created)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "json": write_json(run, out / "report.json"),
        "junit": write_junit(run, out / "junit.xml"),
        "html": write_html(run, out / "report.html"),
    }
