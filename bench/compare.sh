#!/usr/bin/env bash
# bench/compare.sh: measure, in one run,
#   (a) metrofs, one array (`metrofs array`),
#   (b) Debian's nfs-ganesha with FSAL_VFS exporting a directory of the same file system,
#       both driven by the same `metrofs bench` client,
#   (c) the physical limits: loopback TCP (iperf3, 1 stream) and the local file system itself
#       (dd with fsync, fio for 4 KiB O_SYNC writes and small files),
#   (d) issue 3's metro pair: metrofs "one array" above is fs `solo` of site-a, an array with a
#       peer (site-b); fs `paired` of site-a is paired with site-b, Normal, and measured with the
#       same workloads in the same rounds (Ganesha, solo, paired, ...); then the resync
#       throughput after a change of --resync bytes (pause, write, resume, time until Normal);
#       the pair part is bench/pair.sh's functions (pair.sh alone runs only that part),
# and write docs/BENCHMARKS.md: the table, the ratios against issue 2's targets, the exact
# commands, (with --profile, the default) a perf profile of metrofs for each missed target, and
# the section "## Metro pair (issue 3)". Every other section of the file (e.g. "## Failover
# (issue 4)", written by bench/failover.sh) and every hand-written analysis block is kept.
#
# All data lives on a dedicated ext4 image WITH a journal on a loop device with direct I/O, made
# and removed here (bench/lib.sh), except the pair's site-b's, on a disk of its own (--site-b). Everything started here is stopped on exit (trap).
#
# Usage: sudo bench/compare.sh [--runs N] [--size SIZE] [--files N] [--latency-ops N]
#                              [--depth N] [--resync SIZE] [--image-gib N] [--out FILE]
#                              [--site-b own|shared] [--array-workers N|cores] [--no-metrofs]
#                              [--no-ganesha] [--no-pair] [--no-profile] [--no-install]
# --site-b: where the pair's site-b keeps its data (bench/pair.sh): its own disk (default, an ext4
# image in memory on this one-disk machine) or `shared`, the image everything else is on.
# --array-workers: `worker_threads` of both arrays; default `cores` (unset: one per core each).
# bench/pair.sh's default is 1 (see there); give `--array-workers 1` for the same pair numbers.
# --resync defaults to $METROFS_BENCH_RESYNC, else 2GiB (issue 3's size); smaller for quick runs.
# METROFS_BIN=PATH measures that binary instead of building target/release/metrofs.
# Needs root (loop device, mount, drop_caches, ports < 1024 for the client). Installs with apt
# what is missing: nfs-ganesha nfs-ganesha-vfs rpcbind iperf3 fio linux-perf jq e2fsprogs
# libnfs-utils curl.
set -euo pipefail
BENCH_NAME=compare
# shellcheck source=bench/pair.sh
source "$(dirname "$0")/pair.sh"   # the pair_* functions, and bench/lib.sh

RUNS=3
SIZE=1GiB
FILES=5000
LAT_OPS=2000
DEPTH=8
IMAGE_GIB=10
RESYNC=${METROFS_BENCH_RESYNC:-2GiB}
OUT=docs/BENCHMARKS.md
DO_METROFS=1
DO_GANESHA=1
DO_PAIR=1
DO_PROFILE=1
DO_INSTALL=1
# Longest a single measurement may take before it is abandoned (seconds).
STEP_TIMEOUT_S=900
BUDGET_S=0   # pair_section's "rounds that ran" note; compare.sh runs every round

ARGV=("$@")
while [ $# -gt 0 ]; do
    if bench_opt "$1" "${2:-}"; then shift 2; continue; fi
    case "$1" in
        --no-metrofs) DO_METROFS=0; DO_PAIR=0; shift ;;
        --no-ganesha) DO_GANESHA=0; shift ;;
        --no-pair) DO_PAIR=0; shift ;;
        --no-profile) DO_PROFILE=0; shift ;;
        --no-install) DO_INSTALL=0; shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
bench_check_opts
[ "$(id -u)" = 0 ] || die "run as root (loop device, mount, drop_caches, rpcbind)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac

