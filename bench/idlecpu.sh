#!/usr/bin/env bash
# idlecpu.sh — what an idle proxy costs: the CPU each peer uses with
# nothing connected, pinned to one core, in µs per second. An idle proxy
# is woken by its own timers alone, and on a virtual machine each wake-up
# of an idle process costs a sizeable slice of a millisecond.
#
#   bench/idlecpu.sh [SIGHTLINE_BINARY]     # Sightline (built from this tree if not given) and HAProxy
#
# Knobs: SECS (20, the measured span), REPS (2, alternated), PX_CPU (1),
# PEERS ("sightline haproxy"). Sightline runs the config
# sightline-peer.sh writes for the side-by-side benchmark (GOMAXPROCS=1),
# HAProxy peers/haproxy.cfg; neither has a backend to reach. The CPU is
# the sum of every thread's run time (/proc/PID/task/*/schedstat), from
# 3 s after the start.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
secs=${SECS:-20} reps=${REPS:-2} cpu=${PX_CPU:-1} peers=${PEERS:-sightline haproxy}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
bin=${1:-}
if [ -z "$bin" ]; then
  bin=$dir/sightline
  (cd "$here/.." && go build -trimpath -o "$bin" ./cmd/sightline)
fi

# runtime_ns PID: the CPU time of every thread of PID, in ns.
runtime_ns() {
  local s=0 t
  for t in /proc/"$1"/task/*/schedstat; do
    s=$((s + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)))
  done
  echo "$s"
}

# measure NAME CMD...: one run of CMD, idle.
measure() {
  local name=$1 pid a b
  shift
  GOMAXPROCS=1 taskset -c "$cpu" "$@" >"$dir/$name.out" 2>&1 &
  pid=$!
  sleep 3
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "$name did not start:" >&2
    cat "$dir/$name.out" >&2
    exit 1
  fi
  a=$(runtime_ns "$pid")
  sleep "$secs"
  b=$(runtime_ns "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "| $name | $(((b - a) / secs / 1000)) |"
}

echo "| peer | µs CPU per second, idle |"
echo "|---|---:|"
for _ in $(seq "$reps"); do
  for p in $peers; do
    case $p in
      sightline)
        # sightline-peer.sh execs the proxy: its PID is the proxy's.
        measure sightline "$here/sightline-peer.sh" 18091 127.0.0.1:50051 "$dir/sl" "$bin" ;;
      haproxy) measure haproxy haproxy -db -f "$here/peers/haproxy.cfg" ;;
      *) echo "unknown peer $p" >&2; exit 2 ;;
    esac
  done
done
