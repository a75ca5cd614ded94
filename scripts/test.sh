#!/usr/bin/env bash
# The project's test command (README, .ci/run): set-up, pcscd, ruff, mypy --strict, pytest.
# PC/SC tests are required here (HEALTHCARD_REQUIRE_PCSC=1): a missing pcscd/vpcd fails them.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/test_transport_channel.py`).
# Stops pcscd again if it started it. Exits non-zero when any step fails or no test ran.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
# shellcheck source=scripts/pcscd.sh
source "$ROOT/scripts/pcscd.sh"

trap pcscd_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

healthcard_setup
pcscd_start

failed=()

echo "== ruff check ."
.venv/bin/ruff check . || failed+=("ruff")

echo "== mypy --strict src"
.venv/bin/mypy --strict src || failed+=("mypy")

echo "== pytest"
rc=0
HEALTHCARD_REQUIRE_PCSC=1 HEALTHCARD_REQUIRE_PG=1 HEALTHCARD_REQUIRE_BROWSER=1 .venv/bin/pytest "$@" </dev/null || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    failed+=("pytest (no tests)")
elif [ "$rc" -ne 0 ]; then
    failed+=("pytest (exit $rc)")
fi

if ((${#failed[@]})); then
    echo "== FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "== all checks passed"