# ---------------------------------------------------------------------------------------------
# Packages
need_pkgs=()
for p in nfs-ganesha nfs-ganesha-vfs rpcbind iperf3 fio linux-perf jq e2fsprogs iproute2 bc libnfs-utils curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$DO_INSTALL" = 1 ] || die "missing packages: ${need_pkgs[*]} (drop --no-install)"
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# Scratch space, the build, the journaled ext4 image (bench/lib.sh).
bench_workspace compare
bench_build   # metrofs bench is the client of every server
BENCH_ARGS=(--size "$SIZE" --files "$FILES" --latency-ops "$LAT_OPS" --depth "$DEPTH" --json)
bench_image "$IMAGE_GIB" mfsbench
[ "$DO_PAIR" = 1 ] && bench_site_b "$IMAGE_GIB"

SIZE_MIB=$((SIZE_BYTES / 1048576))

# ---------------------------------------------------------------------------------------------
# (c) Physical limits.
declare -A LIM
log "loopback TCP bandwidth (iperf3, 1 stream, 10 s)"
IPERF_PORT=$(pick_port 25201)
iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
IPERF_PID=$!
PIDS+=("$IPERF_PID")
wait_port "$IPERF_PORT" "$IPERF_PID" iperf3
CMD_IPERF="iperf3 -c 127.0.0.1 -p $IPERF_PORT -t 10 -J   # server: iperf3 -s -1 -B 127.0.0.1 -p $IPERF_PORT"
iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t 10 -J >"$RES/iperf3.json"
LIM[tcp]=$(jq '.end.sum_received.bits_per_second / 8 / 1048576 | . * 10 | round / 10' "$RES/iperf3.json")

log "local file system: sequential write with fsync, warm and cold read ($SIZE)"
settle
CMD_DD_W="dd if=/dev/zero of=$MNT/dd.dat bs=1M count=$SIZE_MIB conv=fsync"
t0=$(date +%s.%N); dd if=/dev/zero of="$MNT/dd.dat" bs=1M count="$SIZE_MIB" conv=fsync status=none; t1=$(date +%s.%N)
LIM[write]=$(mib "$SIZE_BYTES" "$(echo "$t1 - $t0" | bc -l)")
CMD_DD_R="dd if=$MNT/dd.dat of=/dev/null bs=1M   # warm; cold after: sync; echo 3 > /proc/sys/vm/drop_caches"
t0=$(date +%s.%N); dd if="$MNT/dd.dat" of=/dev/null bs=1M status=none; t1=$(date +%s.%N)
LIM[read_warm]=$(mib "$SIZE_BYTES" "$(echo "$t1 - $t0" | bc -l)")
sync; echo 3 > /proc/sys/vm/drop_caches
t0=$(date +%s.%N); dd if="$MNT/dd.dat" of=/dev/null bs=1M status=none; t1=$(date +%s.%N)
LIM[read_cold]=$(mib "$SIZE_BYTES" "$(echo "$t1 - $t0" | bc -l)")
rm -f "$MNT/dd.dat"

log "local file system: 4 KiB random writes, O_SYNC and buffered (fio)"
settle
mkdir -p "$MNT/fio"
CMD_FIO_SYNC="fio --name=rw --filename=$MNT/fio/rand.dat --size=64M --rw=randwrite --bs=4k --sync=1 --ioengine=psync --number_ios=$LAT_OPS"
$CMD_FIO_SYNC --output-format=json >"$RES/fio-sync.json"
LIM[sync_iops]=$(jq '.jobs[0].write.iops | round' "$RES/fio-sync.json")
LIM[sync_p50]=$(jq '.jobs[0].write.clat_ns.percentile["50.000000"] / 1000 | round' "$RES/fio-sync.json")
LIM[sync_p99]=$(jq '.jobs[0].write.clat_ns.percentile["99.000000"] / 1000 | round' "$RES/fio-sync.json")
CMD_FIO_BUF="fio --name=rw --filename=$MNT/fio/rand.dat --size=64M --rw=randwrite --bs=4k --ioengine=psync --number_ios=$LAT_OPS"
$CMD_FIO_BUF --output-format=json >"$RES/fio-buf.json"
LIM[buf_iops]=$(jq '.jobs[0].write.iops | round' "$RES/fio-buf.json")
LIM[buf_p50]=$(jq '.jobs[0].write.clat_ns.percentile["50.000000"] / 1000 | round' "$RES/fio-buf.json")
rm -rf "$MNT/fio"

