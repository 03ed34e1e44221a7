#!/usr/bin/env bash
# The browser tests: flow.mjs in Debian's Chromium (playwright-core drives it).
#
# By default through the whole system, as a user meets it (e2e/browser/system.sh): a
# throwaway private cluster, `apotheca serve` (the control daemon, which starts the public
# site's worker and wakes pharmacies' workers on demand) and `apotheca-proxy` in front, on
# ports it binds itself (port 0) and sockets of the run's own temp folder. The flow signs a new pharmacy up on the public
# site (http://localhost:PORT/), then works in it on its own subdomain
# (http://<subdomain>.localhost:PORT/): Chromium resolves *.localhost to loopback itself.
#
# Or against what already runs:
#   --site-url URL  a public site, e.g. http://localhost:8080 of `apotheca up`: the same flow.
#                   TAKEN_SUBDOMAIN (default acme) must be a pharmacy there; each run makes two
#                   sign-up attempts of the [worker] signups_per_hour allowed per address.
#   --base-url URL  one pharmacy, e.g. http://acme.localhost:8080: the flow from its login on,
#                   as its admin ADMIN_USER (default admin) with ADMIN_PASSWORD.
#
# Screenshots (and the receipt as PDF) go to target/browser-artifacts/; when the flow fails,
# the daemon's and workers', the proxy's and PostgreSQL's logs too. Chromium, Node.js, npm and
# curl are installed when missing (apt-get); only when Chromium cannot be are the tests
# skipped, saying so.
# Knobs: CHROMIUM (its path), APOTHECA_BIN_DIR (default target/debug), PATIENCE (seconds any
# one wait for the system may take, default 90), KEEP_LOGS=1 (the logs even when it passes),
# SKIP_NPM=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${APOTHECA_BIN_DIR:-$ROOT/target/debug}
ARTIFACTS=$ROOT/target/browser-artifacts
BASE_URL=${BASE_URL:-} SITE_URL=${SITE_URL:-}
log() { printf '[browser] %s\n' "$*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --base-url) BASE_URL=${2:?--base-url needs a URL}; shift 2 ;;
    --site-url) SITE_URL=${2:?--site-url needs a URL}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $BASE_URL && -n $SITE_URL ]]; then
  echo "browser tests: --base-url and --site-url exclude each other (see --help)" >&2
  exit 2
fi
if [[ -n $BASE_URL && -z ${ADMIN_PASSWORD:-} ]]; then
  echo "browser tests: set ADMIN_PASSWORD (and ADMIN_USER) for $BASE_URL" >&2
  exit 2
fi

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
apt_install() {
  { as_root apt-get install -y "$@" || { as_root apt-get update && as_root apt-get install -y "$@"; }; } >&2
}
if ! CHROMIUM=$(find_chromium); then
  log "Chromium is missing: apt-get install chromium"
  apt_install chromium || true
  if ! CHROMIUM=$(find_chromium); then
    echo "SKIPPED: browser tests: Chromium is not installed and could not be installed (apt-get install chromium failed or needs root)."
    exit 0
  fi
fi
export CHROMIUM

for tool in node npm curl; do
  if ! command -v "$tool" >/dev/null; then
    package=$tool
    [[ $tool == node ]] && package=nodejs
    log "$tool is missing: apt-get install $package"
    apt_install "$package" || { echo "browser tests: $tool is needed (apt-get install $package)" >&2; exit 1; }
  fi
done
if [[ -z ${SKIP_NPM:-} ]]; then
  lock=e2e/browser/package-lock.json installed=e2e/browser/node_modules/.package-lock.json
  if [[ ! -f $installed || $lock -nt $installed ]]; then
    log "npm ci (playwright-core)"
    (cd e2e/browser && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
fi

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

# shellcheck source=e2e/browser/system.sh
source e2e/browser/system.sh
trap stop_system EXIT
trap 'exit 130' INT TERM

if [[ -z $BASE_URL && -z $SITE_URL ]]; then
  if ! start_system; then
    keep_system_logs "$ARTIFACTS"
    exit 1
  fi
fi

log "flow against ${SITE_URL:-$BASE_URL} with $CHROMIUM"
status=0
BASE_URL=$BASE_URL SITE_URL=$SITE_URL TAKEN_SUBDOMAIN=${TAKEN_SUBDOMAIN:-acme} IMPORT_FILE=${IMPORT_FILE:-} \
  OPERATOR_USER=${OPERATOR_USER:-} OPERATOR_PASSWORD=${OPERATOR_PASSWORD:-} \
  ADMIN_USER=${ADMIN_USER:-admin} ADMIN_PASSWORD=${ADMIN_PASSWORD:-} ARTIFACTS=$ARTIFACTS \
  node e2e/browser/flow.mjs || status=$?
if [[ $status -ne 0 || -n ${KEEP_LOGS:-} ]]; then
  keep_system_logs "$ARTIFACTS"
fi
exit $status
