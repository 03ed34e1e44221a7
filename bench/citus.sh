#!/usr/bin/env bash
# Apotheca on Citus against Apotheca on plain PostgreSQL, both in one run on this machine (issue
# #23). Two whole systems side by side, each apotheca-proxy → control's per-tenant workers → its
# own private cluster (release build, default settings, fsync on):
#
#   plain  a private PostgreSQL
#   citus  a private Citus cluster: a coordinator and 2 worker nodes, all on this box
#
# Each gets the same N tenants (t1..tN.localhost: created and seeded by `apotheca`, then filled
# to 50 medicines with 1,000,000 units each through the API, as compare/run.sh does). Then the
# rows of compare/run.sh (wrk with compare/load.lua: the medicine list, one medicine, a two-line
# sale, the 9:9:2 mix; an API token, Host rotating over the tenants; CONNS connections,
# DURATION s each), plain and citus back to back, the first of the two swapped every row. Then,
# on Citus, the time to move one tenant with its data to the other node, idle and while wrk
# posts its sales (how many of those failed), the rebalance that puts it back; then
# migrate-all on both (nothing to apply, then one ADD COLUMN everywhere); then both systems'
# books (stock = ledger for every batch and invoice line of every tenant).
#
# Prints one Markdown table on stdout (each figure with citus ÷ plain); progress on stderr;
# every figure also as a JSON line in $OUT (default target/compare/citus-<utc>.jsonl).
# Needs Citus installed (../shared/citus/install.sh, or APOTHECA_CITUS_DIR).
#
# Knobs: N (20), CONNS ("16 64"), DURATION (10), SCENARIOS ("list detail sale mix"), REPEAT (1),
# MOVE_SECS (20: the sales load during the move), READ_CACHE_SECS (both systems' workers'
# `[worker] read_cache_secs`; 0: every list and detail reaches the database), SKIP_BUILD=1.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
COMPARE=$ROOT/bench/compare
N=${N:-20}
CONNS=${CONNS:-16 64}
DURATION=${DURATION:-10}
SCENARIOS=${SCENARIOS:-list detail sale mix}
MOVE_SECS=${MOVE_SECS:-20}
mkdir -p "$ROOT/target/compare"
OUT=${OUT:-$ROOT/target/compare/citus-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
: >"$OUT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
record() { jq -c "$@" | tee -a "$OUT" >/dev/null; }

for tool in wrk jq curl python3; do command -v $tool >/dev/null || die "$tool is missing (apt-get install $tool)"; done
CITUS_DIR=${APOTHECA_CITUS_DIR:-}
for dir in ../shared/citus /work/shared/citus; do
  [[ -z $CITUS_DIR && -x $dir/install.sh ]] && CITUS_DIR=$dir
done
[[ -n $CITUS_DIR ]] || die "no Citus source: set APOTHECA_CITUS_DIR to the folder of install.sh"
"$CITUS_DIR/install.sh" >&2 || die "Citus could not be installed"
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-proxy
A=$ROOT/target/release/apotheca
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
SYSTEMS=(plain citus)
TOKEN=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)
declare -A STATE PORT ROOTS PGROOTS
PIDS=()

# Each system's own cluster and state, whatever the caller's environment says.
apo() {  # system args...
  local sys=$1; shift
  env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="${STATE[$sys]}/pg" \
    APOTHECA_PRIVATE_DB__RUN_DIR="${STATE[$sys]}/run" APOTHECA_CONTROL__STATE_DIR="${STATE[$sys]}" \
    APOTHECA_CONTROL__SPARE_SCHEMAS=0 APOTHECA_PRIVATE_DB__MAX_CONNECTIONS=500 \
    APOTHECA_PRIVATE_DB__CITUS_NODES="$([[ $sys == citus ]] && echo 2 || echo 0)" \
    "$A" "$@"
}
cleanup() {
  stop_pids
  local sys
  for sys in "${SYSTEMS[@]}"; do
    if [[ -n ${STATE[$sys]:-} ]]; then apo "$sys" db stop >/dev/null 2>&1 || true; rm -rf "${STATE[$sys]}"; fi
  done
}
trap cleanup EXIT
pg_root() { head -1 "$1/postmaster.pid"; }

