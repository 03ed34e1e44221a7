#!/usr/bin/env bash
# Edge proxy benchmark (issue #5): the same worker reached three ways, in one run, release
# build, 64 keep-alive connections over loopback for DURATION seconds each:
#
#   direct   loadgen → the worker's Unix socket
#   nginx    loadgen → nginx (Debian's, configured only here: upstream = the worker's socket,
#            keep-alive, an access log like the proxy's) → the worker
#   proxy    loadgen → apotheca-proxy (host routing, admission, forwarded headers, access log,
#            metrics) → the worker
#   relay    loadgen → `apotheca-loadgen relay` → the worker: a hop that only copies bytes (no
#            parsing, routing, headers or log; a worker connection per client connection, a
#            runtime per thread, 2 threads): the floor under any hop on this machine
#
# The request is one medicine's page (`GET /api/v1/medicines/ID` with a bearer token), which the
# worker answers from its read cache, so the figures are about the hop, not the database. For
# each: requests/s, p50/p99, and the CPU the hop used per request (its processes' user+system
# time over the run / requests). Everything runs in a mktemp folder, stopped and removed at the
# end; every process started here is stopped by its PID.
#
# Then the four once more at a fixed rate (RATE requests/s, default 5000, over RATE_CONNS
# connections, default 16), RATE_ROUNDS times, for the latency a hop adds when the box is not
# saturated.
#
# A variant (VARIANT: a second proxy with other settings, e.g. "APOTHECA_PROXY__MAX_ACTIVE=8";
# VARIANT_BIN: another build) runs next to the proxy in every round, before it in even rounds and
# after it in odd ones, and at the fixed rate too; its figures are also given against the proxy's.
#
# Knobs: DURATION (s, default 10), CONNS (default 64), ROUNDS (default 3), RATE, RATE_CONNS,
# RATE_ROUNDS (default 1), SKIP_BUILD=1, VARIANT / VARIANT_BIN, PERF_PROXY=FILE (record a
# `perf` profile of the proxy run; PERF_ARGS: its options, default -g), PROXY_RUST_LOG. Installs nginx with apt when it is missing.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-5000}
RATE_CONNS=${RATE_CONNS:-16}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  log "installing nginx (for this comparison only)"
  sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nginx >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-proxy -p apotheca-loadgen
A=$ROOT/target/release/apotheca
P=$ROOT/target/release/apotheca-proxy
L=$ROOT/target/release/apotheca-loadgen

STATE=$(mktemp -d /tmp/apotheca-pbench.XXXXXX)
chmod 755 "$STATE"
export APOTHECA_PRIVATE_DB__DATA_DIR=$STATE/pg APOTHECA_PRIVATE_DB__RUN_DIR=$STATE/run
export APOTHECA_CONTROL__STATE_DIR=$STATE APOTHECA_CONTROL__SPARE_SCHEMAS=0
unset DATABASE_URL APOTHECA_CONFIG
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  (cd "$STATE" && "$A" db stop >/dev/null 2>&1) || true
  rm -rf "$STATE"
}
trap cleanup EXIT
cd "$STATE"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "private cluster, tenant, seed"
"$A" migrate-schemas >/dev/null
"$A" create-tenant --name Bench --schema bench --domain bench.localhost >/dev/null
# Admission must not queue: the figures are about the hop (nginx has no such cap). So the
# tenant's in-flight cap and the proxies' box-wide limit ([proxy] max_active, 3 per core by
# default: at 64 connections most requests would wait for a slot) are set above the connections.
"$A" scale --schema bench --min 1 --max 1 --max-inflight $((CONNS * 2)) >/dev/null
export APOTHECA_PROXY__MAX_ACTIVE=$((CONNS * 2))
"$A" seed-data --schema bench >/dev/null
URL=$("$A" db url --schema bench)
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
TOKEN=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)
"$PSQL" -q -X -v ON_ERROR_STOP=1 -d "$URL" -c \
  "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix)
   SELECT id, 'bench', sha256(convert_to('$TOKEN', 'UTF8')), 'bench' FROM users WHERE username = 'admin'" 2>/dev/null
