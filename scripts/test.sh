#!/usr/bin/env bash
# Installs what the tests need (only when missing) and runs every test of the workspace.
# This is the README's test command, and all that .ci/run does. Debian 12, as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: libnfs-utils gives nfs-cp, nfs-ls, nfs-cat (the process tests
# fail, not skip, without them).
# The failover tests (issue 4) build network namespaces with iproute2 and cut them with nftables.
# The dashboard test (issue 5) drives Debian's chromium headless; the API contract test runs
# schemathesis from a venv of Debian's python3 (python3-venv), made below.
# The store test of a twin's direct writes counts resident pages with fincore (util-linux-extra).
declare -A need_cmd=([nfs-cp]=libnfs-utils [nfs-ls]=libnfs-utils [nfs-cat]=libnfs-utils [ip]=iproute2 [nft]=nftables [fincore]=util-linux-extra [chromium]=chromium [/usr/bin/python3]=python3)
missing=()
for cmd in "${!need_cmd[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need_cmd[$cmd]}")
done
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ! command -v /usr/bin/python3 >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# schemathesis (PyPI, pinned) in a venv under the target directory, where the API contract test
# (crates/metrofs/tests/it/api_contract.rs) looks for it; made once, remade when the pin moves.
SCHEMATHESIS_VERSION=4.32.5
venv="${CARGO_TARGET_DIR:-target}/test-venv"
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    echo "test.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# cargo-nextest when present (one process per test, clearer failures), cargo test otherwise.
# Either way the output ends with the runner's summary line.
if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests: run them first, so nextest's summary closes the output.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
