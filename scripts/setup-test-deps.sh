#!/usr/bin/env bash
# Installs, idempotently, what the test suite needs on a fresh Debian 12 machine of this
# project's kind: a few Debian packages (kcat, and the C toolchain bits that -sys crates use)
# and a Python virtualenv at .venv with tests/python/requirements.txt.
#
# Fast when everything is already there: dpkg is asked first, apt-get runs only when a package
# is missing, and pip runs only when the requirements file differs from the one last installed.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi

# --- Debian packages -------------------------------------------------------------------------
APT_PACKAGES=(kcat build-essential cmake pkg-config zlib1g-dev libssl-dev)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

# The virtualenv needs a Python with venv + ensurepip; the machine's pyenv Python has them,
# Debian's python3 needs python3-venv.
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    PYTHON=/usr/bin/python3
    if ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed'; then
        missing+=(python3-venv)
    fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup: Debian packages present (${APT_PACKAGES[*]})"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; this machine kind ships a Rust toolchain (rustup) and none can be downloaded" >&2
    exit 1
fi

# --- Python virtualenv -----------------------------------------------------------------------
REQ=tests/python/requirements.txt
VENV=.venv
STAMP="$VENV/.requirements.sha256"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "setup: creating virtualenv $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

want="$(cat "$REQ" <("$VENV/bin/python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    echo "setup: pip install -r $REQ"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$want" >"$STAMP"
else
    echo "setup: virtualenv up to date ($REQ unchanged)"
fi
