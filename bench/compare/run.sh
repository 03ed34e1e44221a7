#!/usr/bin/env bash
# Full-stack comparison with the django-tenants peer (issue #7), both systems in one run on this
# machine: the same tenants (t1..tN.localhost, N in NS), the same requests (wrk with load.lua in
# each system's dialect: the medicine list, one medicine, a two-line sale, a 9:9:2 mix), Host
# rotating over the tenants, CONNS connections, DURATION s each. For every N both systems are
# provisioned first and kept up side by side, then each measurement runs peer → apotheca back to
# back, so the machine's drift reaches both alike.
#
#   peer      /work/shared/peer: gunicorn (PEER_WORKERS sync workers) + its private PostgreSQL
#   apotheca  apotheca-proxy → control's per-tenant workers → our private PostgreSQL (release
#             build, default settings, fsync on)
#
# Prints one Markdown table (requests/s, p50, p99, errors, CPU per request, memory, tenant
# creation, migrate-all, with Apotheca ÷ peer) on stdout; progress on stderr; every figure also as
# a JSON line in $OUT (default target/compare/compare-<utc>.jsonl). Afterwards both systems'
# books are checked (stock + sold = received for every medicine of every tenant).
#
# Knobs: NS ("20 200"), CONNS ("16 64"), DURATION (10), SCENARIOS ("list detail sale mix"),
# PEER_WORKERS (4), REPEAT (1: every scenario × conns row this many times), SKIP_BUILD=1,
# VARIANT=DIR (another build's release folder with apotheca, apotheca-worker and apotheca-proxy,
# e.g. a commit built elsewhere: it serves the same cluster and tenants as this build, and each
# row measures the peer, then both builds, in both orders over the repeats; before each of
# its rows a build's daemon and proxy are started afresh and warmed; the table adds variant ÷
# this build per row), FLOOR=1 (after the books: what a sale costs PostgreSQL with no
# application, floor.sh), HOLD=SECONDS (keep both up after the warm-up, their
# addresses in target/compare/hold.env, before measuring), PROBE=DIR (to find a row's slow
# requests: Apotheca's access log, its daemons' logs and PostgreSQL's log with checkpoints,
# autovacuum and statements over 50 ms are kept in DIR/n<N>/; each row's start and end times are
# in $OUT), PEER_STATE (the peer's venv and cluster, default
# target/compare/peer), PEER_DIR (/work/shared/peer).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/bench/compare
NS=${NS:-20 200}
CONNS=${CONNS:-16 64}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-list detail sale mix}
PEER_WORKERS=${PEER_WORKERS:-4}
PEER_DIR=${PEER_DIR:-/work/shared/peer}
export PEER_STATE=${PEER_STATE:-$ROOT/target/compare/peer}
mkdir -p "$ROOT/target/compare" "$PEER_STATE"
OUT=${OUT:-$ROOT/target/compare/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
: >"$OUT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
record() { jq -c "$@" | tee -a "$OUT" >/dev/null; }

[[ -d $PEER_DIR ]] || die "no peer at $PEER_DIR"
for tool in wrk jq curl python3; do command -v $tool >/dev/null || die "$tool is missing (apt-get install $tool)"; done
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-proxy
A=$ROOT/target/release/apotheca
if [[ -n ${VARIANT:-} ]]; then
  for bin in apotheca apotheca-worker apotheca-proxy; do
    [[ -x $VARIANT/$bin ]] || die "VARIANT: no $VARIANT/$bin"
  done
fi
BUILDS=(apotheca ${VARIANT:+variant})
SERVING=
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)

