#!/usr/bin/env bash
# Multi-host benchmark (issue #22), release build, one machine: what the HAProxy hop and a second
# host cost, and how long a pharmacy takes to move when its host dies.
#
#   one      wrk → apotheca-proxy (host-a) → its workers → PostgreSQL
#   hop      wrk → HAProxy (deploy/multi-host/haproxy.cfg: hash on the Host header, the client
#            in X-Forwarded-For) → host-a's apotheca-proxy → its workers → PostgreSQL; host-b
#            is not running, so HAProxy sends everything to host-a: the cost of the hop alone
#   two      the same with host-b up too: each pharmacy on the host its hash picks
#
# Both hosts run on this box, so `two` shows the cost of the extra hop and of a second host's
# processes sharing the same cores, not scaling. The requests are those of
# bench/compare (load.lua, the apotheca dialect): the medicine list and a two-line sale, with an
# API token, the Host header rotating over N tenants (t1..tN.localhost, seeded, then filled to
# 50 medicines) whose workers are warm (a 5 s mix first). The setups alternate, REPEAT times,
# each started afresh. CPU per request is that of Apotheca's processes and HAProxy (HAProxy's
# own share also apart); PostgreSQL's is apart. After each `two` round, host-b dies (its proxy, control and workers
# killed with SIGKILL) and the time until one of its pharmacies answers 200 through HAProxy
# again (polled every 20 ms) is the move time. Last, the books of every tenant are checked.
#
# Prints a Markdown table on stdout, progress on stderr; every figure is a JSON line in $OUT
# (default target/multihost/multihost-<utc>.jsonl).
#
# Knobs: N (20), CONNS ("16"), DURATION (10 s), SCENARIOS ("list sale"), REPEAT (2),
# SKIP_BUILD=1, KEEP=1 (keep the folder, with the hosts' logs), LOG (the daemons' RUST_LOG, warn). Everything runs in a mktemp folder (its own private cluster), stopped and
# removed at the end; every process started here is stopped by its PID.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-20}
CONNS=${CONNS:-16}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-list sale}
REPEAT=${REPEAT:-2}
mkdir -p "$ROOT/target/multihost"
OUT=${OUT:-$ROOT/target/multihost/multihost-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
: >"$OUT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
record() { jq -c "$@" | tee -a "$OUT" >/dev/null; }

[[ $N =~ ^[1-9][0-9]*$ && $REPEAT =~ ^[1-9][0-9]*$ ]] || die "N and REPEAT must be positive integers"
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[[ -x $HAPROXY ]] || die "haproxy is missing (scripts/deps.sh installs it)"
for tool in wrk jq curl python3; do command -v $tool >/dev/null || die "$tool is missing (apt-get install $tool)"; done
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-proxy
A=$ROOT/target/release/apotheca
PROXY=$ROOT/target/release/apotheca-proxy
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)

STATE=$(mktemp -d /tmp/apotheca-multihost.XXXXXX)
chmod 755 "$STATE" # PostgreSQL's OS user must reach $STATE/pg when this runs as root
PIDS=()
DB_ENV=(env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="$STATE/pg"
  APOTHECA_PRIVATE_DB__RUN_DIR="$STATE/run" APOTHECA_PRIVATE_DB__MAX_CONNECTIONS=500
  APOTHECA_CONTROL__STATE_DIR="$STATE" APOTHECA_CONTROL__SPARE_SCHEMAS=0)
apo() { "${DB_ENV[@]}" "$A" "$@"; }
cleanup() {
  stop_pids
  apo db stop >/dev/null 2>&1 || true
  if [[ -n ${KEEP:-} ]]; then log "kept $STATE (the hosts' logs)"; else rm -rf "$STATE"; fi
}
trap cleanup EXIT

FRONT=$(free_port) FRONT_TLS=$(free_port)
A_HTTP=$(free_port) A_ADMIN=$(free_port) B_HTTP=$(free_port) B_ADMIN=$(free_port)
NO_TLS=$(free_port) # the hosts' HTTPS in haproxy.cfg: nothing listens there, nothing asks
TOKEN=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)

