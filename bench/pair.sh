#!/usr/bin/env bash
# bench/pair.sh: issue 3's benchmark. In one run and on one disk:
#   - two arrays (`metrofs array`), site-a (preferred) and site-b, linked on loopback with a
#     secret made here;
#   - on site-a, fs `solo` (unpaired) and fs `paired` (paired with site-b, measured once Normal);
#   - the same `metrofs bench --json` workloads against both, alternating (solo, paired, ...),
#     medians over the runs;
#   - resync throughput: `pair pause`, write RESYNC bytes into `paired` with nfs-cp,
#     `pair resume`, time until Normal;
# and write the section "## Metro pair (issue 3)" of docs/BENCHMARKS.md (replaced if present,
# the rest of the file is left alone): the table, issue 3's targets with verdicts, the exact
# commands, and a short perf profile of site-a for each missed target.
#
# All data lives on a dedicated ext4 image WITH a journal on a loop device, made and removed
# here (as bench/compare.sh does). Everything started here is stopped on exit (trap).
#
# Usage: sudo bench/pair.sh [--runs N] [--size SIZE] [--files N] [--latency-ops N] [--depth N]
#                           [--resync SIZE] [--image-gib N] [--budget-s N] [--out FILE]
#                           [--no-profile]
# --budget-s: no new round of runs starts when the rounds so far say it would end after this
# many seconds from the start of the runs (at least one round always runs).
# Needs root (loop device, mount). Needs: jq, bc, perf (linux-perf), nfs-cp (libnfs-utils).
set -euo pipefail

RUNS=3
SIZE=1GiB
FILES=5000
LAT_OPS=2000
DEPTH=8
RESYNC=2GiB
IMAGE_GIB=10
BUDGET_S=0
OUT=docs/BENCHMARKS.md
DO_PROFILE=1
STEP_TIMEOUT_S=900
SECTION="## Metro pair (issue 3)"

die() { echo "pair.sh: error: $*" >&2; exit 1; }
log() { echo "[pair $(date +%H:%M:%S)] $*" >&2; }

ARGV=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --latency-ops) LAT_OPS=$2; shift 2 ;;
        --depth) DEPTH=$2; shift 2 ;;
        --resync) RESYNC=$2; shift 2 ;;
        --image-gib) IMAGE_GIB=$2; shift 2 ;;
        --budget-s) BUDGET_S=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-profile) DO_PROFILE=0; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) die "--runs wants a positive number, got '$RUNS'" ;; esac
case "$IMAGE_GIB" in ''|*[!0-9]*|0) die "--image-gib wants a positive number, got '$IMAGE_GIB'" ;; esac
case "$BUDGET_S" in ''|*[!0-9]*) die "--budget-s wants a number of seconds, got '$BUDGET_S'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (loop device, mount, drop_caches)"
for t in jq bc nfs-cp numfmt mkfs.ext4 losetup ss; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install jq bc libnfs-utils coreutils e2fsprogs mount iproute2)"
done
[ "$DO_PROFILE" = 0 ] || command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf, or --no-profile)"

to_bytes() { numfmt --from=iec "${1%iB}" 2>/dev/null || echo ""; }
SIZE_BYTES=$(to_bytes "$SIZE"); [ -n "$SIZE_BYTES" ] || die "--size $SIZE: use forms like 512MiB or 1GiB"
RESYNC_BYTES=$(to_bytes "$RESYNC"); [ -n "$RESYNC_BYTES" ] || die "--resync $RESYNC: use forms like 1GiB or 2GiB"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac

