#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine (run as root when packages are missing):
# Debian packages, the .venv, and an editable install of the project with its dev extras.
# Fast when everything is already there. Usable directly or sourced by the other scripts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Every Debian package the project needs, in one place: later issues add theirs here.
APT_PACKAGES="pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools softhsm2 opensc chromium postgresql zbar-tools librsvg2-bin openssl tmux"

healthcard_setup() {
    local missing=() pkg
    for pkg in $APT_PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" -ne 0 ]; then
            echo "setup: missing Debian packages (${missing[*]}); run as root" >&2
            return 1
        fi
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" \
            </dev/null
    fi

    local venv="$ROOT/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        local py="" candidate
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                py="$candidate"
                break
            fi
        done
        if [ -z "$py" ]; then
            echo "setup: no Python >= 3.11 found" >&2
            return 1
        fi
        echo "setup: creating .venv with $(command -v "$py")"
        if ! "$py" -m venv "$venv"; then
            # Debian's own python3 needs python3-venv for ensurepip.
            rm -rf "$venv"
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv python3-dev </dev/null
            "$py" -m venv "$venv"
        fi
    fi

    # Reinstall when pyproject.toml changed or the package does not import.
    local stamp="$venv/.healthcard-install-stamp" want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] ||
        ! "$venv/bin/python" -c 'import healthcard_apdu, smartcard' 2>/dev/null; then
        echo "setup: pip install -e .[dev]"
        "$venv/bin/python" -m pip install -q -e "$ROOT[dev]" </dev/null
        echo "$want" >"$stamp"
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    healthcard_setup
fi
