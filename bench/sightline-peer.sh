#!/usr/bin/env bash
# Starts Sightline as a peer of the side-by-side gRPC benchmark: h2c on
# 127.0.0.1:PORT, every call balanced round robin over BACKENDS
# (comma-separated host:port), access to nothing else.
#
#   sightline-peer.sh PORT BACKENDS RUNDIR [SIGHTLINE_BINARY]
#
# It writes RUNDIR/sightline.yaml and execs the proxy, so the process the
# benchmark measures is the proxy itself. With BENCH_TLS_DIR set (compare.sh
# TLS=1) the listener serves TLS (ALPN h2) with its server.pem and server.key,
# and the cluster speaks TLS to the backends, verifying them with its ca.pem.
# With BENCH_OBS=1 (compare.sh OBS=1) every call is logged to
# RUNDIR/access.log, stats are pushed to statsd on 127.0.0.1:8125 every
# second, and 1 % of traces are sampled and exported over OTLP to
# 127.0.0.1:4317 (nothing listens there in the benchmark: the spans are
# made, batched and encoded, and the export fails).
set -euo pipefail
port=$1 backends=$2 rundir=$3
bin=${4:-${SIGHTLINE:-sightline}}
tls=${BENCH_TLS_DIR:-}
obs=${BENCH_OBS:-0}
mkdir -p "$rundir"
{
  echo "admin: {address: 127.0.0.1:0}"
  if [ "$obs" = 1 ]; then
    echo "stats: {sinks: [{statsd: {address: 127.0.0.1:8125}}]}"
    echo "tracing: {sampling: 1, otlp: {endpoint: 127.0.0.1:4317, protocol: grpc, insecure: true}}"
  fi
  echo "listeners:"
  echo "  - name: bench"
  echo "    address: 127.0.0.1:$port"
  [ -n "$tls" ] && echo "    tls: {cert_file: $tls/server.pem, key_file: $tls/server.key}"
  [ "$obs" = 1 ] && echo "    access_log: [{path: $rundir/access.log}]"
  echo "    virtual_hosts:"
  echo "      - name: all"
  echo "        domains: ['*']"
  echo "        routes:"
  echo "          - match: {prefix: /}"
  echo "            cluster: backends"
  echo "clusters:"
  echo "  - name: backends"
  echo "    lb_policy: round_robin"
  [ -n "$tls" ] && echo "    tls: {sni: localhost, ca_file: $tls/ca.pem}"
  echo "    endpoints:"
  IFS=, read -ra eps <<<"$backends"
  for ep in "${eps[@]}"; do echo "      - {address: $ep}"; done
} >"$rundir/sightline.yaml"
exec "$bin" -c "$rundir/sightline.yaml" --log-level warn
