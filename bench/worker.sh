#!/usr/bin/env bash
# The worker alone on its Unix socket (issue #3): start to first answered request, idle RSS,
# then 10 s each of: list medicines (50 rows), one medicine, a two-line sale. Prints JSON lines
# and a summary; everything runs on a throwaway private cluster and is stopped at the end.
# Memory under real use: RSS idle; after 200 password logins, 50 at a time (the admin's
# password, checked with argon2 as staff in a browser are; the login throttle is raised for
# this, since 200 logins from one address is otherwise a guessing attack); after the loads;
# after a day's worth of distinct reads (DAY_QUERIES counter searches and list pages, each a
# new read-cache entry); and 30 s after the last of it (IDLE_AFTER). The peak is the kernel's
# high-water mark (VmHWM) over the whole run.
# Knobs: DURATION (s, default 10), CONNS (default 64), POOL (worker DB connections, default 4),
# READ_CACHE_SECS (the worker's read cache; 0 turns it off, default 5), SKIP_BUILD=1,
# PERF_SALE=FILE (record a system-wide `perf` profile of the sale run into FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
POOL=${POOL:-4}
READ_CACHE_SECS=${READ_CACHE_SECS:-5}
DAY_QUERIES=${DAY_QUERIES:-5000}
IDLE_AFTER=${IDLE_AFTER:-30}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-loadgen
A=$ROOT/target/release/apotheca
W=$ROOT/target/release/apotheca-worker
L=$ROOT/target/release/apotheca-loadgen

STATE=$(mktemp -d /tmp/apotheca-wbench.XXXXXX)
chmod 755 "$STATE"
export APOTHECA_PRIVATE_DB__DATA_DIR=$STATE/pg APOTHECA_PRIVATE_DB__RUN_DIR=$STATE/run
export APOTHECA_CONTROL__STATE_DIR=$STATE APOTHECA_CONTROL__SPARE_SCHEMAS=0 APOTHECA_WORKER__POOL_SIZE=$POOL
export APOTHECA_WORKER__READ_CACHE_SECS=$READ_CACHE_SECS
export APOTHECA_WORKER__LOGIN_SLOW_AFTER=100000 APOTHECA_WORKER__LOGIN_REFUSE_AFTER=100000
unset DATABASE_URL APOTHECA_CONFIG
WORKER_PID=
cleanup() {
  [[ -n $WORKER_PID ]] && kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true
  (cd "$STATE" && "$A" db stop >/dev/null 2>&1) || true
  rm -rf "$STATE"
}
trap cleanup EXIT
cd "$STATE"

log "private cluster, tenant, seed"
"$A" migrate-schemas >/dev/null
PASSWORD=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
printf '%s\n' "$PASSWORD" >"$STATE/admin-password"
"$A" create-tenant --name Bench --schema bench --domain bench.localhost \
  --admin-user admin --admin-password-file "$STATE/admin-password" >/dev/null
"$A" seed-data --schema bench >/dev/null
URL=$("$A" db url --schema bench)
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
TOKEN=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)
# 60 more medicines with a million units each (received, so the ledger agrees) and a token.
PGPASSWORD=$(printf '%s' "$URL" | sed -E 's|^postgresql://[^:]+:([^@]+)@.*|\1|') \
"$PSQL" -q -X -v ON_ERROR_STOP=1 -d "$(printf '%s' "$URL" | sed -E 's|://([^:]+):[^@]+@|://\1@|')" <<SQL
WITH m AS (
  INSERT INTO medicines (name, generic_name, dosage_form, strength, sale_price, reorder_level)
  SELECT 'Bench medicine ' || g, 'generic ' || g, 'tablet', (g * 10) || ' mg', 1.50 + g, 10
  FROM generate_series(1, 60) g RETURNING id
), b AS (
  INSERT INTO batches (medicine_id, batch_no, expires_on, quantity_on_hand, unit_cost)
  SELECT id, 'BENCH-' || id, current_date + 700, 1000000, 1.00 FROM m RETURNING id
)
INSERT INTO stock_movements (batch_id, quantity, reason, reference) SELECT id, 1000000, 'receipt', 'bench stock' FROM b;
INSERT INTO api_tokens (user_id, name, token_hash, token_prefix)
SELECT id, 'bench', sha256(convert_to('$TOKEN', 'UTF8')), 'bench' FROM users WHERE username = 'admin';
SQL
M1=$("$PSQL" -X -At -d "$URL" -c "SELECT min(id) FROM medicines WHERE name LIKE 'Bench medicine%'" 2>/dev/null || true)
[[ -n $M1 ]] || M1=23
SOCK=$STATE/worker.sock

log "start to first answered request"
# The role URL goes through the environment: on the command line, ps would show its password.
START=$(DATABASE_URL=$URL "$L" startup --target "unix:$SOCK" -- "$W" --schema bench --listen "unix:$SOCK" 2>"$STATE/worker.log")
echo "$START"
WORKER_PID=$(printf '%s' "$START" | sed -E 's/.*"pid":([0-9]+).*/\1/')
sleep 1
rss() { awk '/^VmRSS/ {print $2}' "/proc/$WORKER_PID/status"; }
RSS_KB=$(rss)
echo "{\"idle_rss_kb\": $RSS_KB}"

log "200 password logins, 50 at a time"
LOGINS=$("$L" run --target "unix:$SOCK" --connections 50 --requests 200 --duration 60 --label logins \
  --method POST --path /api/v1/auth/login --body "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}")
