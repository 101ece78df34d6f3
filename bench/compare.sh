#!/usr/bin/env bash
# bench/compare.sh: measure, in one run and on one disk,
#   (a) metrofs, one array (`metrofs array`),
#   (b) Debian's nfs-ganesha with FSAL_VFS exporting a directory of the same file system,
#       both driven by the same `metrofs bench` client,
#   (c) the physical limits: loopback TCP (iperf3, 1 stream) and the local file system itself
#       (dd with fsync, fio for 4 KiB O_SYNC writes and small files),
# and write docs/BENCHMARKS.md with the table, the ratios against issue 2's targets, the exact
# commands, and (with --profile, the default) a perf profile of metrofs for each missed target.
#
# All data lives on a dedicated ext4 image WITH a journal on a loop device, made and removed
# here (/ on the machines this was written on is ext4 without a journal, where creating files
# soon after many unlinks is erratic). Everything started here is stopped on exit (trap).
#
# Usage: sudo bench/compare.sh [--runs N] [--size SIZE] [--files N] [--latency-ops N]
#                              [--depth N] [--image-gib N] [--out FILE] [--no-metrofs]
#                              [--no-ganesha] [--no-profile] [--no-install]
# Needs root (loop device, mount, drop_caches, ports < 1024 for the client). Installs with apt
# what is missing: nfs-ganesha nfs-ganesha-vfs rpcbind iperf3 fio linux-perf jq e2fsprogs.
set -euo pipefail

RUNS=3
SIZE=1GiB
FILES=5000
LAT_OPS=2000
DEPTH=8
IMAGE_GIB=8
OUT=docs/BENCHMARKS.md
DO_METROFS=1
DO_GANESHA=1
DO_PROFILE=1
DO_INSTALL=1
# Longest a single measurement may take before it is abandoned (seconds).
STEP_TIMEOUT_S=900

die() { echo "compare.sh: error: $*" >&2; exit 1; }
log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --latency-ops) LAT_OPS=$2; shift 2 ;;
        --depth) DEPTH=$2; shift 2 ;;
        --image-gib) IMAGE_GIB=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-metrofs) DO_METROFS=0; shift ;;
        --no-ganesha) DO_GANESHA=0; shift ;;
        --no-profile) DO_PROFILE=0; shift ;;
        --no-install) DO_INSTALL=0; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) die "--runs wants a positive number, got '$RUNS'" ;; esac
case "$FILES" in ''|*[!0-9]*|0) die "--files wants a positive number, got '$FILES'" ;; esac
case "$IMAGE_GIB" in ''|*[!0-9]*|0) die "--image-gib wants a positive number, got '$IMAGE_GIB'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (loop device, mount, drop_caches, rpcbind)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac

# ---------------------------------------------------------------------------------------------
# Packages
need_pkgs=()
for p in nfs-ganesha nfs-ganesha-vfs rpcbind iperf3 fio linux-perf jq e2fsprogs iproute2 bc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$DO_INSTALL" = 1 ] || die "missing packages: ${need_pkgs[*]} (drop --no-install)"
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# Scratch space, the journaled ext4 image, and cleanup of everything started here.
WORK=$(mktemp -d /var/tmp/metrofs-compare.XXXXXX)
MNT="$WORK/mnt"
# Raw results (JSON of every run, profiles) outlive the run, in the (git-ignored) target dir.
RES="$ROOT/target/compare-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$MNT" "$RES"
LOOP=""
PIDS=()          # processes to stop on exit, in order
RPCBIND_PID=""

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
    [ -n "$RPCBIND_PID" ] && stop_pid "$RPCBIND_PID"
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
# Build: metrofs (the array) and the benchmark client.
if [ "$DO_METROFS" = 1 ]; then
    log "cargo build --release -p metrofs"
    cargo build --release -p metrofs 2>&1 | tail -3 >&2 || die "metrofs does not build"
fi
# The binaries run from private copies: a rebuild in the checkout during the run must neither
# change what is measured nor leave perf unable to read the symbols of a deleted file.
BIN="$WORK/bin"
mkdir -p "$BIN"
METROFS="$BIN/metrofs"
[ -x "$ROOT/target/release/metrofs" ] && cp "$ROOT/target/release/metrofs" "$METROFS"
if [ -x "$METROFS" ] && "$METROFS" bench --help >/dev/null 2>&1; then
    BENCH=("$METROFS" bench)
    BENCH_SHOWN="metrofs bench"
else
    log "the metrofs binary has no 'bench' subcommand yet: using the metrofs-bench example (same code)"
    cargo build --release -p metrofs-bench --example bench 2>&1 | tail -1 >&2
    cp "$ROOT/target/release/examples/bench" "$BIN/bench"
    BENCH=("$BIN/bench")
    BENCH_SHOWN="cargo run --release -p metrofs-bench --example bench --"
fi
BENCH_ARGS=(--size "$SIZE" --files "$FILES" --latency-ops "$LAT_OPS" --depth "$DEPTH" --json)


