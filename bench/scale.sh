#!/usr/bin/env bash
# scale.sh — what idle clusters and hosts cost: for each case, the time
# from start to /ready, the RSS 10 s after (VmRSS) and the live heap then
# (after a forced GC, read after the RSS), and the time a reload
# that changes one cluster takes to apply (from the proxy's log line for the
# SIGHUP to its line for the new config running: reading, parsing and
# checking the whole file, then the reload). Static clusters, no health checks, no traffic; every host is an
# address nothing listens on (a pool is only made when a host is picked).
#
#   bench/scale.sh                       # 1, 1,000 and 10,000 clusters of 2 hosts; 1 cluster of 10,000 and 100,000 hosts; the burst
#   CASES="c10000 h100000" BURST= bench/scale.sh
#   SIGHTLINE_BIN=/path/to/sightline bench/scale.sh
#
# Prints a markdown table. Each case is capped at CAP_SECS (default 60)
# to become ready; a case that does not is printed as a timeout.
#
# Then the burst (BURST clusters, default 10000; empty: none): clusters of
# 2 hosts that are real backends (two `abuse backend` processes), a route
# /c<i>/ to each, and idle_timeout IDLE_SECS (default 10). It reads the
# RSS, the live heap (after a forced GC) and the RSS a second after that
# collection when idle, right after one gRPC call to every cluster
# (`abuse burst`), again once the upstream connections have been idle for
# idle_timeout (and SETTLE_SECS), and again WINDOW_SECS (default 60; 0:
# not) after that, once the status page's minute of history is over.
#
# PROFILES=DIR keeps heap profiles (after a forced GC) in DIR: one per
# case where its RSS is read (c10000.pb.gz, …) and one at each step of the
# burst (idle.pb.gz, burst.pb.gz, after.pb.gz, later.pb.gz). Read them with
# go tool pprof -sample_index=inuse_space.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
CASES=${CASES-"c1 c1000 c10000 h10000 h100000"}
CAP_SECS=${CAP_SECS:-60}
BURST=${BURST-10000}
IDLE_SECS=${IDLE_SECS:-10}
PROFILES=${PROFILES:-}
SETTLE_SECS=${SETTLE_SECS:-10}
WINDOW_SECS=${WINDOW_SECS-60}
ADMIN=127.0.0.1:19901
work=$(mktemp -d "${TMPDIR:-/tmp}/scale.XXXXXX")
pid=
backends=()
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  for b in "${backends[@]}"; do kill -TERM "$b" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

bin=${SIGHTLINE_BIN:-}
if [ -z "$bin" ]; then
  bin=$work/sightline
  (cd "$repo" && go build -o "$bin" ./cmd/sightline) || exit 1
fi

# config N_CLUSTERS HOSTS_PER_CLUSTER WEIGHT_OF_THE_LAST -> stdout
config() {
  local nc=$1 nh=$2 w=$3 c h
  printf 'admin: {address: %s}\nserver: {drain_time: 1ms, drain_timeout: 1s}\n' "$ADMIN"
  printf 'listeners:\n  - name: in\n    address: 127.0.0.1:18180\n    virtual_hosts:\n      - name: all\n        domains: ["*"]\n        routes:\n          - match: {prefix: /}\n            cluster: c0\nclusters:\n'
  for (( c=0; c<nc; c++ )); do
    printf '  - name: c%d\n    endpoints:\n' "$c"
    for (( h=0; h<nh; h++ )); do
      local weight=1
      [ "$c" -eq $(( nc - 1 )) ] && [ "$h" -eq 0 ] && weight=$w
      printf '      - {address: 127.0.0.%d:%d, weight: %d}\n' $(( 1 + (h / 60000) )) $(( 1024 + (c * nh + h) % 60000 )) "$weight"
    done
  done
}

ms_now() { date +%s%3N; }
if curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null; then
  echo "scale.sh: something already answers on $ADMIN; stop it first" >&2; exit 1
