#!/bin/sh
# Install the Debian packages packrun needs to build, run and test,
# skipping those already present. Safe to run again. With --ci, also the
# tools CI uses: clang and its fuzzing runtime, cppcheck.
set -eu

packages="build-essential cmake pkg-config git curl ca-certificates
libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
libsqlite3-dev libpq-dev libarchive-dev libsodium-dev libcmocka-dev
python3 python3-pytest python3-venv python3-pip python3-pip-whl
python3-setuptools-whl python3-wheel-whl"
# Node.js may come from elsewhere (with its own npm): only ask for what is missing.
command -v node >/dev/null 2>&1 || packages="$packages nodejs"
command -v npm >/dev/null 2>&1 || packages="$packages npm"
if [ "${1:-}" = "--ci" ]; then
    packages="$packages clang libclang-rt-14-dev cppcheck"
fi

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
# A root worker runs actions as this unprivileged user (config run_as).
if [ "$(id -u)" -eq 0 ] && ! id packrun >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin packrun
    echo "packrun: created the system user packrun, which actions run as" >&2
fi

[ -z "$missing" ] && exit 0

echo "packrun: installing:$missing" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "packrun: run as root or install sudo to install:$missing" >&2
        exit 1
    }
    sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
