# Shared by the benchmarks that run whole systems (compare/run.sh, density.sh, import.sh,
# multihost.sh): progress lines, timing, a free loopback port, the books' check, stopping the
# processes a run started (by PID, from PIDS), the PIDs of process trees and what they use.
# Sourced, not run.
# shellcheck shell=bash
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# How many of a pharmacy's batches and invoice lines disagree with its ledger (0: the books
# agree): a batch below zero or not the sum of its movements, a line not the sum of its
# allocations. Run in the tenant's schema.
# shellcheck disable=SC2034 # used by the scripts that source this
BOOKS_SQL="SELECT
    (SELECT count(*) FROM batches b WHERE b.quantity_on_hand < 0 OR b.quantity_on_hand <>
        (SELECT coalesce(sum(m.quantity), 0) FROM stock_movements m WHERE m.batch_id = b.id))
  + (SELECT count(*) FROM invoice_lines l WHERE l.quantity <>
        (SELECT coalesce(sum(a.quantity), 0) FROM invoice_line_batches a WHERE a.invoice_line_id = l.id))"
# Stops this run's processes (PIDS), by PID.
stop_pids() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
# Root PIDs -> every PID under them (themselves included).
tree() {
  ps -e -o pid=,ppid= | awk -v roots="$*" '
    { parent[$1] = $2 } END {
      n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1
      changed = 1; while (changed) { changed = 0
        for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
      for (p in keep) print p }'
}
# A system = the process trees under some root PIDs.
HZ=$(getconf CLK_TCK)
# CPU seconds used so far by the trees (own time of every live process + children it reaped)
ticks() {
  local p total=0
  for p in $(tree "$@"); do
    total=$(awk -v t="$total" '{ sub(/^.*\) /, ""); print t + $12 + $13 + $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo "$total")
  done
  awk -v t="$total" -v hz="$HZ" 'BEGIN { printf "%.3f", t / hz }'
}
# "rss_mib pss_mib processes" of the trees
memory() {
  local p rss=0 pss=0 n=0 r s
  for p in $(tree "$@"); do
    r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
    s=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
    [[ -n $r && -n $s ]] || continue
    rss=$((rss + r)); pss=$((pss + s)); n=$((n + 1))
  done
  awk -v r="$rss" -v s="$pss" -v n="$n" 'BEGIN { printf "%.1f %.1f %d", r / 1024, s / 1024, n }'
}