# start_host NAME HTTP_PORT ADMIN_PORT TRUST(0|1): its daemon and proxy, once its proxy is
# ready (/ready: control answers too); TRUST: the proxy believes what 127.0.0.1 (HAProxy) says
# of its clients (X-Forwarded-For, the PROXY protocol). Sets HOST_PIDS.
start_host() {
  local name=$1 port=$2 admin=$3 trust=$4 home=$STATE/$1
  mkdir -p "$home"
  cat >"$home/apotheca.toml" <<EOF
[private_db]
data_dir = "$STATE/pg"
run_dir = "$STATE/run"

[control]
state_dir = "$STATE"
spare_schemas = 0

[control.serve]
socket = "$home/apotheca.sock"
worker_dir = "$home/workers"
host_name = "$name"

[proxy]
http_listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
control_socket = "$home/apotheca.sock"
upgrade_sock = "$home/upgrade.sock"
$( ((trust)) && printf '%s\n' 'proxy_protocol_from = ["127.0.0.1"]' 'forwarded_for_from = ["127.0.0.1"]')
EOF
  rm -f "$home/apotheca.sock" # a killed daemon's, from an earlier round
  "${DB_ENV[@]}" RUST_LOG="${LOG:-warn}" "$A" --config "$home/apotheca.toml" serve >>"$home/serve.log" 2>&1 &
  local daemon=$!
  PIDS+=("$daemon")
  for _ in $(seq 1 100); do [[ -S $home/apotheca.sock ]] && break; sleep 0.1; done
  [[ -S $home/apotheca.sock ]] || die "$name: apotheca serve did not start: $(tail -5 "$home/serve.log")"
  "${DB_ENV[@]}" DATABASE_URL="$(apo db url)" RUST_LOG=warn "$PROXY" --config "$home/apotheca.toml" >>"$home/proxy.log" 2>&1 &
  local proxy=$!
  PIDS+=("$proxy")
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" || die "$name: the proxy did not start: $(tail -5 "$home/proxy.log")"
  HOST_PIDS="$daemon $proxy"
}

start_haproxy() {  # how many hosts are to be up
  APOTHECA_HTTP_BIND=127.0.0.1:$FRONT APOTHECA_HTTPS_BIND=127.0.0.1:$FRONT_TLS \
    APOTHECA_HAPROXY_SOCKET=$STATE/haproxy.sock \
    APOTHECA_HOST_A_HTTP=127.0.0.1:$A_HTTP APOTHECA_HOST_A_HTTPS=127.0.0.1:$NO_TLS \
    APOTHECA_HOST_A_ADMIN_ADDR=127.0.0.1 APOTHECA_HOST_A_ADMIN_PORT=$A_ADMIN \
    APOTHECA_HOST_B_HTTP=127.0.0.1:$B_HTTP APOTHECA_HOST_B_HTTPS=127.0.0.1:$NO_TLS \
    APOTHECA_HOST_B_ADMIN_ADDR=127.0.0.1 APOTHECA_HOST_B_ADMIN_PORT=$B_ADMIN \
    "$HAPROXY" -db -f "$ROOT/deploy/multi-host/haproxy.cfg" >>"$STATE/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=("$HAPROXY_PID")
  # HAProxy counts its servers up from the start: its first checks (a second apart, down
  # after two failures) have had their say after 2.5 s.
  sleep 2.5
  local i
  for i in $(seq 1 100); do
    [[ $(haproxy_up) == "$1" ]] && return 0
    sleep 0.2
  done
  die "HAProxy did not see $1 host(s) up: $(tail -5 "$STATE/haproxy.log")"
}
# One command on HAProxy's runtime API; its answer.
haproxy_say() {
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode(), end="")
' "$STATE/haproxy.sock" "$1"
}
# How many HTTP servers HAProxy has up (operational state 2).
haproxy_up() {
  haproxy_say "show servers state apotheca_http" 2>/dev/null |
    awk '$1 ~ /^[0-9]+$/ && NF > 5 && $6 == 2 { n++ } END { print n + 0 }'
}
# "connections reuses" HAProxy made to the hosts' proxies so far (the HTTP backend's totals).
haproxy_conns() {
  haproxy_say "show stat" | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "connect") c = i; if ($i == "reuse") r = i } }
    $1 == "apotheca_http" && $2 == "BACKEND" { print $c + 0, $r + 0 }'
}

# setup one|hop|two: that setup's processes, in place of the last one's; sets URL, ROOTS and
# HAPROXY_PID (none for `one`).
setup() {
  stop_pids
  HAPROXY_PID=
  if [[ $1 == one ]]; then
    start_host host-a "$A_HTTP" "$A_ADMIN" 0
    ROOTS=$HOST_PIDS
    URL=http://127.0.0.1:$A_HTTP
    return
  fi
  start_host host-a "$A_HTTP" "$A_ADMIN" 1
  ROOTS=$HOST_PIDS
  if [[ $1 == two ]]; then
    start_host host-b "$B_HTTP" "$B_ADMIN" 1
    B_PIDS=$HOST_PIDS
    ROOTS="$ROOTS $B_PIDS"
  fi
  start_haproxy "$([[ $1 == two ]] && echo 2 || echo 1)"
  ROOTS="$ROOTS $HAPROXY_PID"
  URL=http://127.0.0.1:$FRONT
}

