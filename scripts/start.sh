#!/usr/bin/env bash
# The README's start command: installs what is missing, builds, and brings Apotheca up
# (private PostgreSQL, migrations, demo tenants) with `apotheca up`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --bins
exec target/release/apotheca up "$@"
