#!/usr/bin/env bash
# Puts/s and put latency beside N idle watchers, each on its own key nobody writes (the watch
# hub must find an event's watchers from its key, not by visiting every watcher).
# usage: bench/probes/idle_watchers.sh SERVER_BINARY [N=20000] [SECS=8] [CONCURRENT_PUTS=64]
# Starts the server on 127.0.0.1:23790 with a fresh data dir, prints the watchers' creation
# time, puts/s, p50/p99 and the server's CPU ticks (1/100 s) over the whole run. etcd binaries
# are recognised by their name ending in "etcd". Needs python3 with grpcio and grpcio-tools.
set -euo pipefail
BIN=$1; N=${2:-20000}; SECS=${3:-8}; CONC=${4:-64}
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 -m grpc_tools.protoc -I"$REPO/proto" --python_out="$WORK" --grpc_python_out="$WORK" "$REPO/proto/rpc.proto" "$REPO/proto/kv.proto" "$REPO/proto/auth.proto"
URL=http://127.0.0.1:23790
if [[ $BIN == *etcd ]]; then
  "$BIN" --data-dir "$WORK/data" --listen-client-urls $URL --advertise-client-urls $URL --listen-peer-urls http://127.0.0.1:23800 >"$WORK/server.log" 2>&1 &
else
  "$BIN" --data-dir "$WORK/data" --listen-client-urls $URL --advertise-client-urls $URL >"$WORK/server.log" 2>&1 &
fi
PID=$!; sleep 2
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
PYTHONPATH="$WORK" timeout 300 python3 "$HERE/idle_watchers.py" 127.0.0.1:23790 "$N" "$SECS" "$CONC"
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "server CPU ticks $((T1 - T0)), $(grep VmRSS /proc/$PID/status | tr -s ' \t' ' ')"