STATE=
PIDS=()
# Stops this run's Apotheca (daemon and proxy, then its cluster) and removes its folder.
apo_down() {
  stop_pids
  if [[ -n $STATE ]]; then apo db stop >/dev/null 2>&1 || true; rm -rf "$STATE"; STATE=; fi
}
cleanup() {
  apo_down
  "$PEER_DIR/stop.sh" >/dev/null 2>&1 || true
  "$PEER_DIR/pg.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
# Apotheca with this run's own cluster and state, whatever the caller's environment says; the
# cluster sized for every tenant awake and busy at once (one worker each, all pool_size
# connections open, + 50; at least 500; deploy/nginx-free/README.md, "PostgreSQL sizing").
apo_env() {
  APO_ENV=(env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="$STATE/pg"
    APOTHECA_PRIVATE_DB__RUN_DIR="$STATE/run" APOTHECA_CONTROL__STATE_DIR="$STATE"
    APOTHECA_CONTROL__SPARE_SCHEMAS=0 APOTHECA_PRIVATE_DB__MAX_CONNECTIONS="${APO_MAX_CONNECTIONS:-500}")
}
apo() { apo_env; "${APO_ENV[@]}" "$A" "$@"; }

pg_root() { head -1 "$1/postmaster.pid"; }

# ---- the peer ----
PEER_URL=http://127.0.0.1:${PEER_HTTP_PORT:-8001}
PEER_PG=$PEER_STATE/.data/pg
peer_up() {  # N: provision (timed by the peer's own script) and serve
  local n=$1
  "$PEER_DIR/stop.sh" >/dev/null 2>&1 || true
  log "peer: provisioning $n tenants"
  "$PEER_DIR/provision.sh" "$n" | while read -r line; do
    record --argjson n "$n" '. + {system: "peer", n: $n}' <<<"$line"
  done
  log "peer: gunicorn with $PEER_WORKERS workers"
  "$PEER_DIR/serve.sh" "$PEER_WORKERS" >/dev/null
  PEER_ROOTS="$(cat "$PEER_STATE/.data/gunicorn.pid") $(pg_root "$PEER_PG")"
}

# ---- Apotheca ----
APO_PORT=$(free_port)
APO_URL=http://127.0.0.1:$APO_PORT
TOKEN=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)
apo_start() {  # a fresh folder: the cluster, the shared schema, the daemon and the proxy
  STATE=$(mktemp -d /tmp/apotheca-compare.XXXXXX)
  chmod 755 "$STATE"
  apo migrate-schemas >/dev/null 2>&1
  apo_serve apotheca
}
# build (apotheca or variant): that build's daemon and proxy on this run's folder, in place of
# whichever serve it now
apo_serve() {
  local build=$1 dir=$ROOT/target/release
  [[ $build == variant ]] && dir=$VARIANT
  stop_pids
  # Its sockets go under the working folder (var/run): this run's folder.
  apo_env
  (cd "$STATE" && exec "${APO_ENV[@]}" "$dir/apotheca" serve >>"$STATE/serve.log" 2>&1) &
  CONTROL_PID=$!
  PIDS+=("$CONTROL_PID")
  for _ in $(seq 1 100); do [[ -S $STATE/var/run/apotheca.sock ]] && break; sleep 0.1; done
  [[ -S $STATE/var/run/apotheca.sock ]] || die "apotheca serve did not start: $(tail -5 "$STATE/serve.log")"
  APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:$APO_PORT APOTHECA_PROXY__CONTROL_SOCKET=$STATE/var/run/apotheca.sock \
    APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 APOTHECA_PROXY__UPGRADE_SOCK=$STATE/proxy-upgrade.sock \
    DATABASE_URL=$(apo db url) RUST_LOG=warn \
    "$dir/apotheca-proxy" >>"$STATE/proxy.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$APO_URL/" -H 'Host: localhost' && break; sleep 0.1; done
  APO_ROOTS="$CONTROL_PID $PROXY_PID $(pg_root "$STATE/pg")"
  SERVING=$build
}
apo_up() {  # N: N tenants (created, seeded, filled to the peer's shape), all timed
  local n=$1 i t0 created=() seeded=() url
  log "apotheca: creating and seeding $n tenants"
  for ((i = 1; i <= n; i++)); do
    t0=$(now)
    apo create-tenant --name "Pharmacy $i" --schema "t$i" --domain "t$i.localhost" >/dev/null
    created+=("$(since "$t0")")
    t0=$(now)
    apo seed-data --schema "t$i" >/dev/null
    seeded+=("$(since "$t0")")
    url=$(apo db url --schema "t$i")
    "$PSQL" -q -X -v ON_ERROR_STOP=1 -d "$url" -c \
      "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix)
       SELECT id, 'compare', sha256(convert_to('$TOKEN', 'UTF8')), 'compare' FROM users WHERE username = 'admin'" \
      >/dev/null
  done
  printf '%s\n' "${created[@]}" | record -s --argjson n "$n" \
    '{system: "apotheca", n: $n, step: "create_tenants", count: length,
      per_tenant_ms_mean: (add / length * 1000 | . * 10 | round / 10),
      per_tenant_ms_p50: (sort | .[length / 2 | floor] * 1000 | round), total_s: add,
      note: "one apotheca process per tenant (start, connect, schema with every migration, role, rows)"}'
  printf '%s\n' "${seeded[@]}" | record -s --argjson n "$n" \
    '{system: "apotheca", n: $n, step: "seed", per_tenant_ms_mean: (add / length * 1000 | round)}'
  log "apotheca: filling t1..t$n to 50 medicines with 1,000,000 units each"
  MEDICINES=$(python3 "$HERE/fill.py" "$APO_URL" "$TOKEN" "$n" localhost)
}
# migrate-schemas over every schema: nothing to apply, then one ADD COLUMN applied everywhere
# (from a copy of the migrations), with the daemon and proxy stopped as the peer's server is;
# after the loads, since workers insist on the built-in set
apo_migrate() {
  local n=$1 mig=$STATE/migrations t0
  stop_pids
  cp -r "$ROOT/migrations" "$mig"
  echo "ALTER TABLE medicines ADD COLUMN bench_note text;" >"$mig/tenant/9001_bench_note.sql"
  t0=$(now); apo migrate-schemas --no-spares >/dev/null; local noop; noop=$(since "$t0")
  t0=$(now); apo --migrations-dir "$mig" migrate-schemas --no-spares >"$STATE/migrate.out"; local apply; apply=$(since "$t0")
  grep -q "migrated $n schema" "$STATE/migrate.out" || die "migrate-schemas: $(cat "$STATE/migrate.out")"
  record -n --argjson n "$n" --argjson noop "$noop" --argjson apply "$apply" \
    '{system: "apotheca", n: $n, step: "migrate_all", noop_s: $noop, apply_s: $apply}'
}

