# shellcheck shell=bash
# Sourced by run.sh: the whole system as a user meets it, in a throwaway folder ($STATE):
# a private PostgreSQL cluster with one pharmacy already there (acme, at acme.localhost),
# `apotheca serve` (the control daemon: the public site's worker, tenants' workers woken on
# demand) with its API socket and the workers' sockets in $STATE/run, and `apotheca-proxy` in
# front on ports of 127.0.0.1 it binds itself (port 0) and names. Every wait is on a real
# answer (the daemon's API, the proxy's line with its ports, then the public site through the
# proxy), bounded by $PATIENCE seconds; none is a fixed sleep.
#
# start_system sets SITE_URL (http://localhost:PORT), TAKEN_SUBDOMAIN, and for the console's
# import IMPORT_FILE (a Django pharmacy's SQLite file), OPERATOR_USER and OPERATOR_PASSWORD;
# stop_system stops
# the proxy, drains the daemon's workers, stops the cluster and removes the folder;
# keep_system_logs DIR copies the logs there first.

STATE='' DAEMON_PID='' PROXY_PID='' PROXY_PORT=''
# Set for run.sh by start_system.
export SITE_URL TAKEN_SUBDOMAIN IMPORT_FILE OPERATOR_USER OPERATOR_PASSWORD
# Seconds: only ever an upper bound on a wait (the machine is small and shared).
PATIENCE=${PATIENCE:-90}

# Polls until `command...` succeeds while process $pid runs, at most $PATIENCE seconds; a
# command that answers 2 has seen that waiting is pointless, and that is returned.
await() {
  local what=$1 pid=$2 deadline=$((SECONDS + PATIENCE)) rc
  shift 2
  while true; do
    rc=0
    "$@" || rc=$?
    ((rc == 0)) && return 0
    ((rc == 2)) && return 2
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "browser tests: $what: the process exited first" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "browser tests: $what: not within ${PATIENCE}s" >&2
      return 1
    fi
    sleep 0.1 # the poll's interval, not a wait for readiness
  done
}