load() {  # scenario conns seconds: wrk with bench/compare/load.lua, its JSON line on stdout
  COMPARE_DIALECT=apotheca COMPARE_SCENARIO=$1 COMPARE_TENANTS=$N COMPARE_TOKEN=$TOKEN \
    COMPARE_MEDICINES=$MEDICINES wrk -t2 -c"$2" -d"$3s" --timeout 10s -s "$ROOT/bench/compare/load.lua" "$URL" |
    grep '^{"requests"'
}
measure() {  # setup round scenario conns
  local out c0 c1 pg0 pg1 h0=0 h1=0 pgroot conns0="0 0" conns1="0 0"
  pgroot=$(head -1 "$STATE/pg/postmaster.pid")
  load "$3" "$4" 1 >/dev/null
  c0=$(ticks $ROOTS); pg0=$(ticks "$pgroot")
  [[ -z $HAPROXY_PID ]] || { h0=$(ticks "$HAPROXY_PID"); conns0=$(haproxy_conns); }
  out=$(load "$3" "$4" "$DURATION") || die "$1: no figures from wrk"
  c1=$(ticks $ROOTS); pg1=$(ticks "$pgroot")
  [[ -z $HAPROXY_PID ]] || { h1=$(ticks "$HAPROXY_PID"); conns1=$(haproxy_conns); }
  record --arg setup "$1" --argjson round "$2" --arg sc "$3" --argjson c "$4" --argjson n "$N" \
    --argjson cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" \
    --argjson hap "$(awk -v a="$h0" -v b="$h1" 'BEGIN { print b - a }')" \
    --argjson pg "$(awk -v a="$pg0" -v b="$pg1" 'BEGIN { print b - a }')" \
    --argjson opened "$(awk -v a="${conns0% *}" -v b="${conns1% *}" 'BEGIN { print b - a }')" \
    --argjson reused "$(awk -v a="${conns0#* }" -v b="${conns1#* }" 'BEGIN { print b - a }')" \
    '. + {setup: $setup, haproxy_connects: $opened, haproxy_reuses: $reused, round: $round, n: $n, scenario: $sc, conns: $c, cpu_s: $cpu, haproxy_cpu_s: $hap, pg_cpu_s: $pg,
          cpu_ms_per_req: (if .requests > 0 then $cpu * 1000 / .requests | . * 100 | round / 100 else null end),
          haproxy_ms_per_req: (if .requests > 0 then $hap * 1000 / .requests | . * 100 | round / 100 else null end)}' \
    <<<"$out"
  log "$(tail -1 "$OUT" | jq -r '"\(.setup) round \(.round) \(.scenario) c\(.conns): \(.rps) req/s p50 \(.p50_ms) p99 \(.p99_ms) ms errors \(.errors) cpu \(.cpu_ms_per_req) ms/req (haproxy \(.haproxy_ms_per_req); to the hosts: \(.haproxy_connects) connections opened, \(.haproxy_reuses) reused)"')"
}

# A pharmacy of host-b: the first tenant with a worker there.
on_host_b() {
  "${DB_ENV[@]}" "$A" --config "$STATE/host-b/apotheca.toml" status --json |
    jq -r '[.tenants[] | select(.schema != "public" and (.workers | length) > 0) | .schema][0] // empty'
}
# Kills host-b (proxy, control and workers: SIGKILL) and times until its pharmacy answers through HAProxy.
move() {  # round
  local schema t0 took status
  schema=$(on_host_b)
  [[ -n $schema ]] || die "no pharmacy on host-b"
  # The whole host dies: its proxy, its control and its workers.
  local victims
  # shellcheck disable=SC2086 # two PIDs
  victims=$(tree $B_PIDS)
  t0=$(now)
  # shellcheck disable=SC2086 # a list of PIDs
  kill -KILL $victims 2>/dev/null || true
  while :; do
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $schema.localhost" \
      -H "Authorization: Bearer $TOKEN" "$URL/api/v1/medicines" || true)
    [[ $status == 200 ]] && break
    [[ $(since "$t0" | cut -d. -f1) -lt 60 ]] || die "$schema did not move within 60 s"
    sleep 0.02
  done
  took=$(since "$t0")
  record -n --argjson round "$1" --arg schema "$schema" --argjson took "$took" \
    '{step: "move", round: $round, schema: $schema, seconds: $took,
      note: "host-b killed (proxy, control and workers, SIGKILL) until its pharmacy answered 200 through HAProxy: checks every 1 s, down after 2 failures, then a cold wake on host-a"}'
  log "moved $schema in $took s"
  # Until host-a has marked host-b gone (host_gone_secs), host-b's row still lists its
  # pharmacies, and host-a's workers for them keep no caches: the next setup waits for it.
  local i
  for i in $(seq 1 60); do
    "${DB_ENV[@]}" "$A" --config "$STATE/host-a/apotheca.toml" status --cluster --json |
      jq -e '.[] | select(.name == "host-b" and .state == "gone")' >/dev/null && return 0
    sleep 0.5
  done
  die "host-b was never marked gone"
}