start() {  # system: its cluster, the shared schema, the daemon and the proxy
  local sys=$1 dir
  dir=$(mktemp -d "/tmp/apotheca-$sys.XXXXXX")
  chmod 755 "$dir"
  STATE[$sys]=$dir
  PORT[$sys]=$(free_port)
  apo "$sys" migrate-schemas >/dev/null 2>&1
  # The workers inherit the daemon's environment, READ_CACHE_SECS with it.
  (cd "$dir" && exec env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="$dir/pg" \
    APOTHECA_PRIVATE_DB__RUN_DIR="$dir/run" APOTHECA_CONTROL__STATE_DIR="$dir" \
    APOTHECA_CONTROL__SPARE_SCHEMAS=0 ${READ_CACHE_SECS:+APOTHECA_WORKER__READ_CACHE_SECS=$READ_CACHE_SECS} \
    "$A" serve >>"$dir/serve.log" 2>&1) &
  local control=$!
  PIDS+=("$control")
  for _ in $(seq 1 100); do [[ -S $dir/var/run/apotheca.sock ]] && break; sleep 0.1; done
  [[ -S $dir/var/run/apotheca.sock ]] || die "$sys: apotheca serve did not start: $(tail -5 "$dir/serve.log")"
  APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:${PORT[$sys]} APOTHECA_PROXY__CONTROL_SOCKET=$dir/var/run/apotheca.sock \
    APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 APOTHECA_PROXY__UPGRADE_SOCK=$dir/proxy-upgrade.sock \
    DATABASE_URL=$(apo "$sys" db url) RUST_LOG=warn \
    "${A}-proxy" >>"$dir/proxy.log" 2>&1 &
  local proxy=$!
  PIDS+=("$proxy")
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:${PORT[$sys]}/" -H 'Host: localhost' && break; sleep 0.1; done
  # Every PostgreSQL server of the system: the coordinator's nodes are folders beside its own.
  local pg="" d
  for d in "$dir"/pg "$dir"/pg-node*; do [[ -f $d/postmaster.pid ]] && pg+=" $(pg_root "$d")"; done
  PGROOTS[$sys]=$pg
  ROOTS[$sys]="$control $proxy$pg"
}

tenants() {  # system: N tenants created, seeded and filled, the creation timed
  local sys=$1 i t0 created=() url
  log "$sys: creating and seeding $N tenants"
  for ((i = 1; i <= N; i++)); do
    t0=$(now)
    apo "$sys" create-tenant --name "Pharmacy $i" --schema "t$i" --domain "t$i.localhost" >/dev/null
    created+=("$(since "$t0")")
    apo "$sys" seed-data --schema "t$i" >/dev/null
    url=$(apo "$sys" db url --schema "t$i")
    "$PSQL" -q -X -v ON_ERROR_STOP=1 -d "$url" -c \
      "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix)
       SELECT id, 'citus-bench', sha256(convert_to('$TOKEN', 'UTF8')), 'citus-be' FROM users WHERE username = 'admin'" \
      >/dev/null
  done
  printf '%s\n' "${created[@]}" | record -s --arg sys "$sys" --argjson n "$N" \
    '{system: $sys, n: $n, step: "create_tenants", per_tenant_ms_mean: (add / length * 1000 | round),
      per_tenant_ms_p50: (sort | .[length / 2 | floor] * 1000 | round),
      note: "one apotheca process per tenant (start, connect, schema with every migration, role, rows); no spares"}'
  log "$sys: filling t1..t$N to 50 medicines with 1,000,000 units each"
  MEDICINES=$(python3 "$COMPARE/fill.py" "http://127.0.0.1:${PORT[$sys]}" "$TOKEN" "$N" localhost)
}