fi
# log_ns PATTERN: the time of the last line of the proxy's log matching
# PATTERN, in Unix nanoseconds
log_ns() { date -d "$(grep "$1" "$work/log" | tail -1 | sed 's/.*"time":"\([^"]*\)".*/\1/')" +%s%N; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
# live_mib STEP: "LIVE RSS": the heap after a forced GC and the RSS a
# second later, both in MiB; with PROFILES, the heap profile kept as
# STEP.pb.gz. An RSS read at any moment also holds the garbage made since
# the last collection; the second reading holds none (but the runtime
# returns freed pages at its own pace, so after a large burst not yet
# all of them).
live_mib() {
  local out=/dev/null
  [ -n "$PROFILES" ] && mkdir -p "$PROFILES" && out=$PROFILES/$1.pb.gz
  curl -fsS -o "$out" "http://$ADMIN/debug/pprof/heap?gc=1"
  sleep 1
  curl -fsS "http://$ADMIN/memory" | awk -F'"' '/"allocated"/{a=$4} /"rss"/{r=$4} END{printf "%.0f %.0f", a/1048576, r/1048576}'
}

echo "| case | clusters | hosts | ready s | RSS MiB | live heap MiB | per cluster KB | per host KB | one-cluster reload s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
base_rss=
for c in $CASES; do
  case $c in
    c*) nc=${c#c}; nh=2 ;;
    h*) nc=1; nh=${c#h} ;;
  esac
  config "$nc" "$nh" 1 >"$work/cfg.yaml"
  t0=$(ms_now)
  GOMAXPROCS=2 "$bin" -c "$work/cfg.yaml" --log-level info >"$work/log" 2>&1 &
  pid=$!
  ready=timeout
  while (( $(ms_now) - t0 < CAP_SECS * 1000 )); do
    if curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null; then ready=$(( $(ms_now) - t0 )); break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  if [ "$ready" = timeout ]; then
    echo "| $c | $nc | $(( nc * nh )) | timeout | | | | | |"
    kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; continue
  fi
  sleep "$SETTLE_SECS"
  rss=$(rss_kib "$pid")
  read -r live _ <<<"$(live_mib "$c")"
  [ -z "$base_rss" ] && [ "$c" = c1 ] && base_rss=$rss
  per_c=; per_h=
  if [ -n "$base_rss" ] && [ "$c" != c1 ]; then
    case $c in
      c*) per_c=$(awk -v r="$rss" -v b="$base_rss" -v n="$nc" 'BEGIN{printf "%.1f", (r-b)*1.024/n}') ;;
      h*) per_h=$(awk -v r="$rss" -v b="$base_rss" -v n="$nh" 'BEGIN{printf "%.2f", (r-b)*1.024/n}') ;;
    esac
  fi
  # The reload's time is read from the proxy's own log: from the line
  # the signal handler writes to the line written once the new config
  # runs. (Polling /stats from here for server.config_reload measured the
  # polls too, each a pass over every cluster's stats.)
  done0=$(grep -c '"config reloaded' "$work/log")
  config "$nc" "$nh" 2 >"$work/cfg.yaml"
  t1=$(ms_now); kill -HUP "$pid"; reload=timeout
  while (( $(ms_now) - t1 < CAP_SECS * 1000 )); do
    if [ "$(grep -c '"config reloaded' "$work/log")" != "$done0" ]; then
      reload=$(( ($(log_ns 'SIGHUP: reloading') - $(log_ns '"config reloaded')) / -1000000 ))
      break
    fi
    sleep 0.01
  done
  fmt() { [ "$1" = timeout ] && echo timeout || awk -v m="$1" 'BEGIN{printf "%.2f", m/1000}'; }
  echo "| $c | $nc | $(( nc * nh )) | $(fmt "$ready") | $(( rss / 1024 )) | $live | $per_c | $per_h | $(fmt "$reload") |"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=
done

[ -z "$BURST" ] && exit 0
(cd "$repo" && go build -o "$work/abuse" ./bench/abuse) || exit 1
B1=127.0.0.1:18191 B2=127.0.0.1:18192
for a in $B1 $B2; do
  "$work/abuse" backend -addr "$a" 2>/dev/null & backends+=($!)
done
# burst_config N_CLUSTERS -> stdout
burst_config() {
  local nc=$1 c
  printf 'admin: {address: %s}\nserver: {drain_time: 1ms, drain_timeout: 1s}\n' "$ADMIN"
  printf 'listeners:\n  - name: in\n    address: 127.0.0.1:18180\n    virtual_hosts:\n      - name: all\n        domains: ["*"]\n        routes:\n'
  for (( c=0; c<nc; c++ )); do
    printf '          - {match: {prefix: /c%d/}, cluster: c%d}\n' "$c" "$c"
  done
  printf 'clusters:\n'
  for (( c=0; c<nc; c++ )); do
    printf '  - {name: c%d, idle_timeout: %ds, endpoints: [{address: %s}, {address: %s}]}\n' "$c" "$IDLE_SECS" "$B1" "$B2"
  done
}
burst_config "$BURST" >"$work/burst.yaml"
GOMAXPROCS=2 "$bin" -c "$work/burst.yaml" --log-level warn >"$work/log" 2>&1 &
pid=$!
t0=$(ms_now)
until curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null; do
  if (( $(ms_now) - t0 > CAP_SECS * 1000 )) || ! kill -0 "$pid" 2>/dev/null; then echo "burst: the proxy did not become ready" >&2; exit 1; fi
  sleep 0.05
done
sleep "$SETTLE_SECS"
rss0=$(( $(rss_kib "$pid") / 1024 )); read -r live0 gc0 <<<"$(live_mib idle)"
out=$("$work/abuse" burst -addr 127.0.0.1:18180 -clusters "$BURST")
rss1=$(( $(rss_kib "$pid") / 1024 )); read -r live1 gc1 <<<"$(live_mib burst)"
conns=$(curl -gfsS "http://$ADMIN/stats?filter=^cluster\.c[0-9]*\.upstream_cx_active\$" | awk -F': ' '{n+=$2} END{print n+0}')
sleep $(( IDLE_SECS + SETTLE_SECS ))
rss2=$(( $(rss_kib "$pid") / 1024 )); read -r live2 gc2 <<<"$(live_mib after)"
left=$(curl -gfsS "http://$ADMIN/stats?filter=^cluster\.c[0-9]*\.upstream_cx_active\$" | awk -F': ' '{n+=$2} END{print n+0}')
if [ "$WINDOW_SECS" -gt 0 ]; then
  sleep "$WINDOW_SECS"
  rss3=$(( $(rss_kib "$pid") / 1024 )); read -r live3 gc3 <<<"$(live_mib later)"
fi
echo
echo "Burst: $BURST clusters, $out"
echo
echo "| when | RSS MiB | live heap MiB | RSS MiB after a collection | upstream connections open |"
echo "|---|---:|---:|---:|---:|"
echo "| idle, before | $rss0 | $live0 | $gc0 | 0 |"
echo "| after one call to every cluster | $rss1 | $live1 | $gc1 | $conns |"
echo "| ${IDLE_SECS} s idle_timeout later | $rss2 | $live2 | $gc2 | $left |"
[ "$WINDOW_SECS" -gt 0 ] && echo "| ${WINDOW_SECS} s after that (the status page's minute over) | $rss3 | $live3 | $gc3 | 0 |"
kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=
