#!/usr/bin/env bash
# The browser tests: flow.mjs in Debian's Chromium (playwright-core drives it), against
#   - a pharmacy of its own: a throwaway private cluster, a tenant with `apotheca seed-data`,
#     and one `apotheca-worker` on tcp:127.0.0.1:0 (the default), or
#   - any running pharmacy: tests/browser/run.sh --base-url URL, with its admin's login in
#     ADMIN_USER (default admin) and ADMIN_PASSWORD (e.g. through the proxy).
# Screenshots (and the receipt as PDF) go to target/browser-artifacts/. Chromium is installed
# when missing (apt-get); only when that is impossible are the tests skipped, saying so.
# Knobs: CHROMIUM (its path), APOTHECA_BIN_DIR (default target/debug), SKIP_NPM=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${APOTHECA_BIN_DIR:-$ROOT/target/debug}
ARTIFACTS=$ROOT/target/browser-artifacts
BASE_URL=${BASE_URL:-}
log() { printf '[browser] %s\n' "$*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --base-url) BASE_URL=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

find_chromium() {
  local c
  for c in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [[ -n $c && -x $c ]]; then echo "$c"; return 0; fi
  done
  return 1
}
as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}
if ! CHROMIUM=$(find_chromium); then
  log "Chromium is missing: apt-get install chromium"
  { as_root apt-get install -y chromium || { as_root apt-get update && as_root apt-get install -y chromium; }; } >&2 || true
  if ! CHROMIUM=$(find_chromium); then
    echo "SKIPPED: browser tests: Chromium is not installed and could not be installed (apt-get install chromium failed or needs root)."
    exit 0
  fi
fi
export CHROMIUM

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "Node.js is missing: apt-get install nodejs npm"
  as_root apt-get install -y nodejs npm >&2 || { echo "browser tests: Node.js and npm are needed" >&2; exit 1; }
fi
if [[ -z ${SKIP_NPM:-} ]]; then
  lock=tests/browser/package-lock.json installed=tests/browser/node_modules/.package-lock.json
  if [[ ! -f $installed || $lock -nt $installed ]]; then
    log "npm ci (playwright-core)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
fi

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

STATE= WORKER_PID=
cleanup() {
  if [[ -n $WORKER_PID ]]; then kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true; fi
  if [[ -n $STATE ]]; then
    (cd "$STATE" && "$BIN/apotheca" db stop >/dev/null 2>&1) || true
    rm -rf "$STATE"
  fi
}
trap cleanup EXIT

if [[ -z $BASE_URL ]]; then
  for b in apotheca apotheca-worker; do
    [[ -x $BIN/$b ]] || { echo "browser tests: $BIN/$b is missing; run cargo build --workspace --bins" >&2; exit 1; }
  done
  STATE=$(mktemp -d "${TMPDIR:-/tmp}/apotheca-browser.XXXXXX")
  chmod 755 "$STATE"
  export APOTHECA_PRIVATE_DB__DATA_DIR=$STATE/pg APOTHECA_PRIVATE_DB__RUN_DIR=$STATE/run
  export APOTHECA_PRIVATE_DB__UNSAFE_FAST=true APOTHECA_CONTROL__STATE_DIR=$STATE APOTHECA_CONTROL__SPARE_SCHEMAS=0
  unset DATABASE_URL APOTHECA_CONFIG
  log "private cluster, tenant, sample data (in $STATE)"
  if ! (
    cd "$STATE"
    "$BIN/apotheca" migrate-schemas
    "$BIN/apotheca" create-tenant --name "Browser Pharmacy" --schema browser --domain browser.localhost
  ) >"$STATE/setup.log" 2>&1 || ! (cd "$STATE" && "$BIN/apotheca" seed-data --schema browser >"$STATE/seed.txt" 2>>"$STATE/setup.log"); then
    echo "browser tests: setting up the pharmacy failed:" >&2
    cat "$STATE/setup.log" >&2
    exit 1
  fi
  ADMIN_USER=admin
  ADMIN_PASSWORD=$(awk '$1 == "login" && $2 == "admin" {print $4}' "$STATE/seed.txt")
  [[ -n $ADMIN_PASSWORD ]] || { echo "browser tests: no admin password in the seed output" >&2; exit 1; }
  URL=$(cd "$STATE" && "$BIN/apotheca" db url --schema browser)
  # The worker says "ready tcp:127.0.0.1:PORT" on descriptor 3 once it listens and the
  # database answered; a worker that dies first closes the pipe, so the read cannot hang.
  mkfifo "$STATE/ready"
  DATABASE_URL=$URL "$BIN/apotheca-worker" --schema browser --listen tcp:127.0.0.1:0 --ready-fd 3 \
    3>"$STATE/ready" >"$STATE/worker.out" 2>"$STATE/worker.log" &
  WORKER_PID=$!
  if ! read -r -t 30 _ ADDRESS <"$STATE/ready" || [[ $ADDRESS != tcp:* ]]; then
    echo "browser tests: the worker did not start:" >&2
    cat "$STATE/worker.log" >&2
    exit 1
  fi
  BASE_URL=http://${ADDRESS#tcp:}
fi
[[ -n ${ADMIN_PASSWORD:-} ]] || { echo "browser tests: set ADMIN_PASSWORD (and ADMIN_USER) for $BASE_URL" >&2; exit 2; }

log "flow against $BASE_URL with $CHROMIUM"
status=0
BASE_URL=$BASE_URL ADMIN_USER=${ADMIN_USER:-admin} ADMIN_PASSWORD=$ADMIN_PASSWORD ARTIFACTS=$ARTIFACTS \
  node tests/browser/flow.mjs || status=$?
if [[ $status -ne 0 && -n $STATE ]]; then
  cp "$STATE/worker.log" "$ARTIFACTS/worker.log" 2>/dev/null || true
  log "the worker's log is in $ARTIFACTS/worker.log"
fi
exit $status
