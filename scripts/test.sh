#!/usr/bin/env bash
# Installs what the tests need (only when missing) and runs every test of the workspace.
# This is the README's test command, and all that .ci/run does. Debian 12, as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: libnfs-utils gives nfs-cp, nfs-ls, nfs-cat (the process tests
# fail, not skip, without them).
# The failover tests (issue 4) build network namespaces with iproute2 and cut them with nftables.
declare -A need_cmd=([nfs-cp]=libnfs-utils [nfs-ls]=libnfs-utils [nfs-cat]=libnfs-utils [ip]=iproute2 [nft]=nftables)
missing=()
for cmd in "${!need_cmd[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need_cmd[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
