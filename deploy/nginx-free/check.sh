#!/usr/bin/env bash
# CI's checks of deploy/: every settings file under deploy/ passes --validate-config for all
# three binaries; the systemd units verify cleanly with systemd-analyze (when it exists: a
# copy of each unit pointing at this build's binaries, since /usr/local/bin holds none here;
# any warning fails); every script parses (bash -n) and passes shellcheck (when installed);
# deploy/multi-host/haproxy.cfg passes `haproxy -c` (when installed); install.sh --dry-run
# runs through.
#
#   deploy/nginx-free/check.sh [BIN_DIR]   (default: target/debug; cargo build --bins first)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin_dir=$(cd "${1:-target/debug}" && pwd)
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

while IFS= read -r -d '' file; do
  for bin in apotheca apotheca-worker apotheca-proxy; do
    if ! out=$(env -u DATABASE_URL -u APOTHECA_CONFIG "$bin_dir/$bin" --config "$file" --validate-config 2>&1); then
      fail "$bin --config $file --validate-config: $out"
    fi
  done
  echo "ok: $file (apotheca, apotheca-worker, apotheca-proxy --validate-config)"
done < <(find deploy -name '*.toml' -print0)

if command -v systemd-analyze >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  scripts_dir=$(cd deploy/nginx-free && pwd)
  for unit in deploy/nginx-free/*.service deploy/nginx-free/*.timer; do
    sed "s#/usr/local/bin/#$bin_dir/#g; s#/usr/local/lib/apotheca/#$scripts_dir/#g" "$unit" \
      >"$tmp/$(basename "$unit")"
  done
  if ! out=$(cd "$tmp" && systemd-analyze verify "$tmp"/*.service "$tmp"/*.timer 2>&1) || [[ -n $out ]]; then
    fail "systemd-analyze verify: $out"
  else
    echo "ok: systemd-analyze verify $(cd deploy/nginx-free && echo ./*.service ./*.timer)"
  fi
else
  echo "skipped: systemd-analyze is not installed"
fi

scripts=(deploy/nginx-free/*.sh deploy/multi-host/*.sh)
for script in "${scripts[@]}"; do
  bash -n "$script" || fail "bash -n $script"
done
if command -v shellcheck >/dev/null 2>&1; then
  (cd deploy/nginx-free && shellcheck -x ./*.sh) || fail "shellcheck"
  (cd deploy/multi-host && shellcheck -x ./*.sh) || fail "shellcheck"
  echo "ok: bash -n and shellcheck on ${#scripts[@]} scripts"
else
  echo "ok: bash -n on ${#scripts[@]} scripts (shellcheck is not installed)"
fi

haproxy="$(command -v haproxy || echo /usr/sbin/haproxy)"
if [[ -x "$haproxy" ]]; then
  # The multi-host balancer's file, with addresses of the kind its header names.
  env APOTHECA_HTTP_BIND=127.0.0.1:80 APOTHECA_HTTPS_BIND=127.0.0.1:443 \
    APOTHECA_HAPROXY_SOCKET="$(mktemp -u)" \
    APOTHECA_HOST_A_HTTP=127.0.0.2:80 APOTHECA_HOST_A_HTTPS=127.0.0.2:443 \
    APOTHECA_HOST_A_ADMIN_ADDR=127.0.0.2 APOTHECA_HOST_A_ADMIN_PORT=9180 \
    APOTHECA_HOST_B_HTTP=127.0.0.3:80 APOTHECA_HOST_B_HTTPS=127.0.0.3:443 \
    APOTHECA_HOST_B_ADMIN_ADDR=127.0.0.3 APOTHECA_HOST_B_ADMIN_PORT=9180 \
    "$haproxy" -c -q -f deploy/multi-host/haproxy.cfg || fail "haproxy -c deploy/multi-host/haproxy.cfg"
  echo "ok: deploy/multi-host/haproxy.cfg (haproxy -c)"
else
  echo "skipped: haproxy is not installed"
fi

if ! out=$(deploy/nginx-free/install.sh --dry-run --bin-dir "$bin_dir" 2>&1); then
  fail "install.sh --dry-run: $out"
elif grep -q '^==> done' <<<"$out"; then
  echo "ok: install.sh --dry-run"
else
  fail "install.sh --dry-run did not run through: $out"
fi

((failed == 0)) || exit 1