# SIGTERM, then waits for the process to exit (SIGKILL past $PATIENCE seconds).
stop_pid() {
  local pid=$1 deadline=$((SECONDS + PATIENCE))
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "browser tests: pid $pid did not stop within ${PATIENCE}s; killed" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

daemon_answers() {
  curl -sf --max-time 10 --unix-socket "$STATE/run/apotheca.sock" -o /dev/null http://control/v1/status
}

# The proxy binds its listeners on port 0 and names the ports it got: its line
# "proxy serving http=127.0.0.1:PORT ...". Sets PROXY_PORT.
proxy_port() {
  local line
  line=$(grep -m1 'proxy serving' "$STATE/proxy.log") || return 1
  PROXY_PORT=$(sed -E 's/.* http=[^ ]*:([0-9]+).*/\1/' <<<"$line")
  [[ $PROXY_PORT =~ ^[0-9]+$ ]]
}

# The public site answers through the proxy: the route map is loaded, the proxy reached the
# daemon's endpoint feed and the public worker.
site_answers() {
  [[ $(curl -s --max-time 20 -o /dev/null -w '%{http_code}' "http://localhost:$PROXY_PORT/") == 200 ]]
}

start_system() {
  local b
  for b in apotheca apotheca-worker apotheca-proxy; do
    [[ -x $BIN/$b ]] || { echo "browser tests: $BIN/$b is missing; run cargo build --workspace --bins" >&2; return 1; }
  done
  STATE=$(mktemp -d "${TMPDIR:-/tmp}/apotheca-browser.XXXXXX")
  # The private cluster runs as the postgres user when this runs as root.
  chmod 755 "$STATE"
  mkdir -p "$STATE/run"
  # One settings file for every binary (workers inherit APOTHECA_CONFIG); only the proxy's
  # listeners come from the environment (port 0: it binds them and names the ports).
  cat >"$STATE/apotheca.toml" <<EOF
[private_db]
data_dir = "$STATE/pg"
run_dir = "$STATE/run"
unsafe_fast = true

[control]
state_dir = "$STATE"
spare_schemas = 0
signup_domain = "localhost"

[control.serve]
socket = "$STATE/run/apotheca.sock"
worker_dir = "$STATE/run/workers"
worker_bin = "$BIN/apotheca-worker"
# Generous: workers start slowly on a loaded 2-core machine.
ready_timeout_ms = 60000
wake_timeout_ms = 60000

[proxy]
public_hosts = ["localhost"]
control_socket = "$STATE/run/apotheca.sock"
upgrade_sock = "$STATE/run/proxy-upgrade.sock"
wake_timeout_ms = 60000
EOF
  export APOTHECA_CONFIG=$STATE/apotheca.toml
  unset DATABASE_URL
  log "private cluster and an existing pharmacy (in $STATE)"
  if ! (
    cd "$STATE"
    "$BIN/apotheca" migrate-schemas
    "$BIN/apotheca" create-tenant --name "Acme Pharmacy" --schema acme --domain acme.localhost
  ) >"$STATE/setup.log" 2>&1; then
    echo "browser tests: setting up the database failed:" >&2
    cat "$STATE/setup.log" >&2
    return 1
  fi
  TAKEN_SUBDOMAIN=acme
  import_pharmacy || return 1

  log "apotheca serve (API on $STATE/run/apotheca.sock)"
  (cd "$STATE" && exec "$BIN/apotheca" serve) >"$STATE/serve.out" 2>"$STATE/daemon-and-workers.log" &
  DAEMON_PID=$!
  await "the daemon's API (GET /v1/status)" "$DAEMON_PID" daemon_answers || return 1

  (cd "$STATE" && APOTHECA_PROXY__HTTP_LISTEN=127.0.0.1:0 APOTHECA_PROXY__ADMIN_LISTEN=127.0.0.1:0 \
    exec "$BIN/apotheca-proxy") >/dev/null 2>"$STATE/proxy.log" &
  PROXY_PID=$!
  await "the proxy's ports (its line \"proxy serving\")" "$PROXY_PID" proxy_port || {
    tail -n 30 "$STATE/proxy.log" >&2
    return 1
  }
  log "apotheca-proxy on 127.0.0.1:$PROXY_PORT"
  if ! await "the public site through the proxy" "$PROXY_PID" site_answers; then
    tail -n 30 "$STATE/proxy.log" >&2
    return 1
  fi
  SITE_URL=http://localhost:$PROXY_PORT
}

# A pharmacy to bring from the Django app through the operator console: a SQLite file Django
# makes with the import tests' models and rows (import/tests/django; Django comes from PyPI
# into the virtualenv the import tests use, scripts/django-venv.sh), and an operator.
import_pharmacy() {
  local python
  if ! python=$("$ROOT/scripts/django-venv.sh" 2>"$STATE/venv.log"); then
    echo "browser tests: making the Django virtualenv failed:" >&2
    cat "$STATE/venv.log" >&2
    return 1
  fi
  log "a Django pharmacy's SQLite file, and an operator to import it"
  IMPORT_FILE=$STATE/django.sqlite3 OPERATOR_USER=ops OPERATOR_PASSWORD="browser-ops-$RANDOM-pass"
  if ! (
    cd "$STATE"
    "$python" "$ROOT/import/tests/django/make_source.py" sqlite "$IMPORT_FILE"
    printf '%s\n' "$OPERATOR_PASSWORD" |
      "$BIN/apotheca" create-operator --username "$OPERATOR_USER" --password-stdin
  ) >"$STATE/import.log" 2>&1; then
    echo "browser tests: making the Django pharmacy or the operator failed:" >&2
    cat "$STATE/import.log" >&2
    return 1
  fi
}

keep_system_logs() {
  local dir=$1 f
  [[ -n $STATE ]] || return 0
  for f in setup.log serve.out daemon-and-workers.log proxy.log proxy-1.log proxy-2.log; do
    [[ -f $STATE/$f ]] && cp "$STATE/$f" "$dir/$f"
  done
  [[ -f $STATE/run/postgres.log ]] && cp "$STATE/run/postgres.log" "$dir/postgres.log"
  log "the daemon's and workers', the proxy's and the setup's logs are in $dir"
}

stop_system() {
  if [[ -n $PROXY_PID ]]; then stop_pid "$PROXY_PID"; PROXY_PID=; fi
  # The daemon drains its workers on SIGTERM.
  if [[ -n $DAEMON_PID ]]; then stop_pid "$DAEMON_PID"; DAEMON_PID=; fi
  if [[ -n $STATE ]]; then
    (cd "$STATE" && "$BIN/apotheca" db stop >/dev/null 2>&1) || true
    rm -rf "$STATE"
    STATE=
  fi
}