log "making a ${IMAGE_GIB} GiB ext4 image with a journal in $WORK"
truncate -s "${IMAGE_GIB}G" "$WORK/fs.img"
# Eager inode-table and journal init: no background ext4lazyinit competing with the runs.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L mfsbench "$WORK/fs.img"
LOOP=$(losetup -f --show "$WORK/fs.img")
mount "$LOOP" "$MNT"
dumpe2fs -h "$LOOP" 2>/dev/null | grep -q has_journal || die "the image has no journal"
MNT_OPTS=$(findmnt -no OPTIONS "$MNT")

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
pick_port() {
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
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
# Let writeback of the previous step finish so it does not bill the next one.
settle() { sync; sleep 2; }
mib() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }

SIZE_BYTES=$(numfmt --from=iec "${SIZE%iB}" 2>/dev/null || echo "")
[ -n "$SIZE_BYTES" ] || die "--size $SIZE: use forms like 512MiB or 1GiB"
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
# (a) metrofs, one array, data on the same file system.
METROFS_URL=""
METROFS_PID=""
if [ "$DO_METROFS" = 1 ]; then
    M_NFS=$(pick_port 32149)
    M_API=$(pick_port 32150)
    mkdir -p "$MNT/metrofs"
    cat >"$WORK/metrofs.toml" <<EOF
name = "bench"
data_dir = "$MNT/metrofs"
nfs_listen = "127.0.0.1:$M_NFS"
api_listen = "127.0.0.1:$M_API"

[log]
level = "warn"
EOF
    CMD_METROFS="metrofs array --config $WORK/metrofs.toml"
    log "starting $CMD_METROFS"
    "$METROFS" array --config "$WORK/metrofs.toml" >"$WORK/metrofs.log" 2>&1 &
    METROFS_PID=$!
    PIDS+=("$METROFS_PID")
    wait_port "$M_API" "$METROFS_PID" "metrofs array"
    wait_port "$M_NFS" "$METROFS_PID" "metrofs array"
    API="http://127.0.0.1:$M_API"
    CMD_METROFS_FS="metrofs fs create bench --api $API && metrofs export set bench --clients 127.0.0.0/8 --rw --no-root-squash --api $API"
    "$METROFS" fs create bench --api "$API" >&2
    "$METROFS" export set bench --clients 127.0.0.0/8 --rw --no-root-squash --api "$API" >&2
    METROFS_URL="nfs://127.0.0.1/bench?nfsport=$M_NFS&mountport=$M_NFS&version=3"
fi

