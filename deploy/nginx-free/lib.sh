# shellcheck shell=bash
# What backup.sh and restore.sh share: the settings file, the apotheca binary, and the admin
# connection (the URL from `apotheca db url`, or DATABASE_URL), its password, if any, moved
# into PGPASSWORD so that `ps` never shows it.

config=${APOTHECA_CONFIG:-/etc/apotheca/apotheca.toml}
apotheca_bin=${APOTHECA_BIN:-/usr/local/bin/apotheca}
[[ -x $apotheca_bin ]] || apotheca_bin=$(command -v apotheca || true)

die() {
  echo "error: $*" >&2
  exit "${exit_code:-1}"
}
bad_input() {
  exit_code=2 die "$@"
}

# `apotheca` with the settings file (which must exist unless DATABASE_URL names the database:
# without either, apotheca would fall back to a private development cluster).
apotheca() {
  [[ -n $apotheca_bin ]] || die "the apotheca binary is not installed (APOTHECA_BIN)"
  if [[ -f $config ]]; then
    "$apotheca_bin" --config "$config" "$@"
  elif [[ -n ${DATABASE_URL:-} ]]; then
    env -u APOTHECA_CONFIG "$apotheca_bin" "$@"
  else
    die "settings file $config not found (APOTHECA_CONFIG), and no DATABASE_URL"
  fi
}

# Sets db_url (no password) and exports PGPASSWORD when the URL has one.
connect_setup() {
  local url
  url=${DATABASE_URL:-$(apotheca db url)} || die "cannot tell which database: apotheca db url failed"
  if [[ $url =~ ^(postgres(ql)?://[^:/@?]*):([^@/?]*)@(.*)$ ]]; then
    local encoded=${BASH_REMATCH[3]}
    PGPASSWORD=$(printf '%b' "${encoded//%/\\x}")
    export PGPASSWORD
    url="${BASH_REMATCH[1]}@${BASH_REMATCH[4]}"
  fi
  db_url=$url
}

# psql on the admin connection: quiet, no ~/.psqlrc, stops at the first error.
sql() { psql -X -q -v ON_ERROR_STOP=1 --dbname "$db_url" "$@"; }

schema_ok() { [[ $1 =~ ^[a-z][a-z0-9_]{0,62}$ && $1 != public && $1 != pg_* && $1 != apotheca* ]]; }
