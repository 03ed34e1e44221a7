#!/usr/bin/env bash
# Tenancy benchmark for Apotheca (issue #2): how long provisioning and migrating tenants take
# with the `apotheca` CLI, compared with the django-tenants figures in
# /work/shared/peer/RESULTS.md.
#
#   A  create-tenant building the schema (empty spare pool): wall clock of each CLI call
#   B  create-tenant claiming a pre-built spare schema (prepare-spares first, timed too)
#   C  migrate-schemas over N_MIGRATE tenants: no-op x3, one ADD COLUMN to every tenant, no-op
#
# Everything runs against a private, throwaway PostgreSQL cluster in a mktemp folder, with the
# default durable settings (fsync on). The cluster is stopped and the folder removed on exit.
#
# Knobs (environment): N_CREATE (default 200), N_MIGRATE (default 1000), SKIP_BUILD=1,
# BENCH_BIN (default <repo>/target/release/apotheca). Every other APOTHECA_* variable of the
# caller's environment is dropped: apotheca rejects unknown APOTHECA_* names, and the run must
# not depend on the caller's settings.
# Progress goes to stderr; the Markdown summary goes to stdout.
#
#   bench/tenancy.sh > bench/tenancy-$(date -u +%Y%m%d).md

set -euo pipefail
export LC_ALL=C

N_CREATE=${N_CREATE:-200}
N_MIGRATE=${N_MIGRATE:-1000}
SKIP_BUILD=${SKIP_BUILD:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BENCH_BIN:-$ROOT/target/release/apotheca}
PEER_RESULTS=/work/shared/peer/RESULTS.md

# Peer figures (django-tenants 4.0.1, Django 6.1.3, PostgreSQL 15, fsync on; same kind of 2-vCPU
# VM), runs A / B of 2026-11-26 in $PEER_RESULTS, N=200 tenants.
# Each constant is the mean of the two runs.
PEER_CREATE_MEAN_MS=220.6  # 217.8 / 223.3 ms mean per tenant created (in one process)
PEER_CREATE_P90_MS=278.2   # 288.0 / 268.4 ms
PEER_MIG_NOOP_MS=71.4      # migrate_schemas, standard executor: 74.9 / 67.8 ms per tenant
PEER_MIG_APPLY_MS=76.9     # same, applying one nullable AddField: 79.8 / 74.0 ms per tenant
PEER_MIG_NOOP_MP_MS=39.1   # --executor=multiprocessing (2 procs): 38.6 / 39.5 ms per tenant
PEER_MIG_APPLY_MP_MS=43.0  # same, applying: 44.4 / 41.6 ms per tenant

die() { echo "tenancy.sh: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

[[ $N_CREATE =~ ^[1-9][0-9]*$ ]] || die "N_CREATE must be a positive integer (got '$N_CREATE')"
[[ $N_MIGRATE =~ ^[1-9][0-9]*$ ]] || die "N_MIGRATE must be a positive integer (got '$N_MIGRATE')"
((N_CREATE <= 9999)) || die "N_CREATE is at most 9999 (4-digit tenant names)"

# ---------------------------------------------------------------------------------------------
# 1. Build
# ---------------------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "building the release binary (cargo build --release -p apotheca-control)"
    (cd "$ROOT" && cargo build --release -p apotheca-control --bin apotheca) >&2
fi
[[ -x $BIN ]] || die "$BIN not found; build it or unset SKIP_BUILD"

# ---------------------------------------------------------------------------------------------
# 2. A private state folder and cluster; stopped and removed on exit
# ---------------------------------------------------------------------------------------------
STATE=$(mktemp -d /tmp/apotheca-bench.XXXXXX)
# When run as root, PostgreSQL runs as the `postgres` OS user, which must reach $STATE/pg.
chmod 0755 "$STATE"
# Snapshot the migrations now: the binary embeds the ones it was built with, and the working
# tree may change during the run (checked against the binary below, before any tenant exists).
MIG=$STATE/migrations
mkdir -p "$MIG"
cp -r "$ROOT/migrations/shared" "$ROOT/migrations/tenant" "$MIG/"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -d $STATE/pg ]]; then
        (cd "$STATE" && "$BIN" db stop >/dev/null 2>&1) ||
            echo "tenancy.sh: WARNING: 'apotheca db stop' failed; check: pgrep -af 'postgres -D $STATE'" >&2
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
# No automatic top-ups anywhere: the pool holds exactly what prepare-spares puts in it.
export APOTHECA_CONTROL__SPARE_SCHEMAS=0
export RUST_LOG=warn
cd "$STATE"

