#!/usr/bin/env bash
# What a sale costs PostgreSQL with no application in the path: pgbench sends one two-line sale
# per transaction, as a worker sends it (floor.py), from one client (a pgbench process and its
# connection) per tenant over all N tenants (the peer's rows: over the first 20, its cluster
# takes 100 connections), for SECONDS each, and the CPU of the cluster's processes (backends
# included) is divided by the sales; sales/s are over the wall time from the first client's
# start to the last one's end. Called by run.sh with FLOOR=1 after the loads and the books
# (it writes sales of its own and then strips the sale's tables: nothing may be checked after).
#
#   apotheca           Apotheca's sale on its own tenants: the worker's statements
#   apotheca_stripped  the same after dropping every CHECK, foreign key, unique constraint and
#                      index but the primary keys on the tables a sale inserts into (and the
#                      CHECKs of the two it updates): what the `docs/domain.md` rows cost with no rule
#                      kept by the database
#   peer_rows          the rows the peer's sale writes, on its own cluster, in the fewest
#                      statements
#
# Before each variant its tables are vacuumed and analysed and the cluster checkpointed, and
# autovacuum is off on them, so neither lands inside a timed run; each variant runs twice and
# the cheaper run is kept. Both make the figures lower bounds, which is what they are for.
#
# Each figure is a JSON line on stdout: {step: "floor", variant, n, clients, sales, tps,
# pg_ms_per_sale, box_ms_per_sale} (box: every process on the machine, pgbench included).
#
# Usage: floor.sh APO_URL APO_PG_PID PEER_URL PEER_PG_PID N SECONDS
#   APO_URL   a superuser URL of Apotheca's database; PEER_URL the peer's database
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
APO_URL=$1 APO_PG=$2 PEER_URL=$3 PEER_PG=$4 N=$5 SECONDS_EACH=$6
BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)")