# ---------------------------------------------------------------------------------------------
# Scratch space, the journaled ext4 image, and cleanup of everything started here.
WORK=$(mktemp -d /var/tmp/metrofs-pair.XXXXXX)
MNT="$WORK/mnt"
RES="$ROOT/target/pair-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$MNT" "$RES"
LOOP=""
PIDS=()

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if mountpoint -q "$MNT"; then
        for _ in $(seq 10); do umount "$MNT" 2>/dev/null && break; sleep 0.5; done
        mountpoint -q "$MNT" && umount -l "$MNT"
    fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    if [ $rc -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "---- last lines of $f" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Build, and run from a private copy (a rebuild in the checkout must not change what is measured).
log "cargo build --release -p metrofs"
cargo build --release -p metrofs 2>&1 | tail -2 >&2 || die "metrofs does not build"
BIN="$WORK/bin"
mkdir -p "$BIN"
METROFS="$BIN/metrofs"
cp "$ROOT/target/release/metrofs" "$METROFS"
"$METROFS" bench --help >/dev/null 2>&1 || die "this metrofs has no 'bench' subcommand"
BENCH_ARGS=(--size "$SIZE" --files "$FILES" --latency-ops "$LAT_OPS" --depth "$DEPTH" --json)

log "making a ${IMAGE_GIB} GiB ext4 image with a journal in $WORK"
truncate -s "${IMAGE_GIB}G" "$WORK/fs.img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L mfspair "$WORK/fs.img"
LOOP=$(losetup -f --show "$WORK/fs.img")
mount "$LOOP" "$MNT"
dumpe2fs -h "$LOOP" 2>/dev/null | grep -q has_journal || die "the image has no journal"
MNT_OPTS=$(findmnt -no OPTIONS "$MNT")

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
TAKEN=" "
pick_port() {   # a free port not handed out before by this script
    local p=$1
    while ! port_free "$p" || [[ "$TAKEN" == *" $p "* ]]; do p=$((p + 1)); done
    TAKEN+="$p "
    echo "$p"
}
wait_port() {   # wait_port PORT PID WHAT
    for _ in $(seq 300); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening on port $1"
        sleep 0.1
    done
    die "$3 is not listening on port $1 after 30 s"
}
settle() { sync; sleep 2; }
now() { date +%s.%N; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# ---------------------------------------------------------------------------------------------
# The two arrays.
A_NFS=$(pick_port 32249); A_API=$(pick_port 32250); A_LINK=$(pick_port 32251)
B_NFS=$(pick_port 32252); B_API=$(pick_port 32253); B_LINK=$(pick_port 32254)
head -c 32 /dev/urandom >"$WORK/link.secret"
chmod 600 "$WORK/link.secret"
mkdir -p "$MNT/site-a" "$MNT/site-b"
write_conf() {   # write_conf NAME NFS API LINK PREFERRED PEER PEER_LINK
    cat >"$WORK/$1.toml" <<EOF
name = "$1"
data_dir = "$MNT/$1"
nfs_listen = "127.0.0.1:$2"
api_listen = "127.0.0.1:$3"

[log]
level = "warn"

[domain]
name = "bench"
preferred = $5

[peer]
name = "$6"
address = "127.0.0.1:$7"

[link]
listen = "127.0.0.1:$4"
secret_file = "$WORK/link.secret"
EOF
}
write_conf site-a "$A_NFS" "$A_API" "$A_LINK" true site-b "$B_LINK"
write_conf site-b "$B_NFS" "$B_API" "$B_LINK" false site-a "$A_LINK"
A="http://127.0.0.1:$A_API"
B="http://127.0.0.1:$B_API"
log "starting metrofs array --config site-a.toml / site-b.toml"
"$METROFS" array --config "$WORK/site-a.toml" >"$WORK/site-a.log" 2>&1 &
A_PID=$!; PIDS+=("$A_PID")
"$METROFS" array --config "$WORK/site-b.toml" >"$WORK/site-b.log" 2>&1 &
B_PID=$!; PIDS+=("$B_PID")
wait_port "$A_API" "$A_PID" "site-a"; wait_port "$A_NFS" "$A_PID" "site-a"
wait_port "$B_API" "$B_PID" "site-b"; wait_port "$B_NFS" "$B_PID" "site-b"

for fs in solo paired; do
    "$METROFS" fs create "$fs" --api "$A" >&2
    "$METROFS" export set "$fs" --clients 127.0.0.0/8 --rw --no-root-squash --api "$A" >&2
done

pair_json() { "$METROFS" pair show "$PAIR" --json --api "$A"; }
# wait_normal TIMEOUT_S [SAMPLES_FILE]: polls every 0.1 s until the pair is Normal; with a file,
# appends each sample (one JSON per line) to it.
wait_normal() {
    local deadline st j
    deadline=$(echo "$(now) + $1" | bc)
    while :; do
        j=$(pair_json | jq -c .) || die "pair show failed"
        [ -n "${2:-}" ] && echo "$j" >>"$2"
        st=$(jq -r .state <<<"$j")
        [ "$st" = Normal ] && return 0
        [ "$(echo "$(now) > $deadline" | bc)" = 1 ] && die "the pair is still $st after $1 s: $j"
        sleep 0.1
    done
}

# The link comes up within about a second of both arrays running.
for _ in $(seq 100); do
    curl -fsS "$A/api/health" 2>/dev/null | jq -e '.link == "Up"' >/dev/null 2>&1 && break
    sleep 0.1
done
log "pair create paired --remote site-b"
ok=0
for _ in $(seq 30); do
    if "$METROFS" pair create paired --remote site-b --json --api "$A" >"$RES/pair-create.json" 2>"$WORK/pair-create.log"; then
        ok=1; break
    fi
    sleep 0.5
done
[ "$ok" = 1 ] || die "pair create failed: $(cat "$WORK/pair-create.log")"
PAIR=$(jq -r .id "$RES/pair-create.json")
wait_normal 120
log "pair $PAIR is Normal"

url_of() { echo "nfs://127.0.0.1/$1?nfsport=$A_NFS&mountport=$A_NFS&version=3"; }

# ---------------------------------------------------------------------------------------------
# The runs: solo and paired alternate, so that noise from the loaded machine spreads evenly.
RUNS_DONE=0
LEFT_NORMAL=""
T_RUNS0=$(now)
for run in $(seq "$RUNS"); do
    if [ "$run" -gt 1 ] && [ "$BUDGET_S" -gt 0 ]; then
        el=$(echo "$(now) - $T_RUNS0" | bc)
        per=$(echo "$el / ($run - 1)" | bc -l)
        if [ "$(echo "$el + $per > $BUDGET_S" | bc)" = 1 ]; then
            log "stopping after $((run - 1)) rounds: another would end past --budget-s $BUDGET_S"
            break
        fi
    fi
    for fs in solo paired; do
        settle
        if [ "$fs" = paired ] && [ "$(pair_json | jq -r .state)" != Normal ]; then
            log "the pair is $(pair_json | jq -r .state) before run $run: waiting for Normal"
            wait_normal 300
        fi
        log "run $run/$RUNS: $fs (all workloads)"
        # Watch the pair during the run: a run during which it left Normal is not a paired
        # measurement (its changes were partly not replicated); it is kept, flagged, and left
        # out of the medians.
        watch="$RES/$fs.$run.states"
        : >"$watch"
        ( while :; do
              j=$(pair_json 2>/dev/null | jq -c '{state, link}') || j='{"state":"?"}'
              jq -e '.state != "Normal"' >/dev/null <<<"$j" && echo "$(date -u +%H:%M:%S.%N | cut -c1-12) $j" >>"$watch"
              sleep 0.2
          done ) &
        watch_pid=$!
        PIDS+=("$watch_pid")
        a0=$(cpu_s "$A_PID"); b0=$(cpu_s "$B_PID")
        timeout "$STEP_TIMEOUT_S" "$METROFS" bench "$(url_of "$fs")" "${BENCH_ARGS[@]}" \
            >"$RES/$fs.$run.json.tmp" 2>>"$WORK/bench.log" || die "bench against $fs failed"
        a1=$(cpu_s "$A_PID"); b1=$(cpu_s "$B_PID")
        stop_pid "$watch_pid"
        left=false
        if [ -s "$watch" ] || [ "$(pair_json | jq -r .state)" != Normal ]; then
            left=true
            LEFT_NORMAL+="run $run ($fs): $(head -n 1 "$watch" 2>/dev/null) … $(tail -n 1 "$watch" 2>/dev/null); alarms: $(pair_json | jq -c .alarms)"$'\n'
            log "the pair left Normal during run $run: $(head -n 1 "$watch")"
        fi
        jq --argjson a "$(echo "$a1 - $a0" | bc)" --argjson b "$(echo "$b1 - $b0" | bc)" --argjson l "$left" \
            '. + {site_a_cpu_s: $a, site_b_cpu_s: $b, left_normal: $l}' "$RES/$fs.$run.json.tmp" >"$RES/$fs.$run.json"
        rm -f "$RES/$fs.$run.json.tmp"
    done
    RUNS_DONE=$run
done

# ---------------------------------------------------------------------------------------------
# Resync: pause, change RESYNC bytes, resume, time until Normal.
RESYNC_MIB=$((RESYNC_BYTES / 1048576))
log "making a $RESYNC source file on the image"
head -c "$RESYNC_BYTES" /dev/urandom >"$MNT/resync.src"
settle
# paired seq-write median needed later; nfs-cp goes to the paired fs while the pair is Paused.
log "pair pause; nfs-cp $RESYNC into paired"
"$METROFS" pair pause "$PAIR" --api "$A" >&2
CP_URL="nfs://127.0.0.1/paired/resync.dat?nfsport=$A_NFS&mountport=$A_NFS&version=3"
t0=$(now)
nfs-cp "$MNT/resync.src" "$CP_URL" >"$WORK/nfs-cp.log" 2>&1 || die "nfs-cp into the paired fs failed: $(cat "$WORK/nfs-cp.log")"
t1=$(now)
CP_S=$(echo "$t1 - $t0" | bc -l)
settle
pair_json >"$RES/paused.json"
DCL_BYTES=$(jq .dcl.bytes "$RES/paused.json")
log "paused: DCL $(jq -c .dcl "$RES/paused.json"); pair resume"
: >"$RES/resync-samples.jsonl"
t0=$(now)
"$METROFS" pair resume "$PAIR" --api "$A" >&2
wait_normal 1800 "$RES/resync-samples.jsonl"
t1=$(now)
RESYNC_S=$(echo "$t1 - $t0" | bc -l)
pair_json >"$RES/after-resync.json"
# The worker's own numbers: its last sample (the Normal one keeps the finished worker's progress
# when the API still shows it, else the last Synchronizing one).
LAST_SYNC=$(jq -sc '[.[] | select(.sync != null) | .sync] | last // {}' "$RES/resync-samples.jsonl")
SYNC_SENT=$(jq '.sent_bytes // null' <<<"$LAST_SYNC")
SYNC_RATE=$(jq '.bytes_per_s // null' <<<"$LAST_SYNC")
SYNC_EVENT=$(jq -r '[.events[] | select(startswith("resync done"))] | first // ""' "$RES/after-resync.json")
RESYNC_MIBS=$(echo "$RESYNC_BYTES / $RESYNC_S / 1048576" | bc -l)
log "resync of $RESYNC: $(printf %.1f "$RESYNC_S") s ($(printf %.1f "$RESYNC_MIBS") MiB/s); $SYNC_EVENT"

# ---------------------------------------------------------------------------------------------
# Medians and targets.
median() {   # median FS JQ-PATH: over the runs during which the pair stayed Normal
    jq -s "map(select(.left_normal != true) | $2) | map(select(. != null)) | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end" "$RES/$1".[0-9]*.json
}
NORMAL_RUNS=$(jq -s 'map(select(.left_normal != true)) | length' "$RES"/paired.[0-9]*.json)
all_runs() {
    jq -s -r "map(($2 | if . == null then \"-\" else (. * 10 | round / 10 | tostring) end) + (if .left_normal == true then \" (left Normal)\" else \"\" end)) | join(\" · \")" "$RES/$1".[0-9]*.json
}
metric_paths=(
    "seqw=.seq_write.mib_per_s|sequential write $SIZE, 1 MiB + COMMIT (MiB/s)"
    "seqw_cache=.seq_write.before_commit_mib_per_s|… of which the WRITEs before COMMIT (MiB/s)"
    "seqr=.seq_read.mib_per_s|sequential read, warm (MiB/s)"
    "uns_p50=.rand_write_unstable.p50_us|4 KiB random write UNSTABLE p50 (µs)"
    "uns_p99=.rand_write_unstable.p99_us|4 KiB random write UNSTABLE p99 (µs)"
    "fs_p50=.rand_write_file_sync.p50_us|4 KiB random write FILE_SYNC p50 (µs)"
    "fs_p99=.rand_write_file_sync.p99_us|4 KiB random write FILE_SYNC p99 (µs)"
    "small=.small_files.per_s|small files: create + 4 KiB + COMMIT (files/s)"
    "stat=.stat.per_s|stat: LOOKUP + GETATTR (/s)"
    "unlink=.unlink.per_s|unlink: REMOVE (/s)"
    "cpua=.site_a_cpu_s|site-a CPU for one whole run (s)"
    "cpub=.site_b_cpu_s|site-b CPU for one whole run (s)"
)
declare -A S P
for mp in "${metric_paths[@]}"; do
    k=${mp%%=*}; rest=${mp#*=}; p=${rest%%|*}
    S[$k]=$(median solo "$p"); P[$k]=$(median paired "$p")
done
fmt() { [ -z "${1:-}" ] || [ "$1" = null ] && { echo "—"; return; }; awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.1f", v }'; }
ratio() { [ -z "${1:-}" ] || [ -z "${2:-}" ] || [ "$1" = null ] || [ "$2" = null ] && { echo "—"; return; }; awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "—"; else printf "%.2f", a / b }'; }
check() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { if (v == "" || v == "null" || l == "" || l == "null") { print "n/a"; exit } ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print ok ? "met" : "MISSED" }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "null" || b == "" || b == "null" || b == 0) print "—"; else printf "%.0f %%", 100 * a / b }'; }

declare -A RESULT MEASURED LIMIT
LIMIT[seqw]=$(awk -v s="${S[seqw]}" 'BEGIN { print 0.7 * s }')
RESULT[seqw]=$(check "${P[seqw]}" ">=" "${LIMIT[seqw]}")
MEASURED[seqw]="$(fmt "${P[seqw]}") vs $(fmt "${S[seqw]}") MiB/s = $(pct "${P[seqw]}" "${S[seqw]}")"
for k in uns_p50 fs_p50; do
    LIMIT[$k]=$(awk -v s="${S[$k]}" 'BEGIN { print s + 150 }')
    RESULT[$k]=$(check "${P[$k]}" "<=" "${LIMIT[$k]}")
    MEASURED[$k]="$(fmt "${P[$k]}") vs $(fmt "${S[$k]}") µs = +$(awk -v a="${P[$k]}" -v b="${S[$k]}" 'BEGIN { printf "%.0f", a - b }') µs"
done
LIMIT[small]=$(awk -v s="${S[small]}" 'BEGIN { print 0.6 * s }')
RESULT[small]=$(check "${P[small]}" ">=" "${LIMIT[small]}")
MEASURED[small]="$(fmt "${P[small]}") vs $(fmt "${S[small]}") files/s = $(pct "${P[small]}" "${S[small]}")"
LIMIT[resync]=$(awk -v s="${P[seqw]}" 'BEGIN { print 0.7 * s }')
RESULT[resync]=$(check "$RESYNC_MIBS" ">=" "${LIMIT[resync]}")
MEASURED[resync]="$(fmt "$RESYNC_MIBS") vs $(fmt "${P[seqw]}") MiB/s = $(pct "$RESYNC_MIBS" "${P[seqw]}")"

# ---------------------------------------------------------------------------------------------
# Profiles of site-a where a target is missed (perf enabled when the measured part starts).
perf_top() {   # perf_top DATA SORT PERCENT LINES
    perf report -i "$1" --stdio --no-children --sort "$2" -g none --percent-limit "$3" 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' \
        | head -n "$4" || true
}
declare -A T_WORKLOAD=([seqw]=seq-write [uns_p50]=rand-write [fs_p50]=rand-write [small]=small-files)
declare -A T_TRIGGER=([seqw]="sequential write of" [uns_p50]="writes, UNSTABLE" [fs_p50]="writes, FILE_SYNC" [small]="small files (")
PROFILES=""
profile_cmd() {   # profile_cmd NAME: perf record on site-a, enabled by "enable" on fd ctl_fd
    local ctl="$WORK/perf.ctl"
    rm -f "$ctl"; mkfifo "$ctl"
    perf record -g -F 999 -D -1 --control="fifo:$ctl" -p "$A_PID" -o "$RES/perf.$1.data" >>"$WORK/perf.log" 2>&1 &
    perf_pid=$!
    exec {ctl_fd}<>"$ctl"
}
profile_end() {   # profile_end NAME TITLE
    echo disable >&"$ctl_fd"
    sleep 0.2
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    exec {ctl_fd}>&-
    {
        echo
        echo "Profile of site-a during $2 (\`perf record -g -F 999 -p PID\`, self time, \`perf report --no-children --sort dso\` then \`dso,symbol\`):"
        echo
        echo '```'
        perf_top "$RES/perf.$1.data" dso 2 3
        echo '…'
        perf_top "$RES/perf.$1.data" dso,symbol 2 6
        echo '```'
    } >"$RES/profile.$1.md"
    PROFILES+=$(cat "$RES/profile.$1.md")$'\n'
}
if [ "$DO_PROFILE" = 1 ]; then
    declare -A profiled=()
    for t in seqw uns_p50 fs_p50 small; do
        [ "${RESULT[$t]}" = MISSED ] || continue
        w=${T_WORKLOAD[$t]}
        [ -n "${profiled[$w]:-}" ] && continue
        profiled[$w]=1
        settle
        log "profiling site-a during $w on the paired fs"
        errlog="$RES/profile.$w.stderr"; : >"$errlog"
        profile_cmd "$w"
        timeout "$STEP_TIMEOUT_S" "$METROFS" bench "$(url_of paired)" "${BENCH_ARGS[@]}" --only "$w" \
            >"$RES/profile.$w.json" 2>"$errlog" &
        bench_pid=$!
        while kill -0 "$bench_pid" 2>/dev/null && ! grep -qF "${T_TRIGGER[$t]}" "$errlog"; do sleep 0.01; done
        echo enable >&"$ctl_fd"
        wait "$bench_pid" || log "bench under perf failed (see $errlog)"
        profile_end "$w" "\`$w\` on the paired fs (from its measured part to the end of the run)"
    done
    if [ "${RESULT[resync]}" = MISSED ]; then
        # A second, smaller change (a quarter), resynchronised under perf.
        PROF_BYTES=$((RESYNC_BYTES / 4))
        log "profiling site-a during a resync of $((PROF_BYTES / 1048576)) MiB"
        "$METROFS" pair pause "$PAIR" --api "$A" >&2
        head -c "$PROF_BYTES" "$MNT/resync.src" >"$MNT/resync2.src"
        nfs-cp "$MNT/resync2.src" "nfs://127.0.0.1/paired/resync2.dat?nfsport=$A_NFS&mountport=$A_NFS&version=3" >>"$WORK/nfs-cp.log" 2>&1 \
            || die "nfs-cp for the resync profile failed"
        settle
        profile_cmd resync
        echo enable >&"$ctl_fd"
        "$METROFS" pair resume "$PAIR" --api "$A" >&2
        wait_normal 1800
        profile_end resync "a resync of $((PROF_BYTES / 1048576)) MiB (from \`pair resume\` to Normal)"
    fi
fi

# ---------------------------------------------------------------------------------------------
# The section of docs/BENCHMARKS.md.
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes in the checkout)" || true)
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
CMDLINE="sudo bench/pair.sh${ARGV[*]:+ ${ARGV[*]}}"
KEEP=""
if [ -f "$OUT" ]; then
    KEEP=$(awk '/^<!-- \/pair-analysis -->/ { on = 0 } on { print } /^<!-- pair-analysis:/ { on = 1 }' "$OUT")
fi
sec=$(mktemp)
{
    echo "$SECTION"
    echo
    echo "Written by \`bench/pair.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); metrofs at \`$GIT_REV\`$GIT_DIRTY."
    echo "Machine: $(nproc) cores ($CPU), ${MEM_GIB} GiB memory, Linux $(uname -r). Load average when the section was written: $LOADAVG — **the machine was loaded by other work during the run** (other builds and tests on the same 2 cores), so absolute numbers are noisy; solo and paired runs alternate so the noise falls on both."
    echo
    echo "Two arrays on this machine, linked on loopback: site-a (preferred, serves both file systems) and site-b (the twin). Fs \`solo\` is unpaired; fs \`paired\` is paired with site-b and Normal for every run (watched with \`pair show --json\` every 0.2 s during each run; a run during which it leaves Normal is flagged and left out of the medians). All data of both arrays was on one dedicated **ext4 image with a journal** on a loop device (\`mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0\`, mounted \`$MNT_OPTS\`), made and removed by the script, so a paired write reaches the same disk twice. Client: \`metrofs bench URL ${BENCH_ARGS[*]}\`, same workloads as the section above; $RUNS_DONE run(s) of each fs, alternating solo, paired; **medians** (of an even number of runs: the lower middle one)."
    [ "$RUNS_DONE" -lt "$RUNS" ] && echo "Only $RUNS_DONE of the $RUNS planned rounds ran (\`--budget-s $BUDGET_S\`: the deadline of this run)."
    if [ -n "$LEFT_NORMAL" ]; then
        echo
        echo "**The pair left Normal during a run** ($((RUNS_DONE - NORMAL_RUNS)) of $RUNS_DONE paired runs; such runs are listed as \"(left Normal)\" and left out of the paired medians): the link was declared down (heartbeat timeout $(grep -q heartbeat_timeout_ms "$WORK/site-a.toml" && echo set || echo "1500 ms, the default")) while the benchmark loaded both arrays, and the pair resynchronised by itself afterwards. What the watcher (\`pair show --json\` every 0.2 s) saw:"
        echo
        echo '```'
        printf '%s' "$LEFT_NORMAL"
        echo '```'
    fi
    echo
    echo "| workload | unpaired (solo) | paired (Normal) | paired / unpaired | every run, solo | every run, paired |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for mp in "${metric_paths[@]}"; do
        k=${mp%%=*}; rest=${mp#*=}; p=${rest%%|*}; label=${rest#*|}
        echo "| $label | $(fmt "${S[$k]}") | $(fmt "${P[$k]}") | $(ratio "${P[$k]}" "${S[$k]}") | $(all_runs solo "$p") | $(all_runs paired "$p") |"
    done
    echo
    echo "Resync after a change of $RESYNC: \`pair pause\`, \`nfs-cp\` of a $RESYNC_MIB MiB file of random bytes (made on the image) into the paired fs ($(printf %.1f "$CP_S") s), DCL then $(fmt "$(echo "$DCL_BYTES / 1048576" | bc -l)") MiB ($(jq -r '.dcl | "\(.chunks) chunks, \(.inodes) inodes, \(.dirs) dirs"' "$RES/paused.json")); \`pair resume\` to Normal: **$(printf %.1f "$RESYNC_S") s, $(fmt "$RESYNC_MIBS") MiB/s** of changed data. The worker reported sent_bytes = $SYNC_SENT ($(pct "$SYNC_SENT" "$RESYNC_BYTES") of the bytes changed) and bytes_per_s = $SYNC_RATE ($(fmt "$(awk -v r="$SYNC_RATE" 'BEGIN { if (r == "null") print ""; else print r / 1048576 }')") MiB/s) in its last sample; its event: \`$SYNC_EVENT\`."
    echo
    echo "### Targets (issue 3)"
    echo
    echo "| target | measured | verdict |"
    echo "| --- | --- | --- |"
    echo "| paired sequential write ≥ 70 % of unpaired | ${MEASURED[seqw]} | ${RESULT[seqw]} |"
    echo "| paired 4 KiB write p50 ≤ unpaired + 150 µs, UNSTABLE | ${MEASURED[uns_p50]} | ${RESULT[uns_p50]} |"
    echo "| paired 4 KiB write p50 ≤ unpaired + 150 µs, FILE_SYNC | ${MEASURED[fs_p50]} | ${RESULT[fs_p50]} |"
    echo "| paired small-file creates ≥ 60 % of unpaired | ${MEASURED[small]} | ${RESULT[small]} |"
    echo "| resync ≥ 70 % of paired sequential-write throughput | ${MEASURED[resync]} | ${RESULT[resync]} |"
    if [ -n "$PROFILES" ]; then
        echo
        echo "### Where a target is missed"
        echo "$PROFILES"
    fi
    echo "<!-- pair-analysis: written by hand, kept by pair.sh when it rewrites this section -->"
    [ -n "$KEEP" ] && echo "$KEEP"
    echo "<!-- /pair-analysis -->"
    echo
    echo "Exact commands:"
    echo
    echo '```sh'
    echo "$CMDLINE"
    echo "metrofs array --config site-a.toml   # and site-b.toml, below"
    echo "metrofs fs create solo --api $A && metrofs export set solo --clients 127.0.0.0/8 --rw --no-root-squash --api $A   # same for paired"
    echo "metrofs pair create paired --remote site-b --api $A   # then pair show ID --json until Normal"
    echo "metrofs bench '$(url_of solo)' ${BENCH_ARGS[*]}"
    echo "metrofs bench '$(url_of paired)' ${BENCH_ARGS[*]}"
    echo "metrofs pair pause ID --api $A && nfs-cp resync.src '$CP_URL' && metrofs pair resume ID --api $A   # timed from resume to Normal (pair show --json every 0.1 s)"
    echo '```'
    echo
    echo '```toml'
    cat "$WORK/site-a.toml"
    echo '```'
    echo
} >"$sec"
# Replace the section (up to the next "## " heading) or append it.
tmp_out=$(mktemp)
if [ -f "$OUT" ] && grep -qxF "$SECTION" "$OUT"; then
    awk -v h="$SECTION" -v f="$sec" '
        $0 == h { while ((getline l < f) > 0) print l; skip = 1; next }
        skip && /^## / { skip = 0 }
        !skip { print }' "$OUT" >"$tmp_out"
else
    { [ -f "$OUT" ] && cat "$OUT" && echo; cat "$sec"; } >"$tmp_out"
fi
mv "$tmp_out" "$OUT"
chmod 644 "$OUT"
rm -f "$sec"
log "wrote the section '$SECTION' of $OUT (raw results in $RES)"
sed -n "/^$SECTION/,/^<!-- pair-analysis/p" "$OUT" >&2
