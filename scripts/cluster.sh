#!/usr/bin/env bash
# A local 3-member ballast cluster from the release binary, as the Procfile describes
# (infra1..3; clients on 127.0.0.1:2379/22379/32379, peers on 12380/22380/32380).
#
#   scripts/cluster.sh start [DIR]    start it; data dirs, logs and PIDs under DIR
#                                     (default ./cluster.ballast); waits until every member serves
#   scripts/cluster.sh stop [DIR]     stop the members started there (SIGTERM, then SIGKILL)
#   scripts/cluster.sh status [DIR]   etcdctl endpoint status of the three members
#
# BALLAST_BIN names another binary (default target/release/ballast, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-start}"
dir="${2:-cluster.ballast}"
bin="${BALLAST_BIN:-$PWD/target/release/ballast}"
token=etcd-cluster-1
initial="infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"
endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
# Seconds a member may take to serve (it waits for its peers to elect a leader).
ready_timeout_s=30

client_port() { case "$1" in 1) echo 2379 ;; 2) echo 22379 ;; 3) echo 32379 ;; esac; }

start() {
  if [ ! -x "$bin" ]; then
    cargo build --release --bin ballast
  fi
  mkdir -p "$dir"
  for i in 1 2 3; do
    if [ -f "$dir/infra$i.pid" ] && kill -0 "$(cat "$dir/infra$i.pid")" 2>/dev/null; then
      echo "infra$i is already running (pid $(cat "$dir/infra$i.pid"))" >&2
      exit 1
    fi
  done
  for i in 1 2 3; do
    local client="http://127.0.0.1:$(client_port $i)" peer="http://127.0.0.1:${i}2380"
    nohup "$bin" --name "infra$i" --data-dir "$dir/infra$i.ballast" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster-token "$token" --initial-cluster "$initial" --initial-cluster-state new \
      </dev/null >/dev/null 2>"$dir/infra$i.log" &
    echo $! >"$dir/infra$i.pid"
  done
  for i in 1 2 3; do
    local waited=0
    until grep -q 'ready to serve client requests' "$dir/infra$i.log"; do
      if ! kill -0 "$(cat "$dir/infra$i.pid")" 2>/dev/null; then
        echo "infra$i exited; its log:" >&2
        cat "$dir/infra$i.log" >&2
        exit 1
      fi
      if [ "$waited" -ge $((ready_timeout_s * 10)) ]; then
        echo "infra$i did not serve within ${ready_timeout_s}s; see $dir/infra$i.log" >&2
        exit 1
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
  done
  echo "cluster up: --endpoints=$endpoints (logs and PIDs in $dir)"
}

stop() {
  for i in 1 2 3; do
    local pidfile="$dir/infra$i.pid"
    [ -f "$pidfile" ] || continue
    local pid
    pid="$(cat "$pidfile")"
    # Only a ballast process: the PID may have been reused since.
    if grep -qa ballast "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  echo "cluster stopped (data kept in $dir)"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) etcdctl --endpoints="$endpoints" endpoint status -w table ;;
  *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 2 ;;
esac