load() {  # system scenario conns seconds [tenants]: wrk's JSON line
  COMPARE_DIALECT=apotheca COMPARE_SCENARIO=$2 COMPARE_TENANTS=${5:-$N} COMPARE_TOKEN=$TOKEN \
    COMPARE_MEDICINES=${MEDICINES:-} wrk -t2 -c"$3" -d"$4s" --timeout 10s -s "$COMPARE/load.lua" \
    "http://127.0.0.1:${PORT[$1]}" | grep '^{"requests"'
}
measure() {  # system scenario conns
  local sys=$1 scenario=$2 conns=$3 c0 c1 pg0 pg1 out
  load "$sys" "$scenario" "$conns" 1 >/dev/null
  # shellcheck disable=SC2086
  { c0=$(ticks ${ROOTS[$sys]}); pg0=$(ticks ${PGROOTS[$sys]}); }
  out=$(load "$sys" "$scenario" "$conns" "$DURATION") || die "$sys: no figures from wrk"
  # shellcheck disable=SC2086
  { c1=$(ticks ${ROOTS[$sys]}); pg1=$(ticks ${PGROOTS[$sys]}); }
  record --arg sys "$sys" --argjson n "$N" --arg sc "$scenario" --argjson c "$conns" \
    --argjson cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" \
    --argjson pg "$(awk -v a="$pg0" -v b="$pg1" 'BEGIN { print b - a }')" \
    '. + {system: $sys, n: $n, scenario: $sc, conns: $c, cpu_s: $cpu, pg_cpu_s: $pg,
          cpu_ms_per_req: (if .requests > 0 then $cpu * 1000 / .requests | . * 100 | round / 100 else null end)}' \
    <<<"$out"
  log "$(tail -1 "$OUT" | jq -r '"\(.system) \(.scenario) c\(.conns): \(.rps) req/s p50 \(.p50_ms) p99 \(.p99_ms) ms errors \(.errors) cpu \(.cpu_ms_per_req) ms/req"')"
}

node_of() { apo citus list-tenants --json | jq -r --arg s "$1" '.[] | select(.schema == $s) | .node'; }
other_node() { apo citus list-nodes --json | jq -r --arg n "$1" '.[] | "\(.name):\(.port)" | select(. != $n)' | head -1; }
moves() {  # t1 to the other node idle, then back under its own sales; the rebalance after
  local from to size t0 took out
  from=$(node_of t1); to=$(other_node "$from")
  size=$("$PSQL" -X -At -d "$(apo citus db url)" -c "SELECT schema_size FROM citus_schemas WHERE schema_name = 't1'::regnamespace")
  t0=$(now); apo citus move-tenant --schema t1 --to "$to" >/dev/null; took=$(since "$t0")
  record -n --arg size "$size" --argjson took "$took" --arg from "$from" --arg to "$to" \
    '{system: "citus", step: "move_idle", schema: "t1", schema_size: $size, seconds: $took, from: $from, to: $to}'
  log "citus: moved t1 ($size) idle in ${took}s"
  # Back, while wrk posts t1's sales (t1 alone: COMPARE_TENANTS=1) for MOVE_SECS.
  load citus sale 8 "$MOVE_SECS" 1 >"${STATE[citus]}/move-load.json" &
  local wrk=$!
  sleep 3
  t0=$(now); apo citus move-tenant --schema t1 --to "$from" >/dev/null; took=$(since "$t0")
  wait "$wrk"
  out=$(cat "${STATE[citus]}/move-load.json")
  record --arg size "$size" --argjson took "$took" --argjson secs "$MOVE_SECS" \
    '{system: "citus", step: "move_under_sales", schema: "t1", schema_size: $size, seconds: $took,
      sales_s: $secs, sales: .requests, sales_failed: .errors, sales_p99_ms: .p99_ms, sales_max_ms: .max_ms}' <<<"$out"
  log "$(tail -1 "$OUT" | jq -r '"citus: moved t1 back under its sales in \(.seconds)s; \(.sales) sales in \(.sales_s)s, \(.sales_failed) failed, max \(.sales_max_ms) ms"')"
  t0=$(now); out=$(apo citus rebalance-tenants --json); took=$(since "$t0")
  record --argjson took "$took" '{system: "citus", step: "rebalance", moves: length, seconds: $took}' <<<"$out"
}

migrate_all() {  # system: nothing to apply, then one ADD COLUMN everywhere, daemons stopped
  local sys=$1 mig=${STATE[$1]}/migrations t0 noop apply
  cp -r "$ROOT/migrations" "$mig"
  echo "ALTER TABLE medicines ADD COLUMN bench_note text;" >"$mig/tenant/9001_bench_note.sql"
  t0=$(now); apo "$sys" migrate-schemas --no-spares >/dev/null; noop=$(since "$t0")
  t0=$(now); apo "$sys" --migrations-dir "$mig" migrate-schemas --no-spares >"${STATE[$sys]}/migrate.out"; apply=$(since "$t0")
  grep -q "migrated $N schema" "${STATE[$sys]}/migrate.out" || die "$sys migrate-schemas: $(cat "${STATE[$sys]}/migrate.out")"
  record -n --arg sys "$sys" --argjson n "$N" --argjson noop "$noop" --argjson apply "$apply" \
    '{system: $sys, n: $n, step: "migrate_all", noop_s: $noop, apply_s: $apply}'
}

