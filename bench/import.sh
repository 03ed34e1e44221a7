#!/usr/bin/env bash
# `apotheca import pharmacy-app` on a big pharmacy (issue #21): the Django pharmacy app's
# database made by Django itself (import/tests/django/make_source.py --bench: MEDICINES medicine
# rows, a tenth of them second batches, and INVOICES invoices of three lines each, as SQLite and
# as PostgreSQL), then imported into a throwaway private cluster by the release build, timed from
# the command's start to its exit (reading, mapping, creating the tenant and writing it all, one
# transaction, fsync on). Also the dry run. With `tenants` in SOURCES, a django-tenants database of
# TENANTS pharmacies (the peer's seed sizes: TENANT_MEDICINES medicine rows and 5 suppliers each,
# and TENANT_INVOICES invoices) made by django-tenants, imported whole by `apotheca import
# django-tenants` (--jobs JOBS). With `console` in SOURCES, the big SQLite file through the
# operator console as an operator's browser sends it (curl): `apotheca serve` and the proxy
# started, the operator logged in by password, the file uploaded as a multipart form (timed to
# the report's redirect: upload, control keeping the file, the dry run), then the import
# confirmed (timed to its redirect), with the public worker's peak RSS before and after: the
# site streams the file on, it never holds it. The upload limits are raised to 1 GiB there, and
# the file's size printed against the default 64 MiB. Prints one JSON line per figure and a
# summary.
# Knobs: MEDICINES (5000), INVOICES (100000), TENANTS (200), TENANT_MEDICINES (50),
# TENANT_INVOICES (50), JOBS (2), SOURCES ("sqlite postgres tenants console"), SKIP_BUILD=1.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
MEDICINES=${MEDICINES:-5000}
INVOICES=${INVOICES:-100000}
TENANTS=${TENANTS:-200}
TENANT_MEDICINES=${TENANT_MEDICINES:-50}
TENANT_INVOICES=${TENANT_INVOICES:-50}
JOBS=${JOBS:-2}
SOURCES=${SOURCES:-sqlite postgres tenants console}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

[[ -n ${SKIP_BUILD:-} ]] || cargo build --release -q -p apotheca-control -p apotheca-worker -p apotheca-proxy
A=$ROOT/target/release/apotheca
P=$ROOT/target/release/apotheca-proxy
PSQL=$(find /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)

PY=$("$ROOT/scripts/django-venv.sh")
MAKE=$ROOT/import/tests/django/make_source.py

STATE=$(mktemp -d /tmp/apotheca-import-bench.XXXXXX)
chmod 755 "$STATE"
apo() {
  env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="$STATE/pg" \
    APOTHECA_PRIVATE_DB__RUN_DIR="$STATE/run" APOTHECA_CONTROL__STATE_DIR="$STATE" \
    APOTHECA_CONTROL__SPARE_SCHEMAS=0 "$A" "$@"
}
PIDS=()
cleanup() { stop_pids; apo db stop >/dev/null 2>&1 || true; rm -rf "$STATE"; }
trap cleanup EXIT
(cd "$STATE" && apo migrate-schemas >/dev/null 2>&1)
ADMIN_URL=$(cd "$STATE" && apo db url)

source_of() {  # kind: makes the source, prints its --from
  local kind=$1 t0
  t0=$(now)
  case $kind in
    sqlite)
      "$PY" "$MAKE" sqlite "$STATE/big.sqlite3" --bench "$MEDICINES" "$INVOICES" >/dev/null
      echo "sqlite:$STATE/big.sqlite3" ;;
    postgres)
      "$PSQL" -q -X -d "$ADMIN_URL" -c "DROP DATABASE IF EXISTS django_source" -c "CREATE DATABASE django_source" >/dev/null
      local url
      url=$(sed -E 's#/[^/?]+\?#/django_source?#' <<<"$ADMIN_URL")
      "$PY" "$MAKE" postgres "$url" --bench "$MEDICINES" "$INVOICES" >/dev/null
      echo "$url" ;;
  esac
  log "$kind source made by Django in $(since "$t0") s"
}

