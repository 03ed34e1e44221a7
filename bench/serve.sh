#!/usr/bin/env bash
# Control daemon benchmark (issue #4): what waking, keeping and stopping workers costs under
# `apotheca serve`, release build, against a private cluster with durable settings (fsync on).
#
#   A  cold wake, one tenant after another over N_WAKE tenants: POST /v1/tenants/S/wake on the
#      daemon's socket (spawn → ready) then the first GET /_apotheca/health on the endpoint it
#      returned (→ first response, a database round trip); p50 and p99
#   B  N_MANY cold tenants woken at once: time until every one of them has answered
#   C  memory of those N_MANY idle workers: RSS and PSS per worker (ps, /proc/PID/smaps_rollup),
#      and how much MemAvailable dropped per worker; the daemon's own RSS
#   D  SIGTERM with N_MANY + 1 workers: time until the daemon exited, every worker drained
#
# The timings come from bench/loadgen (`wake`), one process for all the wakes of a scenario, so
# no process start-up of the client is included. Everything runs in a mktemp folder (cluster,
# control state, sockets), stopped and removed on exit; every process started here is stopped
# by its PID.
#
# Knobs: N_WAKE (default 100), N_MANY (default 200), SKIP_BUILD=1. Every APOTHECA_* variable of
# the caller is dropped. Progress on stderr, a Markdown summary on stdout:
#
#   bench/serve.sh > /tmp/serve.md

set -euo pipefail
export LC_ALL=C