ERR=$STATE/last.err
OUT=$STATE/last.out

# apo ARGS...: one apotheca call; its stdout in $OUT, stderr in $ERR; shows both on failure.
apo() {
    if ! "$BIN" "$@" >"$OUT" 2>"$ERR"; then
        echo "tenancy.sh: 'apotheca $*' failed:" >&2
        cat "$OUT" "$ERR" >&2
        return 1
    fi
}

# now_us: wall clock in microseconds (outside the timed sections).
now_us() { local t=${EPOCHREALTIME}; echo "${t/./}"; }

# LAST_MS: wall clock of the last `timed` call in ms (1 decimal); no fork inside the interval.
LAST_MS=0
timed() {
    local t0=${EPOCHREALTIME/./} t1
    apo "$@"
    t1=${EPOCHREALTIME/./}
    LAST_MS=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1000 }')
}

# stats FILE: "n p50 p90 mean max min" over one number (ms) per line; nearest-rank percentiles.
stats() {
    sort -n "$1" | awk '
        { v[NR] = $1; s += $1 }
        END {
            if (NR == 0) { print "0 0 0 0 0 0"; exit }
            p50 = int(NR * 0.50); if (p50 < NR * 0.50) p50++; if (p50 < 1) p50 = 1
            p90 = int(NR * 0.90); if (p90 < NR * 0.90) p90++; if (p90 < 1) p90 = 1
            printf "%d %.1f %.1f %.1f %.1f %.1f\n", NR, v[p50], v[p90], s / NR, v[NR], v[1]
        }'
}

# calc EXPR: floating-point arithmetic; 1 decimal, 2 below 10, 3 below 1.
calc() {
    awk "BEGIN { x = $1; a = (x < 0 ? -x : x)
        if (a < 1) printf \"%.3f\", x; else if (a < 10) printf \"%.2f\", x; else printf \"%.1f\", x }"
}

sql() { apo db psql -- -X -Atc "$1"; cat "$OUT"; }

# schemas: tenant + spare schemas in the database. Creating a tenant and migrating one both run
# GRANT … ON ALL TABLES IN SCHEMA, whose cost grows with the size of pg_class, so every
# scenario records how many schemas existed while it ran.
schemas() { sql 'select (select count(*) from tenants) + (select count(*) from spare_schemas)'; }

