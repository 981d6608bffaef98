#!/usr/bin/env bash
# Crash-safety soak outside CI: SIGKILL under load for many cycles (default 1000).
# Usage: scripts/crash-loop.sh [cycles]
set -euo pipefail
cd "$(dirname "$0")/.."
BALLAST_CRASH_CYCLES="${1:-1000}" cargo test --release --test crash -- --nocapture
