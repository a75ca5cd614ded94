"""Conformance suite for test labs: cases with stable IDs, runs on any transport, reports.

* :func:`run_suite` runs the selected cases against a live transport (PC/SC, in-process
  simulator) and records the whole exchange as a JSONL trace;
* :func:`replay_suite` runs them again against that trace, offline;
* :mod:`.report` writes JUnit XML, JSON and a self-contained HTML report.

See docs/conformance.md.
"""

from healthcard_apdu.conformance.case import (
    CaseFailure,
    CaseInfo,
    ConformanceError,
    Group,
    NotApplicable,
    Status,
    all_cases,
    case,
    find_cases,
    get_case,
    register,
    select_cases,
)
from healthcard_apdu.conformance.context import (
    CardFacts,
    CaseContext,
    Check,
    HostRandom,
    PowerFaults,
    SimPowerFaults,
    TimingLimits,
)
from healthcard_apdu.conformance.profile import ProfileInfo
from healthcard_apdu.conformance.report import write_html, write_json, write_junit, write_reports
from healthcard_apdu.conformance.runner import (
    CaseResult,
    RunOptions,
    SuiteRun,
    replay_suite,
    run_suite,
)

__all__ = [
    "CardFacts",
    "CaseContext",
    "CaseFailure",
    "CaseInfo",
    "CaseResult",
    "Check",
    "ConformanceError",
    "Group",
    "HostRandom",
    "NotApplicable",
    "PowerFaults",
    "ProfileInfo",
    "RunOptions",
    "SimPowerFaults",
    "Status",
    "SuiteRun",
    "TimingLimits",
    "all_cases",
    "case",
    "find_cases",
    "get_case",
    "register",
    "replay_suite",
    "run_suite",
    "select_cases",
    "write_html",
    "write_json",
    "write_junit",
    "write_reports",
]