log "local file system: small files, create + 4 KiB write + fsync, $DEPTH at once (fio)"
settle
mkdir -p "$MNT/small"
PER_JOB=$(( (FILES + DEPTH - 1) / DEPTH ))
CMD_FIO_SMALL="fio --name=small --directory=$MNT/small --numjobs=$DEPTH --nrfiles=$PER_JOB --filesize=4k --bs=4k --rw=write --create_on_open=1 --fsync_on_close=1 --openfiles=1 --file_service_type=sequential --ioengine=psync"
$CMD_FIO_SMALL --output-format=json >"$RES/fio-small.json"
LIM[small]=$(jq --argjson n $((PER_JOB * DEPTH)) '$n / (([.jobs[].job_runtime] | max) / 1000) | round' "$RES/fio-small.json")
rm -rf "$MNT/small"
stop_pid "$IPERF_PID"

# ---------------------------------------------------------------------------------------------
# (b) nfs-ganesha, FSAL_VFS, exporting a directory of the same file system.
GANESHA_URL=""
if [ "$DO_GANESHA" = 1 ]; then
    if ss -Hltn "sport = :111" | grep -q .; then
        log "a portmapper already listens on port 111: Ganesha registers with it"
    else
        log "starting rpcbind -f (Ganesha refuses to start without a portmapper)"
        rpcbind -f -w >"$WORK/rpcbind.log" 2>&1 &
        RPCBIND_PID=$!
        PIDS+=("$RPCBIND_PID")
        wait_port 111 "$RPCBIND_PID" rpcbind
    fi
    G_NFS=$(pick_port 32049)
    G_MNT=$(pick_port $((G_NFS + 1)))
    mkdir -p "$MNT/ganesha"
    cat >"$WORK/ganesha.conf" <<EOF
