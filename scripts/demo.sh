#!/usr/bin/env bash
# The main job (README): set-up, pcscd, then the demo: a blank simulated health card and a
# simulated SAM are served on the vpcd readers, the sample resident is personalized through
# pcscd, verified with the SAM and read back. Extra arguments go to `healthcard demo`
# (e.g. --json, --workdir DIR). Stops pcscd again if it started it.
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

.venv/bin/healthcard --version
.venv/bin/healthcard readers
.venv/bin/healthcard demo "$@"