# create_tenants PREFIX FIRST LAST TIMES_FILE PROGRESS_EVERY
create_tenants() {
    local prefix=$1 first=$2 last=$3 times=$4 every=$5 i id
    for ((i = first; i <= last; i++)); do
        printf -v id '%s%04d' "$prefix" "$i"
        timed create-tenant --name "Bench $id" --schema "$id" --domain "$id.bench.localhost"
        echo "$LAST_MS" >>"$times"
        if ((every > 0 && (i - first + 1) % every == 0)); then
            log "  $prefix: $((i - first + 1))/$((last - first + 1)) created (last ${LAST_MS} ms)"
        fi
    done
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_BEGIN=$(now_us)

# ---------------------------------------------------------------------------------------------
# 3. Public schema (starts the cluster)
# ---------------------------------------------------------------------------------------------
log "state folder $STATE; starting the private cluster and migrating public"
timed migrate-schemas --shared
T_SHARED_FIRST=$LAST_MS
PG_VERSION=$(sql 'show server_version')
FSYNC=$(sql 'show fsync')
SYNC_COMMIT=$(sql 'show synchronous_commit')
[[ $FSYNC == on ]] || die "fsync is '$FSYNC' on the private cluster; this benchmark wants the durable default"
"$BIN" --migrations-dir "$MIG" migrate-schemas --shared --plan >"$OUT" 2>"$ERR" ||
    die "$ROOT/migrations differs from the migrations built into $BIN (rebuild, or unset SKIP_BUILD): $(cat "$ERR")"
log "PostgreSQL $PG_VERSION (fsync $FSYNC, synchronous_commit $SYNC_COMMIT)"

# Process start-up + connect + one no-op check: the floor under every CLI figure below.
: >"$STATE/startup.ms"
for _ in 1 2 3 4 5; do
    timed migrate-schemas --shared
    echo "$LAST_MS" >>"$STATE/startup.ms"
done
read -r _ STARTUP_P50 _ _ _ _ < <(stats "$STATE/startup.ms")

# ---------------------------------------------------------------------------------------------
# 4. Scenario A: create-tenant building the schema
# ---------------------------------------------------------------------------------------------
SPARES=$(sql 'select count(*) from spare_schemas')
[[ $SPARES == 0 ]] || die "expected an empty spare pool before scenario A, found $SPARES"
log "scenario A: creating $N_CREATE tenants c0001.. with no spares (schema built in the call)"
A_SCH="$(schemas)→"
: >"$STATE/a.ms"
create_tenants c 1 "$N_CREATE" "$STATE/a.ms" 50
read -r A_N A_P50 A_P90 A_MEAN A_MAX A_MIN < <(stats "$STATE/a.ms")
A_SCH+=$(schemas)
A_TOTAL=$(awk '{ s += $1 } END { printf "%.1f", s / 1000 }' "$STATE/a.ms")
SPARES=$(sql 'select count(*) from spare_schemas')
[[ $SPARES == 0 ]] || die "scenario A left $SPARES spare(s) behind; the pool was not empty"
# The tenant migrations of the snapshot must match the binary's too (checksums of every tenant).
"$BIN" --migrations-dir "$MIG" migrate-schemas --plan >"$OUT" 2>"$ERR" ||
    die "$ROOT/migrations differs from the migrations built into $BIN (rebuild, or unset SKIP_BUILD): $(cat "$ERR")"
log "scenario A: p50 $A_P50 ms, p90 $A_P90 ms, mean $A_MEAN ms, max $A_MAX ms"

# ---------------------------------------------------------------------------------------------
# 5. Scenario B: create-tenant from the spare pool
# ---------------------------------------------------------------------------------------------
log "scenario B: prepare-spares --count $N_CREATE"
timed prepare-spares --count "$N_CREATE"
B_PREP_MS=$LAST_MS
B_PREP_OUT=$(cat "$OUT")
B_BUILT=$(sed -n 's/^built \([0-9]*\) spare.*/\1/p' "$OUT")
[[ $B_BUILT == "$N_CREATE" ]] || die "prepare-spares built '$B_BUILT' spares, wanted $N_CREATE: $B_PREP_OUT"
B_PER_SPARE=$(calc "$B_PREP_MS / $B_BUILT")
log "scenario B: $B_PREP_OUT in ${B_PREP_MS} ms = $B_PER_SPARE ms per spare"
log "scenario B: creating $N_CREATE tenants s0001.. from the pool"
B_SCH=$(schemas)
: >"$STATE/b.ms"
create_tenants s 1 "$N_CREATE" "$STATE/b.ms" 50
read -r B_N B_P50 B_P90 B_MEAN B_MAX B_MIN < <(stats "$STATE/b.ms")
B_TOTAL=$(awk '{ s += $1 } END { printf "%.1f", s / 1000 }' "$STATE/b.ms")
B_LEFT=$(sql 'select count(*) from spare_schemas')
[[ $B_LEFT == 0 ]] || die "the pool still holds $B_LEFT spare(s) after $N_CREATE creates; create-tenant did not claim them"
log "scenario B: p50 $B_P50 ms, p90 $B_P90 ms, mean $B_MEAN ms, max $B_MAX ms; $B_LEFT spares left"

# ---------------------------------------------------------------------------------------------
# 6. Scenario C: migrate-schemas over N_MIGRATE tenants
# ---------------------------------------------------------------------------------------------
HAVE=$(sql 'select count(*) from tenants')
REMAINING=$((N_MIGRATE - HAVE))
C_SETUP_NOTE="none needed"
if ((REMAINING > 0)); then
    log "scenario C setup (not timed): prepare-spares --count $REMAINING, then $REMAINING creates m0001.."
    timed prepare-spares --count "$REMAINING"
    C_PREP_MS=$LAST_MS
    C_SETUP_SCH=$(schemas)
    : >"$STATE/c-setup.ms"
    create_tenants m 1 "$REMAINING" "$STATE/c-setup.ms" 100
    read -r _ C_SETUP_P50 _ C_SETUP_MEAN _ _ < <(stats "$STATE/c-setup.ms")
    C_SETUP_NOTE="prepare-spares --count $REMAINING: $(calc "$C_PREP_MS / 1000") s ($(calc "$C_PREP_MS / $REMAINING") ms/spare); then $REMAINING creates from the pool with $C_SETUP_SCH schemas in the database: p50 $C_SETUP_P50 ms, mean $C_SETUP_MEAN ms"
    log "scenario C setup: $C_SETUP_NOTE"
elif ((REMAINING < 0)); then
    log "scenario C: already $HAVE tenants (> N_MIGRATE=$N_MIGRATE); migrating all of them"
fi
NT=$(sql 'select count(*) from tenants')
C_SPARES=$(sql 'select count(*) from spare_schemas')
C_SCHEMAS=$(sql "select count(*) from pg_namespace where nspname not like 'pg\\_%' and nspname <> 'information_schema'")
DB_SIZE_MB=$(sql "select round(pg_database_size(current_database()) / 1048576.0, 1)")
JOBS=$(nproc)
log "scenario C: $NT tenants, $C_SPARES spares, $C_SCHEMAS schemas, database $DB_SIZE_MB MB; migrate-schemas uses $JOBS jobs (nproc)"

# check_summary WANT_MIGRATED: the stdout line of the last migrate-schemas run.
check_summary() {
    local want=$1 line
    line=$(grep -m1 '^migrated ' "$OUT" || true)
    [[ $line =~ ^migrated\ ([0-9]+)\ schema.*\ ([0-9]+)\ failed$ ]] ||
        die "unexpected migrate-schemas output: $(cat "$OUT")"
    [[ ${BASH_REMATCH[1]} == "$want" && ${BASH_REMATCH[2]} == 0 ]] ||
        die "wanted 'migrated $want schema(s)' and 0 failed, got: $line"
    echo "$line"
}

: >"$STATE/c-noop.ms"
for run in 1 2 3; do
    timed migrate-schemas --no-spares
    C_NOOP_LINE=$(check_summary 0)
    echo "$LAST_MS" >>"$STATE/c-noop.ms"
    log "scenario C: no-op run $run: ${LAST_MS} ms ($C_NOOP_LINE)"
done
C_NOOP_RUNS=$(paste -sd' ' "$STATE/c-noop.ms" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " / " : ""), $i }')
C_NOOP_MED=$(sort -n "$STATE/c-noop.ms" | sed -n 2p)

