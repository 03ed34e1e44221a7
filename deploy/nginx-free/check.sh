#!/usr/bin/env bash
# CI's checks of deploy/: every settings file under deploy/ passes --validate-config for all
# three binaries; the systemd units verify cleanly with systemd-analyze (when it exists: a
# copy of each unit pointing at this build's binaries, since /usr/local/bin holds none here;
# any warning fails); every script parses (bash -n) and passes shellcheck (when installed);
# install.sh --dry-run runs through.
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

scripts=(deploy/nginx-free/*.sh)
for script in "${scripts[@]}"; do
  bash -n "$script" || fail "bash -n $script"
done
if command -v shellcheck >/dev/null 2>&1; then
  (cd deploy/nginx-free && shellcheck -x ./*.sh) || fail "shellcheck"
  echo "ok: bash -n and shellcheck on ${#scripts[@]} scripts"
else
  echo "ok: bash -n on ${#scripts[@]} scripts (shellcheck is not installed)"
fi

if ! out=$(deploy/nginx-free/install.sh --dry-run --bin-dir "$bin_dir" 2>&1); then
  fail "install.sh --dry-run: $out"
elif grep -q '^==> done' <<<"$out"; then
  echo "ok: install.sh --dry-run"
else
  fail "install.sh --dry-run did not run through: $out"
fi

((failed == 0)) || exit 1