N_WAKE=${N_WAKE:-100}
N_MANY=${N_MANY:-200}
SKIP_BUILD=${SKIP_BUILD:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/apotheca
WORKER=$ROOT/target/release/apotheca-worker
LOADGEN=$ROOT/target/release/apotheca-loadgen

die() { echo "serve.sh: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

[[ $N_WAKE =~ ^[1-9][0-9]*$ ]] || die "N_WAKE must be a positive integer"
[[ $N_MANY =~ ^[1-9][0-9]*$ ]] || die "N_MANY must be a positive integer"
N_TENANTS=$((N_WAKE > N_MANY ? N_WAKE : N_MANY))
((N_TENANTS <= 9999)) || die "at most 9999 tenants"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p apotheca-control -p apotheca-worker -p apotheca-loadgen) >&2
fi
for b in "$BIN" "$WORKER" "$LOADGEN"; do [[ -x $b ]] || die "$b not found; build it or unset SKIP_BUILD"; done

STATE=$(mktemp -d /tmp/apotheca-serve.XXXXXX)
chmod 0755 "$STATE" # PostgreSQL's OS user must reach $STATE/pg when this runs as root
DAEMON=

stop_daemon() {
    [[ -n $DAEMON ]] || return 0
    if kill -0 "$DAEMON" 2>/dev/null; then
        kill -TERM "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    DAEMON=
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_daemon
    if [[ -d $STATE/pg ]]; then
        (cd "$STATE" && "$BIN" db stop >/dev/null 2>&1) ||
            echo "serve.sh: WARNING: 'apotheca db stop' failed; check: pgrep -af 'postgres -D $STATE'" >&2
    fi
    cd /
    rm -rf "$STATE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

unset DATABASE_URL
while read -r var; do unset "$var"; done < <(compgen -e APOTHECA_ || true)
export APOTHECA_PRIVATE_DB__DATA_DIR=$STATE/pg
export APOTHECA_PRIVATE_DB__RUN_DIR=$STATE/run
export APOTHECA_CONTROL__STATE_DIR=$STATE
export APOTHECA_CONTROL__SPARE_SCHEMAS=0
export APOTHECA_CONTROL__SERVE__SOCKET=$STATE/ctl/apotheca.sock
export APOTHECA_CONTROL__SERVE__WORKER_DIR=$STATE/ctl/w
export APOTHECA_CONTROL__SERVE__WORKER_BIN=$WORKER
export RUST_LOG=warn
SOCK=$APOTHECA_CONTROL__SERVE__SOCKET
cd "$STATE"

apo() { "$BIN" "$@" >"$STATE/last.out" 2>"$STATE/last.err" || { cat "$STATE/last.out" "$STATE/last.err" >&2; return 1; }; }
sql() { apo db psql -- -X -Atc "$1"; cat "$STATE/last.out"; }
field() { printf '%s' "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
now_us() { local t=${EPOCHREALTIME}; echo "${t/./}"; }
ms_since() { awk -v a="$1" -v b="$(now_us)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
mem_available_kb() { awk '/^MemAvailable/ { print $2 }' /proc/meminfo; }
name() { printf 'b%04d' "$1"; }
schemas() { local i; for ((i = $1; i <= $2; i++)); do printf -- '--schema %s ' "$(name "$i")"; done; }

# start_daemon: `apotheca serve` in the background; returns once its API answers and the public
# site has a ready worker.
start_daemon() {
    rm -f "$STATE/serve.out"
    "$BIN" serve >"$STATE/serve.out" 2>>"$STATE/serve.log" &
    DAEMON=$!
    local t0
    t0=$(now_us)
    until grep -q '^apotheca serve: API on' "$STATE/serve.out" 2>/dev/null; do
        kill -0 "$DAEMON" 2>/dev/null || die "apotheca serve exited: $(tail -5 "$STATE/serve.log")"
        (($(now_us) - t0 < 60000000)) || die "apotheca serve did not start within 60 s"
        sleep 0.05
    done
    apo wake --schema public
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "state folder $STATE; private cluster, public schema"
apo migrate-schemas --shared
PG_VERSION=$(sql 'show server_version')
FSYNC=$(sql 'show fsync')
[[ $FSYNC == on ]] || die "fsync is '$FSYNC'; this benchmark wants the durable default"
MAX_CONN=$(sql 'show max_connections')
((MAX_CONN >= 2 * N_MANY + 20)) || die "max_connections $MAX_CONN is too low for $N_MANY workers (2 connections each)"

log "creating $N_TENANTS tenants (b0001..)"
for ((i = 1; i <= N_TENANTS; i++)); do
    apo create-tenant --name "Bench $(name "$i")" --schema "$(name "$i")" --domain "$(name "$i").bench.localhost"
    ((i % 50)) || log "  $i/$N_TENANTS"
done

# ---------------------------------------------------------------------------------------------
log "A: $N_WAKE cold wakes, one after another"
start_daemon
DAEMON_RSS_START=$(ps -o rss= -p "$DAEMON" | tr -d ' ')
# shellcheck disable=SC2046
A=$("$LOADGEN" wake --control "unix:$SOCK" --label cold $(schemas 1 "$N_WAKE"))
log "A: $A"
stop_daemon

# ---------------------------------------------------------------------------------------------
log "B: $N_MANY cold tenants woken at once"
start_daemon
AVAIL_BEFORE=$(mem_available_kb)
# shellcheck disable=SC2046
B=$("$LOADGEN" wake --together --control "unix:$SOCK" --label together $(schemas 1 "$N_MANY"))
log "B: $B"

# ---------------------------------------------------------------------------------------------
log "C: memory of $N_MANY idle workers (after 5 s idle)"
sleep 5
AVAIL_AFTER=$(mem_available_kb)
ps -o pid=,rss=,args= --ppid "$DAEMON" | grep -v -- '--schema public ' >"$STATE/workers.txt" || true
N_SEEN=$(wc -l <"$STATE/workers.txt")
((N_SEEN == N_MANY)) || die "expected $N_MANY tenant workers under the daemon, found $N_SEEN"
read -r RSS_MEAN RSS_MAX RSS_MIN < <(awk '{ s += $2; if ($2 > mx) mx = $2; if (mn == "" || $2 < mn) mn = $2 }
    END { printf "%.1f %.1f %.1f\n", s / NR / 1024, mx / 1024, mn / 1024 }' "$STATE/workers.txt")
PSS_MEAN=$(while read -r pid _; do awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup"; done <"$STATE/workers.txt" |
    awk '{ s += $1 } END { printf "%.1f", s / NR / 1024 }')
AVAIL_PER=$(awk -v a="$AVAIL_BEFORE" -v b="$AVAIL_AFTER" -v n="$N_MANY" 'BEGIN { printf "%.1f", (a - b) / n / 1024 }')
DAEMON_RSS=$(ps -o rss= -p "$DAEMON" | tr -d ' ')
CONNS=$(sql "select count(*) from pg_stat_activity where usename like 't\\_%'")
log "C: RSS mean $RSS_MEAN MB (min $RSS_MIN, max $RSS_MAX), PSS mean $PSS_MEAN MB, MemAvailable -$AVAIL_PER MB/worker; daemon $((DAEMON_RSS / 1024)) MB; $CONNS tenant connections"

# ---------------------------------------------------------------------------------------------
log "D: SIGTERM with $((N_MANY + 1)) workers"
ALL_PIDS=$(ps -o pid= --ppid "$DAEMON" | tr -d ' ' | paste -sd' ')
T0=$(now_us)
kill -TERM "$DAEMON"
wait "$DAEMON" || die "apotheca serve did not exit 0"
STOP_MS=$(ms_since "$T0")
DAEMON=
LEFT=0
for pid in $ALL_PIDS; do [[ ! -e /proc/$pid ]] || LEFT=$((LEFT + 1)); done
SOCKS=$(find "$STATE/ctl" -type s | wc -l)
log "D: stopped in $STOP_MS ms; $LEFT workers and $SOCKS sockets left"
((LEFT == 0 && SOCKS == 0)) || die "workers or sockets were left behind"

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(free -g | awk '/^Mem:/ { printf "%s GiB total, %s GiB available", $2, $7 }')
cat <<EOF
### Control daemon: \`bench/serve.sh\` (N_WAKE=$N_WAKE, N_MANY=$N_MANY)

* Date: $(date -u '+%Y-%m-%d %H:%M UTC'); apotheca at commit $COMMIT, release build
* Machine: $(nproc) cores ($CPU), $MEM, kernel $(uname -r); load average at start $LOAD_START, at end $LOAD_END
* PostgreSQL $PG_VERSION, private cluster (fsync on), Unix socket; $N_TENANTS tenants; default
  \`[control.serve]\` and \`[worker]\` settings (worker pool 4, opened lazily)
* A wake is timed by \`bench/loadgen wake\` from before \`POST /v1/tenants/S/wake\` on the daemon's
  socket until the first \`GET /_apotheca/health\` (a database round trip as the tenant's role)
  on the endpoint it returned has answered 200: spawn, start-up checks, ready, first response.
  Percentiles as loadgen computes them (rank rounded).

| figure | value | target |
|---|---|---|
| A cold wake to first response, one after another (n=$(field "$A" ok)) | p50 $(field "$A" first_p50_ms) ms, p99 $(field "$A" first_p99_ms) ms (min $(field "$A" first_min_ms), mean $(field "$A" first_mean_ms), max $(field "$A" first_max_ms)) | p50 ≤ 50 ms, p99 ≤ 150 ms |
| … of which until the wake answered (worker ready) | p50 $(field "$A" ready_p50_ms) ms, p99 $(field "$A" ready_p99_ms) ms | |
| B $N_MANY cold tenants woken at once: until all answered | $(field "$B" wall_ms) ms (each: p50 $(field "$B" first_p50_ms) ms, p99 $(field "$B" first_p99_ms) ms, max $(field "$B" first_max_ms) ms) | |
| C RSS per idle worker ($N_MANY workers, each after one request) | mean $RSS_MEAN MB (min $RSS_MIN, max $RSS_MAX) | ≤ 10 MB |
| … proportional share (PSS, shared pages divided) | mean $PSS_MEAN MB | |
| … MemAvailable drop per worker, its 2 PostgreSQL backends included | $AVAIL_PER MB | |
| the daemon's own RSS: with the public worker / with $((N_MANY + 1)) workers | $((DAEMON_RSS_START / 1024)) MB / $((DAEMON_RSS / 1024)) MB | |
| D SIGTERM with $((N_MANY + 1)) idle workers until the daemon exited | $STOP_MS ms (no worker, no socket left) | |

Peer context (issue #4): a Django/gunicorn worker needs ≈ 400 ms to its first response and ≈ 52 MB.
Tenant database connections while C was measured: $CONNS (each worker: its change listener and
one pooled connection).
EOF
log "done; stopping the cluster and removing $STATE"
