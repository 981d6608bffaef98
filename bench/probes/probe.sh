#!/usr/bin/env bash
# Runs one probe (a python gRPC client beside this script) against a fresh server:
#   bench/probes/probe.sh SERVER_BINARY idle_watchers.py N SECS CONCURRENT_PUTS
#     puts/s and put latency beside N idle watchers, each on its own key nobody writes
#     (the watch hub must find an event's watchers from its key, not visit every watcher);
#     e.g. 20000 8 64
#   bench/probes/probe.sh SERVER_BINARY catch_up.py N
#     N revisions written, then a watcher from revision 2 caught up while a reader does
#     serial gets: time to catch up and the reader's latency meanwhile; e.g. 200000
#   bench/probes/probe.sh SERVER_BINARY hashkv_pause.py N
#     N keys written twice, then three HashKVs beside a writer at 500 puts/s: the writer's
#     latency before and during them, and each HashKV's time; e.g. 300000
#   TLS=1 bench/probes/probe.sh SERVER_BINARY tls_storm.py N
#     N clients open a TLS connection each at once beside a writer at 500 puts/s: the
#     writer's latency before and during the storm; e.g. 256
# With TLS=1 the client URL is https, with an RSA 2048 server certificate (as kubeadm makes)
# signed by a CA made with openssl for the run; the probe gets the CA file after the address.
# The server listens on 127.0.0.1:23790 with a fresh data dir; the server's CPU ticks (1/100
# s) over the whole run and its RSS are printed after the probe's own figures. etcd binaries
# are recognised by their name ending in "etcd". Needs python3 with grpcio and grpcio-tools.
set -euo pipefail
BIN=$1; PROBE=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 -m grpc_tools.protoc -I"$REPO/proto" --python_out="$WORK" --grpc_python_out="$WORK" "$REPO/proto/rpc.proto" "$REPO/proto/kv.proto" "$REPO/proto/auth.proto"
URL=http://127.0.0.1:23790; TLS_FLAGS=(); CA_ARG=()
if [[ ${TLS:-0} == 1 ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=probe-ca -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$WORK/san.ext"
  openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 1 -extfile "$WORK/san.ext" -out "$WORK/server.crt" 2>/dev/null
  URL=https://127.0.0.1:23790; TLS_FLAGS=(--cert-file "$WORK/server.crt" --key-file "$WORK/server.key"); CA_ARG=("$WORK/ca.crt")
fi
if (exec 3<>/dev/tcp/127.0.0.1/23790) 2>/dev/null; then
  echo "probe.sh: 127.0.0.1:23790 is in use by another process; stop it first" >&2; exit 1
fi
if [[ $BIN == *etcd ]]; then
  "$BIN" --data-dir "$WORK/data" --listen-client-urls $URL --advertise-client-urls $URL --listen-peer-urls http://127.0.0.1:23800 "${TLS_FLAGS[@]}" >"$WORK/server.log" 2>&1 &
else
  "$BIN" --data-dir "$WORK/data" --listen-client-urls $URL --advertise-client-urls $URL "${TLS_FLAGS[@]}" >"$WORK/server.log" 2>&1 &
fi
PID=$!; sleep 2
kill -0 $PID 2>/dev/null || { echo "probe.sh: the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
PYTHONPATH="$WORK" timeout 300 python3 "$HERE/$PROBE" 127.0.0.1:23790 "${CA_ARG[@]}" "$@"
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "server CPU ticks $((T1 - T0)), $(grep -E 'VmRSS|VmHWM' /proc/$PID/status | tr -s ' \t' ' ' | tr '\n' ' ')"