# ---- load ----
load() {  # dialect url n scenario conns seconds: wrk with load.lua, its JSON line on stdout
  COMPARE_DIALECT=$1 COMPARE_SCENARIO=$4 COMPARE_TENANTS=$3 COMPARE_TOKEN=$TOKEN \
    COMPARE_MEDICINES=${MEDICINES:-} wrk -t2 -c"$5" -d"$6s" --timeout 10s -s "$HERE/load.lua" "$2" |
    grep '^{"requests"'
}
measure() {  # system n scenario conns
  local sys=$1 n=$2 scenario=$3 conns=$4 url roots dialect c0 c1 pg0 pg1 out pgroot
  if [[ $sys == peer ]]; then url=$PEER_URL roots=$PEER_ROOTS dialect=peer pgroot=$(pg_root "$PEER_PG")
  else url=$APO_URL roots=$APO_ROOTS dialect=apotheca pgroot=$(pg_root "$STATE/pg"); fi
  # One second of the same requests first, not counted: each row starts from where the last
  # one left the system (the other system's row ran in between), not from cold caches.
  load "$dialect" "$url" "$n" "$scenario" "$conns" 1 >/dev/null
  c0=$(ticks $roots); pg0=$(ticks "$pgroot")
  local t_start; t_start=$(date +%s.%N)
  out=$(load "$dialect" "$url" "$n" "$scenario" "$conns" "$DURATION") || die "$sys: no figures from wrk"
  c1=$(ticks $roots); pg1=$(ticks "$pgroot")
  record --arg sys "$sys" --argjson n "$n" --arg sc "$scenario" --argjson c "$conns" \
    --argjson cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" \
    --argjson pg "$(awk -v a="$pg0" -v b="$pg1" 'BEGIN { print b - a }')" \
    --arg load "$(cut -d' ' -f1 /proc/loadavg)" --arg t0 "$t_start" --arg t1 "$(date +%s.%N)" \
    '. + {system: $sys, started: ($t0 | tonumber), ended: ($t1 | tonumber), n: $n, scenario: $sc, conns: $c, cpu_s: $cpu, pg_cpu_s: $pg, load1: $load,
          cpu_ms_per_req: (if .requests > 0 then $cpu * 1000 / .requests | . * 100 | round / 100 else null end)}' \
    <<<"$out"
  log "$(tail -1 "$OUT" | jq -r '"\(.system) n\(.n) \(.scenario) c\(.conns): \(.rps) req/s p50 \(.p50_ms) p99 \(.p99_ms) ms errors \(.errors) cpu \(.cpu_ms_per_req) ms/req (pg \(.pg_cpu_s) s)"')"
}
# Every tenant's three requests a few times: wakes Apotheca's workers and opens their database
# connections (the peer's gunicorn workers connect on their first request).
warm() { load "$1" "$2" "$3" mix 16 5 >/dev/null; }
mem_record() {  # system n when roots...
  local sys=$1 n=$2 when=$3; shift 3
  read -r rss pss procs <<<"$(memory "$@")"
  record -n --arg sys "$sys" --argjson n "$n" --arg when "$when" --argjson rss "$rss" --argjson pss "$pss" --argjson p "$procs" \
    '{system: $sys, n: $n, step: "memory", when: $when, rss_mib: $rss, pss_mib: $pss, processes: $p}'
}
books() {  # n: both systems' stock checks over every tenant
  local n=$1 i bad=0 url
  (cd "$PEER_DIR/app" && "$PEER_STATE/.venv/bin/python" manage.py all_tenants_command --no-public verify_stock) \
    >"$STATE/peer-verify.out" 2>&1 || bad=1
  for ((i = 1; i <= n; i++)); do
    url=$(apo db url --schema "t$i")
    "$PSQL" -X -At -d "$url" -c "$BOOKS_SQL" >>"$STATE/apo-verify.out"
  done
  local apo_bad; apo_bad=$(awk '{ s += $1 } END { print s + 0 }' "$STATE/apo-verify.out")
  record -n --argjson n "$n" --argjson peer "$bad" --argjson apo "$apo_bad" --arg pv "$(tail -3 "$STATE/peer-verify.out")" \
    '{step: "books", n: $n, peer_failed: $peer, peer_output: $pv, apotheca_mismatches: $apo}'
  [[ $bad == 0 && $apo_bad == 0 ]] || die "books disagree after the loads at N=$n (see $OUT)"
}

