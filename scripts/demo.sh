#!/usr/bin/env bash
# Runs `metrofs demo` (two linked arrays, site-a and site-b, with the paired file system `demo`;
# data in ./metrofs-demo), after installing Debian's libnfs tools if missing, so the nfs-cp /
# nfs-ls commands it prints work.
# Debian 12, as root (or with sudo). Arguments go to `metrofs demo` (e.g. --dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nfs-cp >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "demo.sh: installing libnfs-utils (nfs-cp, nfs-ls, nfs-cat)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq --no-install-recommends libnfs-utils >/dev/null
fi
exec cargo run --release --quiet -p metrofs -- demo "$@"