M=$("$PSQL" -X -At -d "$URL" -c "SELECT min(id) FROM medicines" 2>/dev/null)

log "daemon, one worker"
"$A" serve >"$STATE/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -S $STATE/var/run/apotheca.sock ]] && break; sleep 0.1; done
SOCK=$("$A" wake --schema bench --json | sed -nE 's/.*"unix:([^"]+)".*/\1/p' | head -1)
[[ -S $SOCK ]] || { log "no worker socket"; exit 1; }

PORT_N=$(free_port)
# Worker sockets are reachable by control's user only (the proxy runs as that user): so is nginx.
NGINX_USER=""
[[ $(id -u) -ne 0 ]] || NGINX_USER="user root;"
cat >"$STATE/nginx.conf" <<NGINX
$NGINX_USER
worker_processes 2;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log $STATE/nginx-access.log combined buffer=64k;
  client_body_temp_path $STATE/nginx-body;
  proxy_temp_path $STATE/nginx-proxy;
  upstream worker { server unix:$SOCK; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT_N;
    location / {
      proxy_pass http://worker;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
NGINX
"$NGINX" -c "$STATE/nginx.conf" -e "$STATE/nginx-error.log" 2>>"$STATE/nginx-error.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

PORT_P=$(free_port)
APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:$PORT_P APOTHECA_PROXY__CONTROL_SOCKET=$STATE/var/run/apotheca.sock \
APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 APOTHECA_PROXY__UPGRADE_SOCK=$STATE/proxy-upgrade.sock \
DATABASE_URL=$("$A" db url) RUST_LOG=${PROXY_RUST_LOG:-info} "$P" >"$STATE/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
# A second proxy to compare with in the same rounds: other settings (VARIANT, e.g.
# "APOTHECA_PROXY__THREADS=1") and/or another build (VARIANT_BIN).
VARIANT_PID=
if [[ -n ${VARIANT:-}${VARIANT_BIN:-} ]]; then
  PORT_V=$(free_port)
  env ${VARIANT:-} APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:$PORT_V \
    APOTHECA_PROXY__CONTROL_SOCKET=$STATE/var/run/apotheca.sock \
    APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 APOTHECA_PROXY__UPGRADE_SOCK=$STATE/proxy-v-upgrade.sock \
    DATABASE_URL=$("$A" db url) RUST_LOG=${PROXY_RUST_LOG:-info} "${VARIANT_BIN:-$P}" >"$STATE/proxy-v.log" 2>&1 &
  VARIANT_PID=$!
  PIDS+=($VARIANT_PID)
fi
# The floor: a relay that copies bytes, on as many threads as the proxy. It stops by itself.
"$L" relay --to "$SOCK" --threads 2 --seconds 3600 >"$STATE/relay.addr" &
RELAY_PID=$!
PIDS+=($RELAY_PID)
sleep 1
RELAY_ADDR=$(head -1 "$STATE/relay.addr")
[[ -n $RELAY_ADDR ]] || { log "the relay did not start"; exit 1; }

# CPU seconds (user + system) of a process and its threads (and children, for nginx's workers).
cpu() {
  local total=0 pid
  for pid in "$@"; do
    total=$(awk -v t="$total" '{print t + ($14 + $15) / 100}' "/proc/$pid/stat")
  done
  echo "$total"
}
nginx_pids() { echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; }

AUTH="Authorization: Bearer $TOKEN"
run() {
  local label=$1 target=$2
  "$L" run --target "$target" --connections 4 --duration 1 --header "$AUTH" --header "Host: bench.localhost" --path "/api/v1/medicines/$M" >/dev/null
  local pids=""
  case $label in nginx) pids=$(nginx_pids) ;; proxy) pids=$PROXY_PID ;; relay) pids=$RELAY_PID ;; variant) pids=$VARIANT_PID ;; esac
  local before=0 after=0
  [[ -z $pids ]] || before=$(cpu $pids)
  local perf_pid=
  if [[ $label == proxy && -n ${PERF_PROXY:-} && ${round:-1} == 1 ]]; then
    perf record ${PERF_ARGS:--g} -p "$PROXY_PID" -o "$PERF_PROXY" -- sleep "$DURATION" 2>/dev/null &
    perf_pid=$!
  fi
  local conns=${RUN_CONNS:-$CONNS} rate=${RUN_RATE:-0}
  log "$label: $conns connections, ${DURATION}s, rate $rate (0: as fast as answered)"
  local out
  out=$("$L" run --target "$target" --connections "$conns" --duration "$DURATION" --header "$AUTH" \
        --header "Host: bench.localhost" --path "/api/v1/medicines/$M" --label "$label" --rate "$rate")
  [[ -z $perf_pid ]] || wait "$perf_pid"
  [[ -z $pids ]] || after=$(cpu $pids)
  echo "$out" >&2
  local requests
  requests=$(printf '%s' "$out" | sed -E 's/.*"requests":([0-9]+).*/\1/')
  local us="-"
  [[ -z $pids ]] || us=$(awk -v a="$after" -v b="$before" -v n="$requests" 'BEGIN {printf "%.1f", (a - b) * 1e6 / n}')
  echo "$out|$us"
}
field() { printf '%s' "${1%%|*}" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
us() { printf '%s' "${1##*|}"; }
ok() { printf '%s' "${1%%|*}" | grep -o '"statuses":{[^}]*}'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# Rounds, each direct → nginx → proxy → relay, so that the machine's drift reaches all three alike;
# the summary takes each figure's median over the rounds.
ROWS="" VROWS="" VRATIOS="" VPRATIOS="" ADDED_V="" US_V="" RATIOS="" ADDED_N="" ADDED_P="" ADDED_R="" US_N="" US_P="" US_R="" STATUSES=""
for round in $(seq 1 "$ROUNDS"); do
  DIRECT=$(run direct "unix:$SOCK")
  NGX=$(run nginx "tcp:127.0.0.1:$PORT_N")
  if [[ -n $VARIANT_PID ]] && ((round % 2 == 0)); then
    VAR=$(run variant "tcp:127.0.0.1:$PORT_V")
    PROXY=$(run proxy "tcp:127.0.0.1:$PORT_P")
  else
    PROXY=$(run proxy "tcp:127.0.0.1:$PORT_P")
    [[ -z $VARIANT_PID ]] || VAR=$(run variant "tcp:127.0.0.1:$PORT_V")
  fi
  RELAY=$(run relay "tcp:$RELAY_ADDR")
  D_P99=$(field "$DIRECT" p99_ms)
  add_n=$(awk -v a="$(field "$NGX" p99_ms)" -v b="$D_P99" 'BEGIN {printf "%.3f", a - b}')
  add_p=$(awk -v a="$(field "$PROXY" p99_ms)" -v b="$D_P99" 'BEGIN {printf "%.3f", a - b}')
  add_r=$(awk -v a="$(field "$RELAY" p99_ms)" -v b="$D_P99" 'BEGIN {printf "%.3f", a - b}')
  ratio=$(awk -v a="$(field "$PROXY" rps)" -v b="$(field "$NGX" rps)" 'BEGIN {printf "%.2f", a / b}')
  ROWS+="| $round | $(field "$DIRECT" rps) / $D_P99 | $(field "$NGX" rps) / $(field "$NGX" p99_ms) | $(field "$PROXY" rps) / $(field "$PROXY" p99_ms) | $(field "$RELAY" rps) / $(field "$RELAY" p99_ms) | $add_n / $add_p / $add_r ms | $(us "$NGX") / $(us "$PROXY") / $(us "$RELAY") µs | $ratio |"$'\n'
  RATIOS+="$ratio " ADDED_N+="$add_n " ADDED_P+="$add_p " ADDED_R+="$add_r " US_N+="$(us "$NGX") " US_P+="$(us "$PROXY") " US_R+="$(us "$RELAY") "
  STATUSES+="round $round: direct $(ok "$DIRECT"), nginx $(ok "$NGX"), proxy $(ok "$PROXY"), relay $(ok "$RELAY")"$'\n'
  if [[ -n $VARIANT_PID ]]; then
    vratio=$(awk -v a="$(field "$VAR" rps)" -v b="$(field "$NGX" rps)" 'BEGIN {printf "%.2f", a / b}')
    vpratio=$(awk -v a="$(field "$VAR" rps)" -v b="$(field "$PROXY" rps)" 'BEGIN {printf "%.3f", a / b}')
    add_v=$(awk -v a="$(field "$VAR" p99_ms)" -v b="$D_P99" 'BEGIN {printf "%.3f", a - b}')
    order=$( ((round % 2 == 0)) && echo "before" || echo "after")
    VROWS+="| $round ($order the proxy) | $(field "$PROXY" rps) / $(field "$PROXY" p50_ms) / $(field "$PROXY" p99_ms) | $(field "$VAR" rps) / $(field "$VAR" p50_ms) / $(field "$VAR" p99_ms) | $add_p / $add_v ms | $(us "$PROXY") / $(us "$VAR") µs | $vratio | $vpratio |"$'\n'
    VRATIOS+="$vratio " VPRATIOS+="$vpratio " ADDED_V+="$add_v " US_V+="$(us "$VAR") "
    STATUSES+="round $round: variant $(ok "$VAR")"$'\n'
  fi
done
cat <<OUT

| round (${CONNS} connections, ${DURATION} s each) | direct req/s / p99 ms | nginx → worker req/s / p99 ms | apotheca-proxy → worker req/s / p99 ms | relay → worker req/s / p99 ms | added p99 vs direct, nginx / proxy / relay | hop CPU per request, nginx / proxy / relay | proxy ÷ nginx req/s |
|---|---|---|---|---|---|---|---|
${ROWS}
medians over $ROUNDS round(s): proxy ÷ nginx throughput $(echo "$RATIOS" | median); added p99 nginx $(echo "$ADDED_N" | median) ms, proxy $(echo "$ADDED_P" | median) ms, relay $(echo "$ADDED_R" | median) ms; hop CPU per request nginx $(echo "$US_N" | median) µs, proxy $(echo "$US_P" | median) µs, relay $(echo "$US_R" | median) µs
${STATUSES}
OUT
# Latency without saturation: the same at a fixed rate well below what the box can do
# (closed-loop load at 64 connections makes latency = connections / throughput for any hop),
# RATE_ROUNDS times (default 1; the variant before the proxy in even rounds).
RUN_CONNS=$RATE_CONNS RUN_RATE=$RATE
export RUN_CONNS RUN_RATE
RROWS="" R_STATUSES="" R_ADDED_N="" R_ADDED_P="" R_ADDED_R="" R_ADDED_V="" R_VMINUSP=""
for rround in $(seq 1 "${RATE_ROUNDS:-1}"); do
  R_DIRECT=$(run direct "unix:$SOCK")
  R_NGX=$(run nginx "tcp:127.0.0.1:$PORT_N")
  if [[ -n $VARIANT_PID ]] && ((rround % 2 == 0)); then
    R_VAR=$(run variant "tcp:127.0.0.1:$PORT_V")
    R_PROXY=$(run proxy "tcp:127.0.0.1:$PORT_P")
  else
    R_PROXY=$(run proxy "tcp:127.0.0.1:$PORT_P")
    [[ -z $VARIANT_PID ]] || R_VAR=$(run variant "tcp:127.0.0.1:$PORT_V")
  fi
  R_RELAY=$(run relay "tcp:$RELAY_ADDR")
  added() { awk -v a="$(field "$1" "$2")" -v b="$(field "$R_DIRECT" "$2")" 'BEGIN {printf "%.3f", a - b}'; }
  row() { echo "| $rround | $1 | $(field "$2" rps) | $(field "$2" p50_ms) | $(field "$2" p99_ms) | $3 | $4 |"; }
  RROWS+="$(row direct "$R_DIRECT" "" "")"$'\n'
  for pair in "nginx → worker:R_NGX" "apotheca-proxy → worker:R_PROXY" "variant → worker:R_VAR" "relay → worker:R_RELAY"; do
    name=${pair%%:*} var=${pair##*:}
    [[ $var != R_VAR || -n $VARIANT_PID ]] || continue
    RROWS+="$(row "$name" "${!var}" "$(added "${!var}" p50_ms) / $(added "${!var}" p99_ms) ms" "$(us "${!var}") µs")"$'\n'
  done
  R_ADDED_N+="$(added "$R_NGX" p99_ms) " R_ADDED_P+="$(added "$R_PROXY" p99_ms) " R_ADDED_R+="$(added "$R_RELAY" p99_ms) "
  R_STATUSES+="round $rround: direct $(ok "$R_DIRECT"), nginx $(ok "$R_NGX"), proxy $(ok "$R_PROXY"), relay $(ok "$R_RELAY")"
  if [[ -n $VARIANT_PID ]]; then
    R_ADDED_V+="$(added "$R_VAR" p99_ms) "
    R_VMINUSP+="$(awk -v a="$(field "$R_VAR" p99_ms)" -v b="$(field "$R_PROXY" p99_ms)" 'BEGIN {printf "%.3f", a - b}') "
    R_STATUSES+=", variant $(ok "$R_VAR")"
  fi
  R_STATUSES+=$'\n'
done
unset RUN_CONNS RUN_RATE
cat <<OUT
at a fixed rate of $RATE requests/s over $RATE_CONNS connections (a request held up by a late answer counts from when it was due), ${DURATION} s each:

| round | | req/s | p50 ms | p99 ms | added p50 / p99 vs direct | hop CPU per request |
|---|---|---|---|---|---|---|
${RROWS}
medians over ${RATE_ROUNDS:-1} round(s) of the added p99: nginx $(echo "$R_ADDED_N" | median) ms, proxy $(echo "$R_ADDED_P" | median) ms, relay $(echo "$R_ADDED_R" | median) ms
statuses at the fixed rate:
${R_STATUSES}
OUT
if [[ -n $VARIANT_PID ]]; then
  cat <<OUT
variant (${VARIANT:-} ${VARIANT_BIN:-}) beside the proxy, ${CONNS} connections, ${DURATION} s each:

| round | proxy req/s / p50 / p99 ms | variant req/s / p50 / p99 ms | added p99 vs direct, proxy / variant | hop CPU per request, proxy / variant | variant ÷ nginx req/s | variant ÷ proxy req/s |
|---|---|---|---|---|---|---|
${VROWS}
medians: variant ÷ proxy throughput $(echo "$VPRATIOS" | median); variant ÷ nginx throughput $(echo "$VRATIOS" | median); added p99 variant $(echo "$ADDED_V" | median) ms (proxy $(echo "$ADDED_P" | median) ms); hop CPU per request variant $(echo "$US_V" | median) µs (proxy $(echo "$US_P" | median) µs)
at $RATE requests/s: added p99 variant $(echo "$R_ADDED_V" | median) ms (proxy $(echo "$R_ADDED_P" | median) ms); variant p99 − proxy p99 per round: ${R_VMINUSP}(median $(echo "$R_VMINUSP" | median) ms)
OUT
fi
