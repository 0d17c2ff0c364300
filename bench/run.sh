#!/usr/bin/env bash
# run.sh — the side-by-side gRPC benchmark: direct, nginx, HAProxy, Caddy
# and Sightline, one proxy core each, interleaved, 3 repetitions.
#
#   bench/setup.sh     # once: installs the peers, h2load, ghz, the backends
#   bench/run.sh       # builds sightline from this tree, runs compare.sh
#
# Knobs are compare.sh's (REPS, N, LOADS, L3_RATES, CORES, TLS, …); the report is printed
# at the end and kept in $SCRATCH/run-*/report.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${SCRATCH:-/tmp/bench}/sightline
mkdir -p "$(dirname "$bin")"
(cd "$here/.." && go build -trimpath -o "$bin" ./cmd/sightline)
export PEER_SIGHTLINE="$here/sightline-peer.sh {PORT} {BACKENDS} {RUNDIR} $bin"
exec "$here/compare.sh" "$@"