books() {  # system: batches and lines that disagree with the ledger, over every tenant
  local sys=$1 i bad=0
  for ((i = 1; i <= N; i++)); do
    bad=$((bad + $("$PSQL" -X -At -d "$(apo "$sys" db url --schema "t$i")" -c "$BOOKS_SQL")))
  done
  record -n --arg sys "$sys" --argjson bad "$bad" '{system: $sys, step: "books", mismatches: $bad}'
  ((bad == 0)) || die "$sys: the books disagree ($bad)"
}

record -n --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" --argjson cores "$(nproc)" \
  --arg utc "$(date -u +%FT%TZ)" --arg commit "$(git -C "$ROOT" rev-parse --short HEAD)" --argjson d "$DURATION" \
  --arg rc "${READ_CACHE_SECS:-default}" \
  '{step: "machine", utc: $utc, cpu: $cpu, cores: $cores, commit: $commit, duration_s: $d, read_cache_secs: $rc}'
for sys in "${SYSTEMS[@]}"; do
  log "$sys: cluster, daemon, proxy"
  start "$sys"
done
for sys in "${SYSTEMS[@]}"; do tenants "$sys"; done
for sys in "${SYSTEMS[@]}"; do load "$sys" mix 16 5 >/dev/null; done
for repeat in $(seq 1 "${REPEAT:-1}"); do
  row=0
  for scenario in $SCENARIOS; do
    for conns in $CONNS; do
      order=("${SYSTEMS[@]}")
      if (((row + repeat) % 2)); then order=(citus plain); fi
      row=$((row + 1))
      for sys in "${order[@]}"; do measure "$sys" "$scenario" "$conns"; done
    done
  done
done
moves
for sys in "${SYSTEMS[@]}"; do books "$sys"; done
stop_pids
for sys in "${SYSTEMS[@]}"; do migrate_all "$sys"; done

# The table: every row of both, citus ÷ plain.
jq -rs '
  def r(x): (x * 100 | round) / 100;
  (map(select(.scenario)) | group_by([.scenario, .conns])) as $rows
  | "| row | plain req/s | citus req/s | citus ÷ plain | plain p50 / p99 ms | citus p50 / p99 ms | CPU ms/req plain / citus | errors |",
    "|---|---:|---:|---:|---|---|---|---:|",
    ($rows[] | (map(select(.system == "plain")) | first) as $p | (map(select(.system == "citus")) | first) as $c
     | "| \($p.scenario) c\($p.conns) | \($p.rps) | \($c.rps) | \(r($c.rps / $p.rps)) | \($p.p50_ms) / \($p.p99_ms) | \($c.p50_ms) / \($c.p99_ms) | \($p.cpu_ms_per_req) / \($c.cpu_ms_per_req) | \($p.errors + $c.errors) |"),
    "",
    (map(select(.step == "create_tenants")) | "create-tenant, ms per tenant (mean / p50): " + (map("\(.system) \(.per_tenant_ms_mean) / \(.per_tenant_ms_p50)") | join(", "))),
    (map(select(.step == "migrate_all")) | "migrate-all over \(.[0].n) tenants, s (nothing to apply / one ADD COLUMN): " + (map("\(.system) \(.noop_s) / \(.apply_s)") | join(", "))),
    (map(select(.step == "move_idle"))[] | "move one tenant (\(.schema_size)) to the other node, idle: \(.seconds) s"),
    (map(select(.step == "move_under_sales"))[] | "the same back, under its own sales (8 connections): \(.seconds) s; \(.sales) sales in \(.sales_s) s, \(.sales_failed) failed, p99 \(.sales_p99_ms) ms, max \(.sales_max_ms) ms"),
    (map(select(.step == "books")) | "books: " + (map("\(.system) \(.mismatches) mismatches") | join(", ")))
' "$OUT"
log "figures: $OUT"
