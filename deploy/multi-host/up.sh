#!/usr/bin/env bash
# A local Apotheca cluster for development, until Ctrl-C: one database, two Apotheca hosts
# (host-a and host-b: each an `apotheca up` with its own settings file, folders and ports, so
# its own proxy, control daemon and workers) and Debian's HAProxy in front of them with this
# folder's haproxy.cfg. Ctrl-C (or SIGTERM) stops HAProxy, then each host (its workers drain),
# then the database if this script started it.
#
#   deploy/multi-host/up.sh                  installs what is missing, builds, starts
#   deploy/multi-host/up.sh --no-build       uses the binaries already built
#
# Options:
#   --dir DIR      the hosts' folders, settings and logs (default var/multi-host)
#   --http PORT    HAProxy's HTTP port on 127.0.0.1 (8080); host-a's proxy takes PORT+1,
#                  host-b's PORT+2
#   --https PORT   HAProxy's HTTPS port (8443); the hosts PORT+1 and PORT+2
#   --admin PORT   the hosts' admin listeners (/ready, /metrics) are PORT+1 and PORT+2 (9180)
#   --no-build     skip scripts/deps.sh and the build; the binaries are APOTHECA_BIN_DIR's
#                  (default target/release)
#
# The database is DATABASE_URL when it is set (its admin URL), else the private cluster in
# DIR/pg, started here. The hosts share the server secret (DIR/secret, copied into each host's
# folder). The first host creates and seeds the demo tenants on an empty system; the second
# starts once the first serves. Each host's proxy believes the client's address that 127.0.0.1
# (HAProxy) gives: X-Forwarded-For on HTTP, a PROXY header on HTTPS (so reach a host's HTTPS
# directly with `curl --haproxy-protocol`).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/var/multi-host"
http=8080
https=8443
admin=9180
build=1

die() {
  echo "up.sh: $*" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a folder}"; shift 2 ;;
    --http) http="${2:?--http needs a port}"; shift 2 ;;
    --https) https="${2:?--https needs a port}"; shift 2 ;;
    --admin) admin="${2:?--admin needs a port}"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
for port in "$http" "$https" "$admin"; do
  if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65533)); then
    die "not a port: $port"
  fi
done

if ((build)); then
  "$root/scripts/deps.sh"
  (cd "$root" && cargo build --release --bins)
fi
bin="${APOTHECA_BIN_DIR:-$root/target/release}"
for program in apotheca apotheca-proxy apotheca-worker; do
  [[ -x "$bin/$program" ]] || die "$bin/$program is missing (build first, or drop --no-build)"
done
haproxy="$(command -v haproxy || echo /usr/sbin/haproxy)"
[[ -x "$haproxy" ]] || die "haproxy is missing (scripts/deps.sh installs it)"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
cd "$dir"