echo 'ALTER TABLE medicines ADD COLUMN bench_note text;' >"$MIG/tenant/9001_bench_note.sql"

log "scenario C: applying tenant/9001_bench_note.sql (ADD COLUMN) to $NT tenants"
timed --migrations-dir "$MIG" migrate-schemas --no-spares
C_APPLY_MS=$LAST_MS
C_APPLY_LINE=$(check_summary "$NT")
grep -q "^migrated $N_MIGRATE schema(s)" "$OUT" ||
    log "NOTE: migrated $NT schema(s), not N_MIGRATE=$N_MIGRATE (there were more tenants already)"
log "scenario C: apply: ${C_APPLY_MS} ms ($C_APPLY_LINE)"
COLS=$(sql "select count(*) from information_schema.columns where table_name = 'medicines' and column_name = 'bench_note'")
[[ $COLS == "$NT" ]] || die "bench_note exists in $COLS medicines tables, wanted $NT"

timed --migrations-dir "$MIG" migrate-schemas --no-spares
C_NOOP2_MS=$LAST_MS
C_NOOP2_LINE=$(check_summary 0)
log "scenario C: no-op after apply: ${C_NOOP2_MS} ms ($C_NOOP2_LINE)"

T_END=$(now_us)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
WALL_S=$(calc "($T_END - $T_BEGIN) / 1000000")

# ---------------------------------------------------------------------------------------------
# 7. Summary (stdout)
# ---------------------------------------------------------------------------------------------
A_RATIO=$(calc "$PEER_CREATE_MEAN_MS / $A_MEAN")
B_RATIO=$(calc "$PEER_CREATE_MEAN_MS / $B_MEAN")
A_P90_RATIO=$(calc "$PEER_CREATE_P90_MS / $A_P90")
B_P90_RATIO=$(calc "$PEER_CREATE_P90_MS / $B_P90")
NOOP_PER=$(calc "$C_NOOP_MED / $NT")
APPLY_PER=$(calc "$C_APPLY_MS / $NT")
NOOP2_PER=$(calc "$C_NOOP2_MS / $NT")
APPLY_MARGINAL=$(calc "($C_APPLY_MS - $C_NOOP_MED) / $NT")
COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
MEM=$(free -g | awk '/^Mem:/ { printf "%s GiB total, %s GiB available", $2, $7 }')
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

cat <<EOF
### Tenancy benchmark: \`bench/tenancy.sh\` (N_CREATE=$N_CREATE, N_MIGRATE=$N_MIGRATE)

