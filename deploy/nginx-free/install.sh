#!/usr/bin/env bash
# Installs Apotheca on this Debian box, no nginx: Debian packages, the `apotheca` system user,
# folders and permissions, the system PostgreSQL's role and database (and its pg_hba.conf
# lines and sizing), the binaries, the settings, the scripts, the systemd units, journald's
# retention, the migrations; then starts the services. Idempotent: a second run changes only
# what differs, and never overwrites an edited /etc/apotheca/apotheca.toml.
#
#   deploy/nginx-free/install.sh [--dry-run] [--bin-dir DIR] [--max-connections N]
#                                [--shared-buffers SIZE] [--no-start]
#
#   --dry-run            print what would be done, change nothing (read-only checks still run)
#   --bin-dir DIR        where apotheca, apotheca-worker and apotheca-proxy are
#                        (default: target/release of this checkout: cargo build --release --bins)
#   --max-connections N  PostgreSQL's max_connections (default 1200: README.md, "PostgreSQL sizing")
#   --shared-buffers S   PostgreSQL's shared_buffers (default: a quarter of the memory, at most 8GB)
#   --no-start           install the files, the user and the database role, but neither run
#                        the migrations nor start the services (before restore.sh --all)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dry=0
start=1
bin_dir="$here/../../target/release"
max_connections=1200
shared_buffers=""

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --dry-run) dry=1 ;;
    --no-start) start=0 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a folder}; shift ;;
    --max-connections) max_connections=${2:?--max-connections needs a number}; shift ;;
    --shared-buffers) shared_buffers=${2:?--shared-buffers needs a size such as 4GB}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ $max_connections =~ ^[0-9]+$ ]] || ((max_connections < 50)); then
  echo "error: --max-connections must be a number of at least 50" >&2
  exit 2
fi
if [[ -z $shared_buffers ]]; then
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  mb=$((mem_kb / 4 / 1024))
  ((mb > 8192)) && mb=8192
  ((mb < 128)) && mb=128
  shared_buffers="${mb}MB"
fi
if ! [[ $shared_buffers =~ ^[0-9]+(kB|MB|GB)$ ]]; then
  echo "error: --shared-buffers must look like 512MB or 4GB" >&2
  exit 2
fi
if ((!dry)) && [[ $(id -u) -ne 0 ]]; then
  echo "error: run as root (or with --dry-run to see what it would do)" >&2
  exit 1
fi

user=apotheca
etc=/etc/apotheca
lib=/usr/local/lib/apotheca
doc=/usr/local/share/doc/apotheca
units=/etc/systemd/system
changed_units=0