pids=()
db_started=0
stopping=0
# Stops what this script started, newest first: HAProxy, then each host (SIGTERM: its proxy
# stops and its workers drain), then the private database.
# shellcheck disable=SC2317 # called by the traps
stop_all() {
  ((stopping)) && return
  stopping=1
  echo "stopping the cluster"
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if ((db_started)); then
    env "${db_env[@]}" "$bin/apotheca" db stop || true
  fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

db_env=(APOTHECA_PRIVATE_DB__DATA_DIR="$dir/pg" APOTHECA_PRIVATE_DB__RUN_DIR="$dir/pg-run")
# Without DATABASE_URL, the hosts' settings name the private cluster, so that `apotheca
# --config DIR/host-a/apotheca.toml ...` finds it too.
db_section=""
if [[ -z "${DATABASE_URL:-}" ]]; then
  if ! env "${db_env[@]}" "$bin/apotheca" db status >/dev/null 2>&1; then
    env "${db_env[@]}" "$bin/apotheca" db start
    db_started=1
  fi
  db_section="[private_db]
data_dir = \"$dir/pg\"
run_dir = \"$dir/pg-run\""
fi

if [[ ! -s "$dir/secret" ]]; then
  (umask 077 && head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 48 >"$dir/secret")
fi

# host <name> <n>: its folder and settings file; n is its offset from the front ports.
host_settings() {
  local name="$1" n="$2" home="$dir/$1"
  mkdir -p "$home/run"
  (umask 077 && cp "$dir/secret" "$home/secret")
  cat >"$home/apotheca.toml" <<EOF
# $name of the local multi-host cluster, written by deploy/multi-host/up.sh.
$db_section

[control]
state_dir = "$home"

[control.serve]
socket = "$home/run/apotheca.sock"
worker_dir = "$home/run/workers"
host_name = "$name"
host_address = "127.0.0.1:$((http + n))"

[proxy]
http_listen = "127.0.0.1:$((http + n))"
https_listen = "127.0.0.1:$((https + n))"
admin_listen = "127.0.0.1:$((admin + n))"
control_socket = "$home/run/apotheca.sock"
upgrade_sock = "$home/run/proxy-upgrade.sock"
# HAProxy names each client: in X-Forwarded-For on HTTP, in a PROXY header on HTTPS.
forwarded_for_from = ["127.0.0.1"]
proxy_protocol_from = ["127.0.0.1"]
EOF
}

# Waits until a URL answers 200 (or the process behind it exits).
wait_for() {
  local url="$1" pid="$2" what="$3" i
  for ((i = 0; i < 600; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "${@:4}" "$url" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$what exited; see its log"
    sleep 0.5
  done
  die "$what did not answer $url within 5 minutes"
}

for entry in "host-a 1" "host-b 2"; do
  read -r name n <<<"$entry"
  host_settings "$name" "$n"
  echo "starting $name (log: $dir/$name/up.log)"
  # Its own session: a terminal's Ctrl-C reaches this script alone, which stops the others in
  # order.
  setsid "$bin/apotheca" --config "$dir/$name/apotheca.toml" up >"$dir/$name/up.log" 2>&1 &
  pids+=("$!")
  wait_for "http://127.0.0.1:$((admin + n))/ready" "$!" "$name"
done

echo "starting HAProxy (log: $dir/haproxy.log)"
APOTHECA_HTTP_BIND="127.0.0.1:$http" APOTHECA_HTTPS_BIND="127.0.0.1:$https" \
  APOTHECA_HAPROXY_SOCKET="$dir/haproxy.sock" \
  APOTHECA_HOST_A_HTTP="127.0.0.1:$((http + 1))" APOTHECA_HOST_A_HTTPS="127.0.0.1:$((https + 1))" \
  APOTHECA_HOST_A_ADMIN_ADDR=127.0.0.1 APOTHECA_HOST_A_ADMIN_PORT="$((admin + 1))" \
  APOTHECA_HOST_B_HTTP="127.0.0.1:$((http + 2))" APOTHECA_HOST_B_HTTPS="127.0.0.1:$((https + 2))" \
  APOTHECA_HOST_B_ADMIN_ADDR=127.0.0.1 APOTHECA_HOST_B_ADMIN_PORT="$((admin + 2))" \
  setsid "$haproxy" -db -f "$root/deploy/multi-host/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$http/" "$!" "HAProxy" -H "Host: localhost"

cat <<EOF

The cluster is up: HAProxy in front of host-a and host-b, one database.
  http://acme.localhost:$http/   https://acme.localhost:$https/   (each pharmacy on one host)
  http://localhost:$http/        the public site, on either host
  the demo pharmacies' logins (on an empty system): $dir/host-a/up.log
  hosts and where each pharmacy runs:
    $bin/apotheca --config $dir/host-a/apotheca.toml status --cluster
  take host-a out for an upgrade (and "state ready" to bring it back):
    echo "set server apotheca_http/host-a state drain" | socat stdio $dir/haproxy.sock
Ctrl-C stops everything.
EOF

# Whichever ends first, the others are stopped.
set +e
wait -n "${pids[@]}"
status=$?
((stopping)) || echo "up.sh: a process of the cluster exited ($status)" >&2
exit 1