record -n --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" --argjson cores "$(nproc)" \
  --arg utc "$(date -u +%FT%TZ)" --arg commit "$(git -C "$ROOT" rev-parse --short HEAD)" \
  --arg haproxy "$("$HAPROXY" -v | head -1)" --argjson d "$DURATION" \
  '{step: "machine", utc: $utc, cpu: $cpu, cores: $cores, commit: $commit, haproxy: $haproxy, duration_s: $d}'

log "cluster and $N tenants (created, seeded, filled)"
apo db start >/dev/null
apo migrate-schemas >/dev/null
setup one
for ((i = 1; i <= N; i++)); do
  apo create-tenant --name "Pharmacy $i" --schema "t$i" --domain "t$i.localhost" >/dev/null
  apo seed-data --schema "t$i" >/dev/null
  "$PSQL" -q -X -v ON_ERROR_STOP=1 -d "$(apo db url --schema "t$i")" -c \
    "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix)
     SELECT id, 'multihost', sha256(convert_to('$TOKEN', 'UTF8')), 'multihost' FROM users WHERE username = 'admin'" \
    >/dev/null
done
MEDICINES=$(python3 "$ROOT/bench/compare/fill.py" "$URL" "$TOKEN" "$N" localhost)

for ((round = 1; round <= REPEAT; round++)); do
  for s in one hop two; do
    log "round $round: $s"
    [[ $round == 1 && $s == one ]] || setup "$s"
    load mix 16 5 >/dev/null # every tenant's worker awake, its connections open
    for scenario in $SCENARIOS; do
      for c in $CONNS; do measure "$s" "$round" "$scenario" "$c"; done
    done
    if [[ $s == two ]]; then move "$round"; fi
  done
done
stop_pids

bad=0
for ((i = 1; i <= N; i++)); do
  bad=$((bad + $("$PSQL" -X -At -d "$(apo db url --schema "t$i")" -c "$BOOKS_SQL")))
done
record -n --argjson bad "$bad" --argjson n "$N" '{step: "books", n: $n, mismatches: $bad}'
((bad == 0)) || die "the books disagree after the loads (see $OUT)"
log "books agree in all $N tenants"

# The table: per scenario and connections, the mean over the rounds of each setup.
jq -rs '
  def mean(f): (map(f) | add / length);
  def r1: . * 10 | round / 10;
  def r2: . * 100 | round / 100;
  [.[] | select(.setup)] as $rows
  | ([.[] | select(.step == "move") | .seconds]) as $moves
  | "| \($rows[0].n) tenants, API token, warm workers | conns | setup | req/s | ÷ one | p50 ms | p99 ms | CPU ms/req (HAProxy) | PostgreSQL CPU ms/req |",
    "|---|---|---|---|---|---|---|---|---|",
    ($rows | group_by([.scenario, .conns])[] as $g
     | ($g | map(select(.setup == "one")) | mean(.rps)) as $base
     | ("one", "hop", "two") as $s
     | ($g | map(select(.setup == $s))) as $r
     | select($r | length > 0)
     | "| \($g[0].scenario) | \($g[0].conns) | \($s) | \($r | mean(.rps) | round) | \(($r | mean(.rps)) / $base | r2) | \($r | mean(.p50_ms) | r1) | \($r | mean(.p99_ms) | r1) | \($r | mean(.cpu_ms_per_req) | r2) (\($r | mean(.haproxy_ms_per_req) | r2)) | \($r | mean(.pg_cpu_s * 1000 / .requests) | r2) |"),
    "",
    "Move after its host was killed (s): \($moves | map(r2) | join(", "))"
' "$OUT"