echo "$LOGINS"
RSS_LOGINS=$(rss)
HWM_LOGINS=$(awk '/^VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
echo "{\"rss_after_logins_kb\": $RSS_LOGINS, \"peak_rss_after_logins_kb\": $HWM_LOGINS}"

AUTH="Authorization: Bearer $TOKEN"
run() {
  log "$1: $CONNS connections, ${DURATION}s"
  "$L" run --target "unix:$SOCK" --connections "$CONNS" --duration "$DURATION" --header "$AUTH" --label "$@"
}
# Warm-up (prepared statements, pool).
"$L" run --target "unix:$SOCK" --connections 4 --duration 1 --header "$AUTH" --path "/api/v1/medicines?per_page=50" >/dev/null
LIST=$(run list --path "/api/v1/medicines?per_page=50")
echo "$LIST"
DETAIL=$(run detail --path "/api/v1/medicines/$M1")
echo "$DETAIL"
# Two lines, rotating over the 60 bench medicines (as the peer's bill scenario cycles).
SALE_BODY='{"payment_method":"card","lines":[{"medicine_id":{n},"quantity":1},{"medicine_id":{m},"quantity":2}]}'
PERF_PID=
if [[ -n ${PERF_SALE:-} ]]; then
  perf record -a -F ${PERF_FREQ:-1999} ${PERF_ARGS:-} -o "$PERF_SALE" -- sleep "$DURATION" 2>/dev/null &
  PERF_PID=$!
fi
SALE=$(run sale --method POST --path /api/v1/sales --body "$SALE_BODY" --cycle 60 --cycle-base "$M1")
echo "$SALE"
[[ -z $PERF_PID ]] || wait "$PERF_PID"
RSS_AFTER=$(rss)
echo "{\"rss_after_load_kb\": $RSS_AFTER}"

log "a day's distinct reads: $DAY_QUERIES counter searches and as many list searches"
day() {
  "$L" run --target "unix:$SOCK" --connections 8 --requests "$DAY_QUERIES" --duration 60 --header "$AUTH" \
    --cycle "$DAY_QUERIES" --label "$@"
}
DAY1=$(day day-counter --path "/api/v1/counter/search?q=b{n}")
DAY2=$(day day-list --path "/api/v1/medicines?per_page=50&search=e{n}")
echo "$DAY1"; echo "$DAY2"
RSS_DAY=$(rss)
STATS=$(curl -s --unix-socket "$SOCK" http://bench/_apotheca/stats || true)
echo "{\"rss_after_day_kb\": $RSS_DAY, \"stats\": ${STATS:-null}}"
log "idle for ${IDLE_AFTER}s"
sleep "$IDLE_AFTER"
RSS_IDLE_AFTER=$(rss)
HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
echo "{\"rss_idle_after_kb\": $RSS_IDLE_AFTER, \"peak_rss_kb\": $HWM}"

# Stock and ledger still agree after the load.
OFF=$("$PSQL" -X -At -d "$URL" -c "SELECT count(*) FROM batches b WHERE quantity_on_hand <> (SELECT coalesce(sum(quantity),0) FROM stock_movements m WHERE m.batch_id = b.id)" 2>/dev/null || echo "?")
field() { printf '%s' "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
cat <<OUT

| worker alone, Unix socket, $CONNS connections, ${DURATION} s, pool $POOL, read cache ${READ_CACHE_SECS} s | figure | target |
|---|---|---|
| start to first answered request | $(field "$START" startup_ms) ms | ≤ 30 ms |
| idle RSS | $(mb "$RSS_KB") | ≤ 10 MB |
| 200 password logins, 50 at a time | $(field "$LOGINS" rps) logins/s, p50 $(field "$LOGINS" p50_ms) ms, p99 $(field "$LOGINS" p99_ms) ms; statuses $(printf '%s' "$LOGINS" | sed -E 's/.*"statuses":(\{[^}]*\}).*/\1/') | |
| RSS right after the logins (peak so far) | $(mb "$RSS_LOGINS") ($(mb "$HWM_LOGINS")) | peak ≤ 40 MB |
| list medicines (50 rows) | $(field "$LIST" rps) req/s, p50 $(field "$LIST" p50_ms) ms, p99 $(field "$LIST" p99_ms) ms | ≥ 10,000 req/s |
| one medicine | $(field "$DETAIL" rps) req/s, p50 $(field "$DETAIL" p50_ms) ms, p99 $(field "$DETAIL" p99_ms) ms | |
| two-line sale | $(field "$SALE" rps) req/s, p50 $(field "$SALE" p50_ms) ms, p99 $(field "$SALE" p99_ms) ms | ≥ 2,000 req/s |
| RSS after the loads | $(mb "$RSS_AFTER") | |
| RSS after a day's distinct reads ($DAY_QUERIES + $DAY_QUERIES) | $(mb "$RSS_DAY") | |
| RSS ${IDLE_AFTER} s after the last request | $(mb "$RSS_IDLE_AFTER") ($(( (RSS_IDLE_AFTER - RSS_KB) / 1024 )) MB over idle) | ≤ 5 MB over idle |
| peak RSS over the whole run (VmHWM) | $(mb "$HWM") | ≤ 40 MB |
| batches disagreeing with the ledger afterwards | $OFF | 0 |
OUT
