#!/usr/bin/env bash
# The README's start command: installs what is missing, builds, and brings the whole system up
# with `apotheca up` (private PostgreSQL, migrations, demo tenants, control daemon, proxy) until
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --bins
exec target/release/apotheca up "$@"
