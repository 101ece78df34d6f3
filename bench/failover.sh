#!/usr/bin/env bash
# Issue 4's failover measurements, in network namespaces on this machine (root needed):
#   - RTO: kill -9 of the serving array -> first write acknowledged by the survivor;
#   - RTO of a lost site: the serving site's interface down -> first write acknowledged;
#   - planned swap: the client-visible pause (longest gap between two acknowledged writes).
# A host writer (nfs3_client, FILE_SYNC WRITEs of 16 KiB back to back) uses the floating service
# address; a request without an answer is resent on a new connection after 1.5 s. Default
# arbitration settings (heartbeats, head start, claim timeout) and one quorum server.
#
# The measurements are the tests of crates/metrofs/tests/it/failover_bench.rs; this
# script runs them and writes the section "## Failover (issue 4)" of docs/BENCHMARKS.md
# (replaced if present, appended otherwise; the hand-written part between the
# failover-analysis markers is kept).
#
# Usage: bench/failover.sh [--runs N]   (default 10; METROFS_FAILOVER_RUNS works too)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_NAME=failover
# shellcheck source=bench/lib.sh
source bench/lib.sh   # doc_merge
OUT=docs/BENCHMARKS.md
SECTION="## Failover (issue 4)"
RUNS=${METROFS_FAILOVER_RUNS:-10}
CMDLINE="bench/failover.sh $*"

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "failover.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "failover.sh: --runs wants a positive number, got '$RUNS'" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "failover.sh: network namespaces need root" >&2; exit 2; }
for c in ip nft nfs-cp; do
    command -v "$c" >/dev/null || { echo "failover.sh: '$c' missing (scripts/test.sh installs iproute2, nftables, libnfs-utils)" >&2; exit 2; }
done

log() { echo "failover.sh: $*" >&2; }
RES=$(mktemp -d /tmp/metrofs-failover.XXXXXX)
log "building (results in $RES)"
cargo test -q -p metrofs --test it --no-run 2>"$RES/build.log" || { cat "$RES/build.log" >&2; exit 1; }

for t in measure_rto_of_a_killed_serving_array measure_rto_of_a_lost_serving_site measure_planned_swap_pause; do
    log "$t ($RUNS runs)"
    if ! METROFS_FAILOVER_RUNS=$RUNS cargo test -q -p metrofs --test it "failover_bench::$t" -- --nocapture --test-threads 1 >"$RES/$t.log" 2>&1; then
        tail -50 "$RES/$t.log" >&2
        log "$t failed (log: $RES/$t.log)"
        exit 1
    fi
done

# values KEY: the numbers of `FAILOVER KEY=N` lines, one a line.
values() { cat "$RES"/measure_*.log | sed -n "s/^FAILOVER $1=\([0-9]*\)\( .*\)\{0,1\}$/\1/p"; }
# p50 (nearest rank) and max of stdin.
stats() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "— —"; exit } r = int((NR + 1) / 2); print v[r], v[NR] }'; }
list() { values "$1" | paste -sd' ' | sed 's/ /, /g'; }
read -r RTO_P50 RTO_MAX < <(values rto_ms | stats)
read -r SITE_P50 SITE_MAX < <(values site_rto_ms | stats)
read -r SWAP_P50 SWAP_MAX < <(values swap_pause_ms | stats)
N_RTO=$(values rto_ms | wc -l)
N_SITE=$(values site_rto_ms | wc -l)
N_SWAP=$(values swap_pause_ms | wc -l)
SWAP_ERRORS=$(values swap_nfs_errors | head -1)
SWAP_ERROR_LIST=$(cat "$RES"/measure_*.log | sed -n 's/^FAILOVER swap_nfs_errors=[0-9]* list=//p' | head -1)
SWAP_UNANSWERED=$(values swap_unanswered | head -1)
verdict() { awk -v v="$1" -v l="$2" 'BEGIN { if (v == "—") print "n/a"; else print (v + 0 <= l + 0) ? "met" : "MISSED" }'; }

GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
KEEP=""
if [ -f "$OUT" ]; then
    KEEP=$(awk '/^<!-- \/failover-analysis -->/ { on = 0 } on { print } /^<!-- failover-analysis:/ { on = 1 }' "$OUT")
