#!/usr/bin/env bash
# Backups with pg_dump, as the apotheca user (sudo -u apotheca backup.sh ...; the admin role
# logs in by peer authentication). Files are written whole or not at all, mode 0600.
#
#   backup.sh --schema S [--out DIR]   one pharmacy: S-<time>.dump (pg_dump -Fc -n S, its data,
#                                      grants and default privileges) and S-<time>.migrations.csv
#                                      (its rows of public.apotheca_migrations: the schema version)
#   backup.sh --all [--out DIR]        the whole database: apotheca-<time>.dump (every schema,
#                                      the tenants and domains tables), and a copy of the server
#                                      secret beside it (secret-<time>), without which the tenant
#                                      roles cannot be given their passwords again
#   --out DIR        where (default /var/backups/apotheca)
#   --secret FILE    the server secret to copy with --all (default /var/lib/apotheca/secret)
#   --keep-days N    after writing, remove this kind's backups (the same schema's, or the
#                    whole database's) older than N days from DIR
#
# The database is the one `apotheca db url` names (APOTHECA_CONFIG, default
# /etc/apotheca/apotheca.toml), or DATABASE_URL. restore.sh puts either kind back.
# Exit status: 0 written, 1 failed, 2 bad input.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

mode=""
schema=""
out=/var/backups/apotheca
secret=/var/lib/apotheca/secret
keep_days=""
while (($#)); do
  case $1 in
    --schema) mode=schema; schema=${2:-}; shift ;;
    --all) mode=all ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    --secret) secret=${2:?--secret needs a file}; shift ;;
    --keep-days) keep_days=${2:-}; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bad_input "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[[ -n $mode ]] || bad_input "say what to back up: --schema S or --all (see --help)"
if [[ $mode == schema ]]; then
  schema_ok "$schema" || bad_input "--schema: \"$schema\" is not a tenant schema name"
fi
[[ -d $out ]] || bad_input "--out: folder $out does not exist"
[[ -z $keep_days || $keep_days =~ ^[0-9]+$ ]] || bad_input "--keep-days takes a whole number of days"

umask 077
connect_setup
stamp=$(date -u +%Y%m%dT%H%M%SZ)
partial=()
cleanup() { if ((${#partial[@]})); then rm -f "${partial[@]}"; fi; }
trap cleanup EXIT

if [[ $mode == schema ]]; then
  found=$(sql -tA -v s="$schema" <<<"SELECT count(*) FROM public.tenants WHERE schema_name = :'s';") \
    || die "cannot read public.tenants"
  [[ $found == 1 ]] || bad_input "no tenant with schema $schema"
  dump="$out/$schema-$stamp.dump"
  records="$out/$schema-$stamp.migrations.csv"
  partial=("$dump.partial" "$records.partial")
  pg_dump --format=custom --schema="$schema" --file="$dump.partial" --dbname "$db_url" \
    || die "pg_dump of schema $schema failed; nothing written"
  sql -v s="$schema" >"$records.partial" <<'SQL' || die "reading the migration records failed"
COPY (SELECT schema_name, version, name, checksum, applied_at, duration_ms
      FROM public.apotheca_migrations WHERE schema_name = :'s' ORDER BY version)
  TO STDOUT WITH (FORMAT csv);
SQL
  [[ -s $records.partial ]] || die "schema $schema has no migration records; nothing written"
  mv "$records.partial" "$records"
  mv "$dump.partial" "$dump"
  partial=()
  echo "$dump"
  echo "$records"
else
  dump="$out/apotheca-$stamp.dump"
  partial=("$dump.partial")
  pg_dump --format=custom --file="$dump.partial" --dbname "$db_url" \
    || die "pg_dump of the database failed; nothing written"
  mv "$dump.partial" "$dump"
  partial=()
  echo "$dump"
  if [[ -r $secret ]]; then
    cp "$secret" "$out/secret-$stamp"
    echo "$out/secret-$stamp"
  else
    echo "warning: no readable server secret at $secret (--secret): keep your [control] secret_key" >&2
    echo "         with this dump, or the tenant roles cannot log in after a restore" >&2
  fi
fi

if [[ -n $keep_days ]]; then
  if [[ $mode == schema ]]; then
    names=(-name "$schema-*.dump" -o -name "$schema-*.migrations.csv")
  else
    names=(-name "apotheca-*.dump" -o -name "secret-*")
  fi
  find "$out" -maxdepth 1 -type f \( "${names[@]}" \) -mtime +"$keep_days" -print -delete \
    | sed 's/^/removed /'
fi
