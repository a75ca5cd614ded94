# shellcheck shell=bash
# Source this file, then: pcscd_start (starts pcscd when none answers) and
# pcscd_stop (stops it again, only if pcscd_start started it). Needs ROOT and the .venv.

HEALTHCARD_PCSCD_PID=""

pcscd_answers() {
    # True when a pcscd answers SCardEstablishContext.
    "$ROOT/.venv/bin/python" - <<'PY' 2>/dev/null
import sys
from smartcard import scard
hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
if hr != scard.SCARD_S_SUCCESS:
    sys.exit(1)
scard.SCardReleaseContext(ctx)
PY
}

pcscd_start() {
    if pcscd_answers; then
        echo "pcscd: already running"
        return 0
    fi
    local log="${PCSCD_LOG:-/tmp/healthcard-pcscd.log}"
    pcscd --foreground >"$log" 2>&1 </dev/null &
    HEALTHCARD_PCSCD_PID=$!
    local i
    for i in $(seq 1 100); do
        if pcscd_answers; then
            echo "pcscd: started (pid $HEALTHCARD_PCSCD_PID, log $log)"
            return 0
        fi
        if ! kill -0 "$HEALTHCARD_PCSCD_PID" 2>/dev/null; then
            echo "pcscd: failed to start; its log:" >&2
            cat "$log" >&2
            HEALTHCARD_PCSCD_PID=""
            return 1
        fi
        sleep 0.1
    done
    echo "pcscd: started but does not answer after 10 s; its log:" >&2
    cat "$log" >&2
    return 1
}

pcscd_stop() {
    if [ -n "$HEALTHCARD_PCSCD_PID" ]; then
        kill "$HEALTHCARD_PCSCD_PID" 2>/dev/null || true
        wait "$HEALTHCARD_PCSCD_PID" 2>/dev/null || true
        echo "pcscd: stopped (pid $HEALTHCARD_PCSCD_PID)"
        HEALTHCARD_PCSCD_PID=""
    fi
}