say() { printf '==> %s\n' "$*"; }
# Runs a command that changes something, or prints it with --dry-run.
run() {
  if ((dry)); then
    printf '    would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}
# Installs FILE as DEST (mode, owner, group) when it is missing or differs.
put() {
  local src=$1 dest=$2 mode=$3 owner=$4 group=$5
  if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
    return 1
  fi
  run install -m "$mode" -o "$owner" -g "$group" "$src" "$dest"
}
# SQL as PostgreSQL's superuser (peer authentication as the postgres OS user).
pg_cmd=(runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1)
pg() { "${pg_cmd[@]}" "$@"; }

say "Debian packages"
need=()
for pkg in postgresql postgresql-client ca-certificates openssl certbot; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if ((${#need[@]})); then
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "    all present"
fi

say "system user $user"
if id "$user" >/dev/null 2>&1; then
  echo "    exists"
else
  run adduser --system --group --home /var/lib/apotheca --no-create-home \
    --shell /usr/sbin/nologin --gecos "Apotheca" "$user"
fi

say "folders"
# owner group mode path
while read -r owner group mode path; do
  if [[ -d $path ]] && [[ $(stat -c '%U %G %a' "$path") == "$owner $group $mode" ]]; then
    continue
  fi
  run install -d -o "$owner" -g "$group" -m "$mode" "$path"
done <<EOF
root root 755 $etc
root $user 750 $etc/tls
root $user 750 $etc/tls/domains
$user $user 700 /var/lib/apotheca
$user $user 700 /var/backups/apotheca
root root 755 $lib
root root 755 $doc
EOF

say "binaries in /usr/local/bin"
changed_bins=()
for bin in apotheca apotheca-worker apotheca-proxy; do
  if [[ ! -x $bin_dir/$bin ]]; then
    echo "error: $bin_dir/$bin is missing: build with cargo build --release --bins, or give --bin-dir" >&2
    exit 1
  fi
  if put "$bin_dir/$bin" "/usr/local/bin/$bin" 0755 root root; then
    changed_bins+=("$bin")
    echo "    $bin"
  fi
done

say "settings $etc/apotheca.toml"
if [[ ! -f $etc/apotheca.toml ]]; then
  run install -m 0640 -o root -g "$user" "$here/apotheca.toml" "$etc/apotheca.toml"
  echo "    installed: edit example.com (README.md, step 2)"
elif ! cmp -s "$here/apotheca.toml" "$etc/apotheca.toml"; then
  # The operator's file stays; the shipped one goes beside it to compare.
  put "$here/apotheca.toml" "$etc/apotheca.toml.dist" 0640 root "$user" || true
  echo "    kept yours; this release's is $etc/apotheca.toml.dist"
else
  echo "    up to date"
fi

say "scripts in $lib, README in $doc"
for script in lib.sh backup.sh restore.sh cert-deploy-hook.sh; do
  if put "$here/$script" "$lib/$script" 0755 root root; then echo "    $script"; fi
done
put "$here/README.md" "$doc/README.md" 0644 root root || true

say "systemd units"
for unit in apotheca-control.service apotheca-proxy.service apotheca-backup.service \
  apotheca-backup.timer; do
  if put "$here/$unit" "$units/$unit" 0644 root root; then
    changed_units=1
    echo "    $unit"
  fi
done
if ((changed_units)); then run systemctl daemon-reload; fi

say "journald: persistent, bounded"
if [[ ! -d /var/log/journal ]]; then
  run install -d -m 2755 -o root -g systemd-journal /var/log/journal
fi
if [[ ! -d /etc/systemd/journald.conf.d ]]; then
  run install -d -m 0755 /etc/systemd/journald.conf.d
fi
if put "$here/journald-apotheca.conf" /etc/systemd/journald.conf.d/apotheca.conf 0644 root root; then
  run systemctl restart systemd-journald
fi

say "PostgreSQL: the apotheca role and database"
if ! pg -tAc 'SELECT 1' >/dev/null 2>&1; then
  if ((dry)); then
    echo "    PostgreSQL is not running here yet: would create role $user (LOGIN CREATEROLE),"
    echo "    database apotheca owned by it, the pg_hba.conf lines and conf.d/apotheca.conf"
  else
    echo "error: PostgreSQL does not answer (pg_lsclusters; systemctl start postgresql)" >&2
    exit 1
  fi
else
  if [[ $(pg -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'") != 1 ]]; then
    run "${pg_cmd[@]}" -c "CREATE ROLE $user LOGIN CREATEROLE"
  fi
  if [[ $(pg -tAc "SELECT 1 FROM pg_database WHERE datname = 'apotheca'") != 1 ]]; then
    run "${pg_cmd[@]}" -c "CREATE DATABASE apotheca OWNER $user"
  fi
  # Control creates tenant schemas beside public and must own it.
  if [[ $(pg -d apotheca -tAc "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'public'" 2>/dev/null) != "$user" ]]; then
    run "${pg_cmd[@]}" -d apotheca -c "ALTER SCHEMA public OWNER TO $user"
  fi

  hba=$(pg -tAc 'SHOW hba_file')
  conf_dir="$(dirname "$(pg -tAc 'SHOW config_file')")/conf.d"
  reload=0
  restart=0
  # The admin role by peer (no password anywhere); the postgres superuser too; every other
  # role of this database (tenants, the public site) with its SCRAM password. Before
  # Debian's own lines, which would answer peer to them.
  block=$(mktemp)
  cat >"$block" <<EOF
# BEGIN apotheca (deploy/nginx-free/install.sh; edits inside are replaced)
local   apotheca   postgres   peer
local   apotheca   $user   peer
local   apotheca   all        scram-sha-256
# END apotheca
EOF
  new_hba=$(mktemp)
  awk -v blockfile="$block" '
    BEGIN { while ((getline l < blockfile) > 0) block = block l "\n" }
    /^# BEGIN apotheca/ { skipping = 1; next }
    /^# END apotheca/ { skipping = 0; next }
    skipping { next }
    !done && /^[[:space:]]*(local|host|hostssl|hostnossl|hostgssenc|hostnogssenc|include)/ {
      printf "%s", block; done = 1
    }
    { print }
    END { if (!done) printf "%s", block }
  ' "$hba" >"$new_hba"
  if ! cmp -s "$new_hba" "$hba"; then
    echo "    $hba: the apotheca lines, before the others:"
    sed 's/^/      /' "$block"
    run install -m 0640 -o postgres -g postgres "$new_hba" "$hba"
    reload=1
  fi
  sizing=$(mktemp)
  # lz4 where this PostgreSQL was built with it (Debian's 15 and later), else pglz.
  wal_compression=on
  for pg_config in /usr/lib/postgresql/*/bin/pg_config; do
    if [[ -x $pg_config ]] && "$pg_config" --configure | grep -q -- --with-lz4; then wal_compression=lz4; fi
  done
  cat >"$sizing" <<EOF
# Apotheca's sizing (deploy/nginx-free/install.sh; README.md, "PostgreSQL sizing").
# Each running worker holds one connection, up to [worker] pool_size while busy.
max_connections = $max_connections
shared_buffers = $shared_buffers
# Fewer and smaller full-page images after checkpoints (README.md, "PostgreSQL sizing").
wal_compression = $wal_compression
checkpoint_timeout = '15min'
max_wal_size = '2GB'
EOF
  if put "$sizing" "$conf_dir/apotheca.conf" 0644 postgres postgres; then
    echo "    $conf_dir/apotheca.conf: max_connections $max_connections, shared_buffers $shared_buffers"
    restart=1
  fi
  rm -f "$block" "$new_hba" "$sizing"
  if ((restart)); then
    run systemctl restart postgresql
  elif ((reload)); then
    run systemctl reload postgresql
  fi
fi

if ((!start)); then
  say "done (--no-start): no migrations run, no service started"
  echo "    start with: sudo $0   (or restore.sh --all first: README.md, \"Backups and restores\")"
  exit 0
fi

say "migrations"
run runuser -u "$user" -- /usr/local/bin/apotheca --config "$etc/apotheca.toml" migrate-schemas

if ! (exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null; then
  echo "warning: nothing listens on 127.0.0.1:25: password reset mail ([worker] smtp_relay) will fail" >&2
  echo "         install a mail server (e.g. apt-get install exim4) or change smtp_relay" >&2
fi

say "services"
# An upgrade (README.md, "Upgrades"): the migrations ran above; a new control restarts the
# daemon (its workers drain and come back with it); a new worker alone is rolled in one
# worker at a time; a new proxy takes over the listening sockets on reload.
has() { local b; for b in "${changed_bins[@]}"; do [[ $b == "$1" ]] && return 0; done; return 1; }
if systemctl is-active --quiet apotheca-control.service 2>/dev/null; then
  if has apotheca || ((changed_units)); then
    run systemctl restart apotheca-control.service
  elif has apotheca-worker; then
    run runuser -u "$user" -- /usr/local/bin/apotheca --config "$etc/apotheca.toml" restart --all
  fi
else
  run systemctl enable --now apotheca-control.service
fi
settings=$etc/apotheca.toml
[[ -f $settings ]] || settings=$here/apotheca.toml # --dry-run before the first install
cert=$(awk -F'"' '/^tls_cert[[:space:]]*=/ {print $2}' "$settings" 2>/dev/null || true)
if systemctl is-active --quiet apotheca-proxy.service 2>/dev/null; then
  if has apotheca-proxy || ((changed_units)); then
    run systemctl reload apotheca-proxy.service
  fi
elif [[ -n $cert && ! -f $cert ]]; then
  echo "    the proxy waits for its certificate $cert: README.md, step 4 (certificates), then"
  echo "    systemctl enable --now apotheca-proxy"
else
  run systemctl enable --now apotheca-proxy.service
fi
if ! systemctl is-enabled --quiet apotheca-backup.timer 2>/dev/null; then
  run systemctl enable --now apotheca-backup.timer
fi
say "done"
