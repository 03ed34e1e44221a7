#!/usr/bin/env bash
# Density (issue #18): how many live pharmacies one box holds. DENSITY_TENANTS pharmacies are
# provisioned (each with an admin whose password is checked with argon2 at login), then
# DENSITY_LIVE of them are live at once: each logs in by password through the proxy and then
# lists its medicines and posts a sale every DENSITY_EVERY seconds, for DENSITY_DURATION
# seconds (apotheca-loadgen trickle). Meanwhile DENSITY_COLD pharmacies that nothing has woken
# get their first request one after another (the cold wake a pharmacy sees while the others
# are live). Right after the trickle, with every pharmacy still live and logged in, every
# process is measured (not during it: reading 2,000 processes' memory takes the CPU the
# trickle needs): PSS of control, the workers, the proxy and PostgreSQL, per live pharmacy,
# and each tenant backend's PSS.
#
# Then, with the daemon and proxy stopped: migrate-schemas over every schema with nothing to
# apply and with one ADD COLUMN; create-tenant with all of them present (claiming a spare
# schema, and building one); disk per pharmacy.
#
# Knobs: DENSITY_TENANTS (10000), DENSITY_LIVE (1000), DENSITY_EVERY (5), DENSITY_DURATION
# (180), DENSITY_WARMUP (60: the first seconds of the trickle, when every pharmacy's first
# round comes at once and its backlog clears, are reported apart; the cold wakes come after
# them), DENSITY_COLD (40), DENSITY_JOBS (create-tenant calls at once while provisioning, 2),
# DENSITY_MAX_CONNECTIONS (PostgreSQL's; default live × 1.5 + 100: a busy worker opens more
# than one), SKIP_BUILD=1, DENSITY_PROBE=DIR (to find where the trickle's slow requests come
# from: PostgreSQL logs autovacuum, checkpoints and statements over 100 ms; every request over
# 100 ms, vmstat each second and the busiest processes every 5 s during the trickle, and the
# daemons' and PostgreSQL's logs are kept in DIR). CI does not
# run it: provisioning 10,000 pharmacies takes about 15 minutes on 2 cores. Everything runs on
# a throwaway private cluster in a mktemp folder and is stopped at the end. Progress on stderr;
# JSON lines and a Markdown table on stdout.
#
# Then the django-tenants peer (PEER_DIR, default /work/shared/peer; its venv and cluster in
# PEER_STATE, default target/density/peer), with Apotheca stopped: DENSITY_LIVE + DENSITY_COLD
# tenants provisioned by its provision.sh (tenant creation, seeding, migrate_schemas with nothing
# to apply and with one AddField), gunicorn with PEER_WORKERS (4) sync workers, and the same
# trickle over the same number of live tenants (its API has no login: the rounds go
# unauthenticated, a new connection for each request, as its server closes every one), then
# the same memory figures. As far as it gets in bounded time: provisioning is given
# DENSITY_PEER_BUDGET seconds (1800), the trickle its own duration + 120 s. DENSITY_PEER=0
# leaves it out. The table has both columns.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
TENANTS=${DENSITY_TENANTS:-10000}
LIVE=${DENSITY_LIVE:-1000}
EVERY=${DENSITY_EVERY:-5}
DURATION=${DENSITY_DURATION:-180}
WARMUP=${DENSITY_WARMUP:-60}
COLD=${DENSITY_COLD:-40}
JOBS=${DENSITY_JOBS:-2}
MAX_CONNECTIONS=${DENSITY_MAX_CONNECTIONS:-$((LIVE + LIVE / 2 + 100))}
PEER=${DENSITY_PEER:-1}
PEER_BUDGET=${DENSITY_PEER_BUDGET:-1800}
PEER_WORKERS=${PEER_WORKERS:-4}
PEER_DIR=${PEER_DIR:-/work/shared/peer}
export PEER_STATE=${PEER_STATE:-$ROOT/target/density/peer}
PEER_DB=${PEER_DB:-peer}
# shellcheck source=/dev/null
peer_sql() { (. "$PEER_DIR/lib.sh"; psql_super -c "$1"); }  # as the peer cluster's superuser
((LIVE + COLD <= TENANTS)) || { echo "DENSITY_LIVE + DENSITY_COLD must not exceed DENSITY_TENANTS" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-proxy -p apotheca-loadgen
A=$ROOT/target/release/apotheca
P=$ROOT/target/release/apotheca-proxy
L=$ROOT/target/release/apotheca-loadgen
PSQL=$(find /usr/lib/postgresql/*/bin -name psql | sort -V | tail -1)

STATE=$(mktemp -d /tmp/apotheca-density.XXXXXX)
chmod 755 "$STATE"
PIDS=()
APO_ENV=(env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="$STATE/pg"
  APOTHECA_PRIVATE_DB__RUN_DIR="$STATE/run" APOTHECA_CONTROL__STATE_DIR="$STATE"
  APOTHECA_CONTROL__SPARE_SCHEMAS=0 APOTHECA_PRIVATE_DB__MAX_CONNECTIONS="$MAX_CONNECTIONS")
apo() { (cd "$STATE" && "${APO_ENV[@]}" "$A" "$@"); }
cleanup() {
  stop_pids
  apo db stop >/dev/null 2>&1 || true
  rm -rf "$STATE"
  if [[ $PEER != 0 ]]; then
    "$PEER_DIR/stop.sh" >/dev/null 2>&1 || true
    "$PEER_DIR/pg.sh" stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
pss_of() {  # PIDs -> "pss_kib processes"
  local p s total=0 n=0
  for p in "$@"; do
    s=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
    [[ -n $s ]] || continue
    total=$((total + s)); n=$((n + 1))
  done
  echo "$total $n"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# ---- provisioning ----
log "private cluster (max_connections $MAX_CONNECTIONS), shared schema"
apo migrate-schemas >/dev/null
PASSWORD=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
printf '%s\n' "$PASSWORD" >"$STATE/admin-password"
log "provisioning $TENANTS pharmacies, $JOBS at a time"
T0=$(now)
export STATE A
export APO_ENV_STR="${APO_ENV[*]}"
seq 1 "$TENANTS" | xargs -P "$JOBS" -I{} sh -c '
  cd "$STATE" && $APO_ENV_STR "$A" create-tenant --name "Pharmacy {}" --schema "t{}" --domain "t{}.localhost" \
    --admin-user admin --admin-password-file "$STATE/admin-password" >/dev/null ||
  { echo "create-tenant t{} failed" >&2; exit 255; }
  [ $(({} % 500)) -ne 0 ] || echo "[$(date +%H:%M:%S)] {} provisioned" >&2'
PROVISION_S=$(since "$T0")
log "provisioned in ${PROVISION_S}s"
ADMIN_URL=$(apo db url)
# Something to sell in every live pharmacy: one medicine with a million units (received, so the
# ledger agrees), made as the superuser in one statement per schema.
log "stocking the $LIVE live pharmacies"
"$PSQL" -q -X -v ON_ERROR_STOP=1 -d "$ADMIN_URL" >/dev/null <<SQL
DO \$\$
DECLARE i int; m bigint; b bigint;
BEGIN
  FOR i IN 1..$LIVE LOOP
    EXECUTE format('SET LOCAL search_path = %I', 't' || i);
    INSERT INTO medicines (name, generic_name, dosage_form, strength, sale_price, reorder_level)
      VALUES ('Density medicine', 'paracetamol', 'tablet', '500 mg', 2.50, 10) RETURNING id INTO m;
    INSERT INTO batches (medicine_id, batch_no, expires_on, quantity_on_hand, unit_cost)
      VALUES (m, 'DENSITY-1', current_date + 700, 1000000, 1.00) RETURNING id INTO b;
    INSERT INTO stock_movements (batch_id, quantity, reason, reference)
      VALUES (b, 1000000, 'receipt', 'density stock');
  END LOOP;
END
\$\$;
SQL

PROBE=${DENSITY_PROBE:-}
PROBE_PIDS=()
if [[ -n $PROBE ]]; then
  mkdir -p "$PROBE"
  "$PSQL" -q -X -d "$ADMIN_URL" -c "ALTER SYSTEM SET log_autovacuum_min_duration = 0" \
    -c "ALTER SYSTEM SET log_checkpoints = on" -c "ALTER SYSTEM SET log_min_duration_statement = 100" \
    -c "ALTER SYSTEM SET log_line_prefix = '%m [%p] %u '" -c "SELECT pg_reload_conf()" >/dev/null
fi

# ---- live ----
PORT=$(free_port)
log "daemon and proxy on 127.0.0.1:$PORT"
(cd "$STATE" && exec "${APO_ENV[@]}" RUST_LOG=warn "$A" serve >"$STATE/serve.log" 2>&1) &
CONTROL_PID=$!
PIDS+=("$CONTROL_PID")
for _ in $(seq 1 200); do [[ -S $STATE/var/run/apotheca.sock ]] && break; sleep 0.1; done
[[ -S $STATE/var/run/apotheca.sock ]] || die "apotheca serve did not start: $(tail -5 "$STATE/serve.log")"
APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:$PORT APOTHECA_PROXY__CONTROL_SOCKET=$STATE/var/run/apotheca.sock \
  APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 APOTHECA_PROXY__UPGRADE_SOCK=$STATE/proxy-upgrade.sock \
  DATABASE_URL=$ADMIN_URL RUST_LOG=warn \
  "$P" >"$STATE/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" -H 'Host: localhost' && break; sleep 0.1; done
PG_PID=$(head -1 "$STATE/pg/postmaster.pid")

log "$LIVE pharmacies log in (50 at a time) and trickle every ${EVERY}s for ${DURATION}s; $COLD cold wakes meanwhile"
SLOW=()
[[ -z $PROBE ]] || SLOW=(--slow-log "$PROBE/slow.txt" --slow-ms 100)
TRICKLE_PASSWORD=$PASSWORD "$L" trickle "${SLOW[@]}" --target "tcp:127.0.0.1:$PORT" --tenants "$LIVE" --every "$EVERY" \
  --duration "$DURATION" --warmup "$WARMUP" --cold-first $((LIVE + 1)) --cold "$COLD" --label density \
  >"$STATE/trickle.json" 2>"$STATE/trickle.log" &
TRICKLE_PID=$!
until grep -q "all logged in" "$STATE/trickle.log" 2>/dev/null; do
  kill -0 "$TRICKLE_PID" 2>/dev/null || die "trickle ended early: $(cat "$STATE/trickle.log")"
  sleep 1
done
log "all logged in; trickling"
if [[ -n $PROBE ]]; then
  vmstat -t 1 "$DURATION" >"$PROBE/vmstat.txt" &
  PROBE_PIDS+=($!)
  top -b -d 5 -n $((DURATION / 5)) -o %CPU -w 200 | grep -A 25 '^top -' >"$PROBE/top.txt" &
  PROBE_PIDS+=($!)
  # PostgreSQL's connections by role class, and the workers per tenant, every 2 s.
  while sleep 2; do
    printf '%s ' "$(date +%T)"
    "$PSQL" -X -At -d "$ADMIN_URL" -c "SELECT string_agg(k || '=' || n, ' ') FROM (SELECT CASE WHEN usename LIKE 't\_%' THEN 'tenant' ELSE coalesce(usename, backend_type) END k, count(*) n FROM pg_stat_activity GROUP BY 1) s" 2>&1 | tr '\n' ' '
    apo status --json 2>/dev/null | python3 -c 'import json,sys,collections; r=json.load(sys.stdin); c=collections.Counter(len(t["workers"]) for t in r["tenants"]); print("workers per tenant:", dict(c))' 2>&1
    # What the connections of the tenants that hold more than one last ran.
    "$PSQL" -X -At -d "$ADMIN_URL" -c "SELECT count(*), state, left(regexp_replace(query, '\s+', ' ', 'g'), 80) FROM pg_stat_activity WHERE usename IN (SELECT usename FROM pg_stat_activity WHERE usename LIKE 't\_%' GROUP BY 1 HAVING count(*) > 1) GROUP BY 2, 3 ORDER BY 1 DESC LIMIT 8" >>"$PROBE/extra-connections.txt" 2>&1
  done >"$PROBE/connections.txt" &
  PROBE_PIDS+=($!)
  if command -v perf >/dev/null; then
    (sleep 5 && perf record -a -g -F 49 -o "$PROBE/perf.data" -- sleep 20 >/dev/null 2>&1) &
    PROBE_PIDS+=($!)
  fi
fi
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }  # ticks used so far
C0=$(cpu "$CONTROL_PID"); X0=$(cpu "$PROXY_PID"); T0=$(now)
wait "$TRICKLE_PID" || die "trickle failed: $(cat "$STATE/trickle.log")"
CPU_SHARE=$(awk -v c="$(( $(cpu "$CONTROL_PID") - C0 ))" -v x="$(( $(cpu "$PROXY_PID") - X0 ))" \
  -v hz="$(getconf CLK_TCK)" -v t="$(since "$T0")" 'BEGIN { printf "control %.0f %%, proxy %.0f %%", 100 * c / hz / t, 100 * x / hz / t }')
TRICKLE=$(cat "$STATE/trickle.json")
echo "$TRICKLE"
if [[ -n $PROBE ]]; then
  kill "${PROBE_PIDS[@]}" 2>/dev/null || true
  cp "$STATE/trickle.log" "$STATE/serve.log" "$STATE/proxy.log" "$STATE/run/postgres.log" "$PROBE/" 2>/dev/null || true
fi
log "measuring every process, all pharmacies still live"
STATUS=$(apo status --json)
read -r CONTROL_KIB _ < <(pss_of "$CONTROL_PID")
WORKER_PIDS=$(printf '%s' "$STATUS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ".join(str(w["pid"]) for t in r["tenants"] for w in t["workers"]))')
# shellcheck disable=SC2086
read -r WORKERS_KIB WORKERS_N < <(pss_of $WORKER_PIDS)
read -r PROXY_KIB _ < <(pss_of "$PROXY_PID")
# shellcheck disable=SC2046
read -r PG_KIB PG_N < <(pss_of $(tree "$PG_PID"))
TENANT_BACKENDS=$("$PSQL" -X -At -d "$ADMIN_URL" -c "SELECT pid FROM pg_stat_activity WHERE usename LIKE 't\\_%'")
# shellcheck disable=SC2086
read -r BACKENDS_KIB BACKENDS_N < <(pss_of $TENANT_BACKENDS)
CONNECTIONS=$(printf '%s' "$STATUS" | python3 -c 'import json,sys; d=json.load(sys.stdin)["totals"]["database"] or {}; print(d.get("connections","?"), d.get("tenant_connections","?"))')
TOTAL_KIB=$((CONTROL_KIB + WORKERS_KIB + PROXY_KIB + PG_KIB))
echo "{\"pss_kib\": {\"control\": $CONTROL_KIB, \"workers\": $WORKERS_KIB, \"workers_n\": $WORKERS_N, \"proxy\": $PROXY_KIB, \"postgres\": $PG_KIB, \"postgres_processes\": $PG_N, \"tenant_backends\": $BACKENDS_KIB, \"tenant_backends_n\": $BACKENDS_N, \"total\": $TOTAL_KIB}, \"connections\": \"$CONNECTIONS\"}"
stop_pids

# ---- with everything provisioned ----
log "migrate-schemas over $TENANTS schemas: nothing to apply (3 runs), then one ADD COLUMN"
NOOP=()
for _ in 1 2 3; do T0=$(now); apo migrate-schemas --no-spares >/dev/null; NOOP+=("$(since "$T0")"); done
cp -r "$ROOT/migrations" "$STATE/migrations"
echo "ALTER TABLE medicines ADD COLUMN density_note text;" >"$STATE/migrations/tenant/9001_density_note.sql"
T0=$(now); apo --migrations-dir "$STATE/migrations" migrate-schemas --no-spares >"$STATE/migrate.out" 2>&1; APPLY=$(since "$T0")
grep -q "migrated $TENANTS schema" "$STATE/migrate.out" || die "migrate-schemas: $(tail -5 "$STATE/migrate.out")"
log "create-tenant with $TENANTS present: 20 claiming a spare, 10 building the schema"
apo --migrations-dir "$STATE/migrations" prepare-spares --count 20 >/dev/null
creates() {  # PREFIX COUNT: that many create-tenant calls, each one's seconds on a line
  local i t0
  for i in $(seq 1 "$2"); do
    t0=$(now)
    apo --migrations-dir "$STATE/migrations" create-tenant --name "$1 $i" --schema "$1$i" \
      --domain "$1$i.localhost" >/dev/null
    since "$t0"; echo
  done
}
mapfile -t CLAIM < <(creates late 20)  # the 20 spares
mapfile -t BUILD < <(creates built 10)  # the pool is empty now
DISK=$("$PSQL" -X -At -d "$ADMIN_URL" -c "SELECT pg_database_size(current_database())")
p50() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { printf "%.0f", a[int((NR + 1) / 2)] * 1000 }'; }
NOOP_MEDIAN=$(printf '%s\n' "${NOOP[@]}" | sort -g | sed -n 2p)
echo "{\"provision_s\": $PROVISION_S, \"migrate_noop_s\": [$(IFS=,; echo "${NOOP[*]}")], \"migrate_apply_s\": $APPLY, \"create_claim_p50_ms\": $(p50 "${CLAIM[@]}"), \"create_build_p50_ms\": $(p50 "${BUILD[@]}"), \"database_bytes\": $DISK}"

# ---- the peer ----
PEER_NOTE="not run (DENSITY_PEER=0)"
PEER_TRICKLE=
if [[ $PEER != 0 ]]; then
  [[ -d $PEER_DIR ]] || die "no peer at $PEER_DIR (DENSITY_PEER=0 leaves it out)"
  apo db stop >/dev/null 2>&1 || true  # Apotheca's cluster is done: the box is the peer's
  mkdir -p "$PEER_STATE"
  log "peer: setup (venv, cluster) in $PEER_STATE"
  "$PEER_DIR/setup.sh" >/dev/null
  "$PEER_DIR/stop.sh" >/dev/null 2>&1 || true
  PEER_N=$((LIVE + COLD))
  log "peer: provisioning $PEER_N tenants (provision.sh; at most $PEER_BUDGET s)"
  if timeout "$PEER_BUDGET" "$PEER_DIR/provision.sh" "$PEER_N" >"$STATE/peer-provision.jsonl" 2>"$STATE/peer-provision.log"; then
    cat "$STATE/peer-provision.jsonl"
    log "peer: gunicorn with $PEER_WORKERS sync workers"
    "$PEER_DIR/serve.sh" "$PEER_WORKERS" >/dev/null
    PEER_PG_PID=$(head -1 "$PEER_STATE/.data/pg/postmaster.pid")
    GUNICORN_PID=$(cat "$PEER_STATE/.data/gunicorn.pid")
    log "peer: $LIVE tenants trickle every ${EVERY}s for ${DURATION}s; $COLD cold wakes meanwhile"
    if timeout $((DURATION + 120)) "$L" trickle --dialect peer --target "tcp:127.0.0.1:${PEER_HTTP_PORT:-8001}" \
      --tenants "$LIVE" --every "$EVERY" --duration "$DURATION" --warmup "$WARMUP" --cold-first $((LIVE + 1)) \
      --cold "$COLD" --label density-peer >"$STATE/peer-trickle.json" 2>"$STATE/peer-trickle.log"; then
      PEER_TRICKLE=$(cat "$STATE/peer-trickle.json")
      echo "$PEER_TRICKLE"
      PEER_NOTE=
    else
      PEER_NOTE="the trickle did not end within $((DURATION + 120)) s"
    fi
    # shellcheck disable=SC2046
    read -r PEER_APP_KIB PEER_APP_N < <(pss_of $(tree "$GUNICORN_PID"))
    # shellcheck disable=SC2046
    read -r PEER_PG_KIB PEER_PG_N < <(pss_of $(tree "$PEER_PG_PID"))
    PEER_BACKENDS=$(peer_sql "SELECT pid FROM pg_stat_activity WHERE datname = '$PEER_DB' AND backend_type = 'client backend'")
    # shellcheck disable=SC2086
    read -r PEER_BACKENDS_KIB PEER_BACKENDS_N < <(pss_of $PEER_BACKENDS)
    PEER_CONNECTIONS=$(peer_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = '$PEER_DB'")
    PEER_MAX_CONNECTIONS=$(peer_sql "SHOW max_connections")
    PEER_DISK=$(peer_sql "SELECT pg_database_size('$PEER_DB')")
    PEER_TOTAL_KIB=$((PEER_APP_KIB + PEER_PG_KIB))
    echo "{\"peer_pss_kib\": {\"gunicorn\": $PEER_APP_KIB, \"gunicorn_processes\": $PEER_APP_N, \"postgres\": $PEER_PG_KIB, \"postgres_processes\": $PEER_PG_N, \"backends\": $PEER_BACKENDS_KIB, \"backends_n\": $PEER_BACKENDS_N, \"total\": $PEER_TOTAL_KIB}, \"connections\": \"$PEER_CONNECTIONS\", \"database_bytes\": $PEER_DISK}"
    "$PEER_DIR/stop.sh" >/dev/null 2>&1 || true
  else
    PEER_NOTE="provisioning $PEER_N tenants did not finish within $PEER_BUDGET s: $(tail -2 "$STATE/peer-provision.log" | tr '\n' ' ')"
  fi
  "$PEER_DIR/pg.sh" stop >/dev/null 2>&1 || true
  [[ -z $PEER_NOTE ]] || log "peer: $PEER_NOTE"
fi

# ---- the table ----
field() { printf '%s' "$TRICKLE" | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
# The same from the peer's trickle, or a dash.
pfield() {
  [[ -n $PEER_TRICKLE ]] || { echo "—"; return; }
  printf '%s' "$PEER_TRICKLE" | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"
}
# A step of the peer's provisioning: provision.sh's JSON line for STEP (and EXECUTOR), FIELD.
pstep() {
  [[ -s $STATE/peer-provision.jsonl ]] || { echo "—"; return; }
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("step") == sys.argv[2] and d.get("executor", "") == sys.argv[3]:
        print(d.get(sys.argv[4], "—")); break
else:
    print("—")' "$STATE/peer-provision.jsonl" "$1" "$2" "$3"
}
per() { awk -v k="$1" -v n="$2" 'BEGIN { printf "%.1f", k / 1024 / n }'; }
pp() {  # per-live figure for the peer, or a dash
  [[ -n ${PEER_TOTAL_KIB:-} ]] || { echo "—"; return; }
  per "$1" "$2"
}
kind() {  # FIELD-FN KIND: "p50 / p99 ms (count; statuses, errors)"
  local f=$1 k=$2 c
  c=$($f "d['$k']['count']")
  [[ $c != "—" ]] || { echo "—"; return; }
  echo "$($f "d['$k']['p50_ms']") / $($f "d['$k']['p99_ms']") ms ($c; $($f "d['$k']['statuses']"), errors $($f "d['$k']['errors']"))"
}
cat <<OUT

$TENANTS pharmacies provisioned in Apotheca ($((LIVE + COLD)) in the peer), $LIVE live: each (in Apotheca logged in by password through the proxy) lists its medicines and sells every ${EVERY}s for ${DURATION}s. $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(date -u +%F).${PEER_NOTE:+ Peer: $PEER_NOTE.}

| figure | Apotheca | peer ($PEER_WORKERS gunicorn workers) | target |
|---|---|---|---|
| everything, PSS | $(mib "$TOTAL_KIB") MiB (control $(mib "$CONTROL_KIB"), $WORKERS_N workers $(mib "$WORKERS_KIB"), proxy $(mib "$PROXY_KIB"), PostgreSQL $(mib "$PG_KIB") in $PG_N processes) | $([[ -n ${PEER_TOTAL_KIB:-} ]] && echo "$(mib "$PEER_TOTAL_KIB") MiB (gunicorn $(mib "$PEER_APP_KIB") in $PEER_APP_N processes, PostgreSQL $(mib "$PEER_PG_KIB") in $PEER_PG_N)" || echo "—") | ≤ 12 GiB |
| per live pharmacy: all / the application / PostgreSQL | $(per "$TOTAL_KIB" "$LIVE") / $(per "$WORKERS_KIB" "$LIVE") / $(per "$PG_KIB" "$LIVE") MiB | $(pp "${PEER_TOTAL_KIB:-0}" "$LIVE") / $(pp "${PEER_APP_KIB:-0}" "$LIVE") / $(pp "${PEER_PG_KIB:-0}" "$LIVE") MiB | |
| a tenant's backend PSS (mean) | $(per "$BACKENDS_KIB" "${BACKENDS_N/#0/1}") MiB (of $BACKENDS_N) | $([[ -n ${PEER_BACKENDS_N:-} && ${PEER_BACKENDS_N:-0} != 0 ]] && echo "$(per "$PEER_BACKENDS_KIB" "$PEER_BACKENDS_N") MiB (of $PEER_BACKENDS_N, shared by all tenants)" || echo "—") | |
| logins by password, p50 / p99 | $(field 'd["login"]["p50_ms"]') / $(field 'd["login"]["p99_ms"]') ms ($(field 'd["login"]["count"]') in $(field 'd["logins_s"]') s; $(field 'd["login"]["statuses"]'), errors $(field 'd["login"]["errors"]')) | no login in its API | |
| each pharmacy's first round (all at once, everything cold), p50 / p99 | $(kind field first_round) | $(kind pfield first_round) | |
| the rest of the first ${WARMUP} s, p50 / p99 | $(kind field warmup) | $(kind pfield warmup) | |
| then: list p50 / p99 | $(kind field list) | $(kind pfield list) | p99 ≤ 50 ms |
| then: sale p50 / p99 | $(kind field sale) | $(kind pfield sale) | p99 ≤ 50 ms |
| cold wake, p50 / p99 | $(kind field cold) | $(kind pfield cold) | p99 ≤ 150 ms |
| CPU during the trickle (of one core) | $CPU_SHARE | | |
| PostgreSQL connections in use | $CONNECTIONS (all / the workers') of max_connections $MAX_CONNECTIONS | ${PEER_CONNECTIONS:-—} (its gunicorn workers') of max_connections ${PEER_MAX_CONNECTIONS:-—} | nothing refused |
| migrate-schemas, nothing to apply | ${NOOP[*]} s (median $NOOP_MEDIAN) | $(pstep migrate_all_noop standard total_s) s ($(pstep migrate_all_noop multiprocessing total_s) s with 2 processes) | ≤ 1 s |
| migrate-schemas, one ADD COLUMN over all | $APPLY s | $(pstep migrate_all_apply standard total_s) s ($(pstep migrate_all_apply multiprocessing total_s) s with 2 processes) | |
| create-tenant p50 | claiming a spare $(p50 "${CLAIM[@]}") ms, building the schema $(p50 "${BUILD[@]}") ms (with $TENANTS present) | $(pstep create_tenants "" per_tenant_ms_p50) ms (last tenth's mean $(pstep create_tenants "" last_10pct_ms_mean) ms) | ≤ 50 ms |
| disk per pharmacy (database size ÷ pharmacies) | $(awk -v b="$DISK" -v n="$TENANTS" 'BEGIN { printf "%.0f", b / n / 1024 }') KiB | $([[ -n ${PEER_DISK:-} ]] && awk -v b="$PEER_DISK" -v n="$PEER_N" 'BEGIN { printf "%.0f KiB", b / n / 1024 }' || echo "—") | |
| provisioning, total | $TENANTS in $PROVISION_S s ($JOBS at a time) | $(pstep create_tenants "" process_wall_s) s for $((LIVE + COLD)) (one process), seeding $(pstep seed "" total_s) s | |
OUT