WORK=$(mktemp -d /tmp/apotheca-floor.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
HZ=$(getconf CLK_TCK)
die() { echo "floor.sh: $*" >&2; exit 1; }

# CPU ticks of a postmaster and its children, live and reaped (pgbench's backends exit at its end)
pg_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1"); do
    total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
box_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
q() { "$BIN/psql" -X -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# Every tenant's sellable medicines with a BENCH batch (fill.py) as one run lo..hi whose batch
# ids are medicine + off: the script's m → b mapping.
params() {  # schema -> "-D lo=.. -D half=.. -D off=.. -D user=.."
  local s=$1 row
  row=$(q "$APO_URL" "SELECT min(b.medicine_id), max(b.medicine_id), min(b.id - b.medicine_id), max(b.id - b.medicine_id), count(*),
      (SELECT id FROM $s.users WHERE username = 'admin')
    FROM $s.batches b JOIN $s.medicines m ON m.id = b.medicine_id
    WHERE b.batch_no = 'BENCH' AND b.medicine_id >= (SELECT max(id) - 31 FROM $s.medicines) AND m.active AND NOT m.prescription_only")
  IFS='|' read -r lo hi off0 off1 count user <<<"$row"
  [[ $off0 == "$off1" && $count == $((hi - lo + 1)) && $count -ge 2 && -n $user ]] ||
    die "$s: no run of medicines with BENCH batches at a fixed offset ($row); run after fill.py"
  echo "-D lo=$lo -D half=$((count / 2)) -D off=$off0 -D user=$user"
}

# Vacuums, analyses and checkpoints (untimed), autovacuum off on the written tables.
settle() {  # url tables...
  local url=$1 i t; shift
  for ((i = 1; i <= N; i++)); do
    for t in "$@"; do
      echo "ALTER TABLE t$i.$t SET (autovacuum_enabled = off);"
      echo "VACUUM (ANALYZE) t$i.$t;"
    done
  done | "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" -f - >/dev/null
  q "$url" "CHECKPOINT" >/dev/null
}
APO_TABLES=(invoices invoice_lines invoice_line_batches stock_movements batches invoice_counter)
PEER_TABLES=(pharmacy_bill pharmacy_billitem pharmacy_medicine)

run() {  # variant url pg_pid script -> one JSON line, the cheaper of two runs
  local best="" line
  for _ in 1 2; do
    line=$(run_once "$@")
    if [[ -z $best ]] || jq -e --argjson b "$best" '.pg_ms_per_sale < $b.pg_ms_per_sale' <<<"$line" >/dev/null; then
      best=$line
    fi
  done
  echo "$best"
}

run_once() {  # variant url pg_pid script -> one JSON line
  local variant=$1 url=$2 pg=$3 script=$4 i pids=() p0 p1 b0 b1 w0 w1 sales=0 n k=$N
  # The peer's cluster takes PostgreSQL's default 100 connections (its gunicorn holds 4).
  [[ $variant != peer_rows ]] || k=$((N < 20 ? N : 20))
  if [[ $variant == peer_rows ]]; then settle "$url" "${PEER_TABLES[@]}"; else settle "$url" "${APO_TABLES[@]}"; fi
  p0=$(pg_ticks "$pg"); b0=$(box_ticks); w0=$(date +%s.%N)
  for ((i = 1; i <= k; i++)); do
    local extra=""
    [[ $variant == peer_rows ]] || extra=$(params "t$i")
    # shellcheck disable=SC2086 # extra is a list of -D options
    PGOPTIONS="-c search_path=t$i -c plan_cache_mode=force_generic_plan" \
      "$BIN/pgbench" -n -M prepared -c 1 -j 1 -T "$SECONDS_EACH" $extra -f "$script" "$url" \
      >"$WORK/$variant.$i.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "$variant: pgbench failed: $(cat "$WORK/$variant".*.out | grep -m 3 -i error)"; done
  p1=$(pg_ticks "$pg"); b1=$(box_ticks); w1=$(date +%s.%N)
  for ((i = 1; i <= k; i++)); do
    n=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$WORK/$variant.$i.out")
    grep -q '^number of failed transactions: 0 ' "$WORK/$variant.$i.out" || die "$variant: failed transactions in t$i"
    sales=$((sales + n))
  done
  ((sales > 0)) || die "$variant: no sale"
  jq -nc --arg v "$variant" --argjson n "$N" --argjson k "$k" --argjson sales "$sales" \
    --argjson s "$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" --argjson pg "$((p1 - p0))" \
    --argjson box "$((b1 - b0))" --argjson hz "$HZ" \
    '{step: "floor", variant: $v, n: $n, clients: $k, sales: $sales, tps: ($sales / $s | round),
      pg_ms_per_sale: ($pg / $hz * 1000 / $sales * 1000 | round / 1000),
      box_ms_per_sale: ($box / $hz * 1000 / $sales * 1000 | round / 1000)}'
}

python3 "$HERE/floor.py" apotheca >"$WORK/apotheca.sql"
python3 "$HERE/floor.py" peer >"$WORK/peer.sql"
run apotheca "$APO_URL" "$APO_PG" "$WORK/apotheca.sql"
# Strip the tables a sale inserts into of every rule the database keeps but their primary keys,
# and the two it updates of their CHECKs (their indexes serve the sale's reads; an update of
# quantities alone is HOT and touches none).
WRITTEN="'invoices', 'invoice_lines', 'invoice_line_batches', 'stock_movements'"
for ((i = 1; i <= N; i++)); do
  q "$APO_URL" "DO \$\$ DECLARE r record; BEGIN
    FOR r IN SELECT c.conrelid::regclass AS t, c.conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
      WHERE t.relnamespace = 't$i'::regnamespace AND (c.contype = 'c' AND t.relname IN ($WRITTEN, 'batches', 'invoice_counter')
        OR c.contype IN ('f', 'u') AND t.relname IN ($WRITTEN))
      ORDER BY c.contype = 'u'
    LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I CASCADE', r.t, r.conname); END LOOP;
    FOR r IN SELECT i.indexrelid::regclass AS ix FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
      WHERE NOT i.indisprimary AND t.relnamespace = 't$i'::regnamespace AND t.relname IN ($WRITTEN)
    LOOP EXECUTE format('DROP INDEX %s', r.ix); END LOOP;
  END \$\$" >/dev/null
done
run apotheca_stripped "$APO_URL" "$APO_PG" "$WORK/apotheca.sql"
run peer_rows "$PEER_URL" "$PEER_PG" "$WORK/peer.sql"
