# bench/lib.sh: what bench/compare.sh, bench/pair.sh and bench/failover.sh share. Sourced, never
# run: it only defines functions and runs nothing by itself.
#
# Callers set BENCH_NAME (used in messages) before sourcing, and ROOT (the checkout) before
# calling bench_workspace. The set-up functions leave their results in globals, named below.

BENCH_NAME=${BENCH_NAME:-bench}
die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }
log() { echo "[$BENCH_NAME $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Small helpers.
now() { date +%s.%N; }
# Let writeback of the previous step finish so it does not bill the next one.
settle() { sync; sleep 2; }
mib() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }
# to_bytes SIZE: "512MiB" / "2GiB" -> bytes, or "" when SIZE is not such a size.
to_bytes() { numfmt --from=iec "${1%iB}" 2>/dev/null || echo ""; }
# CPU seconds (user + system, all threads) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# positive NAME VALUE: dies unless VALUE is a whole number > 0.
positive() { case "$2" in ''|*[!0-9]*|0) die "$1 wants a positive number, got '$2'" ;; esac; }

# bench_opt ARG [VALUE]: the options compare.sh and pair.sh share. Sets the variable and
# succeeds when ARG is one of them (the caller then shifts 2), fails otherwise.
bench_opt() {
    case "$1" in
        --runs|--size|--files|--latency-ops|--depth|--resync|--image-gib|--out|--site-b|--array-workers) ;;
        *) return 1 ;;
    esac
    [ -n "${2:-}" ] || die "$1 wants a value"
    case "$1" in
        --runs) RUNS=$2 ;;
        --size) SIZE=$2 ;;
        --files) FILES=$2 ;;
        --latency-ops) LAT_OPS=$2 ;;
        --depth) DEPTH=$2 ;;
        --resync) RESYNC=$2 ;;
        --image-gib) IMAGE_GIB=$2 ;;
        --out) OUT=$2 ;;
        --site-b) SITE_B=$2 ;;
        --array-workers) ARRAY_WORKERS=$2 ;;
    esac
}
# bench_check_opts: validates the shared options; sets SIZE_BYTES, RESYNC_BYTES.
bench_check_opts() {
    positive --runs "$RUNS"; positive --files "$FILES"; positive --latency-ops "$LAT_OPS"
    positive --depth "$DEPTH"; positive --image-gib "$IMAGE_GIB"
    SIZE_BYTES=$(to_bytes "$SIZE"); [ -n "$SIZE_BYTES" ] || die "--size $SIZE: use forms like 512MiB or 1GiB"
    RESYNC_BYTES=$(to_bytes "$RESYNC"); [ -n "$RESYNC_BYTES" ] || die "--resync $RESYNC: use forms like 1GiB or 2GiB"
    case "${SITE_B:=own}" in own|shared) ;; *) die "--site-b wants own or shared, got '$SITE_B'" ;; esac
    [ "${ARRAY_WORKERS:=cores}" = cores ] || positive --array-workers "$ARRAY_WORKERS"
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
TAKEN=" "
pick_port() {   # pick_port FROM: a free port >= FROM not handed out before by this script
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

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup of everything started here.
# bench_workspace PREFIX: sets WORK (/var/tmp/metrofs-PREFIX.*), MNT, RES (raw results, kept in
# the git-ignored target/bench-results/PREFIX-DATE), LOOP, PIDS; installs the EXIT trap.
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
bench_cleanup() {
    local rc=$? i
    set +e
    # Last started, first stopped (rpcbind, started before Ganesha, goes after it).
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
    if mountpoint -q "$MNT"; then
        for _ in $(seq 10); do umount "$MNT" 2>/dev/null && break; sleep 0.5; done
        mountpoint -q "$MNT" && umount -l "$MNT"
    fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    if [ -n "$B_IMG" ]; then
        mountpoint -q "$MNT_B" && { umount "$MNT_B" 2>/dev/null || umount -l "$MNT_B"; }
        [ -n "$LOOP_B" ] && losetup -d "$LOOP_B" 2>/dev/null
        rm -f "$B_IMG"
    fi
    if [ $rc -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "---- last lines of $f" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$WORK"
    [ -n "${BENCH_SITE_B_DIR:-}" ] && rm -rf "${BENCH_SITE_B_DIR:?}/site-b"
    exit $rc
}
bench_workspace() {
    WORK=$(mktemp -d "/var/tmp/metrofs-$1.XXXXXX")
    MNT="$WORK/mnt"
    RES="$ROOT/target/bench-results/$1-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$MNT" "$RES"
    LOOP=""
    B_IMG="" LOOP_B="" MNT_B="$WORK/mnt-b"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# bench_image GIB LABEL: a GIB GiB ext4 image WITH a journal on a loop device, mounted on MNT
# (/ on the machines this was written on is ext4 without a journal, where creating files soon
# after many unlinks is erratic). Sets LOOP and MNT_OPTS.
bench_image() {
    log "making a $1 GiB ext4 image with a journal in $WORK"
    truncate -s "$1G" "$WORK/fs.img"
    # Eager inode-table and journal init: no background ext4lazyinit competing with the runs.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L "$2" "$WORK/fs.img"
    # Direct I/O between the loop device and its image file, as a disk has: with the default
    # (buffered) loop, every page written is copied a second time into the page cache of the
    # image file, and every fsync also syncs that file on the host's file system. That doubled
    # the CPU of a write and made a second array on the same image pay twice over.
    LOOP=$(losetup -f --show --direct-io=on "$WORK/fs.img")
    [ "$(losetup -n -O DIO "$LOOP" | tr -d ' ')" = 1 ] || log "warning: $LOOP has no direct I/O to its image file"
    mount "$LOOP" "$MNT"
    dumpe2fs -h "$LOOP" 2>/dev/null | grep -q has_journal || die "the image has no journal"
    MNT_OPTS=$(findmnt -no OPTIONS "$MNT")
    CMD_IMAGE="truncate -s $1G fs.img && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 fs.img && mount \$(losetup -f --show --direct-io=on fs.img) $MNT"
}

# bench_site_b GIB: where site-b keeps its data (sets BENCH_SITE_B_DIR, SITE_B_DESC, CMD_IMAGE_B).
# --site-b own (the default): a disk of its own, as the twin at the other site has. This machine
# has one disk, so the stand-in is a GIB GiB ext4 image with a journal in memory (/dev/shm, only
# the bytes written take memory) on its own loop device with direct I/O: its flushes cost no
# disk time, but each page still costs a copy on the same 2 cores. --site-b shared: on the image
# of site-a, so every paired byte and flush reaches the one disk twice. BENCH_SITE_B_DIR=DIR set
# by the caller wins over both (e.g. a real second disk).
bench_site_b() {
    if [ -n "${BENCH_SITE_B_DIR:-}" ]; then
        SITE_B_DESC="site-b's data was in \`$BENCH_SITE_B_DIR\` (BENCH_SITE_B_DIR, on \`$(findmnt -no SOURCE,FSTYPE -T "$BENCH_SITE_B_DIR" | tr -s ' ')\`)"
        return
    fi
    if [ "$SITE_B" = shared ]; then
        SITE_B_DESC="site-b's data was on the same image as site-a's (\`--site-b shared\`): a paired write reaches the one disk twice"
        return
    fi
    log "making a $1 GiB ext4 image with a journal in /dev/shm for site-b (its own disk)"
    B_IMG=$(mktemp /dev/shm/metrofs-site-b.XXXXXX.img)
    truncate -s "$1G" "$B_IMG"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L mfssiteb "$B_IMG"
    LOOP_B=$(losetup -f --show --direct-io=on "$B_IMG")
    mkdir -p "$MNT_B"
    mount "$LOOP_B" "$MNT_B"
    BENCH_SITE_B_DIR=$MNT_B
    SITE_B_DESC="**site-b's data was on a disk of its own** (\`--site-b own\`, the default), as the twin at the other site has: this machine has one disk, so that is a $1 GiB ext4 image with a journal in memory (\`/dev/shm\`) on a second loop device with direct I/O (mounted \`$(findmnt -no OPTIONS "$MNT_B")\`). Its flushes take no disk time, so it is faster than site-a's disk for FILE_SYNC and COMMIT; each page written to it still costs a copy on the same 2 cores"
    CMD_IMAGE_B="truncate -s $1G /dev/shm/site-b.img && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/shm/site-b.img && mount \$(losetup -f --show --direct-io=on /dev/shm/site-b.img) /mnt/site-b   # BENCH_SITE_B_DIR"
}

# bench_build: builds metrofs (release) and runs it from a private copy, so that a rebuild in the
# checkout during the run neither changes what is measured nor leaves perf unable to read the
# symbols of a deleted file. METROFS_BIN=PATH uses that binary instead of building.
# Sets METROFS, BENCH (the client command, an array) and BENCH_SHOWN.
bench_build() {
    local src
    if [ -n "${METROFS_BIN:-}" ]; then
        src=$METROFS_BIN
        log "using METROFS_BIN=$src (not building)"
    else
        log "cargo build --release -p metrofs"
        cargo build --release -p metrofs 2>&1 | tail -3 >&2
        [ "${PIPESTATUS[0]}" = 0 ] || die "metrofs does not build (METROFS_BIN=PATH runs a binary you built)"
        src="$ROOT/target/release/metrofs"
    fi
    mkdir -p "$WORK/bin"
    METROFS="$WORK/bin/metrofs"
    cp "$src" "$METROFS"
    "$METROFS" bench --help >/dev/null 2>&1 || die "this metrofs ($src) has no 'bench' subcommand"
    BENCH=("$METROFS" bench)
    BENCH_SHOWN="metrofs bench"
}

# ---------------------------------------------------------------------------------------------
# Two arrays on loopback, site-a (preferred) and site-b, with fs `solo` (unpaired) and fs `paired`
# (paired with site-b, Normal) on site-a. Sets A_NFS A_API A_PID B_PID A B (API URLs) PAIR.
pair_write_conf() {   # NAME NFS API LINK PREFERRED PEER PEER_LINK DATA_ROOT
    cat >"$WORK/$1.toml" <<EOF
name = "$1"
data_dir = "$8/$1"
nfs_listen = "127.0.0.1:$2"
api_listen = "127.0.0.1:$3"

$([ "${ARRAY_WORKERS:-cores}" = cores ] || echo "worker_threads = $ARRAY_WORKERS")

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
start_arrays() {
    local a_link b_nfs b_api b_link ok
    A_NFS=$(pick_port 32249); A_API=$(pick_port 32250); a_link=$(pick_port 32251)
    b_nfs=$(pick_port 32252); b_api=$(pick_port 32253); b_link=$(pick_port 32254)
    head -c 32 /dev/urandom >"$WORK/link.secret"
    chmod 600 "$WORK/link.secret"
    # BENCH_SITE_B_DIR: site-b's data elsewhere than the image (its own disk, as a real twin
    # has); the directory must be empty of a previous site-b.
    local b_root=${BENCH_SITE_B_DIR:-$MNT}
    [ -e "$b_root/site-b" ] && die "$b_root/site-b exists: remove it, or point BENCH_SITE_B_DIR elsewhere"
    mkdir -p "$MNT/site-a" "$b_root/site-b"
    pair_write_conf site-a "$A_NFS" "$A_API" "$a_link" true site-b "$b_link" "$MNT"
    pair_write_conf site-b "$b_nfs" "$b_api" "$b_link" false site-a "$a_link" "$b_root"
    A="http://127.0.0.1:$A_API"
    B="http://127.0.0.1:$b_api"
    log "starting metrofs array --config site-a.toml / site-b.toml"
    "$METROFS" array --config "$WORK/site-a.toml" >"$WORK/site-a.log" 2>&1 &
    A_PID=$!; PIDS+=("$A_PID")
    "$METROFS" array --config "$WORK/site-b.toml" >"$WORK/site-b.log" 2>&1 &
    B_PID=$!; PIDS+=("$B_PID")
    wait_port "$A_API" "$A_PID" site-a; wait_port "$A_NFS" "$A_PID" site-a
    wait_port "$b_api" "$B_PID" site-b; wait_port "$b_nfs" "$B_PID" site-b
    for fs in solo paired; do
        "$METROFS" fs create "$fs" --api "$A" >&2
        "$METROFS" export set "$fs" --clients 127.0.0.0/8 --rw --no-root-squash --api "$A" >&2
    done
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
}
fs_url() { echo "nfs://127.0.0.1/$1?nfsport=$A_NFS&mountport=$A_NFS&version=3"; }
pair_json() { "$METROFS" pair show "$PAIR" --json --api "$A"; }
# wait_normal TIMEOUT_S [SAMPLES_FILE]: polls every 0.1 s until the pair is Normal; with a file,
# appends each sample (one JSON per line) to it. The loop runs no jq and no bc (jq alone takes
# about 20 ms of CPU to start): it polls while a resync is being timed, on the same 2 cores.
wait_normal() {
    local deadline_us=$((${EPOCHREALTIME/./} + $1 * 1000000)) st j
    while :; do
        j=$(pair_json) || die "pair show failed"
        j=${j//$'\n'/}   # pretty JSON on one line (its strings hold no newline)
        [ -n "${2:-}" ] && echo "$j" >>"$2"
        [[ $j =~ \"state\":\ *\"([A-Za-z]+)\" ]] || die "pair show --json has no state: $j"
        st=${BASH_REMATCH[1]}
        [ "$st" = Normal ] && return 0
        [ "${EPOCHREALTIME/./}" -gt "$deadline_us" ] && die "the pair is still $st after $1 s: $j"
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------
# perf: a profile of one process, enabled from the start of a measured part to its end.
# perf_top DATA SORT PERCENT LINES: perf report without its empty trailing columns.
perf_top() {
    perf report -i "$1" --stdio --no-children --sort "$2" -g none --percent-limit "$3" 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' \
        | head -n "$4" || true
}
# profile_start NAME PID: perf record, its events disabled until `profile_enable` (through a
# control fifo, so neither perf's attach time nor the untimed preparation is in the profile).
profile_start() {
    local ctl="$WORK/perf.ctl"
    rm -f "$ctl"; mkfifo "$ctl"
    perf record -g -F 999 -D -1 --control="fifo:$ctl" -p "$2" -o "$RES/perf.$1.data" >>"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
    exec {PERF_CTL}<>"$ctl"
}
profile_enable() { echo enable >&"$PERF_CTL"; }
profile_stop() {
    echo disable >&"$PERF_CTL"
    sleep 0.2
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    exec {PERF_CTL}>&-
}
# profile_bench NAME PID TRIGGER URL BENCH-ARGS...: runs the client, enabling perf on PID when
# the client prints TRIGGER (the start of the measured part).
profile_bench() {
    local name=$1 pid=$2 trigger=$3 url=$4 errlog="$RES/profile.$1.stderr" bench_pid
    shift 4
    : >"$errlog"
    profile_start "$name" "$pid"
    timeout "$STEP_TIMEOUT_S" "${BENCH[@]}" "$url" "$@" >"$RES/profile.$name.json" 2>"$errlog" &
    bench_pid=$!
    while kill -0 "$bench_pid" 2>/dev/null && ! grep -qF "$trigger" "$errlog"; do sleep 0.01; done
    profile_enable
    wait "$bench_pid" || log "bench under perf failed (see $errlog)"
    profile_stop
}

# ---------------------------------------------------------------------------------------------
# docs/BENCHMARKS.md is written by several scripts, each owning some "## " sections of it.
#
# doc_kept FILE NAME: the hand-written text between `<!-- NAME: ... -->` and `<!-- /NAME -->`.
doc_kept() {
    [ -f "$1" ] || return 0
    awk -v n="$2" '$0 ~ "^<!-- /" n " -->" { on = 0 } on { print } $0 ~ "^<!-- " n ":" { on = 1 }' "$1"
}
# doc_merge FILE NEW [OWNED-HEADING...]: writes NEW's sections into FILE.
#   - NEW's text before its first "## " heading (if any) replaces FILE's;
#   - each "## H" section of NEW replaces FILE's "## H" in place (a section runs to the next
#     "## " heading), and one FILE does not have yet goes after the section NEW puts before it;
#   - FILE's sections that NEW does not have are kept where they are, unless their heading is one
#     of the OWNED headings (those the caller writes, that this rewrite has no more);
#   - a hand-written block (`<!-- NAME: ... -->` to `<!-- /NAME -->`) that NEW leaves empty gets
#     FILE's text back, so no rewrite drops what somebody wrote by hand.
doc_merge() {
    local out=$1 new=$2 owned tmp
    shift 2
    owned=$(printf '%s\n' "$@")
    if [ ! -s "$out" ]; then
        # A new document (awk would take NEW for the old one: an empty file has no first line).
        cp "$new" "$out"
        return
    fi
    tmp=$(mktemp)
    awk -v owned="$owned" '
        function key(l) { return (l ~ /^## /) ? l : "" }
        BEGIN { n = split(owned, o, "\n"); for (i = 1; i <= n; i++) if (o[i] != "") own[o[i]] = 1 }
        # First file: the old document. Second: the new sections.
        FNR == 1 { f++ ; cur = "" }
        f == 1 {
            if ($0 ~ /^## /) { cur = $0; oldn++; oldh[oldn] = cur }
            old[cur] = old[cur] $0 "\n"
            if (match($0, /^<!-- [a-z0-9-]+:/)) { b = substr($0, 6, RLENGTH - 6); inb = b; next }
            if (inb != "" && $0 ~ "^<!-- /" inb " -->") { inb = ""; next }
            if (inb != "") kept[inb] = kept[inb] $0 "\n"
            next
        }
        {
            if ($0 ~ /^## /) { cur = $0; newn++; newh[newn] = cur; isnew[cur] = 1 }
            nw[cur] = nw[cur] $0 "\n"
        }
        function emit_new(h,   t, lines, k, i, blk, body) {
            if (done[h]) return
            done[h] = 1
            k = split(nw[h], lines, "\n")
            for (i = 1; i < k; i++) {
                t = lines[i]
                if (match(t, /^<!-- [a-z0-9-]+:/)) {
                    blk = substr(t, 6, RLENGTH - 6); body = ""
                    printf "%s\n", t
                    for (i++; i < k && lines[i] !~ ("^<!-- /" blk " -->"); i++) body = body lines[i] "\n"
                    if (body ~ /^[[:space:]]*(\(none yet\))?[[:space:]]*$/ && kept[blk] != "") body = kept[blk]
                    printf "%s", body
                    if (i < k) printf "%s\n", lines[i]
                    continue
                }
                printf "%s\n", t
            }
        }
        END {
            if (nw[""] ~ /[^[:space:]]/) emit_new(""); else printf "%s", old[""]
            pos = 0   # how far into the new sections we have emitted
            for (i = 1; i <= oldn; i++) {
                h = oldh[i]
                if (isnew[h]) {
                    if (done[h]) continue
                    for (j = pos + 1; j <= newn; j++) { emit_new(newh[j]); if (newh[j] == h) { pos = j; break } }
                } else if (!own[h]) printf "%s", old[h]
            }
            for (j = 1; j <= newn; j++) emit_new(newh[j])
        }' "$out" "$new" >"$tmp"
    mv "$tmp" "$out"
    chmod 644 "$out"
}