books_of() {  # schema: batches or lines disagreeing with the ledger
  "$PSQL" -q -X -At -d "$ADMIN_URL" -c "SET search_path = $1; $BOOKS_SQL"
}

tenants_source() {  # makes the django-tenants database, prints its URL
  local t0 url
  t0=$(now)
  "$PSQL" -q -X -d "$ADMIN_URL" -c "DROP DATABASE IF EXISTS django_tenants" -c "CREATE DATABASE django_tenants" >/dev/null
  url=$(sed -E 's#/[^/?]+\?#/django_tenants?#' <<<"$ADMIN_URL")
  "$PY" "$MAKE" tenants "$url" --bench "$TENANTS" "$TENANT_MEDICINES" "$TENANT_INVOICES" >/dev/null
  log "django-tenants source of $TENANTS pharmacies made by django-tenants in $(since "$t0") s"
  echo "$url"
}

peak_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
csrf_of() { grep -o 'name="csrf_token" value="[^"]*"' "$1" | head -1 | sed -E 's/.*value="([^"]*)"/\1/'; }

# The big SQLite file through the operator console (see the top).
console_import() {
  [[ -f $STATE/big.sqlite3 ]] || source_of sqlite >/dev/null
  local port sock jar public bytes t0 up confirmed before after report code location
  sock=$STATE/var/run/apotheca.sock jar=$STATE/cookies
  (cd "$STATE" && apo create-operator --username ops --password-stdin <<<"bench-operator-pass") >/dev/null 2>&1
  (cd "$STATE" && exec env -u DATABASE_URL -u APOTHECA_CONFIG APOTHECA_PRIVATE_DB__DATA_DIR="$STATE/pg" \
    APOTHECA_PRIVATE_DB__RUN_DIR="$STATE/run" APOTHECA_CONTROL__STATE_DIR="$STATE" \
    APOTHECA_CONTROL__SPARE_SCHEMAS=0 APOTHECA_CONTROL__IMPORT_MAX_BYTES=1073741824 RUST_LOG=warn \
    "$A" serve >"$STATE/serve.log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 200); do [[ -S $sock ]] && break; sleep 0.1; done
  [[ -S $sock ]] || die "apotheca serve did not start: $(tail -5 "$STATE/serve.log")"
  port=$(free_port)
  APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:$port APOTHECA_PROXY__CONTROL_SOCKET=$sock \
    APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 APOTHECA_PROXY__UPGRADE_SOCK=$STATE/proxy-upgrade.sock \
    APOTHECA_PROXY__MAX_UPLOAD_BYTES=1073741824 DATABASE_URL=$ADMIN_URL RUST_LOG=warn \
    "$P" >"$STATE/proxy.log" 2>&1 &
  PIDS+=($!)
  local site=http://127.0.0.1:$port
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$site/" -H 'Host: localhost' && break; sleep 0.1; done
  get() { curl -sS -b "$jar" -c "$jar" -H 'Host: localhost' -o "$STATE/page.html" -w '%{http_code} %{redirect_url}' "$site$1"; }
  get /operator/login >/dev/null
  curl -sS -b "$jar" -c "$jar" -H 'Host: localhost' -o /dev/null \
    --data-urlencode "csrf_token=$(csrf_of "$STATE/page.html")" --data-urlencode username=ops \
    --data-urlencode password=bench-operator-pass "$site/operator/login"
  get /operator/imports/new >/dev/null
  public=$(curl -s --unix-socket "$sock" http://control/v1/status |
    jq -r '.tenants[] | select(.schema == "public") | .workers[0].pid')
  before=$(peak_kib "$public")
  bytes=$(stat -c %s "$STATE/big.sqlite3")
  t0=$(now)
  read -r code location < <(curl -sS -b "$jar" -c "$jar" -H 'Host: localhost' -o "$STATE/page.html" \
    -w '%{http_code} %{redirect_url}\n' -F "csrf_token=$(csrf_of "$STATE/page.html")" -F schema=bigc \
    -F domain=bigc.localhost -F "file=@$STATE/big.sqlite3" "$site/operator/imports")
  up=$(since "$t0")
  [[ $code == 303 ]] || die "the upload answered $code: $(head -c 600 "$STATE/page.html")"
  after=$(peak_kib "$public")
  report=${location#"$site"}
  get "$report" >/dev/null
  t0=$(now)
  read -r code location < <(curl -sS -b "$jar" -c "$jar" -H 'Host: localhost' -o /dev/null \
    -w '%{http_code} %{redirect_url}\n' --data-urlencode "csrf_token=$(csrf_of "$STATE/page.html")" "$site$report")
  confirmed=$(since "$t0")
  [[ $code == 303 && $location == *notice=imported ]] || die "the confirmation answered $code $location"
  jq -nc --argjson b "$bytes" --argjson up "$up" --argjson imp "$confirmed" --argjson before "$before" \
    --argjson after "$after" --argjson m "$MEDICINES" --argjson i "$INVOICES" \
    '{source: "console", file_bytes: $b, upload_and_dry_run_seconds: $up, import_seconds: $imp,
      public_worker_peak_rss_kib: {before: $before, after: $after}, medicine_rows: $m, invoices: $i}'
  log "console: $(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }') file (default limit 64 MiB); upload and dry run $up s, import $confirmed s; public worker peak RSS $((before / 1024)) -> $((after / 1024)) MiB"
  local books
  books=$(books_of bigc)
  log "console: books disagreeing after the import: $books"
  [[ $books == 0 ]] || die "the books of bigc disagree"
  stop_pids
}

n=0
for kind in $SOURCES; do
  if [[ $kind == console ]]; then
    console_import
    continue
  fi
  if [[ $kind == tenants ]]; then
    url=$(tenants_source)
    for mode in dry real; do
      args=(import django-tenants --from "$url" --jobs "$JOBS" --json)
      [[ $mode == dry ]] && args+=(--dry-run)
      t0=$(now)
      (cd "$STATE" && apo "${args[@]}") >"$STATE/tenants.json"
      secs=$(since "$t0")
      jq -c --arg mode "$mode" --argjson s "$secs" --argjson t "$TENANTS" --argjson j "$JOBS" \
        '{source: "django-tenants", mode: $mode, seconds: $s, pharmacies: $t, jobs: $j,
          imported, skipped, failed,
          invoices: ([.pharmacies[].report.counts.invoices.written // 0] | add)}' "$STATE/tenants.json"
      log "django-tenants $mode: $secs s for $TENANTS pharmacies ($(jq -r '"imported \(.imported), failed \(.failed)"' "$STATE/tenants.json"))"
    done
    bad=0
    for schema in $(jq -r '.pharmacies[].schema' "$STATE/tenants.json"); do
      [[ $(books_of "$schema") == 0 ]] || bad=$((bad + 1))
    done
    log "django-tenants: pharmacies whose books disagree after the import: $bad"
    [[ $bad == 0 ]] || die "books disagree"
    continue
  fi
  from=$(source_of "$kind")
  n=$((n + 1))
  for mode in dry real; do
    args=(import pharmacy-app --from "$from" --schema "big$n" --domain "big$n.localhost" --json)
    [[ $mode == dry ]] && args+=(--dry-run)
    t0=$(now)
    (cd "$STATE" && apo "${args[@]}") >"$STATE/report.json"
    secs=$(since "$t0")
    jq -c --arg kind "$kind" --arg mode "$mode" --argjson s "$secs" \
      --argjson m "$MEDICINES" --argjson i "$INVOICES" \
      '{source: $kind, mode: $mode, seconds: $s, medicine_rows: $m, invoices: $i,
        lines_written: .counts["invoice lines"].written, anomalies: (.anomalies | length)}' \
      "$STATE/report.json"
    log "$kind $mode: $secs s ($(jq -r '.counts["invoice lines"].written' "$STATE/report.json") lines, $(jq '.anomalies | length' "$STATE/report.json") anomalies)"
  done
  books=$(books_of "big$n")
  log "$kind: books disagreeing after the import: $books"
  [[ $books == 0 ]] || die "the books of big$n disagree"
done