record -n --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" --argjson cores "$(nproc)" \
  --arg mem "$(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo)" --arg kernel "$(uname -r)" \
  --arg os "$(. /etc/os-release; echo "$PRETTY_NAME")" --arg utc "$(date -u +%FT%TZ)" \
  --arg commit "$(git -C "$ROOT" rev-parse --short HEAD)" --argjson pw "$PEER_WORKERS" --argjson d "$DURATION" \
  '{step: "machine", utc: $utc, cpu: $cpu, cores: $cores, memory: $mem, kernel: $kernel, os: $os,
    commit: $commit, peer_workers: $pw, duration_s: $d}'

log "peer: setup"
"$PEER_DIR/setup.sh" >/dev/null
for n in $NS; do
  peer_up "$n"
  APO_MAX_CONNECTIONS=$((n * 5 + 50 > 500 ? n * 5 + 50 : 500))
  log "apotheca: cluster (max_connections $APO_MAX_CONNECTIONS), daemon, proxy on $APO_URL"
  apo_start
  apo_up "$n"
  if [[ -n ${PROBE:-} ]]; then
    "$PSQL" -q -X -d "$(apo db url)" -c "ALTER SYSTEM SET log_autovacuum_min_duration = 0" \
      -c "ALTER SYSTEM SET log_checkpoints = on" -c "ALTER SYSTEM SET log_min_duration_statement = 50" \
      -c "ALTER SYSTEM SET log_line_prefix = '%m [%p] %u '" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  log "warming both over $n tenants"
  warm peer "$PEER_URL" "$n"; warm apotheca "$APO_URL" "$n"
  if [[ -n ${HOLD:-} ]]; then  # both systems up for a look from another shell, for HOLD s
    printf 'PEER_URL=%s\nAPO_URL=%s\nTOKEN=%s\nMEDICINES=%s\nSTATE=%s\nN=%s\n' "$PEER_URL" "$APO_URL" \
      "$TOKEN" "$MEDICINES" "$STATE" "$n" >"$ROOT/target/compare/hold.env"
    log "holding for $HOLD s: target/compare/hold.env"
    sleep "$HOLD"
  fi
  # Which build goes first after the peer swaps every row and every repeat: over the repeats
  # each row is measured in both orders (the one measured first was seen to gain about 2 %).
  for repeat in $(seq 1 "${REPEAT:-1}"); do
    row=0
    for scenario in $SCENARIOS; do
      for conns in $CONNS; do
        measure peer "$n" "$scenario" "$conns"
        builds=("${BUILDS[@]}")
        if (((row + repeat - 1) % 2)); then mapfile -t builds < <(printf '%s\n' "${BUILDS[@]}" | tac); fi
        row=$((row + 1))
        for build in "${builds[@]}"; do
          if ((${#BUILDS[@]} > 1)); then
            log "serving with $build"
            apo_serve "$build"
            warm apotheca "$APO_URL" "$n"
          fi
          measure "$build" "$n" "$scenario" "$conns"
        done
      done
    done
  done
  mem_record peer "$n" after_load $PEER_ROOTS
  mem_record "$SERVING" "$n" after_load $APO_ROOTS
  log "both idle for 45 s"
  sleep 45
  mem_record peer "$n" idle $PEER_ROOTS
  mem_record "$SERVING" "$n" idle $APO_ROOTS
  books "$n"
  if [[ -n ${PROBE:-} ]]; then
    mkdir -p "$PROBE/n$n"
    cp "$STATE/proxy.log" "$STATE/serve.log" "$STATE/run/postgres.log" "$PROBE/n$n/" 2>/dev/null || true
  fi
  if [[ -n ${FLOOR:-} ]]; then  # after the books: it writes sales of its own and strips tables
    log "floor: one sale per transaction from pgbench, no application (floor.sh)"
    "$HERE/floor.sh" "$(apo db url)" "$(pg_root "$STATE/pg")" \
      "postgresql://postgres@127.0.0.1:${PEER_PGPORT:-55432}/${PEER_DB:-peer}" "$(pg_root "$PEER_PG")" \
      "$n" "$DURATION" | while read -r line; do record . <<<"$line"; done
  fi
  "$PEER_DIR/stop.sh" >/dev/null
  apo_migrate "$n"
  apo_down
done
python3 "$HERE/table.py" "$OUT"
log "figures: $OUT"
