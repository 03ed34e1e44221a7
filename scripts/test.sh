#!/usr/bin/env bash
# The README's test command: installs what is missing, builds every binary, and runs every
# test against one fresh private PostgreSQL cluster (in the temp dir), stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

export APOTHECA_TEST_PG_DIR="${TMPDIR:-/tmp}/apotheca-test-$(printf %s "$PWD" | sha256sum | cut -c1-10)"
stop_cluster() {
  if [[ -x target/debug/apotheca && -d $APOTHECA_TEST_PG_DIR/pg ]]; then
    env -u DATABASE_URL -u APOTHECA_CONFIG \
      APOTHECA_PRIVATE_DB__DATA_DIR="$APOTHECA_TEST_PG_DIR/pg" \
      APOTHECA_PRIVATE_DB__RUN_DIR="$APOTHECA_TEST_PG_DIR/run" \
      target/debug/apotheca db stop >/dev/null || true
  fi
}
# One cluster per run: stop and remove the last run's, and stop this one whatever happens.
stop_cluster
rm -rf "$APOTHECA_TEST_PG_DIR"
trap stop_cluster EXIT

# Integration tests run the binaries of other packages too (e.g. apotheca-worker).
cargo build --workspace --bins
cargo test --workspace "$@"

# The whole system in a real browser: Debian's Chromium (installed when missing; skipped,
# saying so, only when it cannot be) through the proxy, the daemon and its workers, from the
# public sign-up on.
e2e/browser/run.sh