fi

sec=$(mktemp)
{
    echo "$SECTION"
    echo
    echo "Written by \`$CMDLINE\` on $(date -u +%Y-%m-%d) at commit $GIT_REV$GIT_DIRTY. Machine: $(nproc) cores ($CPU), ${MEM_GIB} GiB memory, Linux $(uname -r); load average when written: $LOADAVG."
    echo
    echo "Topology (crates/metrofs/tests/it/topo.rs): five network namespaces on this machine — host, site-a (preferred), site-b, quorum, and a bridge joining them on 10.78.0.0/24 — one \`metrofs array\` per site, \`metrofs quorum\` in its own namespace, the floating service address 10.78.0.100/24 on the serving site's eth0 (announced by gratuitous ARP). Default arbitration settings: \`heartbeat_interval_ms\`, \`heartbeat_timeout_ms\`, \`head_start_ms\` and \`claim_timeout_ms\` not set. The client is a host writer (nfs3_client) doing 16 KiB FILE_SYNC WRITEs back to back through the service address with one file handle; a request with no answer after 1.5 s is resent on a new connection (no new MOUNT), as a kernel client resends after its timeout. Each RTO run ends with the failed side back, resynchronised and Normal; the next run fails whichever side serves then."
    echo
    echo "| measurement | runs | p50 | max | target | |"
    echo "| --- | --- | --- | --- | --- | --- |"
    echo "| RTO: kill -9 of the serving array → first write acknowledged by the survivor | $N_RTO | $RTO_P50 ms | $RTO_MAX ms | ≤ 3000 ms | $(verdict "$RTO_MAX" 3000) |"
    echo "| RTO of a lost site: serving site's interface down → first write acknowledged by the other | $N_SITE | $SITE_P50 ms | $SITE_MAX ms | (none set) | |"
    echo "| planned swap (\`metrofs pair swap\`): longest client-visible pause | $N_SWAP | $SWAP_P50 ms | $SWAP_MAX ms | ≤ 1000 ms | $(verdict "$SWAP_MAX" 1000) |"
    echo
    echo "Every run, in order (ms): kill -9: $(list rto_ms); site lost: $(list site_rto_ms); swap: $(list swap_pause_ms)."
    echo
    echo "During the $N_SWAP swaps the writer got ${SWAP_ERRORS:-?} NFS error answer(s) ${SWAP_ERROR_LIST:-} and resent ${SWAP_UNANSWERED:-?} request(s) that had no answer after 1.5 s on a connection still open."
    echo
    echo "RPO: 0 in every functional failover test (\`cargo test -p metrofs --test it failover\`): each checks that every acknowledged write reads back after the failover and the heal."
    echo
    echo "<!-- failover-analysis: written by hand, kept by failover.sh when it rewrites this section -->"
    [ -n "$KEEP" ] && echo "$KEEP"
    echo "<!-- /failover-analysis -->"
    echo
    echo "Exact commands:"
    echo
    echo '```sh'
    echo "$CMDLINE"
    echo "# which runs, one after the other, as root:"
    echo "METROFS_FAILOVER_RUNS=$RUNS cargo test -p metrofs --test it failover_bench::measure_rto_of_a_killed_serving_array -- --nocapture --test-threads 1"
    echo "METROFS_FAILOVER_RUNS=$RUNS cargo test -p metrofs --test it failover_bench::measure_rto_of_a_lost_serving_site -- --nocapture --test-threads 1"
    echo "METROFS_FAILOVER_RUNS=$RUNS cargo test -p metrofs --test it failover_bench::measure_planned_swap_pause -- --nocapture --test-threads 1"
    echo '```'
    echo
} >"$sec"

# Replace the section in place (up to the next "## " heading) or append it; every other section
# and hand-written block of the file is kept (bench/lib.sh).
doc_merge "$OUT" "$sec" "$SECTION"
rm -f "$sec"
log "wrote the section '$SECTION' of $OUT (logs in $RES)"
sed -n "/^$SECTION/,/^<!-- failover-analysis/p" "$OUT" >&2