* Date: $(date -u '+%Y-%m-%d %H:%M UTC'); whole run ${WALL_S} s; apotheca at commit $COMMIT
* Machine: $(nproc) cores ($CPU), $MEM, kernel $(uname -r); load average at start $LOAD_START, at end $LOAD_END
* PostgreSQL $PG_VERSION, private cluster (fsync $FSYNC, synchronous_commit $SYNC_COMMIT), Unix socket
* Every figure is the wall clock of one \`apotheca\` process (start, settings, connect, work, exit),
  measured by the shell. Process start-up + connect + a no-op check (\`migrate-schemas --shared\`,
  p50 of 5): **${STARTUP_P50} ms**. First \`migrate-schemas --shared\` (initdb, start, public schema): ${T_SHARED_FIRST} ms.

| scenario | N | schemas in the database | min ms | p50 ms | p90 ms | mean ms | max ms | total s |
|---|---|---|---|---|---|---|---|---|
| A create-tenant, schema built in the call (no spares) | $A_N | $A_SCH | $A_MIN | $A_P50 | $A_P90 | $A_MEAN | $A_MAX | $A_TOTAL |
| B create-tenant, spare claimed (renamed) | $B_N | $B_SCH | $B_MIN | $B_P50 | $B_P90 | $B_MEAN | $B_MAX | $B_TOTAL |
| B background: \`prepare-spares --count $N_CREATE\` | $B_BUILT spares | $((B_SCH - B_BUILT))→$B_SCH | | | | $B_PER_SPARE per spare | | $(calc "$B_PREP_MS / 1000") |

| migrate-schemas over public + $NT tenants ($JOBS jobs) | total ms | ms per tenant |
|---|---|---|
| nothing to apply, 3 runs: $C_NOOP_RUNS (median) | $C_NOOP_MED | $NOOP_PER |
| applying \`ALTER TABLE medicines ADD COLUMN bench_note text\` to every tenant | $C_APPLY_MS | $APPLY_PER (marginal over no-op: $APPLY_MARGINAL) |
| nothing to apply again (with the 0002 folder) | $C_NOOP2_MS | $NOOP2_PER |

* Scenario C setup (not part of the figures): $C_SETUP_NOTE. $C_SPARES spares left; $C_SCHEMAS non-system schemas; database $DB_SIZE_MB MB before the ADD COLUMN.
* apply: \`$C_APPLY_LINE\`

**Peer context** (django-tenants 4.0.1 + Django 6.1.3, PostgreSQL 15, fsync on, 2 vCPUs; $PEER_RESULTS, N=200):
create one tenant ≈ 220 ms mean (218 / 223), p90 ≈ 270–290 ms; \`migrate_schemas\` over public + 200
tenants: ≈ 68–75 ms per tenant with nothing to apply, ≈ 74–80 ms per tenant applying one AddField
(standard executor); ≈ 39 / 42–44 ms per tenant with \`--executor=multiprocessing\` (2 processes).

| comparable per-tenant figure | django-tenants (mean of runs A/B) | apotheca | peer / apotheca |
|---|---|---|---|
| create tenant, mean (A: schema built in the call) | ${PEER_CREATE_MEAN_MS} ms | $A_MEAN ms | ${A_RATIO}× |
| create tenant, p90 (A) | ${PEER_CREATE_P90_MS} ms | $A_P90 ms | ${A_P90_RATIO}× |
| create tenant, mean (B: from the spare pool) | ${PEER_CREATE_MEAN_MS} ms | $B_MEAN ms | ${B_RATIO}× |
| create tenant, p90 (B) | ${PEER_CREATE_P90_MS} ms | $B_P90 ms | ${B_P90_RATIO}× |
| migrate, nothing to apply, per tenant (peer standard / 2 procs) | ${PEER_MIG_NOOP_MS} / ${PEER_MIG_NOOP_MP_MS} ms | $NOOP_PER ms | $(calc "$PEER_MIG_NOOP_MS * $NT / $C_NOOP_MED")× / $(calc "$PEER_MIG_NOOP_MP_MS * $NT / $C_NOOP_MED")× |
| migrate, one added column, per tenant (peer standard / 2 procs) | ${PEER_MIG_APPLY_MS} / ${PEER_MIG_APPLY_MP_MS} ms | $APPLY_PER ms | $(calc "$PEER_MIG_APPLY_MS * $NT / $C_APPLY_MS")× / $(calc "$PEER_MIG_APPLY_MP_MS * $NT / $C_APPLY_MS")× |

Caveats: the peer created its tenants in **one** process (\`manage.py bench_create_tenants\`, timing
each \`Client.save()\` + Domain in-process), so its create figures exclude process start-up and
connecting, which every apotheca figure here includes (≈ ${STARTUP_P50} ms, see above). Both
\`migrate_schemas\` and \`migrate-schemas\` are timed as whole processes; the peer's are over 200
tenants, these over $NT (per-tenant = total / N, so the fixed start-up weighs less here).
Both ran on shared 2-vCPU VMs where runs differ by up to ±25 %; check the load averages above.
EOF
log "done in ${WALL_S} s; stopping the cluster and removing $STATE"
