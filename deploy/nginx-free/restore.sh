#!/usr/bin/env bash
# Puts a backup.sh backup back, as the apotheca user (sudo -u apotheca restore.sh ...).
#
#   restore.sh --schema S FILE.dump   one pharmacy's schema as it was in FILE (FILE's
#                                     .migrations.csv beside it). Its workers go down first:
#                                     the tenant is suspended (the daemon drains its workers,
#                                     the proxy answers 403 meanwhile) and the restore waits
#                                     until none is left; then, in one transaction, the
#                                     current schema is swapped for the backup's and the
#                                     migration records for its own; the migrations since the
#                                     backup are applied; the tenant is resumed (unless it was
#                                     suspended before). Any failure changes nothing.
#   restore.sh --all FILE.dump        a whole database (a new box: install.sh, then this, with
#                                     apotheca-control stopped), into the configured database,
#                                     which must be empty; then `apotheca sync-roles` gives
#                                     every tenant its role back (with the server secret the
#                                     backup was made under: --secret FILE puts it in place)
#                                     and `apotheca migrate-schemas` brings it up to date
#   --secret FILE     with --all: the backup's secret file (installed when none is there yet)
#   --state-dir DIR   where the secret goes (default /var/lib/apotheca)
#   --wait SECS       how long to wait for a tenant's workers to stop (default 60)
#
# Exit status: 0 restored, 1 failed (nothing changed), 2 bad input (nothing changed).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

mode=""
schema=""
file=""
secret=""
state_dir=/var/lib/apotheca
wait_secs=60
while (($#)); do
  case $1 in
    --schema) mode=schema; schema=${2:-}; shift ;;
    --all) mode=all ;;
    --secret) secret=${2:?--secret needs a file}; shift ;;
    --state-dir) state_dir=${2:?--state-dir needs a folder}; shift ;;
    --wait) wait_secs=${2:?--wait needs seconds}; shift ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) bad_input "unknown argument $1 (see --help)" ;;
    *) [[ -z $file ]] || bad_input "one backup file at a time"; file=$1 ;;
  esac
  shift
done
[[ -n $mode ]] || bad_input "say what to restore: --schema S FILE or --all FILE (see --help)"
[[ -n $file ]] || bad_input "which backup file?"
[[ -f $file ]] || bad_input "backup file $file does not exist"
[[ $wait_secs =~ ^[0-9]+$ ]] || bad_input "--wait takes whole seconds"
listing=$(pg_restore --list "$file" 2>&1) || bad_input "$file is not a pg_dump archive: $listing"
# The archive's schemas ("<id>; <oid> <oid> SCHEMA - <name> <owner>").
schemas=$(awk '$4 == "SCHEMA" && $5 == "-" {print $6}' <<<"$listing")

connect_setup

restore_schema() {
  schema_ok "$schema" || bad_input "--schema: \"$schema\" is not a tenant schema name"
  [[ $schemas == "$schema" ]] \
    || bad_input "$file holds schema(s) [${schemas//$'\n'/ }], not exactly $schema: restore it under its own name"
  local records=${file%.dump}.migrations.csv
  [[ -f $records ]] || bad_input "the migration records $records are missing (backup.sh writes them beside the dump)"
  grep -qv "^$schema," "$records" && bad_input "$records holds records of another schema"
  local status
  status=$(sql -tA -v s="$schema" <<<"SELECT status FROM public.tenants WHERE schema_name = :'s';") \
    || die "cannot read public.tenants"
  [[ -n $status ]] || bad_input "no tenant with schema $schema (restore.sh restores an existing tenant's data)"

  if [[ $status == active ]]; then
    apotheca suspend-tenant --schema "$schema" >/dev/null
    # From here on a failure puts the tenant back as it was; its data is untouched.
    trap 'apotheca resume-tenant --schema "$schema" >/dev/null || echo "warning: apotheca resume-tenant --schema $schema failed: run it by hand" >&2' EXIT
  fi
  echo "waiting for $schema's workers to stop"
  local started=$SECONDS out
  while true; do
    if ! out=$(apotheca status --schema "$schema" --json 2>&1); then
      if [[ $out == *"cannot reach the control daemon"* ]]; then
        break # no daemon, so no workers
      fi
      die "apotheca status failed: $out"
    fi
    # The daemon has seen the suspension (so no request can wake a worker) and none is left.
    [[ $out == *'"state": "suspended"'* && $out != *'"pid"'* ]] && break
    ((SECONDS - started < wait_secs)) || die "$schema still has workers after ${wait_secs}s; nothing changed"
    sleep 0.2
  done

  local old="apotheca_restore_$$"
  {
    printf 'SET lock_timeout = %s;\n' "'30s'"
    printf 'ALTER SCHEMA %s RENAME TO %s;\n' "$schema" "$old"
    pg_restore --no-owner --file=- "$file"
    printf 'DROP SCHEMA %s CASCADE;\n' "$old"
    printf "DELETE FROM public.apotheca_migrations WHERE schema_name = '%s';\n" "$schema"
    printf 'COPY public.apotheca_migrations (schema_name, version, name, checksum, applied_at, duration_ms) FROM STDIN WITH (FORMAT csv);\n'
    cat "$records"
    printf '\\.\n'
  } | psql -X -q -1 -v ON_ERROR_STOP=1 --dbname "$db_url" >/dev/null \
    || die "restoring $schema failed; nothing changed"
  echo "restored $schema from $file"
  apotheca migrate-schemas --schema "$schema" --no-spares >/dev/null \
    || die "$schema was restored, but migrating it to this version failed: apotheca migrate-schemas --schema $schema"
  if [[ $status == active ]]; then
    trap - EXIT
    apotheca resume-tenant --schema "$schema" >/dev/null
    echo "$schema resumed"
  fi
}

restore_all() {
  local present
  present=$(sql -tA <<<"SELECT to_regclass('public.tenants') IS NOT NULL;") || die "cannot reach the database"
  [[ $present == f ]] || bad_input "the database already holds Apotheca's tables: restore --all goes into a new, empty database"
  if [[ -n $secret ]]; then
    [[ -f $secret ]] || bad_input "--secret: $secret does not exist"
    if [[ -f $state_dir/secret ]]; then
      cmp -s "$secret" "$state_dir/secret" \
        || bad_input "$state_dir/secret exists and differs from $secret; move it away first"
    else
      install -m 0600 "$secret" "$state_dir/secret"
    fi
  fi
  pg_restore --no-owner --no-acl --single-transaction --exit-on-error --dbname "$db_url" "$file" \
    || die "pg_restore failed; the database is as empty as before"
  echo "restored the database from $file"
  apotheca sync-roles || die "the tenant roles could not be set (the server secret?): apotheca sync-roles"
  apotheca migrate-schemas >/dev/null || die "migrating the restored database failed: apotheca migrate-schemas"
  echo "migrated; start the services: systemctl start apotheca-control apotheca-proxy"
}

case $mode in
  schema) restore_schema ;;
  all) restore_all ;;
esac
