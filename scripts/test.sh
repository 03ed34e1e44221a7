#!/usr/bin/env bash
# The README's test command: installs what is missing, builds every binary, and runs every
# test against one fresh private PostgreSQL cluster (in the temp dir), stopped at the end.
# Then the Citus pass: the tests that matter most again, on a Citus coordinator with two worker
# nodes of a private cluster of their own (APOTHECA_TEST_CITUS=1). Citus is built once per
# machine by ../shared/citus/install.sh (APOTHECA_CITUS_DIR; it installs into the system's
# PostgreSQL, so later runs and clones find it built, keyed by its version); when it cannot be
# built, the pass is skipped, saying why. Arguments go to both `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

export APOTHECA_TEST_PG_DIR="${TMPDIR:-/tmp}/apotheca-test-$(printf %s "$PWD" | sha256sum | cut -c1-10)"
# The Citus pass's cluster (the test kit adds this suffix).
CITUS_PG_DIR="$APOTHECA_TEST_PG_DIR-citus"
stop_cluster() {
  local dir
  for dir in "$APOTHECA_TEST_PG_DIR" "$CITUS_PG_DIR"; do
    if [[ -x target/debug/apotheca && -d $dir/pg ]]; then
      env -u DATABASE_URL -u APOTHECA_CONFIG \
        APOTHECA_PRIVATE_DB__DATA_DIR="$dir/pg" \
        APOTHECA_PRIVATE_DB__RUN_DIR="$dir/run" \
        target/debug/apotheca db stop >/dev/null || true
    fi
  done
}
# One cluster per run: stop and remove the last run's, and stop this one whatever happens.
stop_cluster
rm -rf "$APOTHECA_TEST_PG_DIR" "$CITUS_PG_DIR"
trap stop_cluster EXIT

# Integration tests run the binaries of other packages too (e.g. apotheca-worker).
cargo build --workspace --bins
cargo test --workspace "$@"

# The Citus pass (issue #23): the tenant life cycle and migrations, tenant roles' isolation,
# sign-up, seeding, the daemon, the sales and the worker's API rules, a PostgreSQL restart,
# and what only Citus has (control/tests/citus.rs).
CITUS_DIR=${APOTHECA_CITUS_DIR:-}
if [[ -z $CITUS_DIR ]]; then
  for dir in ../shared/citus /work/shared/citus; do
    if [[ -x $dir/install.sh ]]; then CITUS_DIR=$dir; break; fi
  done
fi
if [[ -z $CITUS_DIR ]]; then
  echo "Citus pass skipped: no Citus source (install.sh) in ../shared/citus or /work/shared/citus; set APOTHECA_CITUS_DIR" >&2
elif ! "$CITUS_DIR/install.sh"; then
  echo "Citus pass skipped: $CITUS_DIR/install.sh could not build Citus (see above)" >&2
else
  APOTHECA_TEST_CITUS=1 cargo test \
    -p apotheca-control --test citus --test tenancy --test isolation --test signup \
      --test seed --test serve --test input --test resilience_db --test deploy_backup \
    -p apotheca-worker --test sales --test access --test accounts --test rules \
      --test medicines --test admin_reports --test pages_forms --test caches "$@"
fi

# The whole system in a real browser: Debian's Chromium (installed when missing; skipped,
# saying so, only when it cannot be) through the proxy, the daemon and its workers, from the
# public sign-up on.
e2e/browser/run.sh