# ---------------------------------------------------------------------------------------------
# The runs: servers alternate (G M G M ...) so that noise from the machine spreads evenly.
SERVERS=()
[ -n "$GANESHA_URL" ] && SERVERS+=(ganesha)
[ -n "$METROFS_URL" ] && SERVERS+=(metrofs)
[ ${#SERVERS[@]} -gt 0 ] || die "nothing to measure (--no-metrofs and --no-ganesha)"
url_of() { if [ "$1" = ganesha ]; then echo "$GANESHA_URL"; else echo "$METROFS_URL"; fi; }
pid_of() { if [ "$1" = ganesha ]; then echo "$GANESHA_PID"; else echo "$METROFS_PID"; fi; }
# CPU seconds (user + system, all threads) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

for run in $(seq "$RUNS"); do
    for s in "${SERVERS[@]}"; do
        settle
        log "run $run/$RUNS: $s (all workloads)"
        cpu0=$(cpu_s "$(pid_of "$s")")
        timeout "$STEP_TIMEOUT_S" "${BENCH[@]}" "$(url_of "$s")" "${BENCH_ARGS[@]}" \
            >"$RES/$s.$run.json.tmp" 2>>"$WORK/bench.log" || die "bench against $s failed (see above)"
        cpu1=$(cpu_s "$(pid_of "$s")")
        # The server's CPU time for the whole run goes into the run's JSON.
        jq --argjson c "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')" \
            '. + { server_cpu_s: $c }' "$RES/$s.$run.json.tmp" >"$RES/$s.$run.json"
        rm -f "$RES/$s.$run.json.tmp"
        settle
        log "run $run/$RUNS: $s (cold sequential read)"
        timeout "$STEP_TIMEOUT_S" "${BENCH[@]}" "$(url_of "$s")" "${BENCH_ARGS[@]}" --only seq-read --cold-read \
            >"$RES/$s.cold.$run.json" 2>>"$WORK/bench.log" || die "cold read against $s failed"
    done
done

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
for s in "${SERVERS[@]}"; do
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
fmt() { [ -z "${1:-}" ] || [ "$1" = null ] && { echo "—"; return; }; awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else printf "%.1f", v }'; }
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
# perf report without its empty trailing columns.
perf_top() {   # perf_top DATA SORT PERCENT LINES
    perf report -i "$1" --stdio --no-children --sort "$2" -g none --percent-limit "$3" 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' \
        | head -n "$4" || true
}
if [ "$DO_PROFILE" = 1 ] && [ -n "$METROFS_PID" ]; then
    declare -A profiled=()
    for t in seqw_ganesha seqw_tcp seqr uns_p50 fs_p50 small; do
        [ "${RESULT[$t]:-}" = MISSED ] || continue
        phase=${TARGET_PHASE[$t]}
        [ -n "${profiled[$phase]:-}" ] && continue
        profiled[$phase]=1
        w=${TARGET_WORKLOAD[$t]}
        trigger=${TARGET_TRIGGER[$t]}
        settle
        log "profiling metrofs during $phase (perf record -g from \"$trigger\" to the end)"
        errlog="$RES/profile.$phase.stderr"
        : >"$errlog"
        # perf starts with its events disabled and is switched on through a control fifo when the
        # measured part begins, so neither its attach time nor the preparation is in the profile.
        ctl="$WORK/perf.ctl"
        rm -f "$ctl"; mkfifo "$ctl"
        perf record -g -F 999 -D -1 --control="fifo:$ctl" -p "$METROFS_PID" -o "$RES/perf.$phase.data" \
            >>"$WORK/perf.log" 2>&1 &
        perf_pid=$!
        exec {ctl_fd}<>"$ctl"
        timeout "$STEP_TIMEOUT_S" "${BENCH[@]}" "$METROFS_URL" "${BENCH_ARGS[@]}" --only "$w" \
            >"$RES/profile.$phase.json" 2>"$errlog" &
        bench_pid=$!
        while kill -0 "$bench_pid" 2>/dev/null && ! grep -qF "$trigger" "$errlog"; do sleep 0.01; done
        echo enable >&"$ctl_fd"
        wait "$bench_pid" || log "bench under perf failed (see $errlog)"
        echo disable >&"$ctl_fd"
        sleep 0.2
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        exec {ctl_fd}>&-
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
# The hand-written analysis of the previous report survives a rerun.
ANALYSIS=""
if [ -f "$OUT" ]; then
    ANALYSIS=$(awk '/^<!-- \/analysis -->/ { on = 0 } on { print } /^<!-- analysis:/ { on = 1 }' "$OUT")
fi
tmp_out=$(mktemp)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); metrofs at \`$GIT_REV\`$GIT_DIRTY."
    echo "Machine: $(nproc) cores ($CPU), ${MEM_GIB} GiB memory, Linux $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')."
    echo "Load average when the report was written: $LOADAVG."
    echo
    echo "All data was on a dedicated **ext4 image with a journal** on a loop device (\`mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0\`, mounted \`$MNT_OPTS\`), backed by a file on the machine's root disk, made and removed by the script. Both servers ran on it at the same time, each in its own directory; the client and the servers share the $(nproc) cores."
    echo
    echo "Client: \`$BENCH_SHOWN URL ${BENCH_ARGS[*]}\` — $DEPTH requests in flight (one per TCP connection) for throughput, files, stat and unlink; one in flight for the latencies. Sequential write = $SIZE in 1 MiB UNSTABLE WRITEs then one COMMIT, timed to the COMMIT's reply. Small files = CREATE (guarded) + 4 KiB UNSTABLE WRITE + COMMIT each. Stat = LOOKUP + GETATTR. Each server measured $RUNS times, runs alternating between servers; the table gives **medians**, the per-run values are below."
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
        m=$([ -n "$METROFS_URL" ] && all_runs metrofs "$p" || echo "—")
        echo "| \`$p\` | $g | $m |"
    done
    g=$([ -n "$GANESHA_URL" ] && all_runs ganesha .seq_read.mib_per_s cold || echo "—")
    m=$([ -n "$METROFS_URL" ] && all_runs metrofs .seq_read.mib_per_s cold || echo "—")
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
    if [ -n "$ANALYSIS" ]; then
        echo "$ANALYSIS"
    else
        echo "(none yet)"
    fi
    echo "<!-- /analysis -->"
    echo
    echo "## Exact commands"
    echo
    echo '```sh'
    echo "sudo bench/compare.sh --runs $RUNS --size $SIZE --files $FILES --latency-ops $LAT_OPS --depth $DEPTH --image-gib $IMAGE_GIB"
    echo "# image"
    echo "truncate -s ${IMAGE_GIB}G fs.img && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 fs.img && mount \$(losetup -f --show fs.img) $MNT"
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
        echo "# metrofs (config below)"
        echo "$CMD_METROFS"
        echo "$CMD_METROFS_FS"
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
        echo "metrofs's configuration:"
        echo
        echo '```toml'
        cat "$WORK/metrofs.toml"
        echo '```'
    fi
} >"$tmp_out"
mkdir -p "$(dirname "$OUT")"
mv "$tmp_out" "$OUT"
log "wrote $OUT (raw results in $RES)"
cat "$OUT" | sed -n '/^## Results/,/^## Every run/p' >&2