NFS_CORE_PARAM {
    Bind_addr = 127.0.0.1;
    NFS_Port = $G_NFS;
    MNT_Port = $G_MNT;
    Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    mount_path_pseudo = true;
}
NFSV4 { Graceless = true; }
EXPORT {
    Export_Id = 77;
    Path = "$MNT/ganesha";
    Pseudo = "/export";
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
EOF
    CMD_GANESHA="ganesha.nfsd -F -f $WORK/ganesha.conf -L $WORK/ganesha.log -p $WORK/ganesha.pid"
    log "starting $CMD_GANESHA"
    ganesha.nfsd -F -f "$WORK/ganesha.conf" -L "$WORK/ganesha.log" -p "$WORK/ganesha.pid" &
    GANESHA_PID=$!
    PIDS+=("$GANESHA_PID")
    wait_port "$G_NFS" "$GANESHA_PID" ganesha.nfsd
    wait_port "$G_MNT" "$GANESHA_PID" ganesha.nfsd
    GANESHA_URL="nfs://127.0.0.1/export?nfsport=$G_NFS&mountport=$G_MNT&version=3"
fi

# ---------------------------------------------------------------------------------------------
# (a) and (d) metrofs: site-a on the image, site-b on its own disk (--site-b), fs `solo`
# (unpaired, the "one array" of the comparison with Ganesha) and fs `paired` (Normal) on site-a.
METROFS_URL=""
METROFS_PID=""
if [ "$DO_METROFS" = 1 ]; then
    start_arrays
    METROFS_URL=$(fs_url solo)
    METROFS_PID=$A_PID
fi

# ---------------------------------------------------------------------------------------------
# The runs: servers alternate (Ganesha, solo, paired, ...) so that noise from the machine
# spreads evenly. metrofs's results are $RES/solo.N.json (and paired.N.json).
SERVERS=()
[ -n "$GANESHA_URL" ] && SERVERS+=(ganesha)
[ -n "$METROFS_URL" ] && SERVERS+=(solo)
[ -n "$METROFS_URL" ] && [ "$DO_PAIR" = 1 ] && SERVERS+=(paired)
[ ${#SERVERS[@]} -gt 0 ] || die "nothing to measure (--no-metrofs and --no-ganesha)"
url_of() { if [ "$1" = ganesha ]; then echo "$GANESHA_URL"; else fs_url "$1"; fi; }

RUNS_DONE=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_RUNS0=$(now)
for run in $(seq "$RUNS"); do
    for s in "${SERVERS[@]}"; do
        settle
        if [ "$s" = ganesha ]; then
            log "run $run/$RUNS: $s (all workloads)"
            cpu0=$(cpu_s "$GANESHA_PID")
            timeout "$STEP_TIMEOUT_S" "${BENCH[@]}" "$GANESHA_URL" "${BENCH_ARGS[@]}" \
                >"$RES/$s.$run.json.tmp" 2>>"$WORK/bench.log" || die "bench against $s failed (see above)"
            cpu1=$(cpu_s "$GANESHA_PID")
            # The server's CPU time for the whole run goes into the run's JSON.
            jq --argjson c "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')" \
                '. + { server_cpu_s: $c }' "$RES/$s.$run.json.tmp" >"$RES/$s.$run.json"
            rm -f "$RES/$s.$run.json.tmp"
        else
            pair_bench "$s" "$run"
        fi
        # Cold reads are local on a pair too: measured for the servers of the comparison only.
        [ "$s" = paired ] && continue
        settle
        log "run $run/$RUNS: $s (cold sequential read)"
        timeout "$STEP_TIMEOUT_S" "${BENCH[@]}" "$(url_of "$s")" "${BENCH_ARGS[@]}" --only seq-read --cold-read \
            >"$RES/$s.cold.$run.json" 2>>"$WORK/bench.log" || die "cold read against $s failed"
    done
    RUNS_DONE=$run
done
if [ "$DO_PAIR" = 1 ] && [ -n "$METROFS_URL" ]; then
    pair_resync
    settle
    pair_latency_rounds
    settle
    pair_small_rounds
    settle
    pair_seq_rounds
fi

# median SERVER JQ-PATH [cold]: median over the runs of one number.
median() {
    local files=("$RES/$1".[0-9]*.json)
    [ "${3:-}" = cold ] && files=("$RES/$1".cold.[0-9]*.json)
    jq -s "map($2) | map(select(. != null)) | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end" "${files[@]}"
}
all_runs() {
    local files=("$RES/$1".[0-9]*.json)
    [ "${3:-}" = cold ] && files=("$RES/$1".cold.[0-9]*.json)
    jq -s -r "map($2 | if . == null then \"-\" else (. * 10 | round / 10 | tostring) end) | join(\" · \")" "${files[@]}"
}

declare -A G M
metric_paths=(
    "seqw=.seq_write.mib_per_s"
    "seqw_cache=.seq_write.before_commit_mib_per_s"
    "seqr=.seq_read.mib_per_s"
    "uns_p50=.rand_write_unstable.p50_us"
    "uns_p99=.rand_write_unstable.p99_us"
    "uns_iops=.rand_write_unstable.iops"
    "fs_p50=.rand_write_file_sync.p50_us"
    "fs_p99=.rand_write_file_sync.p99_us"
    "fs_iops=.rand_write_file_sync.iops"
    "small=.small_files.per_s"
    "stat=.stat.per_s"
    "unlink=.unlink.per_s"
    "cpu=.server_cpu_s"
)
for s in ganesha solo; do
    [[ " ${SERVERS[*]} " == *" $s "* ]] || continue
    for mp in "${metric_paths[@]}"; do
        k=${mp%%=*}; p=${mp#*=}
        v=$(median "$s" "$p")
        if [ "$s" = ganesha ]; then G[$k]=$v; else M[$k]=$v; fi
    done
    v=$(median "$s" .seq_read.mib_per_s cold)
    if [ "$s" = ganesha ]; then G[seqr_cold]=$v; else M[seqr_cold]=$v; fi
done

# ---------------------------------------------------------------------------------------------
# Profile metrofs where it misses a target.
ratio() { [ -z "${1:-}" ] || [ -z "${2:-}" ] || [ "$1" = null ] || [ "$2" = null ] && { echo ""; return; }; awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print ""; else printf "%.2f", a / b }'; }
# check NAME VALUE OP LIMIT: "met" / "MISSED" / "n/a"
check() { [ -z "$2" ] && { echo "n/a"; return; }; awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == ">=") ? (v >= l) : (v <= l); print ok ? "met" : "MISSED" }'; }

# For each target: the workload that measures it, and the progress line `metrofs bench` prints
# when the measured part starts (so the profile leaves out the untimed preparation).
declare -A TARGET_WORKLOAD=(
    [seqw_ganesha]=seq-write [seqw_tcp]=seq-write [seqr]=seq-read
    [uns_p50]=rand-write [fs_p50]=rand-write [small]=small-files
)
declare -A TARGET_TRIGGER=(
    [seqw_ganesha]="sequential write of" [seqw_tcp]="sequential write of" [seqr]="sequential read"
    [uns_p50]="writes, UNSTABLE" [fs_p50]="writes, FILE_SYNC" [small]="small files ("
)
declare -A TARGET_PHASE=(
    [seqw_ganesha]=seq-write [seqw_tcp]=seq-write [seqr]=seq-read
    [uns_p50]=rand-write-unstable [fs_p50]=rand-write-file-sync [small]=small-files
)
declare -A RESULT RATIO
if [ -n "$METROFS_URL" ] && [ -n "$GANESHA_URL" ]; then
    RATIO[seqw_ganesha]=$(ratio "${M[seqw]}" "${G[seqw]}");   RESULT[seqw_ganesha]=$(check x "${RATIO[seqw_ganesha]}" ">=" 1.5)
    RATIO[seqr]=$(ratio "${M[seqr]}" "${G[seqr]}");            RESULT[seqr]=$(check x "${RATIO[seqr]}" ">=" 1.0)
    RATIO[uns_p50]=$(ratio "${M[uns_p50]}" "${G[uns_p50]}");   RESULT[uns_p50]=$(check x "${RATIO[uns_p50]}" "<=" 1.0)
    RATIO[fs_p50]=$(ratio "${M[fs_p50]}" "${G[fs_p50]}");      RESULT[fs_p50]=$(check x "${RATIO[fs_p50]}" "<=" 1.0)
    RATIO[small]=$(ratio "${M[small]}" "${G[small]}");         RESULT[small]=$(check x "${RATIO[small]}" ">=" 1.5)
fi
if [ -n "$METROFS_URL" ]; then
    RATIO[seqw_tcp]=$(ratio "${M[seqw]}" "${LIM[tcp]}");       RESULT[seqw_tcp]=$(check x "${RATIO[seqw_tcp]}" ">=" 0.5)
fi

PROFILES=""
if [ "$DO_PROFILE" = 1 ] && [ -n "$METROFS_PID" ]; then
    declare -A profiled=()
    for t in seqw_ganesha seqw_tcp seqr uns_p50 fs_p50 small; do
        [ "${RESULT[$t]:-}" = MISSED ] || continue
        phase=${TARGET_PHASE[$t]}
        [ -n "${profiled[$phase]:-}" ] && continue
        profiled[$phase]=1
        trigger=${TARGET_TRIGGER[$t]}
        settle
        log "profiling metrofs during $phase (perf record -g from \"$trigger\" to the end)"
        profile_bench "$phase" "$METROFS_PID" "$trigger" "$METROFS_URL" "${BENCH_ARGS[@]}" --only "${TARGET_WORKLOAD[$t]}"
        {
            echo
            echo "#### metrofs during \`$phase\`"
            echo
            echo "\`perf record -g -F 999 -p PID\`, enabled from the start of the measured part to the end of the run; self time by binary, then the top symbols (\`perf report --no-children --sort dso,symbol\`):"
            echo
            echo '```'
            perf_top "$RES/perf.$phase.data" dso 1 8
            echo '```'
            echo
            echo '```'
            perf_top "$RES/perf.$phase.data" dso,symbol 0.8 25
            echo '```'
        } >"$RES/profile.$phase.md"
        PROFILES+=$(cat "$RES/profile.$phase.md")$'\n'
    done
fi

# Issue 3's targets for the pair, and profiles of site-a where they are missed.
if [ "$DO_PAIR" = 1 ] && [ -n "$METROFS_URL" ]; then
    pair_targets
    [ "$DO_PROFILE" = 1 ] && pair_profiles
fi

# ---------------------------------------------------------------------------------------------
# docs/BENCHMARKS.md
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GIB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
GANESHA_VER=$(dpkg-query -W -f='${Version}' nfs-ganesha 2>/dev/null || echo "?")
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
row() {   # row LABEL LOCAL GANESHA METROFS RATIO
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5"
}
# This run's sections go into $OUT through doc_merge (bench/lib.sh): the sections compare.sh
# writes are replaced in place, every other one (e.g. bench/failover.sh's) is kept, and so is
# every hand-written block (left empty below, filled from the current file).
tmp_out=$(mktemp)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); metrofs at \`$GIT_REV\`$GIT_DIRTY."
    echo "Machine: $(nproc) cores ($CPU), ${MEM_GIB} GiB memory, Linux $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')."
    echo "Load average when the runs started: $LOAD_START; when the report was written: $LOADAVG (they count the runs' own processes, and what ran in the minutes before)."
    echo
    echo "All data was on a dedicated **ext4 image with a journal** on a loop device with direct I/O to its image file (\`losetup --direct-io=on\`, \`mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0\`, mounted \`$MNT_OPTS\`), backed by a file on the machine's root disk, made and removed by the script. All servers ran on it at the same time, each in its own directory (the pair's site-b: see its section); the client and the servers share the $(nproc) cores."
    echo
    echo "metrofs (one array) is fs \`solo\` of array site-a, which has a peer (site-b) for the pair measured in [Metro pair (issue 3)](#metro-pair-issue-3) in the same rounds; \`solo\` itself is not paired, so its operations never reach site-b."
    echo
    echo "Client: \`$BENCH_SHOWN URL ${BENCH_ARGS[*]}\` — $DEPTH requests in flight (one per TCP connection) for throughput, files, stat and unlink; one in flight for the latencies. Sequential write = $SIZE in 1 MiB UNSTABLE WRITEs then one COMMIT, timed to the COMMIT's reply. Small files = CREATE (guarded) + 4 KiB UNSTABLE WRITE + COMMIT each. Stat = LOOKUP + GETATTR. Each server measured $RUNS_DONE times, runs alternating between servers ($(echo "${SERVERS[*]}" | sed 's/ /, /g') in each round); the table gives **medians** (of an even number of runs: the lower middle one), the per-run values are below."
    echo
    echo "## Results"
    echo
    echo "| workload | local fs / network | Ganesha $GANESHA_VER VFS | metrofs (one array) | metrofs / Ganesha |"
    echo "| --- | --- | --- | --- | --- |"
    row "sequential write $SIZE, 1 MiB + COMMIT (MiB/s)" "$(fmt "${LIM[write]}") (dd, fsync)" "$(fmt "${G[seqw]:-}")" "$(fmt "${M[seqw]:-}")" "$(ratio "${M[seqw]:-}" "${G[seqw]:-}")"
    row "… of which the WRITEs before COMMIT (MiB/s)" "—" "$(fmt "${G[seqw_cache]:-}")" "$(fmt "${M[seqw_cache]:-}")" "$(ratio "${M[seqw_cache]:-}" "${G[seqw_cache]:-}")"
    row "sequential read, warm page cache (MiB/s)" "$(fmt "${LIM[read_warm]}") (dd)" "$(fmt "${G[seqr]:-}")" "$(fmt "${M[seqr]:-}")" "$(ratio "${M[seqr]:-}" "${G[seqr]:-}")"
    row "sequential read, cold (MiB/s)" "$(fmt "${LIM[read_cold]}") (dd)" "$(fmt "${G[seqr_cold]:-}")" "$(fmt "${M[seqr_cold]:-}")" "$(ratio "${M[seqr_cold]:-}" "${G[seqr_cold]:-}")"
    row "4 KiB random write UNSTABLE, p50 / p99 (µs)" "$(fmt "${LIM[buf_p50]}") p50 (buffered)" "$(fmt "${G[uns_p50]:-}") / $(fmt "${G[uns_p99]:-}")" "$(fmt "${M[uns_p50]:-}") / $(fmt "${M[uns_p99]:-}")" "$(ratio "${M[uns_p50]:-}" "${G[uns_p50]:-}") (p50)"
    row "4 KiB random write UNSTABLE (IOPS, 1 in flight)" "$(fmt "${LIM[buf_iops]}")" "$(fmt "${G[uns_iops]:-}")" "$(fmt "${M[uns_iops]:-}")" "$(ratio "${M[uns_iops]:-}" "${G[uns_iops]:-}")"
    row "4 KiB random write FILE_SYNC, p50 / p99 (µs)" "$(fmt "${LIM[sync_p50]}") / $(fmt "${LIM[sync_p99]}") (O_SYNC)" "$(fmt "${G[fs_p50]:-}") / $(fmt "${G[fs_p99]:-}")" "$(fmt "${M[fs_p50]:-}") / $(fmt "${M[fs_p99]:-}")" "$(ratio "${M[fs_p50]:-}" "${G[fs_p50]:-}") (p50)"
    row "4 KiB random write FILE_SYNC (IOPS, 1 in flight)" "$(fmt "${LIM[sync_iops]}") (O_SYNC)" "$(fmt "${G[fs_iops]:-}")" "$(fmt "${M[fs_iops]:-}")" "$(ratio "${M[fs_iops]:-}" "${G[fs_iops]:-}")"
    row "small files: create + 4 KiB + COMMIT (files/s)" "$(fmt "${LIM[small]}") (fio, fsync, $DEPTH jobs)" "$(fmt "${G[small]:-}")" "$(fmt "${M[small]:-}")" "$(ratio "${M[small]:-}" "${G[small]:-}")"
    row "stat: LOOKUP + GETATTR (/s)" "—" "$(fmt "${G[stat]:-}")" "$(fmt "${M[stat]:-}")" "$(ratio "${M[stat]:-}" "${G[stat]:-}")"
    row "unlink: REMOVE (/s)" "—" "$(fmt "${G[unlink]:-}")" "$(fmt "${M[unlink]:-}")" "$(ratio "${M[unlink]:-}" "${G[unlink]:-}")"
    row "server CPU time for one whole run (s, user + system)" "—" "$(fmt "${G[cpu]:-}")" "$(fmt "${M[cpu]:-}")" "$(ratio "${M[cpu]:-}" "${G[cpu]:-}")"
    echo
    echo "Loopback TCP bandwidth (iperf3, 1 stream, 10 s): **$(fmt "${LIM[tcp]}") MiB/s**."
    echo
    echo "## Targets (issue 2, one array)"
    echo
    echo "| target | measured | verdict |"
    echo "| --- | --- | --- |"
    echo "| sequential write ≥ 1.5 × Ganesha | ${RATIO[seqw_ganesha]:-—} × | ${RESULT[seqw_ganesha]:-n/a} |"
    echo "| sequential write ≥ 50 % of loopback TCP ($(fmt "${LIM[tcp]}") MiB/s) | $(awk -v r="${RATIO[seqw_tcp]:-}" 'BEGIN { if (r == "") print "—"; else printf "%.0f %%", r * 100 }') | ${RESULT[seqw_tcp]:-n/a} |"
    echo "| sequential read ≥ Ganesha (warm) | ${RATIO[seqr]:-—} × | ${RESULT[seqr]:-n/a} |"
    echo "| 4 KiB write p50 ≤ Ganesha's, UNSTABLE | ${RATIO[uns_p50]:-—} × | ${RESULT[uns_p50]:-n/a} |"
    echo "| 4 KiB write p50 ≤ Ganesha's, FILE_SYNC | ${RATIO[fs_p50]:-—} × | ${RESULT[fs_p50]:-n/a} |"
    echo "| small files ≥ 1.5 × Ganesha | ${RATIO[small]:-—} × | ${RESULT[small]:-n/a} |"
    echo
    echo "Ceilings on this machine: loopback TCP $(fmt "${LIM[tcp]}") MiB/s; the file system's own sequential write with fsync $(fmt "${LIM[write]}") MiB/s. A write timed to its COMMIT cannot go much faster than the disk takes the data."
    if awk -v w="${LIM[write]}" -v t="${LIM[tcp]}" 'BEGIN { exit !(w < t / 2) }'; then
        echo "Here the disk is slower than half the loopback bandwidth ($(fmt "$(awk -v t="${LIM[tcp]}" 'BEGIN { print t / 2 }')") MiB/s), so the 50 %-of-TCP target is out of reach for any server that COMMITs to this disk; the *before COMMIT* row shows what each server itself takes in."
    fi
    echo
    echo "## Every run"
    echo
    echo "| metric | Ganesha runs | metrofs runs |"
    echo "| --- | --- | --- |"
    for mp in "${metric_paths[@]}"; do
        p=${mp#*=}
        g=$([ -n "$GANESHA_URL" ] && all_runs ganesha "$p" || echo "—")
        m=$([ -n "$METROFS_URL" ] && all_runs solo "$p" || echo "—")
        echo "| \`$p\` | $g | $m |"
    done
    g=$([ -n "$GANESHA_URL" ] && all_runs ganesha .seq_read.mib_per_s cold || echo "—")
    m=$([ -n "$METROFS_URL" ] && all_runs solo .seq_read.mib_per_s cold || echo "—")
    echo "| \`.seq_read.mib_per_s\` (cold) | $g | $m |"
    if [ -n "$PROFILES" ]; then
        echo
        echo "## Profiles of metrofs where a target is missed"
        echo "$PROFILES"
    fi
    echo
    echo "## Analysis"
    echo
    echo "<!-- analysis: written by hand, kept by compare.sh when it rewrites this file -->"
    echo "<!-- /analysis -->"
    echo
    echo "## Exact commands"
    echo
    echo '```sh'
    echo "sudo $([ -n "${METROFS_BENCH_RESYNC:-}" ] && echo "METROFS_BENCH_RESYNC=$METROFS_BENCH_RESYNC ")bench/compare.sh${ARGV[*]:+ ${ARGV[*]}}"
    echo "# image"
    echo "$CMD_IMAGE"
    echo "# physical limits"
    echo "$CMD_IPERF"
    echo "$CMD_DD_W"
    echo "$CMD_DD_R"
    echo "$CMD_FIO_SYNC"
    echo "$CMD_FIO_BUF"
    echo "$CMD_FIO_SMALL"
    if [ -n "$GANESHA_URL" ]; then
        echo "# Ganesha (config below); rpcbind -f -w runs first"
        echo "$CMD_GANESHA"
        echo "$BENCH_SHOWN '$GANESHA_URL' ${BENCH_ARGS[*]}"
        echo "$BENCH_SHOWN '$GANESHA_URL' ${BENCH_ARGS[*]} --only seq-read --cold-read"
    fi
    if [ -n "$METROFS_URL" ]; then
        echo "# metrofs: site-a (config below) and site-b, fs solo and paired: see the pair's commands in its section"
        echo "metrofs array --config site-a.toml"
        echo "$BENCH_SHOWN '$METROFS_URL' ${BENCH_ARGS[*]}"
        echo "$BENCH_SHOWN '$METROFS_URL' ${BENCH_ARGS[*]} --only seq-read --cold-read"
    fi
    echo '```'
    if [ -n "$GANESHA_URL" ]; then
        echo
        echo "Ganesha's configuration:"
        echo
        echo '```'
        cat "$WORK/ganesha.conf"
        echo '```'
    fi
    if [ -n "$METROFS_URL" ]; then
        echo
        echo "metrofs's configuration (site-a; site-b's differs in names, ports and \`preferred = false\`):"
        echo
        echo '```toml'
        cat "$WORK/site-a.toml"
        echo '```'
    fi
    echo
} >"$tmp_out"
OWNED=("## Results" "## Targets (issue 2, one array)" "## Every run" "## Profiles of metrofs where a target is missed" "## Analysis" "## Exact commands")
if [ "$DO_PAIR" = 1 ] && [ -n "$METROFS_URL" ]; then
    pair_section "$WORK/pair-section.md" "bench/compare.sh" "sudo bench/compare.sh${ARGV[*]:+ ${ARGV[*]}}   # the pair part; bench/pair.sh runs it alone"
    cat "$WORK/pair-section.md" >>"$tmp_out"
    OWNED+=("$PAIR_SECTION")
fi
mkdir -p "$(dirname "$OUT")"
doc_merge "$OUT" "$tmp_out" "${OWNED[@]}"
rm -f "$tmp_out"
log "wrote $OUT (raw results in $RES)"
sed -n '/^## Results/,/^## Every run/p' "$OUT" >&2
[ "$DO_PAIR" = 1 ] && [ -n "$METROFS_URL" ] && sed -n "/^$PAIR_SECTION/,/^<!-- pair-analysis/p" "$OUT" >&2
exit 0
