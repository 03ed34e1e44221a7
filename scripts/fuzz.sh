#!/usr/bin/env bash
# The fuzz targets (fuzz/cargo-fuzz: Host normalisation, the proxy's request- and response-head
# parsers and its chunked decoder, the sale request body) under cargo fuzz — libFuzzer with
# AddressSanitizer — for FUZZ_SECS seconds each (default 60). cargo fuzz needs nightly compiler
# flags (-Z sanitizer=...): this toolchain is stable, so RUSTC_BOOTSTRAP=1 lets it take them. cargo-fuzz is installed when missing.
# A crash fails the run; its input is kept in fuzz/cargo-fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECS:-60}
targets=("$@")
((${#targets[@]})) || targets=(host request_head response_head chunked sale_body)
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz >&2
fi
export RUSTC_BOOTSTRAP=1
dir=fuzz/cargo-fuzz
cargo fuzz build --fuzz-dir "$dir"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t"
  echo "fuzzing $t for ${secs}s" >&2
  # The corpus grows in corpus/ (not committed); seeds/ are the committed starting inputs.
  if ! cargo fuzz run --fuzz-dir "$dir" "$t" "$dir/corpus/$t" "$dir/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t failed (its input: $dir/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units)' "$log" >&2 || true
done
